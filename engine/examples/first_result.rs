//! Speculative work, Ray's way: start several searches, take the first
//! answer with `wait`, cancel the rest. Searches that check
//! `shoal::is_cancelled()` stop early; one that never checks is stopped by
//! `cancel_force`, which kills its worker (the pool replaces it).
//!
//! `cargo run --release -p shoal --example first_result`

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use shoal::ObjectRef;

/// The first `n >= start`, stepping by `step`, whose hash has `zeros`
/// leading zero bits: a proof-of-work puzzle. Gives up (`None`) when
/// cancelled.
#[shoal::remote]
fn search(start: u64, step: u64, zeros: u32) -> Option<u64> {
    let mut n = start;
    loop {
        let mut h = DefaultHasher::new();
        n.hash(&mut h);
        if h.finish().leading_zeros() >= zeros {
            return Some(n);
        }
        if n % 4096 == 0 && shoal::is_cancelled() {
            return None;
        }
        n += step;
    }
}

/// A search that never looks at the flag.
#[shoal::remote]
fn stubborn_search(zeros: u32) -> u64 {
    (0..).find(|n: &u64| n.leading_zeros() > 64 + zeros).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default())?;
    let pool = node.live_workers();
    let t = Instant::now();
    // Eight strides over the numbers; the first to find an answer wins.
    let searches: Vec<ObjectRef<Option<u64>>> = (0..8).map(|i| search::remote(i, 8, 22)).collect();
    let (first, rest) = shoal::wait(&searches, 1, None)?;
    let found = shoal::get(&first[0])?.expect("the first search finished");
    println!("found {found} in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    for r in &rest {
        shoal::cancel(r)?;
    }
    let cancelled = rest.iter().filter(|r| matches!(shoal::get(r), Err(shoal::Error::TaskCancelled { .. }))).count();
    println!("cancelled {cancelled} of the {} other searches", rest.len());
    anyhow::ensure!(cancelled + rest.iter().filter(|r| shoal::get(r).is_ok()).count() == rest.len());

    // One that never checks the flag: cancelled by force.
    let stubborn = stubborn_search::remote(1);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    shoal::cancel_force(&stubborn)?;
    anyhow::ensure!(matches!(shoal::get(&stubborn), Err(shoal::Error::TaskCancelled { .. })));
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.live_workers() < pool && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "a search that never checks: cancelled by force, its worker killed and the pool back to {} workers in {:.0} ms",
        node.live_workers(),
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
