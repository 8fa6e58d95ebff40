//! `shoal start` and `shoal stop`, run as a user would: a standalone node
//! that outlives the command that started it, refuses a second start,
//! serves a driver connecting by the address it printed (this test, whose
//! binary is the node's worker program), and goes away whole on `stop`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use shoal::{Config, Error, SharedArray};

#[shoal::remote]
fn triple(n: u64) -> u64 {
    n * 3
}

#[shoal::remote]
fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

/// Prints for its driver, and has a child print too.
#[shoal::remote]
fn shout(tag: String, i: u32) -> u32 {
    println!("shout {tag} {i}");
    eprintln!("warn {tag} {i}");
    shoal::get(&whisper::remote(tag, i)).expect("the whisper")
}

#[shoal::remote]
fn whisper(tag: String, i: u32) -> u32 {
    println!("whisper {tag} {i}");
    i
}

const DRIVER_ENV: &str = "SHOAL_TEST_DRIVER_TAG";

/// Recursion through nested tasks, `n` deep.
#[shoal::remote]
fn countdown(n: u32) -> u32 {
    if n == 0 { 0 } else { 1 + shoal::get(&countdown::remote(n - 1)).expect("the child") }
}

/// A running sum, in an actor.
pub struct Tally(u64);

#[shoal::actor]
impl Tally {
    /// Starts at `start`.
    pub fn new(start: u64) -> Self {
        Tally(start)
    }

    /// Adds `n`; the sum so far.
    pub fn add(&mut self, n: u64) -> u64 {
        self.0 += n;
        self.0
    }
}

#[shoal::remote]
fn worker_pid() -> u32 {
    std::thread::sleep(Duration::from_millis(5));
    std::process::id()
}

