//! The arena: one `memfd` per node, mapped once by every process.
//!
//! A memfd rather than a `/dev/shm` file: a small container `/dev/shm` cannot
//! break it, it has no name to leak, and the kernel frees it when the last
//! process holding it exits (even after `kill -9`). The owner sizes it, seals
//! it against growing and shrinking (so no client can make a mapping SIGBUS by
//! truncating it), and *reserves* it: every page is allocated and mapped
//! (`MADV_POPULATE_WRITE`, which reports a lack of memory as an error where a
//! plain write would raise SIGBUS). Reserving gigabytes takes seconds, so the
//! owner does it on a background thread, low offsets first, and an allocation
//! waits ([`Arena::wait_reserved`]) only if it lands beyond what is reserved
//! so far. Nothing is ever written to memory that is not reserved.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use memfd::{FileSeal, MemfdOptions};
use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::error::StoreError;

/// One mapping of the node's arena.
#[derive(Debug)]
pub struct Arena {
    map: MmapRaw,
    file: File,
    len: u64,
    reservation: Reservation,
}

/// How much of the arena is reserved (allocated and mapped) so far.
#[derive(Debug, Default)]
struct Reservation {
    state: Mutex<Reserved>,
    progress: Condvar,
    cancel: AtomicBool,
}

#[derive(Debug, Default)]
struct Reserved {
    upto: u64,
    failed: Option<String>,
}

/// Bytes reserved per step of [`Arena::reserve`].
const RESERVE_CHUNK: u64 = 32 << 20;

fn arena_err(context: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Arena { context, source }
}

fn memfd_err(context: &'static str) -> impl FnOnce(memfd::Error) -> StoreError {
    move |e| StoreError::Arena { context, source: std::io::Error::other(e.to_string()) }
}

impl Arena {
    /// Create a new arena of `len` bytes (the store owner does this once).
    ///
    /// With `prefault`, all of it is reserved before this returns (see
    /// [`reserve`](Self::reserve)); without, pages are allocated on first
    /// touch ([`skip_reservation`](Self::skip_reservation)).
    pub fn create(len: u64, prefault: bool) -> Result<Arena, StoreError> {
        let arena = Self::create_unreserved(len)?;
        if prefault {
            arena.reserve()?;
        } else {
            arena.skip_reservation();
        }
        Ok(arena)
    }

