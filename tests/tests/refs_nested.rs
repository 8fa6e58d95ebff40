//! Objects that contain refs: `get` hands back a counted handle per ref —
//! duplicates, refs to objects freed before the container was made, refs
//! met out of order — and a decode that fails, panics or nests another `get`
//! leaves every count as it found it (the node's object count returns to its
//! baseline once everything is dropped).
//!
//! These tests compare object counts, so they run one at a time under a lock.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ndarray::Array1;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shoal::{Error, ObjectRef};
use shoal_tests::shared_node;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait (bounded) until the node tracks `baseline` objects again: releases
/// from workers arrive asynchronously.
fn settles_to(node: &shoal::Shoal, baseline: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if node.object_count() == baseline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A ref to an object that no longer exists (its id, read back after the
/// object was freed).
fn stale_ref() -> anyhow::Result<ObjectRef<i64>> {
    let bytes = postcard::to_stdvec(&shoal::put(-1i64)?)?;
    Ok(postcard::from_bytes(&bytes)?)
}

#[shoal::remote]
fn echo(refs: Vec<ObjectRef<i64>>) -> Vec<ObjectRef<i64>> {
    refs
}

#[test]
fn duplicates_and_stale_refs_read_back_and_are_all_released() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let a = shoal::put(1i64)?;
        let b = shoal::put(2i64)?;
        let stale = stale_ref()?;
        // A stale id is not counted by the container, so decoding meets it
        // out of the order of the counted ones.
        let refs = vec![a.clone(), a.clone(), stale.clone(), b.clone(), a.clone(), stale];
        let outer = shoal::put(refs)?;
        drop((a, b));
        for _ in 0..3 {
            let back = shoal::get(&outer)?;
            assert_eq!(back.len(), 6);
            assert_eq!(back[0].id(), back[1].id());
            for i in [0, 1, 4] {
                assert_eq!(shoal::get(&back[i])?, 1);
            }
            assert_eq!(shoal::get(&back[3])?, 2);
            for i in [2, 5] {
                assert!(matches!(shoal::get(&back[i]), Err(Error::ObjectNotFound(_))));
            }
            // The handles read back keep their objects alive on their own.
            let (first, second) = (back[0].clone(), back[3].clone());
            drop(back);
            assert_eq!(shoal::get(&first)?, 1);
            assert_eq!(shoal::get(&second)?, 2);
        }
        // A copy of the refs outlives the container.
        let kept = shoal::get(&outer)?;
        drop(outer);
        assert_eq!(node.object_count(), baseline + 2, "a and b, held by the copies read back");
        assert_eq!(shoal::get(&kept[4])?, 1);
    }
    assert_eq!(node.object_count(), baseline);
    Ok(())
}

#[test]
fn an_arena_object_with_many_refs_reads_back() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let inner: Vec<ObjectRef<i64>> = (0..2_000).map(shoal::put).collect::<shoal::Result<_>>()?;
        // An array makes it an arena object, read in place.
        let outer = shoal::put((Array1::<f64>::ones(16), inner.clone(), inner.clone()))?;
        drop(inner);
        for _ in 0..2 {
            let (array, first, second) = shoal::get(&outer)?;
            assert_eq!(array.len(), 16);
            for (i, (x, y)) in first.iter().zip(&second).enumerate().step_by(97) {
                assert_eq!(shoal::get(x)?, i as i64);
                assert_eq!(x.id(), y.id());
            }
        }
        assert_eq!(node.object_count(), baseline + 2_001);
    }
    assert_eq!(node.object_count(), baseline);
    Ok(())
}

#[test]
fn reading_as_the_wrong_type_counts_nothing() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let a = shoal::put(7i64)?;
        let outer = shoal::put(vec![a.clone(), a.clone(), a])?;
        // The same object, claimed to hold another type.
        let wrong: ObjectRef<Vec<ObjectRef<u32>>> = postcard::from_bytes(&postcard::to_stdvec(&outer)?)?;
        for _ in 0..3 {
            assert!(matches!(shoal::get(&wrong), Err(Error::TypeMismatch { .. })));
        }
        assert_eq!(node.object_count(), baseline + 2);
        let back = shoal::get(&outer)?;
        assert_eq!(shoal::get(&back[2])?, 7);
    }
    assert_eq!(node.object_count(), baseline);
    Ok(())
}

/// Serializes as a `u8`; refuses to read back 0, panics reading back 1.
#[derive(Serialize, Deserialize)]
struct Picky {
    refs: Vec<ObjectRef<i64>>,
    #[serde(deserialize_with = "picky_byte")]
    tail: u8,
    more: Vec<ObjectRef<i64>>,
}

