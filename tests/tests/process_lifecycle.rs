//! Worker processes live and die with their node: dropping the guard stops
//! them, `kill -9` of the driver leaves no worker and no shared memory behind,
//! and a worker that dies mid-task is replaced and its task retried.
//!
//! `shoal::init` is process-global, so the tests that start a node in this
//! process take [`serial`] first; none of them uses `shared_node()`.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shoal_tests::wait_until;

#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

#[shoal::remote]
fn sleep_then_double(ms: u64, n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    n * 2
}

/// Kills its worker the first time (when `marker` does not exist yet), then
/// answers with the pid of the worker that ran it.
#[shoal::remote]
fn die_once(marker: String) -> u32 {
    if std::fs::OpenOptions::new().write(true).create_new(true).open(&marker).is_ok() {
        std::process::abort();
    }
    std::process::id()
}

#[shoal::remote]
fn always_abort(_n: u32) -> u32 {
    std::process::abort()
}

const GRACE: Duration = Duration::from_secs(5);
const TASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Serializes the tests that run a node inside this process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> shoal::Config {
    shoal::Config::default().workers(2).store_bytes(64 << 20)
}

/// The process state letter from `/proc/<pid>/stat`, `None` if there is no
/// such process.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// No such process, or only its zombie (no memory, no descriptors) is left:
/// workers whose driver was killed are reparented to a pid 1 that may not
/// reap them.
fn is_gone(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return true;
    }
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

fn all_gone(pids: &[u32]) -> bool {
    pids.iter().all(|&p| is_gone(p))
}

/// Gone and reaped: not even a zombie is left. Workers are children of this
/// process, so the node must wait for them.
fn is_reaped(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None) == Err(nix::errno::Errno::ESRCH)
}

fn all_reaped(pids: &[u32]) -> bool {
    pids.iter().all(|&p| is_reaped(p))
}

fn describe(pids: &[u32]) -> Vec<(u32, Option<char>)> {
    pids.iter().map(|&p| (p, proc_state(p))).collect()
}

const ARENA_NAME: &str = "/memfd:shoal-arena";

/// Inode numbers of the shoal arenas process `pid` holds, as descriptors or
/// mappings, with what holds each.
fn arena_holds(pid: &str) -> Vec<(u64, String)> {
    let mut found = Vec::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let is_arena = std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with(ARENA_NAME));
            if is_arena {
                if let Ok(meta) = std::fs::metadata(fd.path()) {
                    found.push((std::os::unix::fs::MetadataExt::ino(&meta), format!("fd {}", fd.path().display())));
                }
            }
        }
    }
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        for line in maps.lines().filter(|l| l.contains(ARENA_NAME)) {
            // address perms offset dev inode path
            if let Some(inode) = line.split_whitespace().nth(4).and_then(|i| i.parse().ok()) {
                found.push((inode, format!("mapping `{line}`")));
            }
        }
    }
    found
}

/// Every process on the machine still holding one of `inodes`.
fn holders_anywhere(inodes: &HashSet<u64>) -> Vec<String> {
    let mut holders = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return holders };
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        for (inode, what) in arena_holds(pid) {
            if inodes.contains(&inode) {
                holders.push(format!("pid {pid}: {what}"));
            }
        }
    }
    holders
}

fn inodes_of(pid: u32) -> HashSet<u64> {
    arena_holds(&pid.to_string()).into_iter().map(|(inode, _)| inode).collect()
}

