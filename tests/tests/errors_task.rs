//! Task failures and waiting: panics and how they flow to dependents, the
//! worker surviving them, timeouts, `wait`, asynchronous invocation, and a
//! task that can never be scheduled.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal::{Error, ObjectRef};
use shoal_tests::shared_node;

/// The tests here measure waits and count on idle workers, so they run one at
/// a time, and each leaves no task of its own running behind it.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous bound on any single `get` here, so a broken engine fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

#[shoal::remote]
fn increment(n: i64) -> i64 {
    n + 1
}

#[shoal::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[shoal::remote]
fn explode(n: i64) -> i64 {
    panic!("boom: exploded on {n}")
}

#[shoal::remote]
fn explode_static() -> i64 {
    panic!("static boom")
}

/// Sleeps `ms`, then panics: dependents submitted meanwhile are still waiting.
#[shoal::remote]
fn explode_after(ms: u64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("late boom after {ms} ms")
}

#[shoal::remote]
fn sleep_then(ms: u64, v: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

/// Blocks until `path` exists (at most a minute); returns how many 5 ms naps it took.
#[shoal::remote]
fn block_until(path: String) -> u32 {
    let mut naps = 0;
    while !Path::new(&path).exists() && naps < 12_000 {
        std::thread::sleep(Duration::from_millis(5));
        naps += 1;
    }
    naps
}

fn sorted(mut pids: Vec<u32>) -> Vec<u32> {
    pids.sort_unstable();
    pids
}

/// The `TaskPanicked` error behind `r`, checked to name `function` and `message`.
fn expect_panic(r: &ObjectRef<i64>, function: &str, message: &str) -> Error {
    match shoal::get_timeout(r, PATIENCE) {
        Err(e @ Error::TaskPanicked { .. }) => {
            let Error::TaskPanicked { function: f, message: m, pid } = &e else { unreachable!() };
            assert!(f.contains(function), "function `{f}` should name `{function}`");
            assert!(m.contains(message), "message `{m}` should contain `{message}`");
            assert!(*pid > 0);
            assert!(e.to_string().contains(function), "the error's text names the function: {e}");
            e
        }
        other => panic!("expected TaskPanicked from `{function}`, got {other:?}"),
    }
}

#[test]
fn panic_becomes_task_panicked_and_worker_survives() -> anyhow::Result<()> {
    let _g = serial();
    let node = shared_node();
    let pids = sorted(node.worker_pids());
    assert_eq!(pids.len(), 2);

    let boom = explode::remote(1);
    let e = expect_panic(&boom, "explode", "boom: exploded on 1");
    let Error::TaskPanicked { pid, .. } = e else { unreachable!() };
    assert!(pids.contains(&pid), "pid {pid} is one of the workers {pids:?}");
    // Reading again gives the same error.
    assert_eq!(shoal::get(&boom).unwrap_err(), e);
    // A failed task counts as ready for `wait`.
    let (ready, pending) = shoal::wait(std::slice::from_ref(&boom), 1, Some(PATIENCE))?;
    assert_eq!((ready.len(), pending.len()), (1, 0));

    // A `&str` payload (not a `String`) keeps its text too.
    expect_panic(&explode_static::remote(), "explode_static", "static boom");

    // The pool keeps working, on both workers, with the same processes.
    let many: Vec<ObjectRef<i64>> = (0..20).map(increment::remote).collect();
    assert_eq!(shoal::get_all(&many)?, (1..21).collect::<Vec<i64>>());
    let parallel: Vec<ObjectRef<i64>> = (0..2).map(|i| sleep_then::remote(50, i)).collect();
    assert_eq!(shoal::get_all(&parallel)?, vec![0, 1]);
    for _ in 0..5 {
        expect_panic(&explode::remote(7), "explode", "exploded on 7");
    }
    assert_eq!(shoal::get_timeout(&increment::remote(41), PATIENCE)?, 42);
    assert_eq!(sorted(node.worker_pids()), pids, "a panic must not cost a worker");
    assert_eq!(node.live_workers(), 2);
    Ok(())
}

#[test]
fn failure_flows_down_a_chain() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    // Dependents submitted while the failing task still runs...
    let head = explode_after::remote(100);
    let a = increment::remote(&head);
    let b = increment::remote(&a);
    let c = increment::remote(&b);
    let first = expect_panic(&c, "explode_after", "late boom after 100 ms");
    for (name, r) in [("head", &head), ("first dependent", &a), ("second dependent", &b)] {
        assert_eq!(shoal::get_timeout(r, PATIENCE).unwrap_err(), first, "{name} has the first failure's error");
    }
    let Error::TaskPanicked { function, .. } = &first else { unreachable!() };
    assert!(!function.contains("increment"), "the error names the first failed function, not `{function}`");

    // ...and after it failed.
    let d = increment::remote(&c);
    let e = add::remote(&d, 1);
    assert_eq!(shoal::get_timeout(&e, PATIENCE).unwrap_err(), first);

    // A failing task after a successful one.
    let ok = increment::remote(0);
    let boom = explode::remote(&ok);
    let after = increment::remote(increment::remote(increment::remote(&boom)));
    expect_panic(&after, "explode", "exploded on 1");
    assert_eq!(shoal::get(&ok)?, 1, "the successful upstream task is unaffected");
    Ok(())
}

