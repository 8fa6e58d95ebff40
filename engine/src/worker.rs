//! Worker mode: the same executable as the driver, re-executed with
//! `SHOAL_WORKER_SOCKET` set.
//!
//! A constructor in `.init_array` runs before the program's `main` (before
//! libtest's harness in a test binary, before criterion in a bench) and, when
//! that variable is present, turns the process into a worker: it connects to
//! the node, completes the handshake, maps the arena, runs tasks until told to
//! stop or until its node goes away, and exits without ever returning to
//! `main`. So test binaries, examples and benches work unchanged.
//!
//! The task loop is single-threaded: read a task, run it, write its outputs
//! and any reference changes in one write. The node may queue the next task
//! in the socket while one runs (the pipeline), so the loop often finds its
//! next task without sleeping. When it does, and both tasks are short, the
//! first one's result waits to go with the next ones (at most [`MAX_BATCH`]
//! tasks, [`MAX_BATCH_DELAY`] after the first): a burst of tiny tasks costs
//! one write and one wake-up of the node per batch, not per task. Before it
//! sleeps, and before a task that is long or not yet measured, the loop
//! sends what waits, so no result is held up behind real work.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};
use shoal_ipc::{FrameError, FrameReader, HandshakeReply, Hello, encode_frame, handshake::HELLO_MAGIC};
use shoal_store::Arena;

use crate::error::Error;
use crate::node::{ENV_PARENT, ENV_SOCKET, ENV_TOKEN};
use crate::object_ref::ArgReader;
use crate::protocol::{Execute, Placed, RefOp, ToNode, ToWorker};
use crate::registry;
use crate::runtime::Runtime;
use crate::task::Output;

/// A worker process's side of its connection: its arena mapping, the
/// sending half of its socket, and the reference changes waiting to be sent.
pub(crate) struct WorkerClient {
    arena: Arc<Arena>,
    refs: Mutex<RefQueue>,
    writer: Mutex<UnixStream>,
}

/// Reference changes made while a task runs wait for its `TaskDone` (see
/// `TaskLoop::serve` for their order); while the loop is idle, waiting for
/// work, a change (from a thread a task left behind) is sent at once.
struct RefQueue {
    ops: Vec<RefOp>,
    idle: bool,
}

impl WorkerClient {
    pub(crate) fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, RefQueue> {
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a reference change: queued while a task runs, sent now while
    /// the worker is idle.
    pub(crate) fn push_ref_op(&self, op: RefOp) {
        let mut queue = self.refs();
        if queue.idle {
            if let Err(e) = self.send(&[ToNode::Refs(vec![op])]) {
                tracing::debug!("cannot send a reference change: {e}");
            }
        } else {
            queue.ops.push(op);
        }
    }

    fn take_ref_ops(&self) -> Vec<RefOp> {
        std::mem::take(&mut self.refs().ops)
    }

    /// Enter (or leave) the idle state; entering sends what is queued.
    fn set_idle(&self, idle: bool) -> Result<(), Error> {
        let mut queue = self.refs();
        if idle && !queue.ops.is_empty() {
            let ops = std::mem::take(&mut queue.ops);
            self.send(&[ToNode::Refs(ops)])?;
        }
        queue.idle = idle;
        Ok(())
    }

    /// Write messages to the node, in one write.
    fn send(&self, msgs: &[ToNode]) -> Result<(), Error> {
        let mut buf = Vec::new();
        for msg in msgs {
            encode_frame(msg, &mut buf).map_err(io_err)?;
        }
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(&buf).map_err(io_err)
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = worker_entry;

extern "C" fn worker_entry() {
    let Some(socket) = std::env::var_os(ENV_SOCKET) else { return };
    let parent = std::env::var(ENV_PARENT).ok().and_then(|p| p.parse::<i32>().ok());
    let token = std::env::var(ENV_TOKEN).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: this runs from `.init_array` of a freshly exec'd process, before
    // `main` and before shoal starts any thread, so no other thread can be
    // reading the environment concurrently. Removing the variables keeps a
    // process that a task spawns from this binary from becoming a worker too.
    unsafe {
        std::env::remove_var(ENV_SOCKET);
        std::env::remove_var(ENV_PARENT);
        std::env::remove_var(ENV_TOKEN);
    }
    // SAFETY: installing SIG_IGN runs no handler code; it only makes a write
    // to a closed pipe or socket return EPIPE instead of killing the process,
    // as std arranges for every Rust `main` (which a worker never reaches).
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
    let code = match catch_unwind(|| run(socket.into(), parent, token)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("shoal worker {}: {e}", std::process::id());
            2
        }
        Err(_) => 3,
    };
    std::process::exit(code);
}

fn die_with_parent(parent: Option<i32>) -> Result<(), Error> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::WorkerStartup(format!("prctl: {e}")))?;
    // The parent may have died before the line above took effect.
    if let Some(parent) = parent {
        if nix::unistd::getppid().as_raw() != parent {
            return Err(Error::WorkerStartup("the node exited before this worker started".into()));
        }
    }
    Ok(())
}

