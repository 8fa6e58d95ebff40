//! One worker with a deep pipeline: the cases where queued tasks and large
//! messages meet a single process.

use std::sync::OnceLock;
use std::time::Duration;

use shoal::{Error, ObjectRef};

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(1).pipeline_depth(4).inline_max(1 << 20).store_bytes(256 << 20))
            .expect("node")
    })
}

const PATIENCE: Duration = Duration::from_secs(30);

/// Ten ~99 KB inline arguments in, eight ~99 KB inline results out: every
/// message is several times larger than a socket buffer.
#[shoal::remote(num_returns = 8)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn shuffle(
    _gate: (),
    a: Vec<u8>,
    b: Vec<u8>,
    c: Vec<u8>,
    d: Vec<u8>,
    e: Vec<u8>,
    f: Vec<u8>,
    g: Vec<u8>,
    h: Vec<u8>,
    i: Vec<u8>,
    j: Vec<u8>,
) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let total: usize = [&a, &b, &c, &d, &e, &f, &g, &h, &i, &j].iter().map(|v| v.len()).sum();
    let out = |k: usize| vec![((total + k) % 251) as u8; a.len()];
    (out(0), out(1), out(2), out(3), out(4), out(5), out(6), out(7))
}

#[shoal::remote]
fn gate() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn large_messages_both_ways_never_deadlock() -> anyhow::Result<()> {
    node();
    let chunk = || vec![7u8; CHUNK];
    // Every task waits for the gate, so when it opens the node sends a full
    // pipeline of ~1 MB task messages at once while the worker answers each
    // with a ~0.8 MB result.
    let gate = gate::remote();
    let results: Vec<_> = (0..24)
        .map(|_| {
            shuffle::remote(
                &gate,
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
                chunk(),
            )
        })
        .collect();
    for (r0, _, _, _, _, _, _, r7) in &results {
        assert_eq!(shoal::get_timeout(r0, PATIENCE)?, vec![((10 * CHUNK) % 251) as u8; CHUNK]);
        assert_eq!(shoal::get_timeout(r7, PATIENCE)?, vec![((10 * CHUNK + 7) % 251) as u8; CHUNK]);
    }
    Ok(())
}

const CHUNK: usize = 99_000;

#[test]
fn inline_arguments_past_the_task_budget_go_through_the_arena() -> anyhow::Result<()> {
    let node = node();
    // Ten ~1 MB arguments, each small enough to be inline (inline_max is
    // 1 MiB here), together past the 8 MiB a task message may carry.
    let big = |k: u8| vec![k; 1_000_000];
    let gate = gate::remote();
    let (first, ..) =
        shuffle::remote(&gate, big(1), big(2), big(3), big(4), big(5), big(6), big(7), big(8), big(9), big(10));
    assert!(node.store_used_bytes() >= 1_000_000, "the arguments past the budget are in the arena");
    assert_eq!(shoal::get_timeout(&first, PATIENCE)?, vec![((10_000_000) % 251) as u8; 1_000_000]);
    Ok(())
}

#[shoal::remote]
fn crash() -> u32 {
    std::process::abort()
}

#[shoal::remote]
fn pid() -> u32 {
    std::process::id()
}

#[test]
fn a_task_queued_behind_a_crash_is_not_charged_for_it() -> anyhow::Result<()> {
    let node = node();
    let before = node.worker_pids();
    let crashed = crash::options().max_retries(0).remote();
    // Queued in the same worker's pipeline, behind the crash; no retries allowed.
    let queued: Vec<ObjectRef<u32>> = (0..3).map(|_| pid::options().max_retries(0).remote()).collect();
    assert!(matches!(shoal::get_timeout(&crashed, PATIENCE), Err(Error::WorkerDied { attempts: 1, .. })));
    for r in &queued {
        let ran_in = shoal::get_timeout(r, PATIENCE)?;
        assert!(!before.contains(&ran_in), "ran in the replacement worker");
    }
    Ok(())
}
