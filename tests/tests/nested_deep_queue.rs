//! Nested tasks behind a long ready queue: with every worker blocked at
//! `max_workers`, what a blocked task waits for still runs on top of it
//! when more than the dispatcher's windows (256 and 1 024 tasks) of work no
//! worker can take is queued ahead: its own children, and a producer it
//! did not submit. (Neither was looked at: the node waited forever with
//! its only worker blocked.)
//!
//! Both tests share one node of one worker and no extras; they take
//! [`serial`] so one's queue is not the other's.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use shoal::ObjectRef;
use shoal_tests::nested::square;

/// Bounds a hang: each test's work takes well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

#[shoal::remote]
fn add_one(n: u64) -> u64 {
    n + 1
}

/// Waits for `add_one(square(i))`: a chain of its own children, the first
/// of which is not what the `get` waits for.
#[shoal::remote]
fn outer(i: u64) -> u64 {
    let squared: ObjectRef<u64> = square::remote(i);
    shoal::get(&add_one::remote(&squared)).expect("the child chain")
}

#[shoal::remote]
fn slow(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    n
}

/// Waits for a ref it was handed inside a value (so the task is ready at
/// once, before that object is).
#[shoal::remote]
fn get_first(refs: Vec<ObjectRef<u64>>) -> u64 {
    shoal::get(&refs[0]).expect("the producer's answer")
}

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    // One worker and no extras: once a task blocks, the tasks queued
    // behind it can go nowhere but on top of it.
    NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(1).max_workers(1).store_bytes(64 << 20)).expect("start the node")
    })
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn children_queued_behind_hundreds_of_untakeable_tasks_still_run() -> anyhow::Result<()> {
    let _serial = serial();
    node();
    // Once `outer(0)` blocks, the other outers stay queued ahead of its
    // children (past the 256-task scan window).
    let refs: Vec<ObjectRef<u64>> = (0..400).map(outer::remote).collect();
    for (i, r) in (0..).zip(&refs) {
        assert_eq!(shoal::get_timeout(r, PATIENCE)?, i * i + 1, "outer({i})");
    }
    Ok(())
}

#[test]
fn a_producer_queued_behind_a_thousand_untakeable_tasks_still_runs() -> anyhow::Result<()> {
    let _serial = serial();
    node();
    // `produced` becomes ready when `slow` ends, 200 ms after the getters
    // were queued: behind all of them (past the 1 024-task window). The
    // first getter then blocks on it, holding the only worker. (Were the
    // getters queued late, the producer would simply run first.)
    let produced = add_one::remote(slow::remote(41));
    let getters: Vec<ObjectRef<u64>> = (0..1500).map(|_| get_first::remote(vec![produced.clone()])).collect();
    for r in &getters {
        assert_eq!(shoal::get_timeout(r, PATIENCE)?, 42);
    }
    Ok(())
}
