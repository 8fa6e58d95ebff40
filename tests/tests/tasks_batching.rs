//! Bursts of short tasks travel in batches (deep pipelines, results written
//! together), but no result waits behind a long task, and every result of a
//! burst is right. One worker, so every task queues at the same process.

use std::sync::OnceLock;
use std::time::Duration;

use shoal::ObjectRef;

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    NODE.get_or_init(|| shoal::init(shoal::Config::default().workers(1).store_bytes(64 << 20)).expect("node"))
}

#[shoal::remote]
fn square(n: u64) -> u64 {
    n * n
}

#[shoal::remote]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Run `square` often enough that both the node and the worker have
/// measured it as short.
fn measure_square() -> shoal::Result<()> {
    for n in 0..50 {
        assert_eq!(shoal::get(&square::remote(n))?, n * n);
    }
    Ok(())
}

#[test]
fn a_burst_of_short_tasks_returns_every_result_in_place() -> shoal::Result<()> {
    node();
    measure_square()?;
    let refs: Vec<ObjectRef<u64>> = (0..20_000).map(square::remote).collect();
    let values = shoal::get_all(&refs)?;
    assert!(values.iter().enumerate().all(|(n, &v)| v == (n * n) as u64), "a result went to the wrong ref");
    Ok(())
}

#[test]
fn a_short_result_is_not_held_behind_a_long_task() -> shoal::Result<()> {
    node();
    measure_square()?;
    // Both land at the one worker together: the long task is buffered while
    // the short one runs. Its result must go out before the long task starts
    // (the first time because `sleep_ms` was never measured, the second
    // because it was measured long), not 3 s later with the long one's.
    for _ in 0..2 {
        let short = square::remote(7);
        let long = sleep_ms::remote(3000);
        assert_eq!(shoal::get_timeout(&short, Duration::from_millis(2000))?, 49);
        assert_eq!(shoal::get(&long)?, 3000);
    }
    Ok(())
}
