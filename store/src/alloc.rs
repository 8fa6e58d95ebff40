//! The arena allocator. Only the store owner runs it: allocator metadata lives
//! in one process, so no client crash can corrupt it.
//!
//! Design: first fit over an ordered map of free blocks (offset → length),
//! coalescing neighbours on free. Every block starts and ends on a 64-byte
//! boundary. The map is small in practice (objects are large and freed
//! promptly); a size-indexed structure can replace it behind the same API if
//! profiles ever show the scan.

use std::collections::{BTreeMap, HashMap};

use crate::error::StoreError;

/// Offset allocator over `capacity` bytes.
#[derive(Debug)]
pub struct Allocator {
    capacity: u64,
    free: BTreeMap<u64, u64>,
    used: HashMap<u64, u64>,
    free_bytes: u64,
}

impl Allocator {
    /// An allocator with all of `capacity` (rounded down to 64 bytes) free.
    pub fn new(capacity: u64) -> Self {
        let capacity = capacity / crate::ALIGN as u64 * crate::ALIGN as u64;
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Allocator { capacity, free, used: HashMap::new(), free_bytes: capacity }
    }

    /// Reserve `size` bytes (at least one 64-byte block); returns the offset,
    /// which is 64-byte aligned.
    pub fn allocate(&mut self, size: u64) -> Result<u64, StoreError> {
        let align = crate::ALIGN as u64;
        // Rounding a size near u64::MAX would wrap to 0: such a request is
        // simply larger than any arena.
        let size = size.max(1).checked_next_multiple_of(align).unwrap_or(u64::MAX);
        let found = self.free.iter().find(|&(_, &len)| len >= size).map(|(&off, &len)| (off, len));
        let Some((offset, len)) = found else {
            return Err(StoreError::Full {
                requested: size,
                capacity: self.capacity,
                free: self.free_bytes,
                largest_free: self.free.values().copied().max().unwrap_or(0),
            });
        };
        self.free.remove(&offset);
        if len > size {
            self.free.insert(offset + size, len - size);
        }
        self.used.insert(offset, size);
        self.free_bytes -= size;
        Ok(offset)
    }

    /// Return the block at `offset`. Returns its length, or `None` if no block
    /// starts there (a double free is refused, not corrupting).
    pub fn free(&mut self, offset: u64) -> Option<u64> {
        let size = self.used.remove(&offset)?;
        self.free_bytes += size;
        let mut start = offset;
        let mut len = size;
        if let Some((&prev_off, &prev_len)) = self.free.range(..offset).next_back() {
            if prev_off + prev_len == offset {
                self.free.remove(&prev_off);
                start = prev_off;
                len += prev_len;
            }
        }
        if let Some(next_len) = self.free.remove(&(offset + size)) {
            len += next_len;
        }
        self.free.insert(start, len);
        Some(size)
    }

    /// Length of the live allocation starting at `offset`.
    pub fn allocation_len(&self, offset: u64) -> Option<u64> {
        self.used.get(&offset).copied()
    }

    /// Total bytes managed.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Number of live allocations.
    pub fn allocations(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn absurd_sizes_are_full_not_wrapped() {
        let mut a = Allocator::new(1024);
        for size in [u64::MAX, u64::MAX - 63, u64::MAX - 64, 1 << 63] {
            assert!(matches!(a.allocate(size), Err(StoreError::Full { .. })), "{size}");
        }
        assert_eq!(a.allocations(), 0);
        assert_eq!(a.allocate(1024).unwrap(), 0);
    }

    #[test]
    fn full_names_sizes() {
        let mut a = Allocator::new(1024);
        let x = a.allocate(600).unwrap();
        let err = a.allocate(600).unwrap_err();
        assert!(matches!(err, StoreError::Full { requested: 640, capacity: 1024, free: 384, largest_free: 384 }));
        assert_eq!(a.free(x), Some(640));
        assert_eq!(a.free(x), None, "double free is refused");
        assert_eq!(a.allocate(1024).unwrap(), 0, "coalesced back to one block");
    }

    proptest! {
        #[test]
        fn blocks_never_overlap_and_everything_coalesces(ops in prop::collection::vec((any::<bool>(), 1u64..5000), 1..200)) {
            let mut a = Allocator::new(64 * 1024);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (alloc, size) in ops {
                if alloc || live.is_empty() {
                    if let Ok(off) = a.allocate(size) {
                        prop_assert_eq!(off % 64, 0);
                        let len = crate::format::align_up(size as usize) as u64;
                        for &(o, l) in &live {
                            prop_assert!(off + len <= o || o + l <= off, "overlap");
                        }
                        prop_assert!(off + len <= a.capacity());
                        live.push((off, len));
                    }
                } else {
                    let (off, len) = live.swap_remove(size as usize % live.len());
                    prop_assert_eq!(a.free(off), Some(len));
                }
                let used: u64 = live.iter().map(|&(_, l)| l).sum();
                prop_assert_eq!(a.free_bytes(), a.capacity() - used);
            }
            for (off, _) in live {
                a.free(off);
            }
            prop_assert_eq!(a.free.len(), 1);
            prop_assert_eq!(a.allocate(64 * 1024).unwrap(), 0);
        }
    }
}