fn io_err(e: impl std::fmt::Display) -> Error {
    Error::WorkerStartup(e.to_string())
}

/// Connect, handshake, then serve tasks until the node says stop or goes away.
fn run(socket: std::path::PathBuf, parent: Option<i32>, token: u64) -> Result<(), Error> {
    die_with_parent(parent)?;
    let stream = UnixStream::connect(&socket).map_err(io_err)?;
    let table = registry::table();
    let hello = Hello {
        magic: HELLO_MAGIC,
        protocol: shoal_ipc::PROTOCOL_VERSION,
        pid: std::process::id(),
        build: registry::build_hash(),
        token,
        table,
    };
    let mut buf = Vec::new();
    encode_frame(&hello, &mut buf).map_err(io_err)?;
    (&stream).write_all(&buf).map_err(io_err)?;
    let welcome = match FrameReader::with_cap(&stream, 1 << 20).read::<HandshakeReply>().map_err(io_err)? {
        HandshakeReply::Welcome(w) => w,
        HandshakeReply::Refused(reason) => return Err(Error::WorkerStartup(format!("refused by the node: {reason}"))),
    };
    let fd = shoal_ipc::fdpass::recv_fd(&stream).map_err(io_err)?;
    let arena = Arc::new(Arena::open(fd, false)?);
    let reader = FrameReader::new(BufReader::with_capacity(64 * 1024, stream.try_clone().map_err(io_err)?));
    let client = Arc::new(WorkerClient {
        arena,
        refs: Mutex::new(RefQueue { ops: Vec::new(), idle: false }),
        writer: Mutex::new(stream),
    });
    let runtime = Runtime::Worker(client.clone());
    Runtime::install(runtime.clone())?;
    let mut worker = TaskLoop {
        runtime,
        client,
        reader,
        pending: VecDeque::new(),
        inline_max: welcome.inline_max as usize,
        stopping: false,
        abandoned: Vec::new(),
        batch: Vec::new(),
        batched: 0,
        batch_since: None,
        run_times: HashMap::new(),
        spin: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
    };
    worker.serve()
}

/// Results of short tasks wait, encoded, while the next task is already
/// buffered, and go to the node in one write: at most this many tasks' worth.
const MAX_BATCH: usize = 16;
/// ... and for at most this long after the first of them was ready.
const MAX_BATCH_DELAY: Duration = Duration::from_micros(100);
/// A function whose average run time is below this counts as short: a
/// result may wait behind one task of it. Any other task (or one never
/// measured) first sends what waits.
const SHORT_TASK: Duration = Duration::from_micros(50);
/// How long an idle worker watches its socket before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(50);

struct TaskLoop {
    runtime: Runtime,
    client: Arc<WorkerClient>,
    reader: FrameReader<BufReader<UnixStream>>,
    pending: VecDeque<Execute>,
    inline_max: usize,
    stopping: bool,
    /// Allocations that a failed write left unsealed, to hand back.
    abandoned: Vec<u64>,
    /// Encoded messages not yet written (see [`MAX_BATCH`]).
    batch: Vec<u8>,
    /// Tasks whose results are in `batch`, and when the first was ready.
    batched: usize,
    batch_since: Option<Instant>,
    /// Average run time per function, to tell a short task from a long one.
    run_times: HashMap<String, Duration>,
    /// Whether to spin before sleeping (more than one CPU).
    spin: bool,
}

impl TaskLoop {
    fn serve(&mut self) -> Result<(), Error> {
        loop {
            let execute = match self.pending.pop_front() {
                Some(e) => e,
                None if self.stopping => return self.flush(),
                None => {
                    let next = if self.reader.has_buffered_frame() {
                        self.reader.read::<ToWorker>()
                    } else {
                        // About to sleep: what waits goes now.
                        self.flush()?;
                        self.spin_for_input();
                        self.client.set_idle(true)?;
                        let next = self.reader.read::<ToWorker>();
                        self.client.set_idle(false)?;
                        next
                    };
                    match next {
                        Ok(ToWorker::Execute(e)) => e,
                        Ok(ToWorker::Shutdown) | Err(FrameError::Closed) => return self.flush(),
                        Ok(ToWorker::Allocated(_)) => return Err(io_err("unexpected allocation reply")),
                        Err(e) => return Err(io_err(e)),
                    }
                }
            };
            let short = self.run_times.get(&execute.function).is_some_and(|&t| t < SHORT_TASK);
            let overdue = self.batch_since.is_some_and(|since| since.elapsed() >= MAX_BATCH_DELAY);
            if !short || overdue || self.batched >= MAX_BATCH {
                self.flush()?;
            }
            let task = execute.task;
            let started = Instant::now();
            let (function, outputs) = self.run_task(execute);
            let elapsed = started.elapsed();
            match self.run_times.get_mut(&function) {
                Some(average) => *average = (*average * 3 + elapsed) / 4,
                None => {
                    self.run_times.insert(function, elapsed);
                }
            }
            // Acquisitions made during the task go before its outputs (which may
            // contain those refs); releases go after, so nothing an output
            // contains is freed in between.
            let (acquires, releases): (Vec<RefOp>, Vec<RefOp>) =
                self.client.take_ref_ops().into_iter().partition(|op| matches!(op, RefOp::Acquire(_)));
            if !self.abandoned.is_empty() {
                let abandoned = std::mem::take(&mut self.abandoned);
                self.encode(&ToNode::Abandon(abandoned))?;
            }
            if !acquires.is_empty() {
                self.encode(&ToNode::Refs(acquires))?;
            }
            let elapsed_ns = elapsed.as_nanos().min(u64::MAX as u128) as u64;
            self.encode(&ToNode::TaskDone { task, outputs, elapsed_ns })?;
            if !releases.is_empty() {
                self.encode(&ToNode::Refs(releases))?;
            }
            self.batched += 1;
            self.batch_since.get_or_insert(started + elapsed);
        }
    }