#[test]
fn failure_flows_through_a_diamond() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let top = explode_after::remote(50);
    let left = increment::remote(&top);
    let right = add::remote(&top, 10);
    let bottom = add::remote(&left, &right);
    let first = expect_panic(&bottom, "explode_after", "late boom after 50 ms");
    for r in [&top, &left, &right] {
        assert_eq!(shoal::get_timeout(r, PATIENCE).unwrap_err(), first);
    }
    // One good branch and one failed branch: the failure wins.
    let good = increment::remote(1);
    let bad = explode::remote(3);
    let joined = add::remote(&good, &bad);
    expect_panic(&joined, "explode", "exploded on 3");
    assert_eq!(shoal::get(&good)?, 2);
    // The same failed ref twice.
    expect_panic(&add::remote(&bad, &bad), "explode", "exploded on 3");
    Ok(())
}

#[test]
fn get_timeout_then_get() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let r = sleep_then::remote(2000, 7);
    let start = Instant::now();
    match shoal::get_timeout(&r, Duration::from_millis(100)) {
        Err(Error::Timeout(d)) => assert_eq!(d, Duration::from_millis(100)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(100), "get_timeout waited its time");
    // A timeout leaves the task alone: the value arrives.
    assert_eq!(shoal::get(&r)?, 7);
    // And a timeout long enough is not an error.
    let quick = increment::remote(1);
    assert_eq!(shoal::get_timeout(&quick, PATIENCE)?, 2);
    Ok(())
}

#[test]
fn wait_semantics() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    // The quick tasks go first so that none queues behind the slow one.
    let q1 = increment::remote(1);
    let q2 = increment::remote(2);
    let q3 = increment::remote(3);
    let slow = sleep_then::remote(2000, 0);
    let refs = vec![q1.clone(), slow.clone(), q2.clone(), q3.clone()];
    let ids = |v: &[ObjectRef<i64>]| v.iter().map(ObjectRef::id).collect::<Vec<u64>>();

    let (ready, pending) = shoal::wait(&refs, 3, Some(Duration::from_secs(1)))?;
    assert_eq!(ids(&ready), ids(&[q1.clone(), q2.clone(), q3.clone()]), "ready in input order");
    assert_eq!(ids(&pending), ids(std::slice::from_ref(&slow)));

    // Ready holds at most `num_returns`; the rest stay pending, in order.
    let (ready, pending) = shoal::wait(&refs, 1, Some(Duration::from_secs(1)))?;
    assert_eq!(ids(&ready), vec![q1.id()]);
    assert_eq!(ids(&pending), vec![slow.id(), q2.id(), q3.id()]);

    // Asking for more than can be ready in time returns at the timeout with fewer.
    let start = Instant::now();
    let (ready, pending) = shoal::wait(&refs, 4, Some(Duration::from_millis(200)))?;
    assert!(start.elapsed() < Duration::from_millis(1900), "returned at the timeout, not when all were done");
    assert_eq!(ids(&ready), vec![q1.id(), q2.id(), q3.id()]);
    assert_eq!(ids(&pending), vec![slow.id()]);

    // More than there are refs is an error.
    match shoal::wait(&refs, 5, Some(Duration::from_secs(1))) {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("wait for 5 of 4 refs gave {other:?}"),
    }

    // Without a timeout it waits for all.
    let (ready, pending) = shoal::wait(&refs, 4, None)?;
    assert_eq!(ids(&ready), ids(&refs));
    assert!(pending.is_empty());
    assert_eq!(shoal::get_all(&ready)?, vec![2, 0, 3, 4]);
    Ok(())
}