    /// Create a new arena of which nothing is reserved yet: run
    /// [`reserve`](Self::reserve) (on a thread of its own) or
    /// [`skip_reservation`](Self::skip_reservation) next.
    pub fn create_unreserved(len: u64) -> Result<Arena, StoreError> {
        let memfd = MemfdOptions::default()
            .allow_sealing(true)
            .close_on_exec(true)
            .create("shoal-arena")
            .map_err(memfd_err("memfd_create"))?;
        memfd.as_file().set_len(len).map_err(arena_err("sizing the memfd"))?;
        memfd
            .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow, FileSeal::SealSeal])
            .map_err(memfd_err("sealing the memfd"))?;
        let file = memfd.into_file();
        Self::map(file, len, false, 0)
    }

    /// Reserve the whole arena, low offsets first: allocate every page and map
    /// it into this process, so writes run at memory speed and a host without
    /// the memory reports an error instead of raising SIGBUS. Blocks until
    /// done, failed, or [`cancel_reservation`](Self::cancel_reservation).
    pub fn reserve(&self) -> Result<(), StoreError> {
        let mut offset = self.reserved();
        while offset < self.len && !self.reservation.cancel.load(Ordering::Relaxed) {
            let step = RESERVE_CHUNK.min(self.len - offset);
            if let Err(source) = self.reserve_range(offset, step) {
                let mut state = self.reservation.state.lock().unwrap_or_else(|e| e.into_inner());
                state.failed = Some(format!("only {offset} of {} bytes could be reserved: {source}", self.len));
                self.reservation.progress.notify_all();
                return Err(StoreError::Arena { context: "reserving arena memory", source });
            }
            offset += step;
            self.reservation.state.lock().unwrap_or_else(|e| e.into_inner()).upto = offset;
            self.reservation.progress.notify_all();
        }
        Ok(())
    }

    /// Allocate and map `offset..offset+len`. `MADV_POPULATE_WRITE` (Linux
    /// 5.14+) does both; older kernels refuse it with EINVAL, and there
    /// `fallocate` still allocates every page (pages are then mapped on first
    /// touch, but never raise SIGBUS).
    fn reserve_range(&self, offset: u64, len: u64) -> std::io::Result<()> {
        match self.map.advise_range(Advice::PopulateWrite, offset as usize, len as usize) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
                nix::fcntl::fallocate(fd, nix::fcntl::FallocateFlags::empty(), offset as i64, len as i64)?;
                Ok(())
            }
            other => other,
        }
    }

    /// Treat the whole arena as usable without reserving it (pages are then
    /// allocated on first touch: a host out of memory raises SIGBUS).
    pub fn skip_reservation(&self) {
        self.reservation.state.lock().unwrap_or_else(|e| e.into_inner()).upto = self.len;
        self.reservation.progress.notify_all();
    }

    /// Stop a [`reserve`](Self::reserve) in progress (the node is stopping).
    pub fn cancel_reservation(&self) {
        self.reservation.cancel.store(true, Ordering::Relaxed);
        let mut state = self.reservation.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.failed.is_none() && state.upto < self.len {
            state.failed = Some("the arena's owner is stopping".into());
        }
        self.reservation.progress.notify_all();
    }

    /// Bytes reserved so far (from offset 0).
    pub fn reserved(&self) -> u64 {
        self.reservation.state.lock().unwrap_or_else(|e| e.into_inner()).upto
    }

    /// Wait until the first `end` bytes are reserved.
    pub fn wait_reserved(&self, end: u64) -> Result<(), StoreError> {
        let mut state = self.reservation.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.upto < end && state.failed.is_none() {
            state = self.reservation.progress.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.upto >= end {
            return Ok(());
        }
        Err(StoreError::Unreserved {
            wanted: end,
            reserved: state.upto,
            reason: state.failed.clone().unwrap_or_default(),
        })
    }

    /// Map an arena received from the store owner. Checks that it is sealed
    /// against resizing, so its length cannot change under the mapping.
    pub fn open(fd: OwnedFd, populate: bool) -> Result<Arena, StoreError> {
        let file = File::from(fd);
        let memfd = memfd::Memfd::try_from_file(file)
            .map_err(|_| arena_err("opening the arena")(std::io::Error::other("not a memfd")))?;
        let seals = memfd.seals().map_err(memfd_err("reading seals"))?;
        if !(seals.contains(&FileSeal::SealShrink) && seals.contains(&FileSeal::SealGrow)) {
            return Err(arena_err("opening the arena")(std::io::Error::other("arena memfd is not sealed")));
        }
        let file = memfd.into_file();
        let len = file.metadata().map_err(arena_err("reading the arena size"))?.len();
        // The owner reserves; a client never allocates, so all of it is usable.
        Self::map(file, len, populate, len)
    }

    fn map(file: File, len: u64, populate: bool, reserved: u64) -> Result<Arena, StoreError> {
        let mut options = MmapOptions::new();
        options.len(usize::try_from(len).map_err(|_| arena_err("mapping")(std::io::Error::other("too large")))?);
        if populate {
            options.populate();
        }
        let map = options.map_raw(&file).map_err(arena_err("mapping the arena"))?;
        let reservation = Reservation::default();
        reservation.state.lock().unwrap_or_else(|e| e.into_inner()).upto = reserved;
        Ok(Arena { map, file, len, reservation })
    }

    /// The memfd, to send to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Arena size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the arena has zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, offset: u64, len: u64) -> Result<*mut u8, StoreError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.map.as_mut_ptr().wrapping_add(offset as usize)),
            _ => Err(StoreError::OutOfRange { offset, len, arena: self.len }),
        }
    }

    /// The bytes of an object, read in place.
    ///
    /// # Safety
    /// For the returned lifetime, `offset..offset+len` must hold a sealed object
    /// that stays allocated (something holds a reference to it) and that no
    /// process writes.
    pub unsafe fn bytes(&self, offset: u64, len: u64) -> Result<&[u8], StoreError> {
        let ptr = self.range(offset, len)?;
        // SAFETY: (1) `range` checked `offset..offset+len` lies inside the live
        // mapping, which lives as long as `&self`; (2) the caller guarantees no
        // one writes it for the returned lifetime.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len as usize) })
    }

    /// The bytes of a fresh allocation, to write an object into.
    ///
    /// # Safety
    /// For the returned lifetime, `offset..offset+len` must be an allocation
    /// that the store owner handed to this caller alone and that is not yet
    /// sealed: no other reference to those bytes may exist in any process.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, offset: u64, len: u64) -> Result<&mut [u8], StoreError> {
        let ptr = self.range(offset, len)?;
        // SAFETY: (1) in bounds of the mapping, checked by `range`; (2) the
        // caller guarantees exclusive access to the range, so this `&mut` does
        // not alias.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn writers_wait_for_the_reservation_to_pass_them() {
        let arena = Arc::new(Arena::create_unreserved(4 * RESERVE_CHUNK).unwrap());
        assert_eq!(arena.reserved(), 0);
        let reserving = arena.clone();
        let thread = std::thread::spawn(move || reserving.reserve());
        arena.wait_reserved(3 * RESERVE_CHUNK + 1).unwrap();
        assert!(arena.reserved() > 3 * RESERVE_CHUNK);
        thread.join().unwrap().unwrap();
        assert_eq!(arena.reserved(), arena.len());
    }

    #[test]
    fn a_cancelled_reservation_is_an_error_not_a_hang() {
        let arena = Arena::create_unreserved(2 * RESERVE_CHUNK).unwrap();
        arena.cancel_reservation();
        arena.reserve().unwrap(); // returns at once: cancelled
        assert!(matches!(arena.wait_reserved(RESERVE_CHUNK), Err(StoreError::Unreserved { reserved: 0, .. })));
        arena.wait_reserved(0).unwrap();
    }

    #[test]
    fn skipping_makes_everything_usable() {
        let arena = Arena::create(RESERVE_CHUNK, false).unwrap();
        assert_eq!(arena.reserved(), RESERVE_CHUNK);
        arena.wait_reserved(RESERVE_CHUNK).unwrap();
    }
}
