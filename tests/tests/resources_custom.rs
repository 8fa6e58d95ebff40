//! Custom resources beside CPUs: `Config::resource` declares what the node
//! has, `options().resource` what a task needs; a task waits until its
//! resources are free; asking for more than the node has is
//! `Unschedulable`; a task blocked in a nested `get` keeps its resources
//! (it gives back only its CPU).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal::Error;

const PATIENCE: Duration = Duration::from_secs(60);

fn node() -> &'static shoal::Shoal {
    static NODE: std::sync::OnceLock<shoal::Shoal> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let config =
            shoal::Config::default().workers(3).store_bytes(32 << 20).resource("gpu", 1.0).resource("disk", 2.5);
        shoal::init(config).expect("start the node")
    })
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// Sleeps, and says when it ran: (start, end) in µs since the epoch.
#[shoal::remote]
fn hold(ms: u64) -> (u64, u64) {
    let start = now_us();
    std::thread::sleep(Duration::from_millis(ms));
    (start, now_us())
}

/// Holds its resources while it blocks on a child that needs none.
#[shoal::remote]
fn hold_through_a_child(ms: u64) -> (u64, u64) {
    let start = now_us();
    let child = hold::remote(ms);
    shoal::get(&child).expect("child");
    (start, now_us())
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn more_than_the_node_has_is_unschedulable() {
    node();
    let r = hold::options().resource("gpu", 2.0).remote(0);
    match shoal::get_timeout(&r, PATIENCE) {
        Err(Error::Unschedulable { function, resource, needed, available }) => {
            assert!(function.contains("hold"), "{function}");
            assert_eq!((resource.as_str(), needed, available), ("gpu", 2.0, 1.0));
        }
        other => panic!("expected Unschedulable, got {other:?}"),
    }
    let r = hold::options().resource("tpu", 1.0).remote(0);
    assert!(
        matches!(shoal::get_timeout(&r, PATIENCE), Err(Error::Unschedulable { resource, available, .. }) if resource == "tpu" && available == 0.0)
    );
}

#[test]
fn tasks_wait_until_their_resources_are_free() -> anyhow::Result<()> {
    node();
    // Three CPUs, one gpu: the gpu tasks run one at a time, others beside them.
    let gpu: Vec<_> = (0..3).map(|_| hold::options().resource("gpu", 1.0).remote(150)).collect();
    let free = hold::remote(150);
    let spans: Vec<(u64, u64)> = gpu.iter().map(|r| shoal::get_timeout(r, PATIENCE)).collect::<Result<_, _>>()?;
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(!overlap(*a, *b), "gpu tasks overlapped: {a:?} {b:?}");
        }
    }
    shoal::get_timeout(&free, PATIENCE)?;
    // Fractions add up: 2.5 of disk runs two 1.25 tasks at once, not three.
    let disk: Vec<_> = (0..3).map(|_| hold::options().resource("disk", 1.25).remote(300)).collect();
    let spans: Vec<(u64, u64)> = disk.iter().map(|r| shoal::get_timeout(r, PATIENCE)).collect::<Result<_, _>>()?;
    // How many run at the moment each one starts.
    let running_at = |t: u64| spans.iter().filter(|s| s.0 <= t && t < s.1).count();
    assert!(spans.iter().all(|s| running_at(s.0) <= 2), "at most two at once: {spans:?}");
    assert!(spans.iter().any(|s| running_at(s.0) == 2), "two ran at once: {spans:?}");
    Ok(())
}

#[test]
fn a_blocked_task_keeps_its_resources() -> anyhow::Result<()> {
    node();
    let parent = hold_through_a_child::options().resource("gpu", 1.0).remote(300);
    std::thread::sleep(Duration::from_millis(50));
    let other = hold::options().resource("gpu", 1.0).remote(0);
    let (parent, other) = (shoal::get_timeout(&parent, PATIENCE)?, shoal::get_timeout(&other, PATIENCE)?);
    assert!(
        other.0 >= parent.1 || other.1 <= parent.0,
        "the gpu stayed held while its task blocked: {parent:?} {other:?}"
    );
    Ok(())
}
