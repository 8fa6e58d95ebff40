//! Task submission and small-object round trips on a real embedded node (one
//! worker process, a 256 MiB store), timed from the driver:
//!
//! * `submit`: `noop::remote()` alone — the submission, not the execution.
//!   Refs are submitted in batches of 1000 and each batch is drained (untimed)
//!   before the next, so the node's queue stays bounded;
//! * `round_trip`: `shoal::get(&noop::remote())`, one task at a time;
//! * `put_get/*`: `shoal::put` then `shoal::get` of a small inline value, and
//!   of an 8 KiB array (which goes to the arena).
//!
//! The worker is this bench binary re-executed: it enters worker mode before
//! `main`, so `main` below starts the node once for every benchmark.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use ndarray::Array1;
use shoal::ObjectRef;

#[shoal::remote]
fn noop() {}

/// Tasks submitted between two drains in `submit`.
const BATCH: u64 = 1000;

fn submit(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_submit");
    group.throughput(Throughput::Elements(1));
    let mut refs: Vec<ObjectRef<()>> = Vec::with_capacity(BATCH as usize);
    group.bench_function("submit", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    refs.push(noop::remote());
                }
                timed += start.elapsed();
                shoal::get_all(&refs).expect("noop");
                refs.clear();
                left -= n;
            }
            timed
        })
    });
    group.bench_function("round_trip", |b| b.iter(|| shoal::get(&noop::remote()).expect("noop")));
    group.finish();
}

fn put_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_submit/put_get");
    let small = (7u64, [1.5f64; 8]);
    group.bench_function("small_inline", |b| {
        b.iter(|| shoal::get(&shoal::put(black_box(small)).expect("put")).expect("get"))
    });
    let array = Array1::from_iter((0..1024).map(f64::from));
    group.throughput(Throughput::Bytes(8 * 1024));
    group.bench_function("array_8KiB", |b| {
        b.iter_batched(
            || array.clone(),
            |array| shoal::get(&shoal::put(array).expect("put")).expect("get"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn main() {
    let node = shoal::init(shoal::Config::default().workers(1).store_bytes(256 << 20)).expect("start the node");
    let mut c = Criterion::default().configure_from_args();
    submit(&mut c);
    put_get(&mut c);
    c.final_summary();
    drop(node);
}
