//! Cancelling tasks with real workers (after Ray's `test_cancel.py`):
//! queued tasks never run, running ones see the flag or are killed,
//! dependents fail, descendants are cancelled too, actors' calls.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal::{Error, ObjectRef};
use shoal_tests::{shared_node, wait_until};

/// A fresh path for a marker file a task may write.
fn marker(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("shoal-cancel-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[shoal::remote]
fn hold(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Writes its marker when it runs.
#[shoal::remote]
fn mark(path: String) -> u8 {
    std::fs::write(path, b"ran").expect("write the marker");
    1
}

/// Runs until cancelled, then writes its marker (and `<marker>.started`
/// when it starts).
#[shoal::remote]
fn until_cancelled(path: String) -> u8 {
    note_start(&path);
    let started = Instant::now();
    while !shoal::is_cancelled() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::write(path, b"saw the flag").expect("write the marker");
    1
}

/// Never checks the flag.
#[shoal::remote]
fn stubborn() -> u8 {
    std::thread::sleep(Duration::from_secs(60));
    1
}

#[shoal::remote]
fn plus_one(n: u64) -> u64 {
    n + 1
}

#[shoal::remote]
fn widen(n: u8) -> u64 {
    u64::from(n)
}

/// Submits a child that runs until cancelled, and waits for it.
#[shoal::remote]
fn parent(path: String) -> u8 {
    let child = until_cancelled::remote(path);
    shoal::get(&child).unwrap_or(0)
}

/// Say, in `<path>.started`, that the task given `path` has started.
fn note_start(path: &str) {
    std::fs::write(format!("{path}.started"), b"started").expect("write the start marker");
}

/// Wait until the task given `path` has started.
fn started(path: &std::path::Path) -> bool {
    let started = PathBuf::from(format!("{}.started", path.display()));
    let seen = wait_until(Duration::from_secs(30), || started.exists());
    let _ = std::fs::remove_file(started);
    seen
}

fn cancelled(r: &ObjectRef<impl serde::de::DeserializeOwned + serde::Serialize + Send + 'static>) -> String {
    match shoal::get_timeout(r, Duration::from_secs(10)) {
        Err(Error::TaskCancelled { function }) => function,
        Err(e) => panic!("expected TaskCancelled, got {e:?}"),
        Ok(_) => panic!("expected TaskCancelled, got a value"),
    }
}

#[test]
fn queued_tasks_never_run() -> anyhow::Result<()> {
    let _node = shared_node();
    let busy: Vec<ObjectRef<u64>> = (0..4).map(|_| hold::remote(400)).collect();
    let paths: Vec<PathBuf> = (0..10).map(|_| marker("queued")).collect();
    let queued: Vec<ObjectRef<u8>> = paths.iter().map(|p| mark::remote(p.display().to_string())).collect();
    for r in &queued {
        shoal::cancel(r)?;
    }
    for r in &queued {
        assert!(cancelled(r).ends_with("::mark"));
    }
    shoal::get_all(&busy)?;
    // The pool drained its queue: a cancelled task would have run by now.
    assert_eq!(shoal::get(&plus_one::remote(1))?, 2);
    assert!(paths.iter().all(|p| !p.exists()), "a cancelled task ran");
    Ok(())
}

#[test]
fn a_running_task_sees_the_flag_and_its_outputs_fail_at_once() -> anyhow::Result<()> {
    let _node = shared_node();
    let path = marker("running");
    let r = until_cancelled::remote(path.display().to_string());
    assert!(started(&path));
    let t = Instant::now();
    shoal::cancel(&r)?;
    assert!(cancelled(&r).ends_with("::until_cancelled"));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(10), || path.exists()), "the task never saw is_cancelled()");
    let _ = std::fs::remove_file(path);
    Ok(())
}

#[test]
fn cancel_force_kills_the_worker_and_the_pool_goes_on() -> anyhow::Result<()> {
    let node = shared_node();
    let r = stubborn::remote();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    shoal::cancel_force(&r)?;
    assert!(cancelled(&r).ends_with("::stubborn"));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(10), || node.live_workers() == 2));
    let values: Vec<ObjectRef<u64>> = (0..20).map(plus_one::remote).collect();
    assert_eq!(shoal::get_all(&values)?, (1..=20).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn dependents_fail_with_the_same_error_and_other_work_is_untouched() -> anyhow::Result<()> {
    let _node = shared_node();
    let path = marker("dependents");
    let root = until_cancelled::remote(path.display().to_string());
    let dependent = widen::remote(&root);
    let unrelated = plus_one::remote(plus_one::remote(1));
    shoal::cancel(&root)?;
    assert!(cancelled(&dependent).ends_with("::until_cancelled"), "the dependent names the task cancelled first");
    assert_eq!(shoal::get(&unrelated)?, 3);
    // A finished task is untouched.
    let done = plus_one::remote(41);
    assert_eq!(shoal::get(&done)?, 42);
    shoal::cancel(&done)?;
    shoal::cancel_force(&done)?;
    assert_eq!(shoal::get(&done)?, 42);
    Ok(())
}

#[test]
fn the_tasks_a_cancelled_task_submitted_are_cancelled_too() -> anyhow::Result<()> {
    let node = shared_node();
    let path = marker("child");
    let r = parent::remote(path.display().to_string());
    assert!(started(&path), "the child started");
    shoal::cancel(&r)?;
    assert!(cancelled(&r).ends_with("::parent"));
    assert!(wait_until(Duration::from_secs(10), || path.exists()), "the child never saw is_cancelled()");
    let _ = std::fs::remove_file(path);
    // By force: the parent blocked on its child, the child killed with it.
    let forced = marker("forced");
    let r = parent::remote(forced.display().to_string());
    assert!(started(&forced), "the child started");
    shoal::cancel_force(&r)?;
    assert!(cancelled(&r).ends_with("::parent"));
    assert!(wait_until(Duration::from_secs(10), || node.live_workers() == 2));
    assert_eq!(shoal::get(&plus_one::remote(1))?, 2);
    Ok(())
}

/// Waits until cancelled, then submits a child (which must never run)
/// and waits for it.
#[shoal::remote]
fn submits_after_cancel(path: String) -> u8 {
    note_start(&path);
    while !shoal::is_cancelled() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let child = mark::remote(path);
    u8::from(shoal::get(&child).is_err())
}

/// Calls the actor and waits for the call.
#[shoal::remote]
fn calls_actor(w: shoal::ActorHandle<Worker>, path: String) -> u8 {
    shoal::get(&w.until_cancelled_then_mark(path)).unwrap_or(0)
}

#[test]
fn a_cancelled_task_s_later_children_and_actor_calls_are_cancelled_too() -> anyhow::Result<()> {
    let _node = shared_node();
    let path = marker("late-child");
    let r = submits_after_cancel::remote(path.display().to_string());
    assert!(started(&path));
    shoal::cancel(&r)?;
    assert!(cancelled(&r).ends_with("::submits_after_cancel"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!path.exists(), "a child submitted after the cancel ran");
    // The actor calls a cancelled task made see the flag.
    let w = Worker::remote();
    let path = marker("actor-call");
    let r = calls_actor::remote(w.clone(), path.display().to_string());
    assert!(started(&path));
    shoal::cancel(&r)?;
    assert!(wait_until(Duration::from_secs(10), || path.exists()), "the actor's call never saw the flag");
    let _ = std::fs::remove_file(path);
    Ok(())
}

#[test]
fn cancel_then_cancel_force_stops_a_task_that_ignores_the_flag() -> anyhow::Result<()> {
    let node = shared_node();
    let path = marker("ignores");
    let r = ignores_flag::remote(path.display().to_string());
    assert!(started(&path));
    shoal::cancel(&r)?;
    assert!(cancelled(&r).ends_with("::ignores_flag"));
    let sorted = || {
        let mut pids = node.worker_pids();
        pids.sort_unstable();
        pids
    };
    let pids = sorted();
    shoal::cancel_force(&r)?;
    assert!(
        wait_until(Duration::from_secs(10), || node.live_workers() == 2 && sorted() != pids),
        "its worker was not replaced"
    );
    assert_eq!(shoal::get(&plus_one::remote(1))?, 2);
    Ok(())
}

/// Starts, then never looks at the flag.
#[shoal::remote]
fn ignores_flag(path: String) -> u8 {
    note_start(&path);
    std::thread::sleep(Duration::from_secs(60));
    1
}

struct Worker;

#[shoal::actor]
impl Worker {
    pub fn new() -> Self {
        Worker
    }

    pub fn until_cancelled(&self) -> u8 {
        let started = Instant::now();
        while !shoal::is_cancelled() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        1
    }

    pub fn ping(&self) -> u8 {
        2
    }

    pub fn until_cancelled_then_mark(&self, path: String) -> u8 {
        note_start(&path);
        while !shoal::is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::write(path, b"saw the flag").expect("write the marker");
        1
    }
}

#[test]
fn actor_calls_are_cancelled_queued_or_running_but_not_by_force() -> anyhow::Result<()> {
    let _node = shared_node();
    let w = Worker::remote();
    assert_eq!(shoal::get(&w.ping())?, 2);
    let running = w.until_cancelled();
    let queued = w.ping();
    std::thread::sleep(Duration::from_millis(200));
    assert!(matches!(shoal::cancel_force(&running), Err(Error::InvalidArgument(_))));
    shoal::cancel(&queued)?;
    assert!(cancelled(&queued).ends_with("::ping"));
    shoal::cancel(&running)?;
    assert!(cancelled(&running).ends_with("::until_cancelled"));
    // The actor lives on: the running call stopped when it saw the flag.
    assert_eq!(shoal::get_timeout(&w.ping(), Duration::from_secs(10))?, 2);
    Ok(())
}

#[test]
fn five_thousand_tasks_with_every_twentieth_cancelled() -> anyhow::Result<()> {
    let _node = shared_node();
    let refs: Vec<ObjectRef<u64>> = (0..5_000u64).map(plus_one::remote).collect();
    for r in refs.iter().step_by(20) {
        shoal::cancel(r)?;
    }
    let mut values = 0;
    for (i, r) in refs.iter().enumerate() {
        match shoal::get_timeout(r, Duration::from_secs(60)) {
            Ok(v) => {
                assert_eq!(v, i as u64 + 1);
                values += 1;
            }
            Err(Error::TaskCancelled { .. }) => assert_eq!(i % 20, 0, "only the cancelled ones fail"),
            Err(e) => panic!("task {i}: {e:?}"),
        }
    }
    assert!(values >= 5_000 - 250);
    Ok(())
}
