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
    let mut stream = forever::remote();
    for _ in 0..5 {
        stream.next().expect("an item")?;
    }
    drop(stream);
    back_to(objects, bytes, "dropping a running stream");
    // Its worker is free again.
    let mut again = numbers::remote(3);
    assert_eq!(shoal::get(&again.next().expect("an item")?)?, 0);
    Ok(())
}
