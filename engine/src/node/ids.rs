//! The hasher of the node's maps keyed by its own ids.

use std::collections::HashMap;

/// Hashes the node's own ids (objects, tasks): they are sequential integers
/// that no peer chooses, so a multiply (as rustc's FxHasher does) spreads
/// them well at a fraction of SipHash's cost, on the path of every ref
/// count change.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(5) ^ id).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by node-assigned ids.
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;