fn picky_byte<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    match u8::deserialize(d)? {
        0 => Err(D::Error::custom("refused")),
        1 => panic!("a Deserialize impl panicked"),
        v => Ok(v),
    }
}

#[test]
fn a_decode_that_fails_or_panics_halfway_releases_every_ref() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let a = shoal::put(1i64)?;
        let b = shoal::put(2i64)?;
        let make = |tail| Picky { refs: vec![a.clone(), b.clone(), a.clone()], tail, more: vec![b.clone(), a.clone()] };
        let refused = shoal::put(make(0))?;
        let panics = shoal::put(make(1))?;
        let fine = shoal::put(make(2))?;
        drop((a, b));
        assert_eq!(node.object_count(), baseline + 5);
        assert!(shoal::get(&refused).is_err());
        assert_eq!(node.object_count(), baseline + 5);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shoal::get(&panics).map(|p| p.tail)));
        assert!(caught.is_err(), "the panic reaches the caller");
        assert_eq!(node.object_count(), baseline + 5);
        // Decoding on this thread afterwards is unaffected.
        let read = shoal::get(&fine)?;
        assert_eq!(read.tail, 2);
        assert_eq!(shoal::get(&read.refs[2])?, 1);
        assert_eq!(shoal::get(&read.more[0])?, 2);
        drop((refused, panics, fine));
        assert_eq!(node.object_count(), baseline + 2, "a and b, held by what was read back");
    }
    assert_eq!(node.object_count(), baseline);
    Ok(())
}

/// Written as a ref to a list of refs; read back as that list, through a
/// `get` made while the enclosing object decodes.
struct Resolved(Vec<ObjectRef<i64>>);

impl Serialize for Resolved {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resolved {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ObjectRef::<Vec<ObjectRef<i64>>>::deserialize(d)?;
        shoal::get(&r).map(Resolved).map_err(D::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct Chain {
    before: Vec<ObjectRef<i64>>,
    middle: ObjectRef<Vec<ObjectRef<i64>>>,
    after: Vec<ObjectRef<i64>>,
}

/// Reads a `Chain`, with its middle list fetched while it decodes.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Chain)]
struct ChainRead {
    before: Vec<ObjectRef<i64>>,
    #[view_of(owned = ObjectRef<Vec<ObjectRef<i64>>>)]
    middle: Resolved,
    after: Vec<ObjectRef<i64>>,
}

#[test]
fn a_get_nested_in_a_decode_keeps_both_decodes_apart() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let outer_refs: Vec<ObjectRef<i64>> = (0..5).map(shoal::put).collect::<shoal::Result<_>>()?;
        let inner_refs: Vec<ObjectRef<i64>> = (10..15).map(shoal::put).collect::<shoal::Result<_>>()?;
        let middle = shoal::put(inner_refs.clone())?;
        let chain = shoal::put(Chain { before: outer_refs.clone(), middle, after: outer_refs.clone() })?;
        drop((outer_refs, inner_refs));
        let read: ChainRead = shoal::get_view(&chain)?;
        for (i, r) in read.before.iter().chain(&read.after).enumerate() {
            assert_eq!(shoal::get(r)?, (i % 5) as i64);
        }
        for (i, r) in read.middle.0.iter().enumerate() {
            assert_eq!(shoal::get(r)?, 10 + i as i64);
        }
        drop(chain);
        assert_eq!(node.object_count(), baseline + 10, "the middle list is gone, its refs are held");
    }
    assert_eq!(node.object_count(), baseline);
    Ok(())
}

#[test]
fn refs_pass_through_a_task_and_back() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let baseline = node.object_count();
    {
        let a = shoal::put(3i64)?;
        let small = vec![a.clone(), a.clone()];
        // Over 100 KB encoded: past the inline limit, so read from the arena.
        let large: Vec<ObjectRef<i64>> = std::iter::repeat_n(a.clone(), 60_000).collect();
        let large = shoal::put(large)?;
        let back = shoal::get(&echo::remote(small))?;
        assert_eq!(shoal::get(&back[0])?, 3);
        assert_eq!(back[1].id(), a.id());
        let back_large = shoal::get(&echo::remote(&large))?;
        assert_eq!(back_large.len(), 60_000);
        assert!(back_large.iter().all(|r| r.id() == a.id()));
        drop((a, large, back, back_large));
    }
    assert!(settles_to(node, baseline), "{} objects left, {baseline} before", node.object_count());
    Ok(())
}
