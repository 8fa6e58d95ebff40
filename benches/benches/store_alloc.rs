//! The arena's offset allocator (`shoal_store::Allocator`): metadata only, no
//! memory is touched, so these figures are the allocator's own cost.
//!
//! * `steady/*`: allocate a block and free it at once, on an empty allocator,
//!   and through a FIFO of 16 live blocks (results made and dropped in order);
//! * `mixed/<live>`: `live` allocations of mixed sizes (64 B to 64 KiB,
//!   log-uniform) stay live; each iteration frees a random one and allocates
//!   a new random size in its place. The allocator is first fit over its free
//!   blocks, so this shows how the scan grows with fragmentation.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use shoal_store::Allocator;

/// Far more than the live sets below need: the allocator only does
/// arithmetic on offsets, so capacity costs nothing.
const CAPACITY: u64 = 1 << 30;

/// A small deterministic generator (xorshift64*), so every run sees the same
/// sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A size from 64 B to 64 KiB, uniform in its logarithm.
    fn size(&mut self) -> u64 {
        let r = self.next();
        let shift = 6 + r % 11; // 2^6 ..= 2^16
        (1 << shift) + (r >> 32) % (1 << shift)
    }
}

fn steady(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_alloc/steady");
    for size in [64u64, 4096] {
        let mut alloc = Allocator::new(CAPACITY);
        group.bench_function(BenchmarkId::new("alloc_free", size), |b| {
            b.iter(|| {
                let offset = alloc.allocate(black_box(size)).expect("room");
                alloc.free(offset)
            })
        });
    }
    let mut alloc = Allocator::new(CAPACITY);
    let mut fifo: VecDeque<u64> = (0..16).map(|_| alloc.allocate(256).expect("room")).collect();
    group.bench_function("fifo16/256", |b| {
        b.iter(|| {
            let offset = alloc.allocate(black_box(256)).expect("room");
            fifo.push_back(offset);
            alloc.free(fifo.pop_front().expect("16 live"))
        })
    });
    group.finish();
}

fn mixed(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_alloc/mixed");
    for live in [100usize, 1000, 10_000] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ live as u64);
        let mut alloc = Allocator::new(CAPACITY);
        let mut blocks: Vec<u64> = (0..live).map(|_| alloc.allocate(rng.size()).expect("room")).collect();
        // Free half, then refill: the free map starts fragmented, as after a run.
        for i in (0..live).step_by(2) {
            alloc.free(blocks[i]);
        }
        for i in (0..live).step_by(2) {
            blocks[i] = alloc.allocate(rng.size()).expect("room");
        }
        group.bench_function(BenchmarkId::from_parameter(live), |b| {
            b.iter(|| {
                let slot = (rng.next() % live as u64) as usize;
                alloc.free(blocks[slot]);
                blocks[slot] = alloc.allocate(rng.size()).expect("room");
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    steady(&mut c);
    mixed(&mut c);
    c.final_summary();
}
