//! What a stream's items cost is given back: an item freed once nobody
//! holds it, the items not taken freed when the stream is dropped (its task
//! cancelled if it still runs), array items' arena bytes included.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ndarray::Array1;
use shoal_tests::{shared_node, wait_until};

const PATIENCE: Duration = Duration::from_secs(30);

#[shoal::remote(streaming)]
fn numbers(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

#[shoal::remote(streaming)]
fn arrays(n: usize) -> impl Iterator<Item = Array1<f64>> {
    (0..n).map(|i| Array1::from_elem(100_000, i as f64))
}

/// Yields forever, slowly.
#[shoal::remote(streaming)]
fn forever() -> impl Iterator<Item = u64> {
    (0..).inspect(|_| std::thread::sleep(Duration::from_millis(1)))
}

/// Yields forever, as fast as it can.
#[shoal::remote(streaming)]
fn flood() -> impl Iterator<Item = u64> {
    0..
}

/// Takes two items of each of two streams (one with backpressure), then
/// its process dies without closing them.
#[shoal::remote]
fn consume_then_die() -> u8 {
    let mut plain = forever::remote();
    let mut paused = forever::options().backpressure(2).remote();
    for _ in 0..2 {
        plain.next().expect("an item").expect("an item");
        paused.next().expect("an item").expect("an item");
    }
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).expect("raise");
    unreachable!("SIGKILL ends the process")
}

/// The scenarios compare object counts: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait until the node holds `objects` objects and `bytes` store bytes.
fn back_to(objects: usize, bytes: u64, after: &str) {
    let node = shared_node();
    let restored = wait_until(PATIENCE, || node.object_count() == objects && node.store_used_bytes() == bytes);
    assert!(
        restored,
        "after {after}: {} objects and {} bytes, expected {objects} and {bytes}",
        node.object_count(),
        node.store_used_bytes()
    );
}

#[test]
fn an_item_nobody_holds_is_freed() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let (objects, bytes) = (node.object_count(), node.store_used_bytes());
    let mut stream = numbers::remote(500);
    let mut sum = 0;
    for item in stream.by_ref() {
        sum += shoal::get(&item?)?;
    }
    assert_eq!(sum, (0..500).sum::<u64>());
    // The stream's end object is all that is left.
    back_to(objects + 1, bytes, "taking every item");
    drop(stream);
    back_to(objects, bytes, "dropping the stream");
    Ok(())
}

#[test]
fn items_not_taken_are_freed_with_the_stream() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let (objects, bytes) = (node.object_count(), node.store_used_bytes());
    let mut stream = arrays::remote(8);
    let first = stream.next().expect("an item")?;
    shoal::get(stream.completed())?;
    assert!(node.store_used_bytes() >= bytes + 8 * 800_000, "the items are in the arena");
    drop(stream);
    // The item taken lives as long as its ref.
    assert_eq!(shoal::get_shared(&first)?.view().len(), 100_000);
    drop(first);
    back_to(objects, bytes, "dropping a finished stream with items not taken");
    Ok(())
}

#[test]
fn dropping_a_running_stream_cancels_its_task_and_frees_its_items() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let (objects, bytes) = (node.object_count(), node.store_used_bytes());
    let mut pids = node.worker_pids();
    let mut stream = flood::remote();
    for _ in 0..5 {
        stream.next().expect("an item")?;
    }
    drop(stream);
    back_to(objects, bytes, "dropping a running stream");
    // Items the producer sent after the drop were freed, not taken for a
    // protocol violation: no worker was dropped and replaced.
    std::thread::sleep(Duration::from_millis(100));
    let mut now = node.worker_pids();
    pids.sort_unstable();
    now.sort_unstable();
    assert_eq!(pids, now, "the same workers");
    // Its worker is free again.
    let mut again = numbers::remote(3);
    assert_eq!(shoal::get(&again.next().expect("an item")?)?, 0);
    Ok(())
}

#[test]
fn a_consumer_that_dies_stops_its_producers() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let (objects, bytes) = (node.object_count(), node.store_used_bytes());
    let died = consume_then_die::options().max_retries(0).remote();
    assert!(matches!(shoal::get_timeout(&died, PATIENCE), Err(shoal::Error::WorkerDied { .. })));
    drop(died);
    // Its producers were cancelled: their items freed, their workers free.
    back_to(objects, bytes, "the death of a stream's consumer");
    let mut again = numbers::remote(3);
    assert_eq!(shoal::get(&again.next().expect("an item")?)?, 0);
    Ok(())
}

/// Yields `n` items, each after a `put` it drops at once, then waits for
/// `gate` before it ends.
#[shoal::remote(streaming)]
fn puts_and_drops(n: u64, gate: String) -> impl Iterator<Item = u64> {
    (0..n).inspect(|&i| drop(shoal::put(vec![i; 16]).expect("a put"))).chain(std::iter::from_fn(move || {
        let started = std::time::Instant::now();
        // (Longer than a test waits, so only the gate ends it in time.)
        while !std::path::Path::new(&gate).exists() && started.elapsed() < 4 * PATIENCE {
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }))
}

#[test]
fn what_a_running_stream_drops_is_freed_before_it_ends() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let (objects, bytes) = (node.object_count(), node.store_used_bytes());
    let gate = std::env::temp_dir().join(format!("shoal-reclaim-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let mut stream = puts_and_drops::remote(300, gate.display().to_string());
    for _ in 0..300 {
        drop(stream.next().expect("an item")?);
    }
    // The task still runs (at its gate); its 300 puts are gone already: the
    // stream's end object, and the last item it holds until the next ask.
    back_to(objects + 2, bytes, "taking the items of a stream still running");
    std::fs::write(&gate, b"open")?;
    assert!(stream.next().is_none());
    drop(stream);
    back_to(objects, bytes, "the end of the stream");
    let _ = std::fs::remove_file(gate);
    Ok(())
}
