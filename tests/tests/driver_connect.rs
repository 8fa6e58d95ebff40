//! Drivers connected to a node in another process (`Config::address`), as
//! to a standalone node: the whole API over the node's socket, arrays read
//! in place through its arena, what the node reports, and a driver that
//! exits or is killed releasing everything it held while others go on.
//!
//! The node's host is this test binary run again as a child process (the
//! ignored `node_host` test), so its workers are this binary too.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use shoal::{Config, Error, ObjectRef, SharedArray};
use shoal_tests::wait_until;

const HOST_ENV: &str = "SHOAL_TEST_NODE_HOST";
const DRIVER_ENV: &str = "SHOAL_TEST_SECOND_DRIVER";
const PATIENCE: Duration = Duration::from_secs(30);

#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

#[shoal::remote]
fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

#[shoal::remote]
fn pid() -> u32 {
    std::process::id()
}

/// Runs until cancelled (or a minute), then writes `marker` (if not empty).
#[shoal::remote]
fn until_cancelled(marker: String) -> u8 {
    let started = Instant::now();
    while !shoal::is_cancelled() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !marker.is_empty() && shoal::is_cancelled() {
        std::fs::write(marker, b"cancelled").expect("write the marker");
    }
    1
}

#[shoal::remote(streaming)]
fn count(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// Counts.
pub struct Tally {
    n: u64,
}

#[shoal::actor]
impl Tally {
    /// Starts at `n`.
    pub fn new(n: u64) -> Self {
        Tally { n }
    }

    /// Adds `k`; the new count.
    pub fn add(&mut self, k: u64) -> u64 {
        self.n += k;
        self.n
    }
}

/// The node's host: started by [`host`] with the path to write the node's
/// address to; serves until its stdin closes (when this test process ends).
#[test]
#[ignore = "the node host of the other tests, run by them as a child process"]
fn node_host() -> anyhow::Result<()> {
    let Some(ready) = std::env::var_os(HOST_ENV) else { return Ok(()) };
    let node = shoal::init(Config::default().workers(2).store_bytes(128 << 20))?;
    println!("{}", node.socket_path().display());
    std::fs::write(ready, node.socket_path().as_os_str().as_encoded_bytes())?;
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    Ok(())
}

/// A second driver (run by a test as a child process): connects, holds
/// objects and a running task, then ends as the environment says.
#[test]
#[ignore = "a second driver, run by a test as a child process"]
fn second_driver() -> anyhow::Result<()> {
    let Some(how) = std::env::var_os(DRIVER_ENV) else { return Ok(()) };
    let marker = std::env::var("SHOAL_TEST_MARKER")?;
    let _driver = shoal::init(Config::default())?; // SHOAL_ADDRESS is set
    let held: Vec<ObjectRef<Vec<u64>>> = (0..50).map(|i| shoal::put(vec![i; 1000])).collect::<Result<_, _>>()?;
    let big = shoal::put(Array1::from_elem(100_000, 1.0f64))?;
    let running = until_cancelled::remote(marker);
    assert_eq!(shoal::get(&double::remote(4))?, 8);
    println!("holding");
    if how == "kill" {
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL)?;
    }
    drop((held, big, running));
    Ok(())
}

