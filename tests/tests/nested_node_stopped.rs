//! A nested call from a task whose node went away returns `NodeStopped`,
//! never hangs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal::Error;

#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

fn outcome<T: std::fmt::Debug>(r: shoal::Result<T>) -> String {
    match r {
        Err(Error::NodeStopped) => "NodeStopped".into(),
        other => format!("{other:?}"),
    }
}

/// Says it started, waits for the node to go, then calls the API.
#[shoal::remote]
fn outlive_the_node(dir: PathBuf) -> u64 {
    std::fs::write(dir.join("started"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("stopping").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let child = double::remote(21);
    let report = [
        format!("get {}", outcome(shoal::get(&child))),
        format!("put {}", outcome(shoal::put(7u8))),
        format!("wait {}", outcome(shoal::wait(std::slice::from_ref(&child), 1, None).map(|(r, _)| r.len()))),
    ];
    std::fs::write(dir.join("report"), report.join("\n")).unwrap();
    0
}

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn nested_calls_after_the_node_stopped_return_node_stopped() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("shoal-nested-stopped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let node = shoal::init(shoal::Config::default().workers(1).store_bytes(32 << 20))?;
    let r = outlive_the_node::remote(dir.clone());
    assert!(wait_for(&dir.join("started"), Duration::from_secs(20)), "the task started");
    std::fs::write(dir.join("stopping"), b"")?;
    drop(node); // waits up to 2 s for the worker, then kills it
    assert!(matches!(shoal::get(&r), Err(Error::NodeStopped | Error::NotInitialized)));
    assert!(wait_for(&dir.join("report"), Duration::from_secs(5)), "the task finished its calls");
    let report = std::fs::read_to_string(dir.join("report"))?;
    assert_eq!(report, "get NodeStopped\nput NodeStopped\nwait NodeStopped", "{report}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