/// Creates its file when dropped, so a failing test never leaves a worker blocked.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"go");
    }
}

#[test]
fn remote_returns_before_the_task_runs() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let path = std::env::temp_dir().join(format!("shoal-errors-task-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let release = Release(path.clone());

    let r = block_until::remote(path.to_string_lossy().into_owned());
    let dependent = add::remote(sleep_then::remote(0, 1), 1);
    let (ready, pending) = shoal::wait(std::slice::from_ref(&r), 1, Some(Duration::from_millis(200)))?;
    assert!(ready.is_empty(), "the task cannot have finished: its file does not exist yet");
    assert_eq!(pending.len(), 1);
    // The other worker is free meanwhile.
    assert_eq!(shoal::get_timeout(&dependent, PATIENCE)?, 2);

    drop(release);
    let naps = shoal::get_timeout(&r, PATIENCE)?;
    assert!(naps > 0 && naps < 12_000, "the task waited for the file and then saw it ({naps} naps)");
    std::fs::remove_file(&path)?;
    Ok(())
}

#[test]
fn more_cpus_than_the_node_has_is_unschedulable() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let r = increment::options().num_cpus(64).remote(1);
    let e = shoal::get_timeout(&r, PATIENCE).unwrap_err();
    match &e {
        Error::Unschedulable { function, resource, needed, available } => {
            assert!(function.contains("increment"), "names the function: {function}");
            assert_eq!(resource, "CPU");
            assert_eq!(*needed, 64.0);
            assert_eq!(*available, 2.0);
        }
        other => panic!("expected Unschedulable, got {other:?}"),
    }
    // Its dependents get the same error.
    assert_eq!(shoal::get_timeout(&increment::remote(&r), PATIENCE).unwrap_err(), e);
    // As many CPUs as the node has is fine.
    assert_eq!(shoal::get_timeout(&increment::options().num_cpus(2).remote(1), PATIENCE)?, 2);
    Ok(())
}

#[test]
fn get_timeout_keeps_its_deadline_while_other_results_stream_in() -> shoal::Result<()> {
    let _serial = serial();
    shared_node();
    let slow = sleep_then::remote(2500, 7);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Results arriving all the time keep a spinning waiter busy; its
        // deadline must still end the wait. (Bounded, so a broken engine
        // fails the assertion below instead of hanging.)
        let traffic = s.spawn(|| {
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < Duration::from_secs(8) {
                let refs: Vec<ObjectRef<i64>> = (0..1000).map(|_| increment::remote(1)).collect();
                shoal::get_all(&refs).expect("traffic tasks");
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        let waited = shoal::get_timeout(&slow, Duration::from_millis(100));
        let elapsed = start.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().expect("traffic thread");
        assert!(matches!(waited, Err(Error::Timeout(_))), "{waited:?}");
        assert!(elapsed < Duration::from_millis(1500), "get_timeout(100 ms) took {elapsed:?}");
    });
    assert_eq!(shoal::get_timeout(&slow, PATIENCE)?, 7);
    Ok(())
}