#[test]
fn dropping_the_guard_stops_every_worker() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shoal::init(config())?;
    assert_eq!(shoal::get_timeout(&double::remote(21), TASK_TIMEOUT)?, 42);
    let pids = node.worker_pids();
    assert_eq!(pids.len(), 2, "two workers connected");
    assert!(matches!(shoal::init(config()), Err(shoal::Error::AlreadyInitialized)), "a second init while one runs");
    assert!(pids.iter().all(|&p| !is_gone(p)), "workers alive while the node runs: {:?}", describe(&pids));
    let socket_dir = node.socket_path().parent().expect("socket has a directory").to_path_buf();
    assert!(socket_dir.is_dir());
    let arena = inodes_of(std::process::id());
    assert!(!arena.is_empty(), "the driver maps its arena while the node runs");

    drop(node);

    assert!(
        wait_until(GRACE, || all_reaped(&pids)),
        "workers not stopped and reaped after drop: {:?}",
        describe(&pids)
    );
    assert!(!socket_dir.exists(), "socket directory {} left behind", socket_dir.display());
    assert!(
        wait_until(GRACE, || inodes_of(std::process::id()).is_disjoint(&arena)),
        "the driver still holds its arena after drop: {:?}",
        holders_anywhere(&arena)
    );
    assert!(matches!(shoal::put(1u8), Err(shoal::Error::NotInitialized)), "put after drop must say NotInitialized");

    let again = shoal::init(config())?;
    assert_eq!(shoal::get_timeout(&double::remote(5), TASK_TIMEOUT)?, 10);
    let new_pids = again.worker_pids();
    assert_eq!(new_pids.len(), 2);
    assert!(new_pids.iter().all(|p| !pids.contains(p)), "a fresh node has fresh workers");
    drop(again);
    assert!(
        wait_until(GRACE, || all_reaped(&new_pids)),
        "second node's workers survived drop: {:?}",
        describe(&new_pids)
    );
    assert!(matches!(shoal::put(1u8), Err(shoal::Error::NotInitialized)));
    Ok(())
}

/// A task still running when the guard drops: its ref must report
/// `NodeStopped`, as `Shoal`'s documentation says, and keep saying it.
#[test]
fn a_pending_ref_that_outlives_the_node_fails_with_node_stopped() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shoal::init(config())?;
    let pids = node.worker_pids();
    let slow = sleep_then_double::remote(1500u64, 1u64);
    std::thread::sleep(Duration::from_millis(100));
    // One thread is blocked in `get` while the node shuts down; the main thread
    // asks again once the guard is gone. Both must see `NodeStopped`.
    let during = std::thread::scope(|s| {
        let waiter = s.spawn(|| shoal::get_timeout(&slow, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
        drop(node);
        waiter.join().expect("waiter thread")
    });
    assert!(matches!(during, Err(shoal::Error::NodeStopped)), "get blocked across drop: {during:?}");
    let started = Instant::now();
    let after = shoal::get_timeout(&slow, GRACE);
    assert!(started.elapsed() < Duration::from_secs(1), "get of a stopped node's ref must not wait");
    assert!(matches!(after, Err(shoal::Error::NodeStopped)), "get after drop: {after:?}");
    drop(slow);
    assert!(wait_until(GRACE, || all_gone(&pids)), "workers still running after drop: {:?}", describe(&pids));
    Ok(())
}

/// Kills the child on drop, so a failing test leaves no sleeping driver.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_of_the_driver_leaves_no_worker_no_shared_memory_and_no_spill_file() -> anyhow::Result<()> {
    let spill_base = TempDir(marker_path("kill-spill"));
    std::fs::create_dir_all(&spill_base.0)?;
    let child = Command::new(env!("CARGO_BIN_EXE_kill_target"))
        .arg(&spill_base.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut driver = KillOnDrop(child);
    let driver_pid = driver.0.id();
    let stdout = driver.0.stdout.take().expect("piped stdout");
    // Read the ready line on a thread so that a hung driver fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow::anyhow!("kill_target printed no ready line in 60 s"))?;
    let mut words = line.split_whitespace();
    anyhow::ensure!(words.next() == Some("ready"), "unexpected line from kill_target: {line:?}");
    let socket = PathBuf::from(words.next().ok_or_else(|| anyhow::anyhow!("no socket in {line:?}"))?);
    let workers: Vec<u32> = words.map(str::parse).collect::<Result<_, _>>()?;
    assert_eq!(workers.len(), 2, "two worker pids in {line:?}");
    assert!(socket.exists(), "the driver's socket exists while it runs");

    // The checks below can see what they look for: the driver and every worker
    // are alive and hold the arena now.
    let arena = inodes_of(driver_pid);
    assert!(!arena.is_empty(), "the driver holds its arena");
    for &w in &workers {
        assert!(!is_gone(w), "worker {w} alive before the kill");
        // A worker maps the arena right after its handshake, which `init`
        // does not wait for.
        assert!(wait_until(GRACE, || !inodes_of(w).is_disjoint(&arena)), "worker {w} maps the driver's arena");
    }

    let user_dir = spill_base.0.join(format!("shoal-{}", nix::unistd::geteuid().as_raw()));
    let spill_dir = std::fs::read_dir(&user_dir)?.flatten().map(|e| e.path()).next().expect("a spill directory");
    assert!(!spill_files_open(&spill_dir).is_empty(), "the driver has spill files open");

    kill(Pid::from_raw(driver_pid as i32), Signal::SIGKILL)?;
    let status = driver.0.wait()?;
    assert!(!status.success(), "the driver was killed: {status}");
    let mut open = Vec::new();
    let closed = wait_until(GRACE, || {
        open = spill_files_open(&spill_dir);
        open.is_empty()
    });
    assert!(closed, "spill files outlived kill -9 of their driver: {open:?}");
    assert_eq!(std::fs::read_dir(&spill_dir)?.count(), 0, "no spill file has a name");
    {
        // The next node of the same user removes the empty directory.
        let _serial = serial();
        let node = shoal::init(config().spill_dir(&spill_base.0))?;
        assert!(!spill_dir.exists(), "{} left after the next init", spill_dir.display());
        drop(node);
    }

    assert!(
        wait_until(GRACE, || all_gone(&workers)),
        "workers outlived kill -9 of their driver: {:?}",
        describe(&workers)
    );
    let mut holders = Vec::new();
    let released = wait_until(GRACE, || {
        holders = holders_anywhere(&arena);
        holders.is_empty()
    });
    assert!(released, "the arena outlived kill -9 of its driver: {holders:?}");
    Ok(())
}

/// Descriptors of any process that point into `dir` (unlinked spill files
/// read as `<dir>/#123 (deleted)` or `<dir>/spill-0 (deleted)`).
fn spill_files_open(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut open = Vec::new();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        for fd in std::fs::read_dir(proc_entry.path().join("fd")).into_iter().flatten().flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy().into_owned();
                if target.starts_with(&prefix) {
                    open.push(format!("{}: {target}", fd.path().display()));
                }
            }
        }
    }
    open
}

