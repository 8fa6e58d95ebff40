//! The worker pool: spawning and reaping worker processes (the supervisor
//! thread), accepting connections (the listener thread), and one reader
//! thread per connection.
//!
//! Design notes
//! - Workers are spawned from one long-lived supervisor thread, because
//!   `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits.
//! - The worker program is `/proc/self/exe` unless configured: re-executing
//!   the exact binary image the driver runs, even if the file on disk was
//!   rebuilt since.
//! - A connection must pass `SO_PEERCRED` (same uid) and the handshake before
//!   it is a worker. Anything malformed closes that one connection with a
//!   logged reason; the node keeps serving everyone else.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::logs::{self, Label, Sink};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use shoal_ipc::{FrameError, FrameReader, HandshakeReply, Hello, Welcome, encode_frame, handshake::HELLO_MAGIC};

use crate::error::Error;
use crate::node::Node;
use crate::node::conn::{Incoming, WorkerConn};
use crate::node::programs::Program;
use crate::node::state::{Death, WorkerSlot};
use crate::protocol::{MONITOR_TOKEN, RefOp, ToClient, ToNode};

/// Environment variable that puts a process into worker mode: the node's
/// socket path.
pub(crate) const ENV_SOCKET: &str = "SHOAL_WORKER_SOCKET";
/// Environment variable with the pid the worker must have as parent.
pub(crate) const ENV_PARENT: &str = "SHOAL_WORKER_PARENT";
/// Environment variable with the node's worker token (see `Hello::token`).
pub(crate) const ENV_TOKEN: &str = "SHOAL_WORKER_TOKEN";

/// Longest run time a worker's report is taken at (an hour): the node's
/// averages and sums of run times never overflow.
const MAX_REPORTED_RUN_NS: u64 = 3_600_000_000_000;

/// Commands to the supervisor thread.
pub(crate) enum SupervisorCmd {
    /// A worker's connection ended; `dropped` says why, if the node ended it
    /// (the process is then killed). The supervisor reaps the process,
    /// answers how it ended, and starts a replacement.
    Lost { pid: u32, dropped: Option<String>, reply: Sender<Death> },
    /// Start this many extra workers (tasks are blocked in nested calls).
    Spawn(usize),
    /// Start a worker of this program (a driver's built from other code).
    SpawnOf(Arc<Program>),
    /// Start an actor's process, which presents this token, from this
    /// program (`None`: the node's own).
    SpawnActor(u64, Option<Arc<Program>>),
    /// Kill this child now (an actor ended by `shoal::kill`).
    Kill(u32),
    /// Stop every worker and exit.
    Shutdown,
}

/// Where workers come from.
pub(crate) struct SpawnPlan {
    pub program: PathBuf,
    pub socket: PathBuf,
    pub workers: usize,
    pub token: u64,
    /// Prefixes a worker's lines on their way to the driver (`None`: not
    /// relayed, `Config::log_to_driver(false)`).
    pub label: Option<Label>,
}

/// How long a worker whose connection closed may take to exit before it is
/// killed, and how long its stderr may stay open after it exited (a
/// process it started may hold the pipe).
const EXIT_GRACE: Duration = Duration::from_secs(1);
const STDERR_GRACE: Duration = Duration::from_millis(200);
/// Lines of a worker's stderr kept for its `WorkerDied` error, and the
/// bytes kept of each.
const TAIL_LINES: usize = 20;
const TAIL_LINE_BYTES: usize = 400;

/// A worker process and the tail of what it writes to stderr.
struct WorkerProcess {
    child: Child,
    stderr: Arc<StderrTail>,
    /// The token of the actor it runs (it is not replaced by the supervisor).
    actor: Option<u64>,
    /// The program it runs (only the node's own, 0, is kept at its size).
    program: u32,
}

/// The last lines a worker wrote to stderr. Its stderr is a pipe that a
/// `shoal-stderr` thread relays to the node's own stderr as it comes (so
/// users see what they would have seen), keeping the tail here.
#[derive(Default)]
struct StderrTail {
    state: Mutex<TailState>,
    ended: Condvar,
}

#[derive(Default)]
struct TailState {
    lines: VecDeque<Vec<u8>>,
    /// The line being written (no newline yet).
    partial: Vec<u8>,
    ended: bool,
}

