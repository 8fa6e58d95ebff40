//! One suite of shoal's behaviour, run against every backend (as iceoryx2
//! runs one suite against every implementation of a trait): the same cases
//! on an embedded node (`tests/embedded.rs`) and on a Ray cluster
//! (`tests/ray.rs`, with the `ray` feature, from `tests/ray/run`).
//!
//! The remote functions and actors live here, in the library, so that the
//! Ray backend's worker library is this crate built as a `cdylib`: the same
//! code as the test binary, which `init` checks. A case is a plain function
//! over the public API; [`suite!`] makes a `#[test]` of each, after a
//! backend's setup.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ndarray::{Array1, Ix1};
use serde::{Deserialize, Serialize};
use shoal::{Error, ObjectRef, SharedArray};

/// `a + b`.
#[shoal::remote]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// `s` in capitals.
#[shoal::remote]
pub fn shout(s: String) -> String {
    s.to_uppercase()
}

/// Sleeps `ms`, then answers `v`.
#[shoal::remote]
pub fn after(ms: u64, v: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

/// Panics with `message`.
#[shoal::remote]
pub fn fail(message: String) -> u64 {
    panic!("{message}")
}

/// Kills its own process (no unwinding, no answer).
#[shoal::remote]
pub fn die(_: u64) -> u64 {
    std::process::abort()
}

/// Two outputs of one type: `n` and `n + 1`.
#[shoal::remote(num_returns = 2)]
pub fn pair(n: u64) -> (u64, u64) {
    (n, n + 1)
}

/// Two outputs: `2n` and a text.
#[shoal::remote(num_returns = 2)]
pub fn split(n: i64) -> (i64, String) {
    (n * 2, format!("n={n}"))
}

/// The sum of a view's elements.
#[shoal::remote]
pub fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

/// `2a`, a new array.
#[shoal::remote]
pub fn doubled(a: Array1<f64>) -> Array1<f64> {
    a * 2.0
}

/// `n + (n - 1) + … + 0`, one nested task a step.
#[shoal::remote]
pub fn sum_to(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    n + shoal::get(&sum_to::remote(n - 1)).expect("a nested task")
}

/// Which Ray node runs this process, after `ms`: its raylet's socket, from
/// the command line Ray started the worker with ("none" off Ray).
#[shoal::remote]
pub fn node_of_worker(ms: u64) -> String {
    std::thread::sleep(Duration::from_millis(ms));
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    String::from_utf8_lossy(&cmdline)
        .split('\0')
        .find_map(|arg| arg.strip_prefix("--ray_raylet_socket_name=").map(str::to_string))
        .unwrap_or_else(|| "none".into())
}

/// A value of the user's own type.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
pub struct Point {
    /// Abscissa.
    pub x: f64,
    /// Ordinate.
    pub y: f64,
    /// A name.
    pub label: String,
}

/// The point's distance from the origin.
#[shoal::remote]
pub fn norm(p: Point) -> f64 {
    (p.x * p.x + p.y * p.y).sqrt()
}

/// An actor with state.
pub struct Counter {
    n: i64,
}

#[shoal::actor]
impl Counter {
    /// Starts at `start`.
    pub fn new(start: i64) -> Self {
        Counter { n: start }
    }

    /// Adds `k`; the new count.
    pub fn add(&mut self, k: i64) -> i64 {
        self.n += k;
        self.n
    }

    /// The count.
    pub fn value(&self) -> i64 {
        self.n
    }

    /// Panics, naming the count.
    pub fn explode(&self) -> i64 {
        panic!("counter at {}", self.n)
    }
}

/// Results and their dependencies: a ref passed on runs after its task.
pub fn tasks_and_dependencies() -> Result<()> {
    let x = add::remote(1, 2);
    let y = add::remote(&x, 10);
    let z = add::remote(y.clone(), &x);
    ensure!(shoal::get(&z)? == 16);
    ensure!(shoal::get(&shout::remote("quiet".to_string()))? == "QUIET");
    Ok(())
}

/// `put` and `get` of the user's own types, and `get_all`.
pub fn put_get_and_get_all() -> Result<()> {
    let p = Point { x: 3.0, y: 4.0, label: "p".into() };
    let r: ObjectRef<Point> = shoal::put(p.clone())?;
    ensure!(shoal::get(&r)? == p);
    ensure!(shoal::get(&norm::remote(&r))? == 5.0);
    let refs: Vec<ObjectRef<i64>> = (0..20).map(|i| add::remote(i, i)).collect();
    ensure!(shoal::get_all(&refs)? == (0..20).map(|i| 2 * i).collect::<Vec<i64>>());
    Ok(())
}

/// `wait` gives the ready first, in the refs' order, at most as many as asked.
pub fn wait_for_the_first() -> Result<()> {
    // Long enough that the fast one, queued behind other tests' tasks, is first.
    let slow = after::remote(10_000, 1);
    let fast = after::remote(0, 2);
    let refs = [slow.clone(), fast.clone()];
    let (ready, pending) = shoal::wait(&refs, 1, Some(Duration::from_secs(60)))?;
    ensure!(ready == [fast.clone()], "ready: {ready:?}");
    ensure!(pending == [slow], "pending: {pending:?}");
    let (ready, _) = shoal::wait(&[fast], 1, None)?;
    ensure!(ready.len() == 1);
    Ok(())
}

/// A bounded `get` runs out with `Timeout`; the object is still read later.
pub fn get_timeout_runs_out() -> Result<()> {
    let r = after::remote(1_500, 7);
    match shoal::get_timeout(&r, Duration::from_millis(100)) {
        Err(Error::Timeout(_)) => {}
        other => bail!("expected a timeout, got {other:?}"),
    }
    ensure!(shoal::get_timeout(&r, Duration::from_secs(60))? == 7);
    Ok(())
}

/// A panic is `TaskPanicked` with its message, and flows into dependents.
pub fn panics_reach_get_and_dependents() -> Result<()> {
    let bad = fail::remote("boom at the task".to_string());
    match shoal::get(&bad) {
        Err(Error::TaskPanicked { function, message, .. }) => {
            ensure!(message.contains("boom at the task"), "message: {message}");
            ensure!(function.ends_with("fail"), "function: {function}");
        }
        other => bail!("expected a panic, got {other:?}"),
    }
    let dependent = after::remote(0, &bad);
    match shoal::get(&dependent) {
        Err(Error::TaskPanicked { function, .. }) => ensure!(function.ends_with("fail"), "function: {function}"),
        other => bail!("expected the upstream panic, got {other:?}"),
    }
    Ok(())
}

/// A worker that dies is `WorkerDied`, once retries run out.
pub fn dead_worker_is_worker_died() -> Result<()> {
    match shoal::get(&die::options().max_retries(1).remote(0)) {
        Err(Error::WorkerDied { function, .. }) => ensure!(function.ends_with("die"), "function: {function}"),
        other => bail!("expected WorkerDied, got {other:?}"),
    }
    // The backend goes on.
    ensure!(shoal::get(&add::remote(2, 2))? == 4);
    Ok(())
}

/// `num_returns`: one ref per output, each passed on alone.
pub fn several_returns() -> Result<()> {
    let (twice, text) = split::remote(21);
    ensure!(shoal::get(&text)? == "n=21");
    ensure!(shoal::get(&add::remote(&twice, 0))? == 42);
    let (refs, _) = shoal::wait(&[twice.clone(), twice.clone()], 1, None)?;
    ensure!(refs.len() == 1);
    // Two outputs of one task count as two ready refs: `wait` returns
    // without waiting for a third, slow one.
    let (a, b) = pair::remote(5);
    let slow = after::remote(20_000, 0);
    let started = std::time::Instant::now();
    let (ready, pending) = shoal::wait(&[a.clone(), b.clone(), slow.clone()], 2, None)?;
    ensure!(ready == [a, b] && pending == [slow], "ready {ready:?}");
    ensure!(started.elapsed() < Duration::from_secs(10), "wait waited for the slow task");
    Ok(())
}

/// Options a task takes.
pub fn task_options() -> Result<()> {
    let r = add::options().num_cpus(1).max_retries(2).remote(40, 2);
    ensure!(shoal::get(&r)? == 42);
    Ok(())
}

/// Arrays: put, a task reading a view, one taking and returning an owned one.
pub fn arrays() -> Result<()> {
    let a = shoal::put(Array1::from_iter((0..1000).map(f64::from)))?;
    ensure!(shoal::get(&total::remote(&a))? == 499_500.0);
    let twice = doubled::remote(&a);
    ensure!(shoal::get(&twice)?[999] == 1998.0);
    ensure!(shoal::get_shared(&twice)?.view()[10] == 20.0);
    let big = shoal::put(Array1::<f64>::ones(1 << 20))?;
    ensure!(shoal::get(&total::remote(&big))? == (1 << 20) as f64);
    Ok(())
}

/// Tasks submitting tasks, and waiting for them.
pub fn nested_tasks() -> Result<()> {
    ensure!(shoal::get(&sum_to::remote(4))? == 10);
    Ok(())
}

/// An actor keeps its state across calls; a panicking method fails that
/// call only.
pub fn actors() -> Result<()> {
    let c = Counter::remote(10);
    ensure!(shoal::get(&c.add(5))? == 15);
    ensure!(shoal::get(&c.add(1))? == 16);
    match shoal::get(&c.explode()) {
        Err(Error::TaskPanicked { message, .. }) => ensure!(message.contains("counter at 16"), "message: {message}"),
        other => bail!("expected a panic, got {other:?}"),
    }
    ensure!(shoal::get(&c.value())? == 16);
    let from_ref = c.add(add::remote(1, 1));
    ensure!(shoal::get(&from_ref).context("a call taking a ref")? == 18);
    Ok(())
}

/// A case of the suite.
pub type Case = fn() -> Result<()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("tasks_and_dependencies", tasks_and_dependencies),
    ("put_get_and_get_all", put_get_and_get_all),
    ("wait_for_the_first", wait_for_the_first),
    ("get_timeout_runs_out", get_timeout_runs_out),
    ("panics_reach_get_and_dependents", panics_reach_get_and_dependents),
    ("dead_worker_is_worker_died", dead_worker_is_worker_died),
    ("several_returns", several_returns),
    ("task_options", task_options),
    ("arrays", arrays),
    ("nested_tasks", nested_tasks),
    ("actors", actors),
];

/// One `#[test]` per case, each after `setup` (which starts or connects
/// the backend, once per process).
#[macro_export]
macro_rules! suite {
    ($setup:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() -> anyhow::Result<()> {
                $setup()?;
                $crate::$case()
            }
        )*
        #[test]
        fn every_case_is_in_the_suite() {
            let here = [$(stringify!($case)),*];
            for (name, _) in $crate::CASES {
                assert!(here.contains(name), "case `{name}` is not run here");
            }
        }
    };
}
