//! A worker that dies mid-task — abort, `kill -9`, a segfault, a stack
//! overflow, `exit` — is replaced at once; past `max_retries` every output
//! of its task, and every task depending on it, is `WorkerDied` naming the
//! function, the attempts, how the process ended and the last lines it
//! wrote to stderr. `retry_panics(true)` retries panics within the same
//! budget.
//!
//! Each test starts its own node, so they take [`serial`] first.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, raise};
use nix::unistd::Pid;
use shoal::Error;

#[shoal::remote]
fn segfault(_n: u32) -> u32 {
    raise(Signal::SIGSEGV).expect("raise");
    unreachable!("SIGSEGV's default action ends the process")
}

#[shoal::remote]
fn abort(_n: u32) -> u32 {
    std::process::abort()
}

#[shoal::remote]
fn kill_self(_n: u32) -> u32 {
    kill(Pid::this(), Signal::SIGKILL).expect("kill");
    unreachable!("SIGKILL ends the process")
}

#[shoal::remote]
fn exit_three(_n: u32) -> u32 {
    eprintln!("giving up: the config is missing");
    std::process::exit(3)
}

#[shoal::remote]
fn overflow(n: u32) -> u32 {
    fn deeper(depth: u64) -> u64 {
        if depth == u64::MAX {
            return 0;
        }
        let frame = std::hint::black_box([depth; 64]);
        frame[0] + deeper(std::hint::black_box(depth + 1))
    }
    deeper(u64::from(n)) as u32
}

#[shoal::remote]
fn add_one(n: u32) -> u32 {
    n + 1
}

/// Panics until `marker` holds `fail_times` lines, appending one per attempt;
/// then answers the number of attempts.
#[shoal::remote]
fn flaky(marker: String, fail_times: usize) -> usize {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&marker).expect("marker");
    writeln!(file, "attempt").expect("marker");
    let attempts = std::fs::read_to_string(&marker).expect("marker").lines().count();
    if attempts <= fail_times {
        panic!("transient failure {attempts}");
    }
    attempts
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn node() -> anyhow::Result<shoal::Shoal> {
    Ok(shoal::init(shoal::Config::default().workers(2).store_bytes(64 << 20))?)
}

/// A fresh marker file path, removed on drop.
struct Marker(PathBuf);

impl Marker {
    fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("shoal-faults-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Marker(path)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    fn attempts(&self) -> usize {
        std::fs::read_to_string(&self.0).map(|s| s.lines().count()).unwrap_or(0)
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The pool is back to `n` live workers within a few seconds.
fn assert_pool_back(node: &shoal::Shoal, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.live_workers() != n {
        assert!(Instant::now() < deadline, "pool not back to {n} workers: {} live", node.live_workers());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `WorkerDied` behind `result`, checked to name `function` and `attempts`.
fn worker_died<T: std::fmt::Debug>(result: shoal::Result<T>, function: &str, attempts: u32) -> (String, String) {
    match result {
        Err(Error::WorkerDied { function: f, attempts: a, cause, stderr, .. }) => {
            assert!(f.ends_with(function), "names the function: {f}");
            assert_eq!(a, attempts, "attempts of `{function}`");
            (cause, stderr)
        }
        other => panic!("expected WorkerDied from `{function}`, got {other:?}"),
    }
}

#[test]
fn every_way_of_dying_is_named_with_its_signal_or_exit_code_and_stderr() -> anyhow::Result<()> {
    let _serial = serial();
    let node = node()?;
    let cases: [(&str, shoal::ObjectRef<u32>, &str, &str); 5] = [
        ("segfault", segfault::options().max_retries(0).remote(0), "killed by signal 11 (SIGSEGV", ""),
        ("abort", abort::options().max_retries(0).remote(0), "killed by signal 6 (SIGABRT", ""),
        ("kill_self", kill_self::options().max_retries(0).remote(0), "killed by signal 9 (SIGKILL)", ""),
        ("exit_three", exit_three::options().max_retries(0).remote(0), "exited with code 3", "the config is missing"),
        ("overflow", overflow::options().max_retries(0).remote(0), "SIGABRT", "has overflowed its stack"),
    ];
    for (function, r, cause_has, stderr_has) in cases {
        let (cause, stderr) = worker_died(shoal::get_timeout(&r, TIMEOUT), function, 1);
        assert!(cause.contains(cause_has), "`{function}`: cause {cause:?} should say {cause_has:?}");
        assert!(stderr.contains(stderr_has), "`{function}`: stderr {stderr:?} should hold {stderr_has:?}");
        let message = shoal::get_timeout(&r, TIMEOUT).unwrap_err().to_string();
        assert!(message.contains(cause_has) && message.contains(stderr_has), "the message says it all: {message}");
    }
    assert_pool_back(&node, 2);
    assert_eq!(shoal::get_timeout(&add_one::remote(1), TIMEOUT)?, 2, "the pool keeps working");
    Ok(())
}

#[test]
fn retries_run_the_task_again_and_dependents_share_the_final_error() -> anyhow::Result<()> {
    let _serial = serial();
    let node = node()?;
    let died = kill_self::options().max_retries(2).remote(0);
    let dependent = add_one::remote(&died);
    let (cause, _) = worker_died(shoal::get_timeout(&died, TIMEOUT), "kill_self", 3);
    assert!(cause.contains("SIGKILL"), "{cause}");
    assert_eq!(shoal::get_timeout(&dependent, TIMEOUT), shoal::get_timeout(&died, TIMEOUT), "the same error flows on");
    assert_pool_back(&node, 2);
    Ok(())
}

#[test]
fn panics_are_retried_only_when_asked() -> anyhow::Result<()> {
    let _serial = serial();
    let _node = node()?;

    let marker = Marker::new("no-retry");
    let r = flaky::remote(marker.path(), 1);
    assert!(matches!(shoal::get_timeout(&r, TIMEOUT), Err(Error::TaskPanicked { .. })));
    assert_eq!(marker.attempts(), 1, "a panic is the function's answer by default");

    let marker = Marker::new("retry");
    let r = flaky::options().retry_panics(true).max_retries(3).remote(marker.path(), 2);
    assert_eq!(shoal::get_timeout(&r, TIMEOUT)?, 3, "two panics, then an answer");

    let marker = Marker::new("out-of-retries");
    let r = flaky::options().retry_panics(true).max_retries(1).remote(marker.path(), 5);
    match shoal::get_timeout(&r, TIMEOUT) {
        Err(Error::TaskPanicked { message, .. }) => assert!(message.contains("transient failure 2"), "{message}"),
        other => panic!("expected the last attempt's panic, got {other:?}"),
    }
    assert_eq!(marker.attempts(), 2, "max_retries(1) starts it twice");
    Ok(())
}
