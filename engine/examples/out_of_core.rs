//! Out of core, and through faults: a dataset four times the object store
//! is summarised by tasks while the store spills to disk; a flaky task is
//! retried; a task that crashes its worker is reported, with its signal.
//!
//! ```sh
//! cargo run --release -p shoal --example out_of_core
//! ```
//!
//! - 16 chunks of 64 MiB go into a 256 MiB store: the node writes the ones
//!   no one reads to a spill file and reads them back, transparently, when
//!   a task (or `get`) needs them. `Shoal::store_stats` says how much moved.
//! - `options().retry_panics(true)` re-runs a task that panics (a flaky
//!   download, say) within its `max_retries`.
//! - A worker that dies mid-task is replaced at once; once its retries are
//!   spent, `WorkerDied` names the function, the signal and what the worker
//!   last wrote to stderr.

use ndarray::{Array1, Ix1};
use shoal::{Error, SharedArray};

/// Elements of one 64 MiB chunk.
const CHUNK: usize = 8 << 20;
const CHUNKS: usize = 16;

/// One chunk of a synthetic measurement series: a slow wave plus a ramp.
fn chunk(i: usize) -> Array1<f64> {
    Array1::from_shape_fn(CHUNK, |j| {
        let t = (i * CHUNK + j) as f64;
        (t / 1e6).sin() + t * 1e-9
    })
}

/// Count, sum, min and max of one chunk, read in place from the store.
#[shoal::remote]
fn summarise(part: SharedArray<f64, Ix1>) -> (usize, f64, f64, f64) {
    let values = part.as_slice();
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (values.len(), values.iter().sum(), min, max)
}

/// Fails the first two times it runs in a worker process, as a flaky
/// fetch would.
#[shoal::remote]
fn flaky_fetch(attempts_dir: String) -> String {
    let tries = std::fs::read_dir(&attempts_dir).map(|d| d.count()).unwrap_or(0);
    std::fs::write(format!("{attempts_dir}/{tries}"), b"").expect("record the attempt");
    if tries < 2 {
        panic!("connection reset (attempt {})", tries + 1);
    }
    format!("fetched on attempt {}", tries + 1)
}

/// Takes its worker down with a segmentation fault.
#[shoal::remote]
fn crashes(_n: u32) -> u32 {
    eprintln!("crashes: about to fault");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV).expect("raise");
    0
}

fn main() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default().store_bytes(256 << 20))?;

    // Out of core: 1 GiB of chunks through a 256 MiB store.
    let started = std::time::Instant::now();
    let chunks: Vec<_> = (0..CHUNKS).map(|i| shoal::put(chunk(i))).collect::<Result<_, _>>()?;
    let summaries: Vec<_> = chunks.iter().map(summarise::remote).collect();
    let (mut count, mut sum, mut min, mut max) = (0, 0.0, f64::MAX, f64::MIN);
    for s in shoal::get_all(&summaries)? {
        count += s.0;
        sum += s.1;
        min = min.min(s.2);
        max = max.max(s.3);
    }
    let stats = node.store_stats();
    println!(
        "{count} values ({} MiB) in a {} MiB store: mean {:.6}, min {min:.6}, max {max:.6} in {:.2?}",
        (count * 8) >> 20,
        stats.capacity >> 20,
        sum / count as f64,
        started.elapsed()
    );
    println!(
        "  spilled {} objects ({} MiB) to disk, read {} back ({} MiB)",
        stats.total_spilled_objects,
        stats.total_spilled_bytes >> 20,
        stats.total_restored_objects,
        stats.total_restored_bytes >> 20
    );
    anyhow::ensure!(count == CHUNK * CHUNKS && stats.total_spilled_objects > 0);
    drop((chunks, summaries));

    // A flaky task, retried on panic.
    let dir = std::env::temp_dir().join(format!("shoal-out-of-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fetched = flaky_fetch::options().retry_panics(true).max_retries(3).remote(dir.display().to_string());
    println!("flaky task: {}", shoal::get(&fetched)?);
    std::fs::remove_dir_all(&dir)?;

    // A crashing task: its worker is replaced, the error says how it died.
    let workers = node.live_workers();
    match shoal::get(&crashes::options().max_retries(1).remote(0)) {
        Err(Error::WorkerDied { function, attempts, cause, stderr, .. }) => {
            println!("crashing task: `{function}` {cause} (after {attempts} attempts); its stderr: {stderr:?}")
        }
        other => anyhow::bail!("expected WorkerDied, got {other:?}"),
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.live_workers() < workers {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the pool was not replenished");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!("the pool is whole again: {} workers", node.live_workers());
    Ok(())
}
