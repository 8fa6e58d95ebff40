//! Chaos: a DAG of more than 10 000 tasks — fan-out from tasks, fan-in
//! through nested `get`, small arrays passed by `ObjectRef` and inside a
//! `Vec` of refs — runs while a thread `kill -9`s a random worker every
//! 200 ms. Every final value is right (each is checked against a closed
//! form), and afterwards the node's object count and store use return to
//! where they started, the pool is back to its size, and no process of
//! this test's is left beyond the pool (a killed worker is reaped, an extra
//! one retired).
//!
//! The shape, per group `g` (`GROUPS` of them, all submitted by the driver):
//! `group(g)` submits `LEAVES` `leaf(i)` tasks (an array of `WIDTH` `u64`s
//! in the arena), one `weigh(leaf)` per leaf taking the array by ref, and
//! one `combine(refs)` taking the `Vec` of leaf refs, then gathers the
//! weighs and the combination with nested gets. A kill loses whatever the
//! worker had on its stack; retries (`RETRIES`, generous because a kill
//! may hit a worker with several nested tasks stacked on it) run it again,
//! and whatever a killed attempt had submitted runs to its end unheld and
//! is freed — which the leak checks at the end see if it is not.
//!
//! ~160 000 tasks take ~8 s on 2 cores, long enough for ~40 kills. (With
//! more than 256 groups queued, the first version hung with every worker
//! blocked at `max_workers`: the dispatcher never looked past them for the
//! children the blocked groups waited for; `nested_deep_queue.rs` pins that
//! down.) `CHAOS_DEBUG=1` prints each kill with the node's object count and
//! store use, which is how that hang showed itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use shoal::{ObjectRef, SharedArray};
use shoal_tests::wait_until;

/// Groups the driver submits.
const GROUPS: u64 = 1024;
/// Leaves per group.
const LEAVES: u64 = 78;
/// Elements of a leaf's array.
const WIDTH: u64 = 16;
/// Tasks in the DAG: per group the group itself, its leaves, a weigh per
/// leaf and one combine.
const TASKS: u64 = GROUPS * (1 + 2 * LEAVES + 1);
const _: () = assert!(TASKS >= 10_000, "the DAG has at least 10 000 tasks");

/// Retries of every chaos task.
const RETRIES: u32 = 50;
const WORKERS: usize = 2;
const KILL_EVERY: Duration = Duration::from_millis(200);
/// Bounds a hang, not a speed: the DAG takes seconds.
const PATIENCE: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(30);

/// Leaf `i`: `[i·W, i·W + 1, …, i·W + W − 1]`.
#[shoal::remote]
fn leaf(i: u64) -> Array1<u64> {
    Array1::from_iter(i * WIDTH..(i + 1) * WIDTH)
}

/// `Σ a[k]·(k + 1)`, read in place; checks the array is leaf `i`'s.
#[shoal::remote]
fn weigh(a: SharedArray<u64, Ix1>, i: u64) -> u64 {
    let a = a.as_slice();
    assert_eq!(a.len() as u64, WIDTH, "leaf {i}'s length");
    assert_eq!(a[0], i * WIDTH, "weigh({i}) got another leaf's array");
    a.iter().zip(1..).map(|(&x, k)| x * k).sum()
}

/// The element-wise sum of the leaves, each fetched with a nested get
/// (half of them as views, half owned).
#[shoal::remote]
fn combine(leaves: Vec<ObjectRef<Array1<u64>>>) -> Array1<u64> {
    let mut sum = Array1::<u64>::zeros(WIDTH as usize);
    for (n, r) in leaves.iter().enumerate() {
        if n % 2 == 0 {
            sum += &shoal::get_shared(r).expect("a leaf, viewed").view();
        } else {
            sum += &shoal::get(r).expect("a leaf, owned");
        }
    }
    sum
}

/// What a group answers.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct GroupSum {
    /// The sum of its leaves' weighs.
    weighed: u64,
    /// Its leaves summed element-wise.
    combined: Array1<u64>,
}