#[test]
#[ignore = "a driver whose output a test reads, run by it as a child process"]
fn driver() -> anyhow::Result<()> {
    let Ok(tag) = std::env::var(DRIVER_ENV) else { return Ok(()) };
    let node = shoal::init(Config::default())?;
    let done: Vec<u32> = shoal::get_all(&(0..20).map(|i| shout::remote(tag.clone(), i)).collect::<Vec<_>>())?;
    assert_eq!(done.iter().sum::<u32>(), 190);
    // The rest of the API: nested recursion deeper than the workers, an actor.
    assert_eq!(shoal::get(&countdown::remote(12))?, 12);
    let tally = Tally::remote(10);
    tally.add(5);
    assert_eq!(shoal::get(&tally.add(1))?, 16);
    // The workers running this binary's image, and those that ran its tasks.
    let me = std::fs::read_link("/proc/self/exe")?;
    let mine: Vec<String> = node
        .status()?
        .workers
        .iter()
        .filter(|w| std::fs::read_link(format!("/proc/{}/exe", w.pid)).is_ok_and(|exe| exe == me))
        .map(|w| w.pid.to_string())
        .collect();
    let ran: std::collections::BTreeSet<u32> =
        shoal::get_all(&(0..4).map(|_| worker_pid::remote()).collect::<Vec<_>>())?.into_iter().collect();
    println!("MINE {}", mine.join(" "));
    println!("RAN {}", ran.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    // The relay is asynchronous: wait for the last lines before going.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn shoal_cli(args: &[&str], socket_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .arg("--socket-dir")
        .arg(socket_dir)
        .env_remove(shoal::ADDRESS_ENV)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run shoal")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[test]
fn a_standalone_node_serves_drivers_until_stopped() -> anyhow::Result<()> {
    let socket_dir = std::env::temp_dir().join(format!("shoal-cli-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&socket_dir);
    std::fs::create_dir_all(&socket_dir)?;
    let program = std::env::current_exe()?.display().to_string();
    // A free port for the metrics (bound and let go: a race only with
    // another program taking it meanwhile).
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let start = [
        "start",
        "--worker-program",
        &program,
        "--workers",
        "2",
        "--store-bytes",
        "134217728",
        "--metrics-addr",
        &metrics_addr,
    ];

    let started = shoal_cli(&start, &socket_dir);
    let stdout = text(&started.stdout);
    assert!(started.status.success(), "start failed: {stdout}{}", text(&started.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let address = PathBuf::from(last.strip_prefix("SHOAL_ADDRESS=").unwrap_or_else(|| panic!("last line {last:?}")));
    assert!(address.exists(), "the node's socket {}", address.display());

    // One node at a time.
    let again = shoal_cli(&start, &socket_dir);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already running"), "{}", text(&again.stderr));

    // A driver connects by that address: tasks, arrays read in place.
    let node = shoal::init(Config::default().address(&address))?;
    assert_eq!(shoal::get(&triple::remote(14))?, 42);
    let a = shoal::put(Array1::from_elem(10_000, 2.0f64))?;
    assert_eq!(shoal::get(&total::remote(&a))?, 20_000.0);
    let workers = node.worker_pids();
    assert_eq!(workers.len(), 2);

    // What it does, asked without an address (the one node this user runs).
    let status = shoal_cli(&["status", "--json"], &socket_dir);
    assert!(status.status.success(), "status failed: {}", text(&status.stderr));
    let status: shoal::NodeStatus = serde_json::from_slice(&status.stdout)?;
    assert!(status.standalone && status.socket == address, "{status:?}");
    assert_eq!(status.drivers.len(), 1, "this test is its driver: {status:?}");
    assert_eq!(status.drivers[0].pid, std::process::id());
    assert!(status.drivers[0].references >= 1, "it holds `a`: {status:?}");
    assert_eq!(status.tasks.finished, 2);
    let listed = shoal_cli(&["status"], &socket_dir);
    let listed = text(&listed.stdout);
    assert!(listed.contains("(standalone)") && listed.contains(&format!("pid {}", std::process::id())), "{listed}");
    // Its metrics, scraped over HTTP as Prometheus would.
    let scraped = http_get(&metrics_addr, "/metrics")?;
    assert!(scraped.starts_with("HTTP/1.1 200 OK"), "{scraped}");
    assert!(scraped.contains("shoal_drivers 1") && scraped.contains("shoal_tasks_finished_total 2"), "{scraped}");
    assert!(http_get(&metrics_addr, "/elsewhere")?.starts_with("HTTP/1.1 404"));

    // Two more drivers at once: each reads its own tasks' lines (its
    // tasks' children's too), and only those.
    let drivers: Vec<_> = ["alpha", "beta"].iter().map(|tag| spawn_driver(tag, &address)).collect();
    for (tag, child) in ["alpha", "beta"].into_iter().zip(drivers) {
        let output = child.wait_with_output()?;
        let (out, err) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "driver {tag}: {out}{err}");
        let other = if tag == "alpha" { "beta" } else { "alpha" };
        for i in 0..20 {
            assert!(
                out.lines().any(|l| l.contains("(shout pid=") && l.ends_with(&format!("shout {tag} {i}"))),
                "{out}"
            );
            assert!(out.lines().any(|l| l.contains("pid=") && l.ends_with(&format!("whisper {tag} {i}"))), "{out}");
            assert!(err.lines().any(|l| l.contains("(shout pid=") && l.ends_with(&format!("warn {tag} {i}"))), "{err}");
        }
        assert!(!out.contains(other) && !err.contains(other), "driver {tag} got {other}'s lines:\n{out}{err}");
    }
    let log = std::fs::read_to_string(socket_dir.join(format!("shoal-node-{}.log", nix::unistd::geteuid())))?;
    assert!(!log.contains("shout alpha") && !log.contains("warn beta"), "the node kept a driver's lines:\n{log}");
    drop(a);

    // Stop: the node, its workers and its directories go.
    let stopped = shoal_cli(&["stop"], &socket_dir);
    assert!(stopped.status.success(), "stop failed: {}", text(&stopped.stderr));
    assert!(text(&stopped.stdout).contains("stopped the shoal node"), "{}", text(&stopped.stdout));
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|&w| alive(w)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(workers.iter().all(|&w| !alive(w)), "its workers are gone");
    assert!(!address.parent().expect("a socket directory").exists(), "its socket directory is gone");
    // The driver finds its node gone.
    assert!(matches!(shoal::get(&triple::remote(1)), Err(Error::NodeStopped)));
    drop(node);
    // Nothing left to stop.
    let none = shoal_cli(&["stop"], &socket_dir);
    assert!(!none.status.success());
    assert!(text(&none.stderr).contains("no shoal node is running"), "{}", text(&none.stderr));
    let _ = std::fs::remove_dir_all(&socket_dir);
    Ok(())
}

/// One HTTP/1.1 `GET`, its whole answer.
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Start the `driver` test as a driver of the node at `address`, its
/// output captured.
fn spawn_driver(tag: &str, address: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "driver", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(DRIVER_ENV, tag)
        .env(shoal::ADDRESS_ENV, address)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a driver")
}

/// Run the `driver` test as a driver of the node at `address`.
fn run_driver(tag: &str, address: &Path) -> Output {
    spawn_driver(tag, address).wait_with_output().expect("run a driver")
}

#[test]
fn without_a_worker_program_each_driver_runs_on_its_own_executable() -> anyhow::Result<()> {
    let socket_dir = std::env::temp_dir().join(format!("shoal-cli-own-exe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&socket_dir);
    std::fs::create_dir_all(&socket_dir)?;
    // The node's own pool runs the `shoal` binary; this test's drivers are
    // built from other code.
    let started = shoal_cli(&["start", "--workers", "1"], &socket_dir);
    let stdout = text(&started.stdout);
    assert!(started.status.success(), "start failed: {stdout}{}", text(&started.stderr));
    let address =
        PathBuf::from(stdout.lines().last().and_then(|l| l.strip_prefix("SHOAL_ADDRESS=")).expect("an address"));

    let output = run_driver("solo", &address);
    let out = text(&output.stdout);
    assert!(output.status.success(), "the driver failed: {out}{}", text(&output.stderr));
    let pids = |prefix: &str| -> Vec<u32> {
        let line = out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("{prefix}in {out}"));
        line.split_whitespace().map(|p| p.parse().expect("a pid")).collect()
    };
    let (mine, ran) = (pids("MINE "), pids("RAN "));
    assert!(!mine.is_empty(), "workers of the driver's own image: {out}");
    assert!(ran.iter().all(|p| mine.contains(p)), "its tasks ran there: {ran:?} {mine:?}");
    assert!(out.contains("(shout pid="), "its workers' output reached it: {out}");
    // Its workers go once no driver of its program is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mine.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(mine.iter().all(|&p| !alive(p)), "the driver's workers stopped with it");
    // Two drivers of one build at once share the program's workers; both finish.
    let both: Vec<_> = ["one", "two"].iter().map(|tag| spawn_driver(tag, &address)).collect();
    for child in both {
        let output = child.wait_with_output()?;
        assert!(output.status.success(), "{}", text(&output.stdout));
    }
    let stopped = shoal_cli(&["stop"], &socket_dir);
    assert!(stopped.status.success(), "stop failed: {}", text(&stopped.stderr));
    let _ = std::fs::remove_dir_all(&socket_dir);
    Ok(())
}

#[test]
fn start_with_a_program_that_is_no_shoal_program_says_so() {
    let dir = std::env::temp_dir().join(format!("shoal-cli-notshoal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a socket dir");
    let output = shoal_cli(&["start", "--worker-program", "/bin/true"], &dir);
    assert!(!output.status.success());
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(said.contains("does not describe itself"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