impl StderrTail {
    fn push(&self, chunk: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (i, piece) in chunk.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                let mut line = std::mem::take(&mut state.partial);
                // A worker's note of what it runs is no line of its own.
                let marker = logs::MARKER.as_bytes();
                let noted = line.windows(marker.len()).position(|w| w == marker);
                if let Some(at) = noted {
                    line.truncate(at);
                }
                if !(noted.is_some() && line.is_empty()) {
                    state.lines.push_back(line);
                    if state.lines.len() > TAIL_LINES {
                        state.lines.pop_front();
                    }
                }
            }
            let room = TAIL_LINE_BYTES.saturating_sub(state.partial.len());
            state.partial.extend_from_slice(&piece[..piece.len().min(room)]);
        }
    }

    fn end(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ended = true;
        self.ended.notify_all();
    }

    /// The tail, once the pipe has closed or `grace` has passed.
    fn wait_for_end(&self, grace: Duration) -> String {
        let deadline = Instant::now() + grace;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.ended {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self.ended.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut lines: Vec<&[u8]> = state.lines.iter().map(Vec::as_slice).collect();
        if !state.partial.is_empty() {
            lines.push(&state.partial);
        }
        lines.iter().map(|l| String::from_utf8_lossy(l)).collect::<Vec<_>>().join("\n")
    }
}

/// Start a worker presenting `token`: the pool's, or an actor's; of the
/// node's own program, or of `program`.
fn spawn_worker(plan: &SpawnPlan, token: u64, program: Option<&Program>) -> std::io::Result<WorkerProcess> {
    let mut cmd = Command::new(program.map_or(&plan.program, |p| &p.path));
    if let Some(program) = program {
        cmd.arg0(&program.name);
    } else if let Ok(exe) = std::env::current_exe() {
        if plan.program == std::path::Path::new("/proc/self/exe") {
            cmd.arg0(exe);
        }
    }
    let stdout = if plan.label.is_some() { Stdio::piped() } else { Stdio::null() };
    if plan.label.is_some() {
        cmd.env(logs::ENV_LABELS, "1");
    }
    let mut child = cmd
        .env(ENV_SOCKET, &plan.socket)
        .env(ENV_PARENT, std::process::id().to_string())
        .env(ENV_TOKEN, token.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    if let Some(pipe) = child.stdout.take() {
        let (label, said) = (plan.label.clone(), logs::Said::default());
        // No relay: the pipe's end is dropped, so the worker's writes fail
        // rather than block on a full pipe.
        let _ = std::thread::Builder::new()
            .name("shoal-stdout".into())
            .spawn(move || logs::relay(pipe, pid, Sink::Stdout, label, said, |_| {}));
    }
    let stderr = Arc::new(StderrTail::default());
    let relay = child.stderr.take().map(|pipe| {
        let (tail, label, said) = (stderr.clone(), plan.label.clone(), logs::Said::default());
        std::thread::Builder::new().name("shoal-stderr".into()).spawn(move || {
            logs::relay(pipe, pid, Sink::Stderr, label, said, |chunk| tail.push(chunk));
            tail.end();
        })
    });
    if !matches!(relay, Some(Ok(_))) {
        // No relay: nothing will read the pipe, so a full pipe would block
        // the worker. (Dropping the pipe end makes its writes fail instead.)
        stderr.end();
    }
    let actor = (token != plan.token && program.is_none_or(|p| p.token != token)).then_some(token);
    Ok(WorkerProcess { child, stderr, actor, program: program.map_or(0, |p| p.index) })
}

/// How an exit status reads in an error: `killed by signal 11 (SIGSEGV)`.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal).map_or("unknown signal", |s| s.as_str());
        let core = if status.core_dumped() { ", core dumped" } else { "" };
        format!("killed by signal {signal} ({name}{core})")
    } else if let Some(code) = status.code() {
        format!("exited with code {code}")
    } else {
        status.to_string()
    }
}

/// Reap a worker whose connection ended and say how it ended.
fn reap(worker: &mut WorkerProcess, dropped: Option<String>) -> Death {
    if dropped.is_some() {
        let _ = worker.child.kill();
    }
    let deadline = Instant::now() + EXIT_GRACE;
    let status = loop {
        match worker.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = worker.child.kill();
                let _ = worker.child.wait();
                break None;
            }
            Err(_) => break None,
        }
    };
    let cause = match (dropped, status) {
        (Some(reason), _) => format!("the node dropped its connection ({reason}) and killed it"),
        (None, Some(status)) => describe_exit(status),
        (None, None) => {
            format!("it closed its connection and was still running {EXIT_GRACE:?} later, so it was killed")
        }
    };
    Death { cause, stderr: worker.stderr.wait_for_end(STDERR_GRACE) }
}

