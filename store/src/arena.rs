//! The arena: one `memfd` per node, mapped once by every process.
//!
//! A memfd rather than a `/dev/shm` file: a small container `/dev/shm` cannot
//! break it, it has no name to leak, and the kernel frees it when the last
//! process holding it exits (even after `kill -9`). The owner sizes it, seals
//! it against growing and shrinking (so no client can make a mapping SIGBUS by
//! truncating it), and *reserves* it ahead of use: pages are allocated and
//! mapped (`MADV_POPULATE_WRITE`, which reports a lack of memory as an error
//! where a plain write would raise SIGBUS) from offset 0 up to a mark that
//! stays a margin beyond the highest allocation so far
//! ([`Arena::prepare`]). A reserver thread ([`Arena::run_reserver`]) moves
//! the mark, on several cores when far behind; a write that lands beyond it
//! waits until the reserver passes it. Nothing is ever written to memory that
//! is not reserved, and a store that is never filled costs only its margin.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};

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

/// How much of the arena is reserved (allocated and mapped) so far, and how
/// much should be.
#[derive(Debug, Default)]
struct Reservation {
    state: Mutex<Reserved>,
    /// Signalled when `upto` moves or reservation fails (writers wait).
    progress: Condvar,
    /// Signalled when `target` rises or reservation is cancelled (the
    /// reserver waits).
    wanted: Condvar,
}

#[derive(Debug, Default)]
struct Reserved {
    /// Bytes from offset 0 that are reserved.
    upto: u64,
    /// Bytes from offset 0 the reserver is asked to reserve.
    target: u64,
    /// Why the last reservation step failed.
    failed: Option<String>,
    /// Steps failed so far: the writers waiting when one fails get an error.
    failures: u64,
    cancelled: bool,
}

/// The reserver reserves this much at a time, split over the cores; writers
/// waiting for it wake after each step.
const RESERVE_STEP: u64 = 64 << 20;
/// Each reserving thread takes at least this much of a step.
const RESERVE_PART: u64 = 16 << 20;
/// The least margin kept reserved beyond the highest allocation (the whole
/// cost of an idle store). The margin grows with the store: it is as large
/// as what is allocated below it.
pub const MIN_MARGIN: u64 = 32 << 20;

/// A write in progress into reserved memory ([`Arena::prepare_write`]);
/// dropping it asks for the margin beyond.
#[derive(Debug)]
#[must_use = "dropping it at once asks for the margin before the write"]
pub struct Writing<'a> {
    arena: &'a Arena,
    end: u64,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.arena.raise_target(self.end);
    }
}

fn arena_err(context: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Arena { context, source }
}

fn memfd_err(context: &'static str) -> impl FnOnce(memfd::Error) -> StoreError {
    move |e| StoreError::Arena { context, source: std::io::Error::other(e.to_string()) }
}

impl Arena {
    /// Create a new arena of `len` bytes (the store owner does this once).
    ///
    /// With `prefault`, all of it is reserved before this returns; without,
    /// pages are allocated on first touch
    /// ([`skip_reservation`](Self::skip_reservation)).
    pub fn create(len: u64, prefault: bool) -> Result<Arena, StoreError> {
        let arena = Self::create_unreserved(len)?;
        if prefault {
            arena.reserve_all()?;
        } else {
            arena.skip_reservation();
        }
        Ok(arena)
    }

    /// Create a new arena of which nothing is reserved yet: run
    /// [`run_reserver`](Self::run_reserver) on a thread of its own, or
    /// [`skip_reservation`](Self::skip_reservation), next.
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

    fn state(&self) -> MutexGuard<'_, Reserved> {
        self.reservation.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve the whole arena now, on this thread and as many more as there
    /// are cores.
    pub fn reserve_all(&self) -> Result<(), StoreError> {
        self.state().target = self.len;
        while self.reserve_step()? {}
        Ok(())
    }

