//! The arena: one `memfd` per node, mapped once by every process.
//!
//! A memfd rather than a `/dev/shm` file: a small container `/dev/shm` cannot
//! break it, it has no name to leak, and the kernel frees it when the last
//! process holding it exits (even after `kill -9`). The owner sizes it, seals
//! it against growing and shrinking (so no client can make a mapping SIGBUS by
//! truncating it), and pre-faults it with `fallocate` so that a host without
//! the memory fails here, with a clear error, instead of with SIGBUS later.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memfd::{FileSeal, MemfdOptions};
use memmap2::{MmapOptions, MmapRaw};

use crate::error::StoreError;

/// One mapping of the node's arena.
#[derive(Debug)]
pub struct Arena {
    map: MmapRaw,
    file: File,
    len: u64,
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
    /// With `prefault`, every page is allocated now (`fallocate`) and mapped
    /// into this process (`MAP_POPULATE`): slower to start, but later writes
    /// run at memcpy speed and a host without the memory fails here.
    pub fn create(len: u64, prefault: bool) -> Result<Arena, StoreError> {
        let memfd = MemfdOptions::default()
            .allow_sealing(true)
            .close_on_exec(true)
            .create("shoal-arena")
            .map_err(memfd_err("memfd_create"))?;
        memfd.as_file().set_len(len).map_err(arena_err("sizing the memfd"))?;
        if prefault && len > 0 {
            let len_i64 = i64::try_from(len).map_err(|_| arena_err("sizing")(std::io::Error::other("too large")))?;
            nix::fcntl::fallocate(std::os::fd::AsRawFd::as_raw_fd(memfd.as_file()), nix::fcntl::FallocateFlags::empty(), 0, len_i64)
                .map_err(|e| arena_err("reserving arena memory (fallocate)")(e.into()))?;
        }
        memfd
            .add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow, FileSeal::SealSeal])
            .map_err(memfd_err("sealing the memfd"))?;
        let file = memfd.into_file();
        Self::map(file, len, prefault)
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
        Self::map(file, len, populate)
    }

    fn map(file: File, len: u64, populate: bool) -> Result<Arena, StoreError> {
        let mut options = MmapOptions::new();
        options.len(usize::try_from(len).map_err(|_| arena_err("mapping")(std::io::Error::other("too large")))?);
        if populate {
            options.populate();
        }
        let map = options.map_raw(&file).map_err(arena_err("mapping the arena"))?;
        Ok(Arena { map, file, len })
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