#[shoal::remote]
fn group(g: u64) -> GroupSum {
    let leaves: Vec<ObjectRef<Array1<u64>>> =
        (0..LEAVES).map(|j| leaf::options().max_retries(RETRIES).remote(g * LEAVES + j)).collect();
    let weighs: Vec<ObjectRef<u64>> = leaves
        .iter()
        .enumerate()
        .map(|(j, a)| weigh::options().max_retries(RETRIES).remote(a, g * LEAVES + j as u64))
        .collect();
    let combined = combine::options().max_retries(RETRIES).remote(leaves.clone());
    drop(leaves);
    let weighed = shoal::get_all(&weighs).expect("the weighs").iter().sum();
    let combined = shoal::get(&combined).expect("the combination");
    GroupSum { weighed, combined }
}

/// Σ over the group's leaf indices `i` of `i`.
fn index_sum(g: u64) -> u64 {
    g * LEAVES * LEAVES + LEAVES * (LEAVES - 1) / 2
}

/// What `group(g)` must answer, in closed form: with `i·W + k` at position
/// `k`, a weigh is `i·W·W(W+1)/2 + (W−1)W(W+1)/3`, and element `k` of the
/// combination is `W·Σi + L·k`.
fn expected(g: u64) -> GroupSum {
    let w = WIDTH;
    let weighed = index_sum(g) * w * w * (w + 1) / 2 + LEAVES * (w - 1) * w * (w + 1) / 3;
    let combined = Array1::from_iter((0..w).map(|k| w * index_sum(g) + LEAVES * k));
    GroupSum { weighed, combined }
}

/// The processes whose parent is this process, from `/proc/*/stat` (zombies
/// included: an unreaped worker is a leak too).
fn children() -> BTreeSet<u32> {
    let me = std::process::id();
    let mut found = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid …`; the command name may contain spaces.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(me) {
            found.insert(pid);
        }
    }
    found
}

/// A small xorshift: which worker to kill needs no more.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Sets `flag` when dropped, so the killer stops on every way out of the
/// driver's part, a failed assertion included.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_10k_task_dag_survives_a_kill_every_200_ms_and_leaves_nothing_behind() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default().workers(WORKERS).store_bytes(256 << 20))?;
    let objects_before = node.object_count();
    let used_before = node.store_used_bytes();

    let done = AtomicBool::new(false);
    let kills = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<shoal::Result<GroupSum>> = std::thread::scope(|scope| {
        scope.spawn(|| {
            let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
            let mut rng = Rng(seed as u64 | 1);
            while !done.load(Ordering::SeqCst) {
                std::thread::park_timeout(KILL_EVERY);
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let pids = node.worker_pids();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[rng.below(pids.len())];
                if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                    kills.fetch_add(1, Ordering::SeqCst);
                }
                if std::env::var_os("CHAOS_DEBUG").is_some() {
                    eprintln!(
                        "{:?} kill {pid} of {pids:?}; objects {} used {}",
                        started.elapsed(),
                        node.object_count(),
                        node.store_used_bytes()
                    );
                }
            }
        });
        let _stop = SetOnDrop(&done);
        let refs: Vec<ObjectRef<GroupSum>> =
            (0..GROUPS).map(|g| group::options().max_retries(RETRIES).remote(g)).collect();
        let deadline = started + PATIENCE;
        refs.iter().map(|r| shoal::get_timeout(r, deadline.saturating_duration_since(Instant::now()))).collect()
    });
    let took = started.elapsed();
    let kills = kills.into_inner();
    eprintln!("{TASKS} tasks in {took:.2?} with {kills} workers killed");

    for (g, result) in results.into_iter().enumerate() {
        let got = result.map_err(|e| anyhow::anyhow!("group {g}: {e}"))?;
        assert_eq!(got, expected(g as u64), "group {g}'s answer");
    }
    assert!(kills >= 3, "only {kills} kills happened: the chaos did not bite");

    // Everything the DAG made is freed — killed attempts' orphans included
    // once they finish — and the pool is back to its size with every killed
    // worker reaped and every extra one retired.
    let settled = wait_until(SETTLE, || {
        node.object_count() == objects_before
            && node.store_used_bytes() == used_before
            && node.live_workers() == WORKERS
            && children() == node.worker_pids().into_iter().collect::<BTreeSet<_>>()
    });
    assert!(
        settled,
        "{SETTLE:?} after the DAG: {} objects (was {objects_before}), {} store bytes used (was {used_before}), \
         {} live workers (pool {WORKERS}), workers {:?}, children of this process {:?}",
        node.object_count(),
        node.store_used_bytes(),
        node.live_workers(),
        node.worker_pids(),
        children(),
    );
    Ok(())
}