    /// Be the arena's reserver until [`cancel_reservation`](Self::cancel_reservation):
    /// keep the arena reserved up to the mark [`prepare`](Self::prepare) sets,
    /// starting with [`MIN_MARGIN`]. If the host runs out of memory, the
    /// writers waiting then get [`StoreError::Unreserved`] and the reserver
    /// waits for the next write beyond the mark to try again.
    pub fn run_reserver(&self) {
        self.raise_target(0);
        loop {
            {
                let mut state = self.state();
                while state.upto >= state.target && !state.cancelled {
                    state = self.reservation.wanted.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.cancelled {
                    return;
                }
            }
            // A failure has been reported to the writers waiting for it.
            let _ = self.reserve_step();
        }
    }

    /// Reserve the next step towards the target; `false` once there.
    fn reserve_step(&self) -> Result<bool, StoreError> {
        let (from, to) = {
            let state = self.state();
            if state.cancelled || state.upto >= state.target {
                return Ok(false);
            }
            (state.upto, state.target.min(state.upto + RESERVE_STEP))
        };
        let threads = crate::copy::threads_for((to - from) as usize, RESERVE_PART as usize);
        let part = (to - from).div_ceil(threads as u64).next_multiple_of(4096);
        let failure = Mutex::new(None);
        let ranges = (from..to).step_by(part as usize).map(|at| (at, part.min(to - at)));
        crate::copy::in_parallel(ranges, threads, |(at, len)| {
            if let Err(e) = self.reserve_range(at, len) {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        });
        let mut state = self.state();
        let result = match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            None => {
                state.upto = state.upto.max(to);
                Ok(true)
            }
            Some(source) => {
                state.failed = Some(format!("only {from} of {} bytes could be reserved: {source}", self.len));
                state.failures += 1;
                // Stop here; the next write beyond the mark asks again.
                state.target = state.upto;
                Err(StoreError::Arena { context: "reserving arena memory", source })
            }
        };
        self.reservation.progress.notify_all();
        result
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

    /// Ask the reserver to keep the arena reserved a margin beyond `end` (the
    /// margin is `end` itself, at least [`MIN_MARGIN`]).
    fn raise_target(&self, end: u64) {
        self.raise_target_to(end.saturating_add(end.max(MIN_MARGIN)));
    }

    /// Ask the reserver to reserve the first `wanted` bytes.
    fn raise_target_to(&self, wanted: u64) {
        let wanted = wanted.min(self.len);
        let mut state = self.state();
        if wanted > state.target {
            state.target = wanted;
            self.reservation.wanted.notify_all();
        }
    }

    /// Make `offset..offset+len`, a fresh allocation, safe to write: raise the
    /// reservation mark a margin beyond it, and wait until the range is
    /// reserved. Fails with [`StoreError::Unreserved`] if the host could not
    /// provide the memory (or the owner is stopping).
    pub fn prepare(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.prepare_write(offset, len).map(drop)
    }

    /// [`prepare`](Self::prepare) for a write this thread does now: the
    /// margin beyond the range is asked for only when the returned guard is
    /// dropped (after the write), so that reserving it does not take cores
    /// from the write.
    pub fn prepare_write(&self, offset: u64, len: u64) -> Result<Writing<'_>, StoreError> {
        let end = offset.saturating_add(len);
        let writing = Writing { arena: self, end };
        if end > self.reserved() {
            self.raise_target_to(end);
        }
        self.wait_reserved(end)?;
        Ok(writing)
    }

    /// Treat the whole arena as usable without reserving it (pages are then
    /// allocated on first touch: a host out of memory raises SIGBUS).
    pub fn skip_reservation(&self) {
        let mut state = self.state();
        state.upto = self.len;
        state.target = self.len;
        self.reservation.progress.notify_all();
    }

    /// Stop the reserver (the node is stopping); writers still waiting for it
    /// get an error.
    pub fn cancel_reservation(&self) {
        let mut state = self.state();
        state.cancelled = true;
        self.reservation.wanted.notify_all();
        self.reservation.progress.notify_all();
    }

    /// Bytes reserved so far (from offset 0).
    pub fn reserved(&self) -> u64 {
        self.state().upto
    }

    /// Wait until the first `end` bytes are reserved, or a reservation step
    /// fails meanwhile, or reserving stops.
    fn wait_reserved(&self, end: u64) -> Result<(), StoreError> {
        let mut state = self.state();
        let failures = state.failures;
        while state.upto < end && end <= self.len && state.failures == failures && !state.cancelled {
            state = self.reservation.progress.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.upto >= end {
            return Ok(());
        }
        let reason = if end > self.len {
            format!("the arena has {} bytes", self.len)
        } else if state.failures != failures {
            state.failed.clone().unwrap_or_default()
        } else {
            "the arena's owner is stopping".into()
        };
        Err(StoreError::Unreserved { wanted: end, reserved: state.upto, reason })
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
        {
            let mut state = reservation.state.lock().unwrap_or_else(|e| e.into_inner());
            state.upto = reserved;
            state.target = reserved;
        }
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
    fn the_reserver_keeps_a_margin_beyond_what_is_prepared() {
        let _serial = crate::copy::serial();
        let arena = Arc::new(Arena::create_unreserved(8 * MIN_MARGIN).unwrap());
        assert_eq!(arena.reserved(), 0);
        let reserving = arena.clone();
        let reserver = std::thread::spawn(move || reserving.run_reserver());
        arena.wait_reserved(MIN_MARGIN).unwrap();
        // An idle store stops at its margin.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(arena.reserved(), MIN_MARGIN);
        // A write beyond the mark waits for it, and the margin grows with it.
        arena.prepare(2 * MIN_MARGIN, MIN_MARGIN).unwrap();
        assert!(arena.reserved() >= 3 * MIN_MARGIN);
        arena.wait_reserved(6 * MIN_MARGIN).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(arena.reserved(), 6 * MIN_MARGIN, "the margin is what lies below it");
        // Never past the end: beyond it is an error, not a wait.
        arena.prepare(7 * MIN_MARGIN, MIN_MARGIN).unwrap();
        assert!(matches!(arena.prepare(arena.len(), 64), Err(StoreError::Unreserved { .. })));
        arena.cancel_reservation();
        reserver.join().unwrap();
        assert_eq!(arena.reserved(), arena.len());
    }

    #[test]
    fn a_cancelled_reservation_is_an_error_not_a_hang() {
        let arena = Arena::create_unreserved(2 * MIN_MARGIN).unwrap();
        arena.cancel_reservation();
        arena.run_reserver(); // returns at once: cancelled
        assert!(matches!(arena.prepare(0, MIN_MARGIN), Err(StoreError::Unreserved { reserved: 0, .. })));
        arena.wait_reserved(0).unwrap();
    }

    #[test]
    fn skipping_makes_everything_usable() {
        let arena = Arena::create(MIN_MARGIN, false).unwrap();
        assert_eq!(arena.reserved(), MIN_MARGIN);
        arena.prepare(0, MIN_MARGIN).unwrap();
    }

    #[test]
    fn creating_with_prefault_reserves_everything() {
        let _serial = crate::copy::serial();
        let arena = Arena::create(3 * RESERVE_STEP + 4096, true).unwrap();
        assert_eq!(arena.reserved(), arena.len());
    }
}