/// The host's child process and its node's address, started once.
fn host() -> &'static (Child, PathBuf) {
    static HOST: OnceLock<(Child, PathBuf)> = OnceLock::new();
    HOST.get_or_init(|| {
        let ready = std::env::temp_dir().join(format!("shoal-host-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "node_host", "--ignored", "--nocapture"])
            .env(HOST_ENV, &ready)
            .env_remove(shoal::ADDRESS_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the node's host");
        assert!(wait_until(PATIENCE, || ready.exists()), "the host started no node");
        std::thread::sleep(Duration::from_millis(20));
        let address = PathBuf::from(std::fs::read_to_string(&ready).expect("the node's address"));
        let _ = std::fs::remove_file(&ready);
        (child, address)
    })
}

/// This process as a driver of the host's node (one connection for all tests).
fn driver() -> &'static shoal::Shoal {
    let (_, address) = host();
    shoal::init_once(Config::default().address(address)).expect("connect to the host's node")
}

#[test]
fn a_connected_driver_uses_the_whole_api() -> anyhow::Result<()> {
    driver();
    assert_eq!(shoal::get(&double::remote(21))?, 42);
    let x = double::remote(1);
    assert_eq!(shoal::get(&double::remote(&x))?, 4);
    // Arrays go through the node's arena; tasks and this driver read them in place.
    let a = shoal::put(Array1::from_elem(1 << 16, 0.5f64))?;
    assert_eq!(shoal::get(&total::remote(&a))?, (1 << 15) as f64);
    let view: SharedArray<f64, Ix1> = shoal::get_shared(&a)?;
    assert_eq!(view.view().len(), 1 << 16);
    let many: Vec<ObjectRef<u64>> = (0..100).map(double::remote).collect();
    assert_eq!(shoal::get_all(&many)?, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    let (ready, _) = shoal::wait(&many, 100, Some(PATIENCE))?;
    assert_eq!(ready.len(), 100);
    // Tasks run on the node's workers, not here.
    assert_ne!(shoal::get(&pid::remote())?, std::process::id());
    let tally = Tally::remote(1);
    assert_eq!(shoal::get(&tally.add(2))?, 3);
    let items: Vec<u64> = count::remote(5).map(|r| shoal::get(&r?)).collect::<Result<_, _>>()?;
    assert_eq!(items, [0, 1, 2, 3, 4]);
    let slow = until_cancelled::remote(String::new());
    shoal::cancel(&slow)?;
    assert!(matches!(shoal::get_timeout(&slow, PATIENCE), Err(Error::TaskCancelled { .. })));
    Ok(())
}

#[test]
fn the_node_reports_to_a_connected_driver() -> anyhow::Result<()> {
    let node = driver();
    assert_eq!(node.live_workers(), 2);
    assert_eq!(node.worker_pids().len(), 2);
    assert!(!node.worker_pids().contains(&std::process::id()), "a driver is not a worker");
    let before = node.object_count();
    let kept = shoal::put(vec![7u8; 1 << 20])?;
    assert!(node.object_count() > before || node.store_used_bytes() > 0);
    assert!(node.store_stats().capacity >= 128 << 20);
    drop(kept);
    Ok(())
}

/// Run [`second_driver`] as a child process ending as `how`.
fn run_second_driver(how: &str, marker: &std::path::Path) -> anyhow::Result<std::process::ExitStatus> {
    let (_, address) = host();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "second_driver", "--ignored", "--nocapture"])
        .env(DRIVER_ENV, how)
        .env("SHOAL_TEST_MARKER", marker)
        .env(shoal::ADDRESS_ENV, address)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    // (Read to the end: the child's test harness writes after its test.)
    let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    let held = lines.iter().any(|l| l.contains("holding"));
    assert!(held, "the second driver did not get going");
    Ok(child.wait()?)
}

#[test]
fn a_driver_that_exits_or_is_killed_releases_what_it_held() -> anyhow::Result<()> {
    let node = driver();
    for how in ["exit", "kill"] {
        let marker = std::env::temp_dir().join(format!("shoal-driver-{}-{how}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let status = run_second_driver(how, &marker)?;
        assert_eq!(status.success(), how == "exit", "{how}: {status:?}");
        assert!(wait_until(PATIENCE, || marker.exists()), "{how}: its running task was not cancelled");
        let _ = std::fs::remove_file(&marker);
        // Its objects are freed and its running task cancelled: the node
        // holds what the other tests hold, and its workers are free again.
        let freed = wait_until(PATIENCE, || {
            let stats = node.store_stats();
            stats.used_bytes < 1 << 20 && node.live_workers() == 2
        });
        assert!(freed, "{how}: the node still holds {:?}", node.store_stats());
        let t = Instant::now();
        let again: Vec<ObjectRef<u64>> = (0..4).map(double::remote).collect();
        assert_eq!(shoal::get_all(&again)?, [0, 2, 4, 6], "{how}: the node serves on");
        assert!(t.elapsed() < PATIENCE);
    }
    Ok(())
}
