//! Streaming returns with real workers (after Ray's generator tests):
//! items arrive in order while the task runs, are objects like any other,
//! and end with `None` or the task's error, once; retries deliver nothing
//! twice; backpressure, dropping and cancelling the stream, actors'
//! streaming methods, and a task consuming a stream.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use shoal::{Error, ObjectRef, ObjectRefStream, SharedArray};
use shoal_tests::{shared_node, wait_until};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh path for a marker file.
fn marker(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("shoal-stream-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Wait (in a task) until `path` exists, at most a minute.
fn await_marker(path: &str) {
    let started = Instant::now();
    while !std::path::Path::new(path).exists() && started.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[shoal::remote(streaming)]
fn squares(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(|i| i * i)
}

/// Yields 1, waits for `gate` to exist, yields 2.
#[shoal::remote(streaming)]
fn gated(gate: String) -> impl Iterator<Item = u32> {
    (1..=2).inspect(move |&i| {
        if i == 2 {
            await_marker(&gate);
        }
    })
}

/// Waits for `gate` before its first item.
#[shoal::remote(streaming)]
fn late(gate: String) -> impl Iterator<Item = u32> {
    std::iter::once(7).inspect(move |_| await_marker(&gate))
}

#[shoal::remote(streaming)]
fn ones(n: usize, len: usize) -> impl Iterator<Item = Array1<f64>> {
    (0..n).map(move |i| Array1::from_elem(len, i as f64))
}

#[shoal::remote]
fn plus_one(n: u64) -> u64 {
    n + 1
}

#[shoal::remote]
fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

/// Panics at item `at`.
#[shoal::remote(streaming)]
fn panics_at(at: u64) -> impl Iterator<Item = u64> {
    (0..).map(move |i| if i == at { panic!("item {at} is bad") } else { i })
}

/// Yields `0..n`, writing how many it has yielded to `progress` first.
#[shoal::remote(streaming)]
fn counted(n: u64, progress: String) -> impl Iterator<Item = u64> {
    (0..n).inspect(move |&i| std::fs::write(&progress, (i + 1).to_string()).expect("write progress"))
}

/// Yields `0..n`; kills its own process at item `at` the first time
/// (while `once` does not exist).
#[shoal::remote(streaming)]
fn dies_once_at(n: u64, at: u64, once: String) -> impl Iterator<Item = u64> {
    (0..n).inspect(move |&i| {
        if i == at && !std::path::Path::new(&once).exists() {
            std::fs::write(&once, b"died").expect("write the marker");
            // What was yielded before goes out first, so some of it may
            // already have been taken when the retry starts over.
            std::thread::sleep(Duration::from_millis(50));
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).expect("raise");
        }
    })
}

/// Yields forever, slowly.
#[shoal::remote(streaming)]
fn forever(ms: u64) -> impl Iterator<Item = u64> {
    (0..).inspect(move |_| std::thread::sleep(Duration::from_millis(ms)))
}

/// Consumes a stream inside a task: the sum of `squares(n)`.
#[shoal::remote]
fn sum_of_squares(n: u64) -> u64 {
    squares::remote(n).map(|item| shoal::get(&item.expect("an item")).expect("its value")).sum()
}

fn values(stream: ObjectRefStream<u64>) -> Vec<Result<u64, Error>> {
    stream.map(|item| item.and_then(|r| shoal::get(&r))).collect()
}

fn progress(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn items_arrive_in_order_then_none_for_good() -> anyhow::Result<()> {
    shared_node();
    let mut stream = squares::remote(5);
    let got: Vec<u64> = stream.by_ref().map(|r| shoal::get(&r?)).collect::<Result<_, _>>()?;
    assert_eq!(got, [0, 1, 4, 9, 16]);
    assert!(stream.next().is_none());
    assert!(stream.next().is_none());
    assert_eq!(shoal::get(stream.completed())?, 5, "the end object counts the items");
    Ok(())
}

#[test]
fn a_stream_of_no_items_ends_at_once() -> anyhow::Result<()> {
    shared_node();
    assert!(squares::remote(0).next().is_none());
    Ok(())
}

#[test]
fn the_first_item_arrives_while_the_task_still_runs() -> anyhow::Result<()> {
    shared_node();
    let gate = marker("gate");
    let mut stream = gated::remote(gate.display().to_string());
    let first = stream.next().expect("an item")?;
    assert_eq!(shoal::get(&first)?, 1);
    let (ready, _) = shoal::wait(std::slice::from_ref(stream.completed()), 1, Some(Duration::ZERO))?;
    assert!(ready.is_empty(), "the task waits for the gate, so it has not ended");
    std::fs::write(&gate, b"open")?;
    assert_eq!(shoal::get(&stream.next().expect("a second item")?)?, 2);
    assert!(stream.next().is_none());
    let _ = std::fs::remove_file(gate);
    Ok(())
}

#[test]
fn next_timeout_bounds_a_wait_without_ending_the_stream() -> anyhow::Result<()> {
    shared_node();
    let gate = marker("late");
    let mut stream = late::remote(gate.display().to_string());
    match stream.next_timeout(Duration::from_millis(100)) {
        Some(Err(Error::Timeout(t))) => assert_eq!(t, Duration::from_millis(100)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    std::fs::write(&gate, b"open")?;
    let item = stream.next_timeout(TIMEOUT).expect("the item")?;
    assert_eq!(shoal::get(&item)?, 7);
    assert!(stream.next_timeout(TIMEOUT).is_none());
    let _ = std::fs::remove_file(gate);
    Ok(())
}

#[test]
fn array_items_live_in_the_arena_and_are_read_in_place() -> anyhow::Result<()> {
    shared_node();
    let len = 1 << 18;
    let items: Vec<ObjectRef<Array1<f64>>> = ones::remote(4, len).collect::<Result<_, _>>()?;
    assert_eq!(items.len(), 4);
    for (i, item) in items.iter().enumerate() {
        let view: SharedArray<f64, Ix1> = shoal::get_shared(item)?;
        assert_eq!(view.view().len(), len);
        assert!(view.view().iter().all(|&x| x == i as f64));
        // A task reads the item in place too.
        assert_eq!(shoal::get(&total::remote(item))?, (i * len) as f64);
    }
    Ok(())
}

#[test]
fn items_feed_other_tasks() -> anyhow::Result<()> {
    shared_node();
    let next: Vec<ObjectRef<u64>> =
        squares::remote(4).map(|item| item.map(plus_one::remote)).collect::<Result<_, _>>()?;
    assert_eq!(shoal::get_all(&next)?, [1, 2, 5, 10]);
    Ok(())
}

#[test]
fn a_panic_gives_the_items_before_it_then_the_error_once() -> anyhow::Result<()> {
    shared_node();
    let got = values(panics_at::remote(3));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[..3].iter().map(|v| *v.as_ref().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    match &got[3] {
        Err(Error::TaskPanicked { message, .. }) => assert!(message.contains("item 3 is bad"), "{message}"),
        other => panic!("expected the panic, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_dead_worker_is_retried_without_delivering_an_item_twice() -> anyhow::Result<()> {
    shared_node();
    let once = marker("once");
    let got: Vec<u64> = dies_once_at::options()
        .max_retries(1)
        .remote(20, 10, once.display().to_string())
        .map(|item| shoal::get(&item?))
        .collect::<Result<_, _>>()?;
    assert!(once.exists(), "the first attempt died");
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    let _ = std::fs::remove_file(once);
    Ok(())
}

#[test]
fn past_max_retries_the_stream_ends_with_worker_died() -> anyhow::Result<()> {
    shared_node();
    let once = marker("dies");
    let got = values(dies_once_at::options().max_retries(0).remote(20, 3, once.display().to_string()));
    let (last, items) = got.split_last().expect("at least the error");
    assert!(matches!(last, Err(Error::WorkerDied { .. })), "{last:?}");
    let items: Vec<u64> = items.iter().map(|v| *v.as_ref().expect("items before the error")).collect();
    assert_eq!(items, (0..items.len() as u64).collect::<Vec<_>>(), "a prefix of what was yielded");
    assert!(items.len() <= 3);
    let _ = std::fs::remove_file(once);
    Ok(())
}

#[test]
fn backpressure_pauses_the_producer_until_items_are_taken() -> anyhow::Result<()> {
    shared_node();
    let path = marker("progress");
    let mut stream = counted::options().backpressure(2).remote(50, path.display().to_string());
    assert_eq!(shoal::get(&stream.next().expect("an item")?)?, 0);
    std::thread::sleep(Duration::from_millis(300));
    let produced = progress(&path);
    assert!(produced <= 3, "one taken and two not: the producer paused, but produced {produced}");
    let rest: Vec<u64> = stream.map(|r| shoal::get(&r?)).collect::<Result<_, _>>()?;
    assert_eq!(rest, (1..50).collect::<Vec<_>>());

    // Without backpressure the producer runs ahead of its consumer.
    let path = marker("unbounded");
    let mut stream = counted::remote(50, path.display().to_string());
    assert_eq!(shoal::get(&stream.next().expect("an item")?)?, 0);
    assert!(wait_until(TIMEOUT, || progress(&path) == 50), "the producer finished without us");
    Ok(())
}

#[test]
fn dropping_the_stream_cancels_its_task() -> anyhow::Result<()> {
    shared_node();
    let mut stream = forever::remote(1);
    for _ in 0..3 {
        stream.next().expect("an item")?;
    }
    let end = stream.completed().clone();
    drop(stream);
    match shoal::get_timeout(&end, TIMEOUT) {
        Err(Error::TaskCancelled { function }) => assert!(function.ends_with("forever"), "{function}"),
        other => panic!("expected TaskCancelled, got {other:?}"),
    }
    Ok(())
}

#[test]
fn cancelling_the_task_ends_the_stream_with_task_cancelled() -> anyhow::Result<()> {
    shared_node();
    let mut stream = forever::remote(1);
    stream.next().expect("an item")?;
    shoal::cancel(stream.completed())?;
    let rest: Vec<_> = stream.by_ref().collect();
    match rest.last() {
        Some(Err(Error::TaskCancelled { .. })) => {}
        other => panic!("expected TaskCancelled last, got {other:?}"),
    }
    assert!(rest[..rest.len() - 1].iter().all(Result::is_ok), "items produced before the cancel come first");
    assert!(stream.next().is_none());
    Ok(())
}

#[test]
fn a_task_consumes_a_stream() -> anyhow::Result<()> {
    shared_node();
    assert_eq!(shoal::get_timeout(&sum_of_squares::remote(100), TIMEOUT)?, (0..100u64).map(|i| i * i).sum::<u64>());
    Ok(())
}

/// Counts what it streams.
pub struct Tally {
    n: u64,
}

#[shoal::actor]
impl Tally {
    /// Starts at `n`.
    pub fn new(n: u64) -> Self {
        Tally { n }
    }

    /// Counts up `k` times, yielding each count.
    #[shoal::method(streaming)]
    pub fn count_up(&mut self, k: u64) -> impl Iterator<Item = u64> + '_ {
        (0..k).map(|_| {
            self.n += 1;
            self.n
        })
    }

    /// The count so far.
    pub fn value(&self) -> u64 {
        self.n
    }
}

#[test]
fn an_actor_streams_from_its_state() -> anyhow::Result<()> {
    shared_node();
    let tally = Tally::remote(0);
    assert_eq!(values(tally.count_up(3)).into_iter().collect::<Result<Vec<_>, _>>()?, [1, 2, 3]);
    assert_eq!(values(tally.count_up(2)).into_iter().collect::<Result<Vec<_>, _>>()?, [4, 5]);
    assert_eq!(shoal::get(&tally.value())?, 5);
    Ok(())
}
