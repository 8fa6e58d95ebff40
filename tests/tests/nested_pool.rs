//! How many processes nested tasks take, on a node of one worker: recursion
//! runs on the one worker alone (a blocked task thread runs its children
//! itself); a task whose own threads block on its children gets an extra
//! worker, never more than `max_workers`, and the extra goes when idle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use shoal::ObjectRef;
use shoal_tests::nested::{fib, square};

const PATIENCE: Duration = Duration::from_secs(60);

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(1).max_workers(2).store_bytes(64 << 20)).expect("start the node")
    })
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` while sampling the number of live workers; returns the most seen.
fn most_workers_during(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<usize> {
    let node = node();
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(node.live_workers()));
    let sampler = {
        let (done, most) = (done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                most.fetch_max(node.live_workers(), Ordering::AcqRel);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let result = work();
    done.store(true, Ordering::Release);
    sampler.join().expect("sampler");
    result?;
    Ok(most.load(Ordering::Acquire))
}

fn settles_at_one() {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node().live_workers() != 1 {
        assert!(Instant::now() < deadline, "{} workers long after the work ended", node().live_workers());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn recursion_runs_on_one_worker_without_extra_processes() -> anyhow::Result<()> {
    let _serial = serial();
    node();
    settles_at_one();
    let most = most_workers_during(|| {
        assert_eq!(shoal::get_timeout(&fib::remote(12), PATIENCE)?, 144);
        Ok(())
    })?;
    assert_eq!(most, 1, "fib(12) (~460 tasks) needed no process beyond the one worker");
    Ok(())
}

/// Gathers its children from threads it starts; its own thread only joins.
#[shoal::remote]
fn gather_on_threads(n: u64) -> u64 {
    let threads: Vec<_> =
        (0..n).map(|i| std::thread::spawn(move || shoal::get(&square::remote(i)).expect("child"))).collect();
    threads.into_iter().map(|t| t.join().expect("thread")).sum()
}

#[test]
fn threads_blocked_on_children_get_an_extra_worker_up_to_the_cap() -> anyhow::Result<()> {
    let _serial = serial();
    node();
    settles_at_one();
    let most = most_workers_during(|| {
        for _ in 0..3 {
            assert_eq!(shoal::get_timeout(&gather_on_threads::remote(8), PATIENCE)?, (0..8).map(|i| i * i).sum());
        }
        Ok(())
    })?;
    assert_eq!(most, 2, "one extra worker ran the children (the cap is 2)");
    settles_at_one();
    Ok(())
}

#[shoal::remote]
fn nap_then(ms: u64, n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    n
}

#[shoal::remote]
fn plus_one(n: u64) -> u64 {
    n + 1
}

/// Blocks on a child that waits on a sibling still running.
#[shoal::remote]
fn inner() -> u64 {
    let slow = nap_then::remote(100, 41);
    shoal::get(&plus_one::remote(&slow)).expect("child")
}

/// Returns the ref of a task it submits, without waiting.
#[shoal::remote]
fn hand_out() -> Vec<ObjectRef<u64>> {
    vec![inner::remote()]
}

/// Submitted before `inner` exists, yet waits for it.
#[shoal::remote]
fn wait_for_handed(refs: Vec<ObjectRef<u64>>) -> u64 {
    shoal::get(&refs[0]).expect("handed-out ref")
}

#[test]
fn an_older_task_waiting_on_a_younger_one_is_not_run_on_top_of_it() -> anyhow::Result<()> {
    let _serial = serial();
    node();
    // `wait_for_handed` is older than `inner` but waits for it: run on top
    // of a blocked `inner`, it would wait forever.
    for _ in 0..5 {
        let handed = hand_out::remote();
        let waiter = wait_for_handed::remote(&handed);
        assert_eq!(shoal::get_timeout(&waiter, PATIENCE)?, 42);
    }
    settles_at_one();
    Ok(())
}