fn marker_path(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("shoal-test-{tag}-{}-{nanos}", std::process::id()))
}

/// Removes a file on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wait_for_pool(node: &shoal::Shoal, before: &HashSet<u32>) -> HashSet<u32> {
    let mut now = HashSet::new();
    let replaced = wait_until(GRACE, || {
        now = node.worker_pids().into_iter().collect();
        node.live_workers() == 2 && now != *before
    });
    assert!(replaced, "pool not back to 2 fresh workers: had {before:?}, now {now:?} ({} live)", node.live_workers());
    now
}

#[test]
fn a_worker_killed_mid_task_is_replaced_and_the_task_retried() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shoal::init(config())?;
    let before: HashSet<u32> = node.worker_pids().into_iter().collect();
    assert_eq!(before.len(), 2);
    let marker = RemoveOnDrop(marker_path("die-once"));

    let ran_in = shoal::get_timeout(&die_once::remote(marker.0.to_string_lossy().into_owned()), TASK_TIMEOUT)?;
    assert!(marker.0.exists(), "the first attempt ran (and killed its worker)");

    let after = wait_for_pool(&node, &before);
    let died: Vec<u32> = before.difference(&after).copied().collect();
    assert_eq!(died.len(), 1, "exactly one worker died: before {before:?}, after {after:?}");
    assert!(
        wait_until(GRACE, || is_reaped(died[0])),
        "the aborted worker {} is reaped: {:?}",
        died[0],
        describe(&died)
    );
    assert_ne!(ran_in, died[0], "the retry ran in another worker");
    assert!(after.contains(&ran_in), "the retry ran in a live worker ({ran_in} not in {after:?})");
    assert_eq!(shoal::get_timeout(&double::remote(4), TASK_TIMEOUT)?, 8, "the pool keeps working");
    Ok(())
}