/// The supervisor thread: spawns the pool, replaces workers that die, reaps
/// exits, and on shutdown waits for (then kills) every child.
pub(crate) fn supervise(node: Arc<Node>, plan: SpawnPlan, commands: Receiver<SupervisorCmd>) {
    let mut children: Vec<WorkerProcess> = Vec::new();
    for _ in 0..plan.workers {
        match spawn_worker(&plan, plan.token, None) {
            Ok(child) => children.push(child),
            Err(e) => {
                node.record_refusal(Error::WorkerStartup(format!("cannot start {}: {e}", plan.program.display())))
            }
        }
    }
    loop {
        match commands.recv_timeout(Duration::from_millis(200)) {
            Ok(SupervisorCmd::Lost { pid, dropped, reply }) => {
                let Some(i) = children.iter().position(|c| c.child.id() == pid) else {
                    let _ = reply.send(Death { cause: "its connection closed".into(), stderr: String::new() });
                    continue;
                };
                let mut child = children.swap_remove(i);
                let death = reap(&mut child, dropped);
                if !node.is_stopped() {
                    let what = if child.actor.is_some() { "actor process" } else { "worker" };
                    tracing::warn!("{what} {pid} {}", death.cause);
                }
                let _ = reply.send(death);
                // An extra worker that retired (or died) is not replaced;
                // the node restarts actors itself.
                let own = |c: &WorkerProcess| c.actor.is_none() && c.program == 0;
                let pool = children.iter().filter(|c| own(c)).count();
                if !node.is_stopped() && own(&child) && pool < plan.workers {
                    match spawn_worker(&plan, plan.token, None) {
                        Ok(child) => children.push(child),
                        Err(e) => tracing::error!("cannot start a replacement worker: {e}"),
                    }
                }
            }
            Ok(SupervisorCmd::Spawn(n)) => {
                for _ in 0..n {
                    match spawn_worker(&plan, plan.token, None) {
                        Ok(child) => children.push(child),
                        Err(e) => {
                            tracing::error!("cannot start an extra worker: {e}");
                            node.spawn_failed(0);
                        }
                    }
                }
            }
            Ok(SupervisorCmd::SpawnOf(program)) => match spawn_worker(&plan, program.token, Some(&program)) {
                Ok(child) => children.push(child),
                Err(e) => {
                    tracing::error!("cannot start a worker of {}: {e}", program.name.display());
                    node.spawn_failed(program.index);
                }
            },
            Ok(SupervisorCmd::SpawnActor(token, program)) => match spawn_worker(&plan, token, program.as_deref()) {
                Ok(child) => children.push(child),
                Err(e) => {
                    let path = program.as_ref().map_or(&plan.program, |p| &p.name);
                    let error = Error::WorkerStartup(format!("cannot start {}: {e}", path.display()));
                    node.change_and_dispatch(|state| state.actor_start_failed(token, &error));
                }
            },
            Ok(SupervisorCmd::Kill(pid)) => {
                if let Some(child) = children.iter_mut().find(|c| c.child.id() == pid) {
                    let _ = child.child.kill();
                }
            }
            Ok(SupervisorCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => node.retire_idle_extras(),
        }
        // Reap exits (the status is kept for `reap`); their connections
        // report `Lost` and trigger replacement. An actor's process that
        // exits before its handshake has no connection to report it.
        // A program's worker that exits unknown never connected (or was
        // refused): the program may ask for another, a few times.
        children.retain_mut(|worker| {
            let Ok(Some(status)) = worker.child.try_wait() else { return true };
            let Some(token) = worker.actor else {
                if worker.program == 0 || node.knows_pid(worker.child.id()) {
                    return true;
                }
                tracing::warn!("a worker of program {} {} before its handshake", worker.program, describe_exit(status));
                node.spawn_failed(worker.program);
                node.change_and_dispatch(|_| ());
                return false;
            };
            let error = Error::WorkerStartup(format!("it {} before its handshake", describe_exit(status)));
            !node.change_and_dispatch(|state| state.actor_start_failed(token, &error))
        });
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for worker in &mut children {
        loop {
            match worker.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// The listener thread: accepts connections until the node stops.
pub(crate) fn listen(node: Arc<Node>, listener: UnixListener) {
    for stream in listener.incoming() {
        if node.is_stopped() {
            break;
        }
        match stream {
            Ok(stream) => {
                let node = node.clone();
                let spawned =
                    std::thread::Builder::new().name("shoal-conn".into()).spawn(move || serve_connection(node, stream));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}

fn refuse(stream: &UnixStream, reason: String) {
    let mut buf = Vec::new();
    if encode_frame(&HandshakeReply::Refused(reason), &mut buf).is_ok() {
        let _ = (&*stream).write_all(&buf);
    }
}

/// Check a client's `Hello`; returns the program it runs (or whose workers
/// run a driver's tasks). The error is the refusal to send and log.
fn check_hello(node: &Node, hello: &Hello, peer_pid: i32) -> Result<u32, Error> {
    if hello.magic != HELLO_MAGIC || hello.protocol != shoal_ipc::PROTOCOL_VERSION {
        return Err(Error::WorkerStartup(format!(
            "protocol {} (this node speaks {})",
            hello.protocol,
            shoal_ipc::PROTOCOL_VERSION
        )));
    }
    if hello.pid as i32 != peer_pid {
        return Err(Error::WorkerStartup(format!("hello claims pid {} but the peer is {peer_pid}", hello.pid)));
    }
    if hello.token == MONITOR_TOKEN || (hello.token == 0 && hello.build == node.build_hash) {
        return Ok(0);
    }
    if hello.token == 0 {
        // A driver of other code: with a worker program, it calls what it
        // shares with it (`foreign_functions`); else its tasks run on
        // workers of its own executable.
        return match node.config.worker_program {
            Some(_) => Ok(0),
            None => node.program_for_driver(peer_pid, hello.build),
        };
    }
    // A process the node started (or a stranger): its build must match.
    let (program, build) = node.expected_build(hello.token).unwrap_or((0, node.build_hash));
    if hello.build != build {
        let program = node.worker_program().display().to_string();
        if let Some((missing, _)) = node.table.iter().find(|f| !hello.table.iter().any(|h| h.0 == f.0)) {
            return Err(Error::FunctionNotFound { function: missing.clone(), program });
        }
        return Err(Error::WorkerStartup(format!(
            "worker binary `{program}` was built from other code (function tables or shoal versions differ)"
        )));
    }
    Ok(program)
}

fn serve_connection(node: Arc<Node>, stream: UnixStream) {
    match shoal_ipc::peer::peer_credentials(&stream) {
        Ok((uid, _)) if uid == nix::unistd::geteuid().as_raw() => {}
        Ok((uid, pid)) => {
            tracing::warn!("refusing connection from pid {pid}: uid {uid} is not this node's user");
            return;
        }
        Err(e) => {
            tracing::warn!("refusing connection: cannot read peer credentials: {e}");
            return;
        }
    }
    let peer_pid = shoal_ipc::peer::peer_credentials(&stream).map(|c| c.1).unwrap_or(-1);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let hello: Hello = match FrameReader::with_cap(&stream, 1 << 20).read() {
        Ok(hello) => hello,
        Err(e) => {
            tracing::warn!("closing connection from pid {peer_pid}: bad handshake: {e}");
            return;
        }
    };
    let program = match check_hello(&node, &hello, peer_pid) {
        Ok(program) => program,
        Err(error) => {
            tracing::warn!("refusing client {peer_pid}: {error}");
            refuse(&stream, error.to_string());
            if hello.token == node.worker_token {
                // One of our own workers: `init` reports why.
                node.record_refusal(error);
            } else if hello.token != 0 {
                // An actor's process, perhaps: its calls report why.
                node.change_and_dispatch(|state| state.actor_start_failed(hello.token, &error));
            }
            return;
        }
    };
    if hello.token == MONITOR_TOKEN {
        let _ = stream.set_read_timeout(None);
        serve_monitor(&node, &stream, peer_pid);
        return;
    }
    let id = node.next_worker.fetch_add(1, Ordering::Relaxed);
    let welcome = HandshakeReply::Welcome(Welcome {
        protocol: shoal_ipc::PROTOCOL_VERSION,
        client_id: id as u32,
        arena_len: node.arena().len(),
        inline_max: node.config.inline_max as u64,
    });
    let mut buf = Vec::new();
    let sent = encode_frame(&welcome, &mut buf)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|()| (&stream).write_all(&buf))
        .and_then(|()| shoal_ipc::fdpass::send_fd(&stream, node.arena().fd()));
    let writer = stream.try_clone();
    let (Ok(()), Ok(writer)) = (sent, writer) else {
        tracing::warn!("lost worker {peer_pid} during the handshake");
        let error = Error::WorkerStartup("its connection broke during the handshake".into());
        node.change_and_dispatch(|state| state.actor_start_failed(hello.token, &error));
        return;
    };
    let _ = stream.set_read_timeout(None);
    let conn = match WorkerConn::start(id, hello.pid, program, writer) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!("cannot start a sender thread: {e}");
            return;
        }
    };
    if hello.token == 0 && hello.build != node.build_hash && program == 0 {
        let _ = conn.foreign.set(foreign_functions(&node.table, &hello.table));
    }
    node.register_worker(WorkerSlot::new(conn.clone()), hello.token);
    drop(stream); // `conn` holds the same socket
    let reason = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_worker(&node, &conn)))
        .unwrap_or_else(|_| FrameError::Malformed("the connection's reader panicked".into()));
    let dropped = match reason {
        // A process that dies with input unread resets the connection.
        FrameError::Closed => None,
        FrameError::Io(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => None,
        other => {
            if !node.is_stopped() {
                tracing::warn!("dropping worker {} (pid {}): {other}", id, conn.pid);
            }
            Some(other.to_string())
        }
    };
    conn.close();
    node.worker_lost(&conn, dropped);
}

/// The functions of a client's `table` that the node's `table` (both sorted
/// `(name, source hash)`) lacks or builds from other source: a driver built
/// from other code may call the rest, which run the node's code unchanged.
fn foreign_functions(node: &[(String, u64)], client: &[(String, u64)]) -> std::collections::HashSet<String> {
    client.iter().filter(|f| node.binary_search(f).is_err()).map(|(name, _)| name.clone()).collect()
}

/// The answer to a request for what the node reports, the only requests a
/// monitor may make; `None` for any other message.
fn inspection(node: &Node, msg: &ToNode) -> Option<ToClient> {
    Some(match *msg {
        ToNode::Status { request } => ToClient::Status { request, report: node.report() },
        ToNode::Memory { request, limit } => {
            ToClient::Memory { request, report: node.memory(usize::try_from(limit).unwrap_or(usize::MAX)) }
        }
        ToNode::Timeline { request } => ToClient::Timeline { request, events: node.timeline() },
        _ => return None,
    })
}

/// Serve a monitor (`shoal status` and the like, [`MONITOR_TOKEN`]): it
/// holds nothing and is no worker; each request is answered on this thread
/// until it closes. Anything but an inspection ends the connection.
fn serve_monitor(node: &Node, stream: &UnixStream, peer_pid: i32) {
    let welcome = HandshakeReply::Welcome(Welcome {
        protocol: shoal_ipc::PROTOCOL_VERSION,
        client_id: 0,
        arena_len: node.arena().len(),
        inline_max: node.config.inline_max as u64,
    });
    let mut buf = Vec::new();
    if encode_frame(&welcome, &mut buf).is_err() || (&*stream).write_all(&buf).is_err() {
        return;
    }
    let mut frames = FrameReader::with_cap(stream, 1 << 20);
    loop {
        let msg = match frames.read::<ToNode>() {
            // A stopped node answers no more (its figures would be stale).
            Ok(_) if node.is_stopped() => return,
            Ok(msg) => msg,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::warn!("dropping monitor {peer_pid}: {e}");
                return;
            }
        };
        let Some(reply) = inspection(node, &msg) else {
            tracing::warn!("dropping monitor {peer_pid}: a monitor may only ask what the node reports");
            return;
        };
        buf.clear();
        if let Err(e) = encode_frame(&reply, &mut buf) {
            tracing::warn!("cannot answer monitor {peer_pid}: {e}");
            return;
        }
        if (&*stream).write_all(&buf).is_err() {
            return;
        }
    }
}

/// Serve one worker's messages until its connection ends; returns why it
/// ended. The thread sleeps until the socket is readable, then reads under
/// the connection's lock; a waiting driver thread may have read it first.
fn read_worker(node: &Node, conn: &WorkerConn) -> FrameError {
    loop {
        let mut fds = [PollFd::new(conn.stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return FrameError::Io(e.into()),
        }
        if node.park_while_helped(conn) {
            continue;
        }
        let mut incoming = conn.incoming();
        if let Some(e) = incoming.failed.take() {
            incoming.ended = true;
            return e;
        }
        if let Err(e) = read_available(node, conn, &mut incoming) {
            incoming.ended = true;
            return e;
        }
        // A worker running tasks on top of a blocked one answers within
        // microseconds (a nested round trip): watch its socket a moment
        // rather than sleep and be woken for each answer.
        if !conn.nests.load(Ordering::Relaxed) || !node.spins_for(conn.id) {
            continue;
        }
        let mut quiet_since = std::time::Instant::now();
        while quiet_since.elapsed() < READER_SPIN {
            match read_available(node, conn, &mut incoming) {
                // Still in the exchange? (Asked once per arrival, not per look.)
                Ok(true) if !node.spins_for(conn.id) => break,
                Ok(true) => quiet_since = std::time::Instant::now(),
                Ok(false) => std::thread::yield_now(),
                Err(e) => {
                    incoming.ended = true;
                    return e;
                }
            }
        }
    }
}

/// How long a reader watches a busy nested exchange before it sleeps.
const READER_SPIN: Duration = Duration::from_micros(30);

impl WorkerConn {
    fn incoming(&self) -> std::sync::MutexGuard<'_, Incoming> {
        self.incoming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For a driver thread spinning on a result: handle what this worker
    /// has sent, unless another thread is reading it now. Returns whether
    /// anything arrived. A broken connection (or a panic while handling its
    /// input) is left to its reader thread, woken by shutting the socket's
    /// reading side; the panic does not reach the caller.
    pub(crate) fn help_read(&self, node: &Node) -> bool {
        let Ok(mut incoming) = self.incoming.try_lock() else { return false };
        if incoming.failed.is_some() || incoming.ended {
            return false;
        }
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_available(node, self, &mut incoming)));
        let error = match read {
            Ok(Ok(got)) => return got,
            Ok(Err(e)) => e,
            Err(_) => FrameError::Malformed("handling the connection's input panicked".into()),
        };
        incoming.failed = Some(error);
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
        true
    }
}

/// Handle every message the worker has sent so far, without blocking; then,
/// if tasks finished, dispatch their successors and wake waiters, once for
/// the whole batch. Returns whether any bytes arrived.
fn read_available(node: &Node, conn: &WorkerConn, incoming: &mut Incoming) -> Result<bool, FrameError> {
    let mut got = false;
    let result = loop {
        while let Some(msg) = incoming.frames.next_frame::<ToNode>() {
            // An error ends the connection; `worker_lost` dispatches for
            // whatever finished before it.
            msg.and_then(|msg| handle(node, conn, msg, &mut incoming.finished))?;
        }
        match incoming.frames.fill_from(conn.stream.as_fd()) {
            Ok(true) => got = true,
            Ok(false) => break Ok(got),
            Err(e) => break Err(e),
        }
    };
    if std::mem::take(&mut incoming.finished) {
        node.change_and_dispatch(|_| ());
    }
    result
}

/// Handle one message from a client. `dirty` is set when the message may
/// let tasks run or answer requests (the caller dispatches, once per batch).
fn handle(node: &Node, conn: &WorkerConn, msg: ToNode, dirty: &mut bool) -> Result<(), FrameError> {
    let violation = |e: String| FrameError::Malformed(format!("protocol violation: {e}"));
    match msg {
        ToNode::Refs(ops) => {
            let mut state = node.lock();
            for op in ops {
                match op {
                    RefOp::Acquire(id) => state.worker_ref(conn.id, true, id),
                    RefOp::Release(id) => state.worker_ref(conn.id, false, id),
                };
            }
            // A release may end an actor (its process is told to exit) or
            // a stream's consumer.
            *dirty |= state.needs_dispatch();
        }
        ToNode::Abandon(offsets) => {
            let mut state = node.lock();
            for offset in offsets {
                state.abandon(conn.id, offset);
            }
        }
        ToNode::Allocate { request, size } => {
            // The reply may wait for the arena's reservation: what finished
            // before goes out first.
            if std::mem::take(dirty) {
                node.change_and_dispatch(|_| ());
            }
            // May spill objects to make room (the lock is not held meanwhile).
            let mut result = node.allocate(size, Some(conn.id));
            if let Ok(offset) = result {
                if let Err(e) = node.arena().prepare(offset, size) {
                    node.lock().abandon(conn.id, offset);
                    result = Err(e.into());
                }
            }
            conn.send(&ToClient::Allocated { request, result });
        }
        ToNode::TaskDone { task, outputs, elapsed_ns } => {
            let elapsed_ns = elapsed_ns.min(MAX_REPORTED_RUN_NS);
            node.lock().task_done(conn.id, task, outputs, elapsed_ns).map_err(violation)?;
            *dirty = true;
        }
        ToNode::Submit(submit) => {
            conn.nests.store(true, Ordering::Relaxed);
            let function = node.function(conn.program, &submit.function).filter(|_| !conn.foreign(&submit.function));
            node.lock().client_submit(conn.id, submit, function, None).map_err(violation)?;
            *dirty = true;
        }
        ToNode::Call { actor, submit } => {
            conn.nests.store(true, Ordering::Relaxed);
            let method = node.method(conn.program, &submit.function).filter(|_| !conn.foreign(&submit.function));
            let call = Some((actor, method.map(|(_, class)| class)));
            node.lock().client_submit(conn.id, submit, method.map(|(name, _)| name), call).map_err(violation)?;
            *dirty = true;
        }
        ToNode::CreateActor(create) => {
            let known =
                node.actor_class(conn.program, &create.class).filter(|(_, constructor)| !conn.foreign(constructor));
            node.lock().client_create_actor(conn.id, create.id, known, create).map_err(violation)?;
            *dirty = true;
        }
        ToNode::GetActor { request, name } => {
            node.lock().client_get_actor(conn.id, request, &name);
            *dirty = true;
        }
        ToNode::Cancel { request, id, force } => {
            let mut state = node.lock();
            let result = state.cancel_object(id, force);
            state.replies.push((conn.id, ToClient::Cancelled { request, result }));
            *dirty = true;
        }
        ToNode::KillActor(id) => {
            // Killing what is not there does nothing: no violation.
            node.lock().kill_actor(id);
            *dirty = true;
        }
        ToNode::Put { id, placed } => node.lock().client_put(conn.id, id, placed).map_err(violation)?,
        ToNode::Get { request, id, task } => {
            conn.nests.store(true, Ordering::Relaxed);
            node.lock().client_get(conn.id, request, id, task).map_err(violation)?;
            *dirty = true;
        }
        ToNode::Wait { request, ids, num, limit, task } => {
            if num as usize > ids.len() || limit < num {
                return Err(violation(format!("wait for {num} (at most {limit}) of {} objects", ids.len())));
            }
            node.lock().client_wait(conn.id, request, ids, num as usize, limit as usize, task).map_err(violation)?;
            *dirty = true;
        }
        ToNode::Forget { request } => node.lock().client_forget(conn.id, request),
        ToNode::Requeue(tasks) => {
            node.lock().client_requeue(conn.id, tasks).map_err(violation)?;
            *dirty = true;
        }
        ToNode::StreamItem { task, index, placed } => {
            node.lock().stream_item(conn.id, task, index, placed).map_err(violation)?;
            *dirty = true;
        }
        ToNode::StreamNext { request, stream, index, task } => {
            conn.nests.store(true, Ordering::Relaxed);
            node.lock().client_stream_next(conn.id, request, stream, index, task).map_err(violation)?;
            *dirty = true;
        }
        ToNode::StreamClose(end) => {
            node.lock().stream_close(end);
            *dirty = true;
        }
        ToNode::Status { .. } | ToNode::Memory { .. } | ToNode::Timeline { .. } => {
            let reply = inspection(node, &msg).expect("an inspection");
            node.lock().replies.push((conn.id, reply));
            *dirty = true;
        }
        ToNode::Backpressure { request, task, consumed } => {
            node.lock().backpressure(conn.id, request, task, consumed).map_err(violation)?;
            *dirty = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::foreign_functions;

    #[test]
    fn a_driver_may_call_only_what_the_node_builds_from_the_same_source() {
        let entry = |name: &str, source: u64| (name.to_string(), source);
        let node = vec![entry("a::f", 1), entry("a::g", 2), entry("a::h", 3)];
        let driver = vec![entry("a::f", 1), entry("a::g", 9), entry("b::own", 4)];
        let foreign = foreign_functions(&node, &driver);
        let mut foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
        foreign.sort_unstable();
        assert_eq!(foreign, ["a::g", "b::own"], "other source, and missing; `a::f` is shared");
        assert!(foreign_functions(&node, &node).is_empty());
    }
}
