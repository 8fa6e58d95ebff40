//! The memfd arena: sealing, sharing through a second mapping, bounds checks,
//! and refusing memfds that are not sealed.

mod common;

use std::fs::File;
use std::os::fd::OwnedFd;

use common::{FP, TestResult};
use memfd::{FileSeal, MemfdOptions};
use shoal_store::{Allocator, Arena, StoreError, decode, encode};

const LEN: u64 = 1 << 20;

fn dup(arena: &Arena) -> OwnedFd {
    arena.fd().try_clone_to_owned().expect("dup the arena fd")
}

fn write(arena: &Arena, offset: u64, data: &[u8]) {
    // SAFETY: the tests write ranges no reference points into at that moment.
    unsafe { arena.bytes_mut(offset, data.len() as u64) }.expect("in range").copy_from_slice(data);
}

fn read(arena: &Arena, offset: u64, len: u64) -> Vec<u8> {
    // SAFETY: the bytes are copied out at once; no write happens meanwhile.
    unsafe { arena.bytes(offset, len) }.expect("in range").to_vec()
}

#[test]
fn create_gives_a_zeroed_arena_of_the_asked_size() -> TestResult {
    for prefault in [true, false] {
        let arena = Arena::create(LEN, prefault)?;
        assert_eq!(arena.len(), LEN);
        assert!(!arena.is_empty());
        assert!(read(&arena, 0, LEN).iter().all(|&b| b == 0));
        // The mapping itself is page aligned, hence 64-byte aligned.
        // SAFETY: nothing writes the arena while this reference lives.
        let base = unsafe { arena.bytes(0, 1)? }.as_ptr();
        assert_eq!(base as usize % 4096, 0);
    }
    Ok(())
}

#[test]
fn a_second_mapping_shares_the_bytes() -> TestResult {
    let first = Arena::create(LEN, true)?;
    let second = Arena::open(dup(&first), false)?;
    assert_eq!(second.len(), LEN);

    write(&first, 0, b"hello from the owner");
    assert_eq!(read(&second, 0, 20), b"hello from the owner");
    write(&first, LEN - 4, &[1, 2, 3, 4]);
    assert_eq!(read(&second, LEN - 4, 4), [1, 2, 3, 4]);

    // And the other way round.
    write(&second, 4096, b"reply");
    assert_eq!(read(&first, 4096, 5), b"reply");

    // Different mappings, same memory.
    // SAFETY: nothing writes the arena while these references live.
    let (a, b) = unsafe { (first.bytes(0, 1)?.as_ptr(), second.bytes(0, 1)?.as_ptr()) };
    assert_ne!(a, b);

    // A third mapping, populated, of the second's fd.
    let third = Arena::open(dup(&second), true)?;
    assert_eq!(read(&third, 4096, 5), b"reply");
    Ok(())
}

#[test]
fn the_memory_outlives_the_creating_mapping() -> TestResult {
    let first = Arena::create(LEN, false)?;
    write(&first, 128, b"still here");
    let fd = dup(&first);
    drop(first);
    let second = Arena::open(fd, false)?;
    assert_eq!(read(&second, 128, 10), b"still here");
    Ok(())
}

#[test]
fn an_object_travels_through_the_arena() -> TestResult {
    let owner = Arena::create(LEN, true)?;
    let client = Arena::open(dup(&owner), false)?;
    let mut alloc = Allocator::new(owner.len());
    let value = (String::from("shared"), vec![1u64, 2, 3], ndarray::arr1(&[0.5f32, 1.5]));
    let encoded = encode(&value, FP)?;
    let len = encoded.total_len() as u64;
    let _skip = alloc.allocate(100)?;
    let offset = alloc.allocate(len)?;
    // SAFETY: the allocator handed this range out once, to this test.
    encoded.write_to(unsafe { owner.bytes_mut(offset, len)? });
    // SAFETY: the object is complete and no longer written.
    let bytes = unsafe { client.bytes(offset, len)? };
    let back: (String, Vec<u64>, ndarray::Array1<f32>) = decode(bytes, FP)?;
    assert_eq!(back, value);
    Ok(())
}