    /// Watch the socket for a moment before sleeping on it: a driver that
    /// submits its next task within [`IDLE_SPIN`] finds this worker awake,
    /// without the cost of waking a sleeping CPU (tens of microseconds on a
    /// virtual machine). Only where there is more than one CPU.
    fn spin_for_input(&self) {
        if !self.spin {
            return;
        }
        let fd = self.reader.get_ref().get_ref().as_raw_fd();
        let started = Instant::now();
        let mut byte = [0u8; 1];
        while started.elapsed() < IDLE_SPIN {
            match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => std::thread::yield_now(),
                // Input, end of stream or an error: the blocking read sees it.
                _ => return,
            }
        }
    }

    /// Add a message to the batch.
    fn encode(&mut self, msg: &ToNode) -> Result<(), Error> {
        encode_frame(msg, &mut self.batch).map_err(io_err)
    }

    /// Write the batch to the node, in one write.
    fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batched = 0;
        self.batch_since = None;
        let written = self.client.writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(&self.batch);
        self.batch.clear();
        written.map_err(io_err)
    }

    /// Run one task; returns its function's name and its outputs.
    fn run_task(&mut self, execute: Execute) -> (String, Vec<Placed>) {
        let pid = std::process::id();
        let Execute { function: name, args, .. } = execute;
        let Some(function) = registry::lookup(&name) else {
            let program = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
            return (name.clone(), vec![Placed::Failed(Error::FunctionNotFound { function: name, program })]);
        };
        let result = {
            let mut args = ArgReader { runtime: &self.runtime, args: args.into_iter() };
            catch_unwind(AssertUnwindSafe(|| (function.invoke)(&mut args)))
        };
        let outputs = match result {
            Ok(Ok(outputs)) => outputs.into_iter().map(|o| self.place(o)).collect(),
            Ok(Err(e)) => vec![Placed::Failed(e)],
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                vec![Placed::Failed(Error::TaskPanicked { function: name.clone(), message, pid })]
            }
        };
        (name, outputs)
    }

    /// Put one output where it belongs: inline, or into an arena allocation
    /// the node hands out.
    fn place(&mut self, output: Output) -> Placed {
        let (layout, write) = match output.0 {
            Ok(measured) => measured,
            Err(e) => return Placed::Failed(e),
        };
        let refs = layout.contained_refs().to_vec();
        if !layout.has_buffers() && layout.total_len() <= self.inline_max {
            let bytes = layout.into_inline().expect("inline layouts hold no arrays");
            return Placed::Inline { bytes, refs };
        }
        let len = layout.total_len() as u64;
        let offset = match self.allocate(len) {
            Ok(offset) => offset,
            Err(e) => return Placed::Failed(e),
        };
        // SAFETY: (1) the node allocated `offset..offset+len` to this worker
        // alone and publishes it to no one until our `TaskDone` seals it; (2)
        // this is the only reference to those bytes in this process.
        let written = match unsafe { self.client.arena.bytes_mut(offset, len) } {
            Ok(dst) => write(&layout, dst).map_err(Error::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            self.abandoned.push(offset);
            return Placed::Failed(e);
        }
        Placed::Arena { offset, len, refs }
    }

    /// Ask the node for `len` bytes of arena; tasks that arrive meanwhile wait
    /// in `pending`.
    fn allocate(&mut self, len: u64) -> Result<u64, Error> {
        self.flush()?;
        self.client.send(&[ToNode::Allocate { size: len }])?;
        loop {
            match self.reader.read::<ToWorker>() {
                Ok(ToWorker::Allocated(result)) => return result,
                Ok(ToWorker::Execute(e)) => self.pending.push_back(e),
                Ok(ToWorker::Shutdown) => {
                    self.stopping = true;
                    return Err(Error::NodeStopped);
                }
                Err(_) => {
                    self.stopping = true;
                    return Err(Error::NodeStopped);
                }
            }
        }
    }
}
