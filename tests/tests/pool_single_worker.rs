//! One worker with a deep pipeline: the cases where queued tasks and large
//! messages meet a single process.

use std::sync::OnceLock;
use std::time::Duration;

use shoal::{Error, ObjectRef};

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(1).pipeline_depth(4).store_bytes(256 << 20)).expect("node")
    })
}

const PATIENCE: Duration = Duration::from_secs(60);

/// Ten ~90 KB inline arguments in, three ~90 KB inline results out: each
/// message is far larger than a socket buffer.
#[shoal::remote(num_returns = 3)]
#[allow(clippy::too_many_arguments)]
fn shuffle(
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
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let total: usize = [&a, &b, &c, &d, &e, &f, &g, &h, &i, &j].iter().map(|v| v.len()).sum();
    let tag = (total % 251) as u8;
    (vec![tag; a.len()], vec![tag.wrapping_add(1); b.len()], vec![tag.wrapping_add(2); c.len()])
}

#[test]
fn large_messages_both_ways_never_deadlock() -> anyhow::Result<()> {
    node();
    let chunk = || vec![7u8; 90_000];
    type Three = (ObjectRef<Vec<u8>>, ObjectRef<Vec<u8>>, ObjectRef<Vec<u8>>);
    let results: Vec<Three> = (0..24)
        .map(|_| {
            shuffle::remote(chunk(), chunk(), chunk(), chunk(), chunk(), chunk(), chunk(), chunk(), chunk(), chunk())
        })
        .collect();
    let tag = (900_000 % 251) as u8;
    for (x, y, z) in &results {
        assert_eq!(shoal::get_timeout(x, PATIENCE)?, vec![tag; 90_000]);
        assert_eq!(shoal::get_timeout(y, PATIENCE)?, vec![tag + 1; 90_000]);
        assert_eq!(shoal::get_timeout(z, PATIENCE)?, vec![tag + 2; 90_000]);
    }
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
