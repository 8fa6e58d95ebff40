//! Quick figures for shoal on this machine, each beside its ceiling measured
//! in the same run. Run with `cargo run --release -p shoal-benches --bin quickbench`.
//!
//! Output lines: `<metric>\t<value>\t<unit>\t<± spread>` (spread: half the
//! range over the repetitions).

use std::hint::black_box;
use std::time::Instant;

use ndarray::Array1;
use shoal::ObjectRef;

#[shoal::remote]
fn noop() {}

const REPS: usize = 5;

fn report(name: &str, samples: &mut [f64], unit: &str) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let spread = (samples[samples.len() - 1] - samples[0]) / 2.0;
    println!("{name}\t{median:.3}\t{unit}\t± {spread:.3}");
}

fn measure(mut f: impl FnMut() -> f64) -> Vec<f64> {
    f(); // warm-up
    (0..REPS).map(|_| f()).collect()
}

fn main() -> anyhow::Result<()> {
    const BYTES: usize = 800_000_000;
    let node = shoal::init(shoal::Config::default().store_bytes(2 * BYTES as u64 + (256 << 20)))?;
    let workers = node.live_workers();
    eprintln!("node with {workers} workers");

    // The ceiling for put: memcpy of 800 MB into memory that is already faulted in.
    let src = vec![1.5f64; BYTES / 8];
    let mut dst = vec![0f64; BYTES / 8];
    let mut memcpy = measure(|| {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
        BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    report("machine memcpy gigabytes", &mut memcpy, "GB/s");
    drop(dst);

    let mut sync = measure(|| {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            shoal::get(&noop::remote()).expect("noop");
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    report("single client tasks sync", &mut sync, "tasks/s");

    let mut batch = measure(|| {
        let n = 10_000;
        let t = Instant::now();
        let refs: Vec<ObjectRef<()>> = (0..n).map(|_| noop::remote()).collect();
        shoal::get_all(&refs).expect("noops");
        n as f64 / t.elapsed().as_secs_f64()
    });
    report("single client tasks async", &mut batch, "tasks/s");

    let array = Array1::from(src);
    let mut put = measure(|| {
        let copy = array.clone();
        let t = Instant::now();
        let r = shoal::put(copy).expect("put");
        let secs = t.elapsed().as_secs_f64();
        drop(r);
        BYTES as f64 / secs / 1e9
    });
    report("single client put gigabytes", &mut put, "GB/s");

    let r = shoal::put(array)?;
    let mut zero_copy = measure(|| {
        let n = 1000;
        let t = Instant::now();
        for _ in 0..n {
            black_box(shoal::get_shared(&r).expect("get_shared"));
        }
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    });
    report("zero-copy get of an 800 MB array", &mut zero_copy, "µs/call");

    let mut owned = measure(|| {
        let t = Instant::now();
        let copy = shoal::get(&r).expect("get");
        let secs = t.elapsed().as_secs_f64();
        drop(black_box(copy));
        BYTES as f64 / secs / 1e9
    });
    report("get of an 800 MB array as an owned copy", &mut owned, "GB/s");
    Ok(())
}