#[test]
fn out_of_range_is_refused() -> TestResult {
    let arena = Arena::create(LEN, false)?;
    let cases =
        [(LEN, 1), (0, LEN + 1), (LEN - 1, 2), (LEN + 1, 0), (u64::MAX, 1), (1, u64::MAX), (u64::MAX, u64::MAX)];
    for (offset, len) in cases {
        // SAFETY: nothing is written; on success nothing would be read.
        let r = unsafe { arena.bytes(offset, len) };
        match r {
            Err(StoreError::OutOfRange { offset: o, len: l, arena: a }) => {
                assert_eq!((o, l, a), (offset, len, LEN));
            }
            other => panic!("bytes({offset}, {len}) gave {other:?}"),
        }
        // SAFETY: as above.
        let r = unsafe { arena.bytes_mut(offset, len) };
        assert!(matches!(r, Err(StoreError::OutOfRange { .. })), "bytes_mut({offset}, {len})");
    }
    // The edges themselves are fine.
    // SAFETY: nothing writes the arena while these references live.
    unsafe {
        assert_eq!(arena.bytes(0, LEN)?.len() as u64, LEN);
        assert_eq!(arena.bytes(LEN, 0)?.len(), 0);
        assert_eq!(arena.bytes(LEN - 1, 1)?.len(), 1);
    }
    let msg = StoreError::OutOfRange { offset: 5, len: 6, arena: 7 }.to_string();
    assert!(msg.contains("5+6") && msg.contains("7-byte"), "{msg}");
    Ok(())
}

#[test]
fn the_arena_is_sealed_against_resizing() -> TestResult {
    let arena = Arena::create(LEN, true)?;
    let memfd = memfd::Memfd::try_from_fd(dup(&arena)).map_err(|_| "the arena fd is a memfd")?;
    let seals = memfd.seals()?;
    assert!(seals.contains(&FileSeal::SealShrink), "{seals:?}");
    assert!(seals.contains(&FileSeal::SealGrow), "{seals:?}");
    assert!(seals.contains(&FileSeal::SealSeal), "no one may add or remove seals later: {seals:?}");
    assert!(!seals.contains(&FileSeal::SealWrite), "the arena must stay writable");
    let file = memfd.into_file();
    assert!(file.set_len(0).is_err(), "shrinking must be refused");
    assert!(file.set_len(LEN * 2).is_err(), "growing must be refused");
    assert_eq!(file.metadata()?.len(), LEN);
    Ok(())
}

fn refused(fd: OwnedFd) {
    match Arena::open(fd, false) {
        Err(StoreError::Arena { .. }) => {}
        other => panic!("expected the arena to be refused, got {other:?}"),
    }
}

#[test]
fn unsealed_memfds_are_refused() -> TestResult {
    // Sealable but never sealed.
    let m = MemfdOptions::default().allow_sealing(true).create("test-unsealed")?;
    m.as_file().set_len(LEN)?;
    refused(m.into_file().into());

    // Not sealable at all (the kernel marks it F_SEAL_SEAL only).
    let m = MemfdOptions::default().allow_sealing(false).create("test-unsealable")?;
    m.as_file().set_len(LEN)?;
    refused(m.into_file().into());

    // Sealed against one of shrinking and growing only.
    for seal in [FileSeal::SealShrink, FileSeal::SealGrow] {
        let m = MemfdOptions::default().allow_sealing(true).create("test-half-sealed")?;
        m.as_file().set_len(LEN)?;
        m.add_seals(&[seal, FileSeal::SealSeal])?;
        refused(m.into_file().into());
    }

    // Both seals, added by someone else: accepted.
    let m = MemfdOptions::default().allow_sealing(true).create("test-sealed")?;
    m.as_file().set_len(8192)?;
    m.add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow])?;
    let arena = Arena::open(m.into_file().into(), false)?;
    assert_eq!(arena.len(), 8192);
    Ok(())
}

#[test]
fn files_that_are_not_memfds_are_refused() -> TestResult {
    refused(File::open("/dev/null")?.into());
    let path = std::env::temp_dir().join(format!("shoal-store-arena-test-{}", std::process::id()));
    let file = File::create(&path)?;
    file.set_len(4096)?;
    let r = Arena::open(file.into(), false);
    std::fs::remove_file(&path)?;
    assert!(matches!(r, Err(StoreError::Arena { .. })), "{r:?}");
    Ok(())
}

#[test]
fn a_zero_length_arena_is_consistent() {
    // Either a clean error or an empty arena; never a panic.
    if let Ok(arena) = Arena::create(0, true) {
        assert!(arena.is_empty());
        assert_eq!(arena.len(), 0);
        // SAFETY: out of range, so nothing is read or written.
        let r = unsafe { arena.bytes(0, 1) };
        assert!(matches!(r, Err(StoreError::OutOfRange { .. })));
    }
}