#[test]
fn a_task_whose_worker_always_dies_fails_with_worker_died() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shoal::init(config())?;
    let before: HashSet<u32> = node.worker_pids().into_iter().collect();

    match shoal::get_timeout(&always_abort::options().max_retries(0).remote(1), TASK_TIMEOUT) {
        Err(shoal::Error::WorkerDied { function, pid, attempts, .. }) => {
            assert!(function.contains("always_abort"), "WorkerDied names the function: {function}");
            assert_eq!(attempts, 1, "max_retries(0) starts the task once");
            assert!(before.contains(&pid), "WorkerDied names the worker that died: {pid} not in {before:?}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    let after = wait_for_pool(&node, &before);
    assert_eq!(shoal::get_timeout(&double::remote(6), TASK_TIMEOUT)?, 12, "the pool keeps working after a death");

    // With the default three retries the task is started four times.
    match shoal::get_timeout(&always_abort::remote(2), TASK_TIMEOUT) {
        Err(shoal::Error::WorkerDied { function, attempts, .. }) => {
            assert!(function.contains("always_abort"), "WorkerDied names the function: {function}");
            assert_eq!(attempts, 4, "default max_retries is 3");
        }
        other => panic!("expected WorkerDied after retries, got {other:?}"),
    }
    wait_for_pool(&node, &after);
    assert_eq!(shoal::get_timeout(&double::remote(7), TASK_TIMEOUT)?, 14, "the pool keeps working after retries");
    drop(node);
    Ok(())
}

/// A directory removed (with everything in it) on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connect to the first node socket that appears under `base` and send a
/// `Hello` of another protocol version; returns when the node answered and
/// what it answered.
fn stray_client(base: &std::path::Path, deadline: Instant) -> Option<(Instant, shoal_ipc::HandshakeReply)> {
    use std::io::Write;
    let parent = base.join(format!("shoal-{}", nix::unistd::geteuid().as_raw()));
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let Ok(stream) = std::os::unix::net::UnixStream::connect(entry.path().join("node.sock")) else { continue };
            stream.set_read_timeout(Some(GRACE)).ok()?;
            let hello = shoal_ipc::Hello {
                magic: shoal_ipc::handshake::HELLO_MAGIC,
                protocol: shoal_ipc::PROTOCOL_VERSION + 1000,
                pid: std::process::id(),
                build: 0,
                token: 0,
                table: Vec::new(),
            };
            let mut bytes = Vec::new();
            shoal_ipc::encode_frame(&hello, &mut bytes).ok()?;
            (&stream).write_all(&bytes).ok()?;
            let reply = shoal_ipc::FrameReader::new(&stream).read().ok()?;
            return Some((Instant::now(), reply));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// A stray client that a node refuses while `init` waits for its workers is
/// that client's problem: `init` still succeeds.
#[test]
fn a_stray_client_refused_during_init_does_not_fail_init() -> anyhow::Result<()> {
    let _serial = serial();
    let base = TempDir(marker_path("stray"));
    std::fs::create_dir(&base.0)?;
    // Workers that start 300 ms late, so that the stray client surely
    // connects while `init` is still waiting for them.
    let script = base.0.join("slow-worker.sh");
    let exe = std::env::current_exe()?;
    std::fs::write(
        &script,
        format!("#!/bin/sh\n[ -n \"$SHOAL_TEST_PROBE\" ] && exit 0\nsleep 0.3\nexec '{}' \"$@\"\n", exe.display()),
    )?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // Run it once: after that no process holds it open for writing (a fork in
    // another test thread may have inherited our descriptor until its exec),
    // so the node's exec cannot fail with ETXTBSY.
    let ran =
        wait_until(GRACE, || Command::new(&script).env("SHOAL_TEST_PROBE", "1").status().is_ok_and(|s| s.success()));
    assert!(ran, "cannot run {}", script.display());

    let deadline = Instant::now() + Duration::from_secs(20);
    let (init, init_done, stray) = std::thread::scope(|s| {
        let stray = s.spawn(|| stray_client(&base.0, deadline));
        let init = shoal::init(config().socket_dir(&base.0).worker_program(&script));
        let init_done = Instant::now();
        (init, init_done, stray.join().expect("stray client thread"))
    });
    let (refused_at, reply) = stray.expect("the stray client reached the node");
    assert!(matches!(reply, shoal_ipc::HandshakeReply::Refused(_)), "the stray client is refused: {reply:?}");
    assert!(
        refused_at < init_done,
        "the stray client was refused while init was running (else this test proves nothing)"
    );
    let node = match init {
        Ok(node) => node,
        Err(e) => panic!("init failed because of a stray client: {e}"),
    };
    assert_eq!(node.live_workers(), 2);
    assert_eq!(shoal::get_timeout(&double::remote(8), TASK_TIMEOUT)?, 16);
    drop(node);
    Ok(())
}
