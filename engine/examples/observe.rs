//! Watching a job run, as `ray status`, `ray memory` and `ray timeline`
//! show it: a Monte Carlo estimate of π in uneven chunks, while the driver
//! polls the node's status (what each worker runs), then lists the largest
//! objects and sums the timeline per function (how busy the workers were).
//! The `shoal` command shows the same from another terminal:
//! `shoal status --address <socket>` (printed below), `shoal memory`,
//! `shoal timeline -o trace.json --svg trace.svg`, `shoal metrics`.
//!
//! `cargo run --release -p shoal --example observe`

use std::collections::BTreeMap;
use std::time::Duration;

use ndarray::Array1;
use shoal::{ObjectRef, WorkerState};

/// Darts thrown in the unit square that land in the quarter circle.
#[shoal::remote]
fn darts(seed: u64, throws: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        // xorshift64*: plenty for darts.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..throws).filter(|_| next().powi(2) + next().powi(2) <= 1.0).count() as u64
}

/// The histogram of a chunk of samples: what a task hands on as an array.
#[shoal::remote]
fn histogram(seed: u64, bins: usize) -> Array1<u64> {
    let mut h = Array1::zeros(bins);
    for i in 0..(bins as u64 * 64) {
        h[((seed ^ i).wrapping_mul(0x9e37_79b9) % bins as u64) as usize] += 1;
    }
    h
}

fn main() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default())?;
    println!("node at {}", node.socket_path().display());

    let samples = shoal::put(Array1::<f64>::zeros(1 << 20))?; // 8 MiB, to show in memory
    let chunks: Vec<ObjectRef<u64>> = (0..48).map(|i| darts::remote(i, 200_000 + 40_000 * (i % 5))).collect();
    let hists: Vec<_> = (0..8).map(|i| histogram::remote(i, 1 << 14)).collect();

    // Poll while it runs: what each worker does now.
    loop {
        let status = node.status()?;
        let running: Vec<String> = status
            .workers
            .iter()
            .filter(|w| w.state == WorkerState::Running)
            .map(|w| format!("{}:{}", w.pid, w.function.as_deref().unwrap_or("?").rsplit("::").next().unwrap_or("?")))
            .collect();
        println!(
            "tasks {:>2} waiting+ready, {} running, {:>2} finished | CPUs {}/{} | {}",
            status.tasks.waiting + status.tasks.ready,
            status.tasks.running,
            status.tasks.finished,
            status.cpus_in_use,
            status.cpus,
            running.join(" ")
        );
        if status.tasks.waiting + status.tasks.ready + status.tasks.running == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let throws: u64 = (0..48).map(|i| 200_000 + 40_000 * (i % 5)).sum();
    let inside: u64 = shoal::get_all(&chunks)?.iter().sum();
    let pi = 4.0 * inside as f64 / throws as f64;
    println!("π ≈ {pi:.5} from {throws} darts");
    anyhow::ensure!((pi - std::f64::consts::PI).abs() < 0.01, "a poor estimate: {pi}");

    // The largest objects: the put array, then the histograms.
    let memory = node.memory(4)?;
    println!("largest of {} objects ({} bytes):", memory.total_objects, memory.total_bytes);
    for o in &memory.objects {
        println!("  {:>20} {:>9} B  {:<7} made by {}", o.id, o.size, o.place.as_str(), o.created_by);
    }
    anyhow::ensure!(memory.objects[0].id == samples.id() && memory.objects[0].created_by == "put");
    anyhow::ensure!(memory.objects[1].created_by.ends_with("::histogram"));

    // The timeline, summed per function: how busy the workers were.
    let timeline = node.timeline()?;
    let mut per_function: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for e in &timeline {
        let entry = per_function.entry(e.function.rsplit("::").next().unwrap_or("?")).or_default();
        entry.0 += 1;
        entry.1 += e.duration;
    }
    let start = timeline.iter().map(|e| e.start).min().unwrap_or_default();
    let end = timeline.iter().map(|e| e.start + e.duration).max().unwrap_or_default();
    let busy: Duration = timeline.iter().map(|e| e.duration).sum();
    for (function, (n, total)) in &per_function {
        println!("  {function:<10} {n:>3} tasks, {:>8.2} ms of work", total.as_secs_f64() * 1e3);
    }
    let workers = node.live_workers().max(1);
    println!(
        "workers busy {:.0}% of {:.1} ms on {workers} workers",
        100.0 * busy.as_secs_f64() / ((end - start).as_secs_f64() * workers as f64).max(1e-9),
        (end - start).as_secs_f64() * 1e3
    );
    anyhow::ensure!(timeline.len() == 56, "48 darts and 8 histograms ran: {}", timeline.len());
    drop(hists);
    Ok(())
}
