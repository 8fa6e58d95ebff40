//! Worker mode: the same executable as the driver, re-executed with
//! `SHOAL_WORKER_SOCKET` set.
//!
//! A constructor in `.init_array` runs before the program's `main` (before
//! libtest's harness in a test binary, before criterion in a bench) and, when
//! that variable is present, turns the process into a worker: it connects to
//! the node as a [`Client`], maps the arena, runs tasks until told to stop or
//! until its node goes away, and exits without ever returning to `main`. So
//! test binaries, examples and benches work unchanged. Tasks reach the node
//! through the same client (nested tasks): the process's runtime is
//! `Runtime::Client`.
//!
//! The task loop runs on the thread that connected (the task thread): take a
//! task, run it, queue its outputs. The node may queue the next task in the
//! socket while one runs (the pipeline), so the loop often finds its next
//! task without sleeping. When it does, and both tasks are short, the first
//! one's result waits to go with the next ones (at most [`MAX_BATCH`] tasks,
//! [`MAX_BATCH_DELAY`] after the first): a burst of tiny tasks costs one
//! write and one wake-up of the node per batch, not per task. Before it
//! sleeps, before a task that is long or not yet measured, and before any
//! request a task makes (a nested `get` above all), the client writes what
//! waits, so no result is held up behind real work or behind a wait.

use std::any::Any;
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, panic_message};
use crate::node::{ENV_PARENT, ENV_SOCKET, ENV_TOKEN, logs};
use crate::object_ref::ArgReader;
use crate::protocol::{Execute, Placed, STREAM_ENDED, ToNode};
use crate::registry::{self, Invoke};
use crate::runtime::Runtime;
use crate::task::Output;

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = worker_entry;

extern "C" fn worker_entry() {
    if std::env::var_os(registry::ENV_DESCRIBE).is_some() {
        // A node asks what this program runs (`node::code_of`).
        registry::describe();
        std::process::exit(0);
    }
    let Some(socket) = std::env::var_os(ENV_SOCKET) else { return };
    let parent = std::env::var(ENV_PARENT).ok().and_then(|p| p.parse::<i32>().ok());
    let token = std::env::var(ENV_TOKEN).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let labels = std::env::var_os(logs::ENV_LABELS).is_some();
    // SAFETY: this runs from `.init_array` of a freshly exec'd process, before
    // `main` and before shoal starts any thread, so no other thread can be
    // reading the environment concurrently. Removing the variables keeps a
    // process that a task spawns from this binary from becoming a worker too.
    unsafe {
        std::env::remove_var(ENV_SOCKET);
        std::env::remove_var(ENV_PARENT);
        std::env::remove_var(ENV_TOKEN);
        std::env::remove_var(logs::ENV_LABELS);
    }
    // SAFETY: installing SIG_IGN runs no handler code; it only makes a write
    // to a closed pipe or socket return EPIPE instead of killing the process,
    // as std arranges for every Rust `main` (which a worker never reaches).
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) };
    crate::stack_overflow::install();
    let code = match catch_unwind(|| run(socket.into(), parent, token, labels)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("shoal worker {}: {e}", std::process::id());
            2
        }
        Err(_) => 3,
    };
    std::process::exit(code);
}

/// The `main` of a worker binary: a small program that links a crate of
/// remote functions and actors (`use my_functions as _;`) so that a
/// standalone node (`shoal start --worker-program`) runs them for every
/// driver that calls them (built from the same source: the drivers link
/// the same crate). A node starts it in worker mode, which
/// begins before `main`; run by hand, it says what it is and exits with
/// status 2.
///
/// In `src/bin/my-worker.rs`, a `main` of one line:
///
/// ```no_run
/// shoal::worker_main()
/// ```
pub fn worker_main() -> ! {
    eprintln!(
        "{}: a shoal worker program: a node starts it (`shoal start --worker-program {}`); it does nothing run by hand",
        std::env::args().next().unwrap_or_default(),
        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default()
    );
    std::process::exit(2)
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

/// Connect, handshake, then serve tasks until the node says stop or goes
/// away; `labels`: say what runs in the output (see `node/logs.rs`).
fn run(socket: std::path::PathBuf, parent: Option<i32>, token: u64, labels: bool) -> Result<(), Error> {
    die_with_parent(parent)?;
    let stream = UnixStream::connect(&socket).map_err(io_err)?;
    let (client, _welcome) = Client::connect(stream, &registry::hello(token))?;
    let client = Arc::new(client);
    client.start_flusher().map_err(io_err)?;
    let runtime = Runtime::Client(client.clone());
    Runtime::install(runtime.clone())?;
    let worker = Arc::new(TaskRunner {
        runtime,
        client: client.clone(),
        run_times: Mutex::new(HashMap::new()),
        actor: Mutex::new(None),
        labels,
        said: Mutex::new(None),
    });
    let nested = worker.clone();
    client.set_nested_runner(Box::new(move |execute| nested.run(execute)));
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

/// A streaming task's items on their way to the node, in order.
struct Items<'a> {
    runner: &'a TaskRunner,
    task: u64,
    /// The position of the next item.
    next: u64,
    /// Items the consumer has taken, as last heard.
    taken: u64,
    /// Pause while this many are not taken.
    backpressure: Option<u32>,
    /// An item that could not be stored: the stream ends with this.
    failed: Option<Error>,
}

impl Items<'_> {
    /// Send one item; false when the task is to stop yielding: it was
    /// cancelled (its consumer may be gone), the stream ended, or the item
    /// could not be stored.
    fn push(&mut self, item: Output) -> bool {
        let client = &self.runner.client;
        if client.current_cancelled() {
            return false;
        }
        match self.runner.place(item) {
            Placed::Failed(e) => {
                self.failed = Some(e);
                return false;
            }
            placed => client.stream_item(self.task, self.next, placed),
        }
        self.next += 1;
        if let Some(n) = self.backpressure.map(|n| u64::from(n.max(1))) {
            if self.next - self.taken.min(self.next) >= n {
                match client.backpressure(self.task, self.next + 1 - n) {
                    Ok(STREAM_ENDED) | Err(_) => return false,
                    Ok(taken) => self.taken = taken,
                }
            }
        }
        true
    }

    /// The task's one output once its iterator is done: the item count, or
    /// the error an item failed with.
    fn end(&mut self) -> Result<Vec<Output>, Error> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(vec![crate::task::output(self.next)]),
        }
    }
}

/// Runs tasks on the task thread: the loop's ordinary tasks, and tasks the
/// node sends while a task blocks in a nested call (run on top of it).
struct TaskRunner {
    runtime: Runtime,
    client: Arc<Client>,
    /// Average run time per function, to tell a short task from a long one.
    run_times: Mutex<HashMap<String, Duration>>,
    /// In an actor's process: the actor, made by its constructor (taken
    /// out while a method runs).
    actor: Mutex<Option<Box<dyn Any + Send>>>,
    /// Output is relayed to the driver: say what runs before it prints.
    labels: bool,
    /// What this process last said it runs, and for whom.
    said: Mutex<Option<(&'static str, u64)>>,
}

impl TaskRunner {
    fn serve(&self) -> Result<(), Error> {
        loop {
            let execute = match self.client.buffered_execute() {
                Some(execute) => execute,
                None => {
                    // About to sleep: what waits goes now.
                    self.client.flush()?;
                    match self.client.next_execute() {
                        Some(execute) => execute,
                        None => {
                            // An actor's state is dropped before the process
                            // exits, so its `Drop` runs (files flushed, …).
                            drop(self.actor_slot().take());
                            return self.client.flush().or(Ok(()));
                        }
                    }
                }
            };
            self.run(execute);
        }
    }

    fn run_times(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        self.run_times.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn actor_slot(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        self.actor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run a registered entry on `args`: a function, an actor's
    /// constructor (its state is kept) or a method (on that state); a
    /// streaming one sends its items through `items`, and its one output is
    /// their count.
    fn invoke(&self, invoke: &Invoke, args: &mut ArgReader<'_>, items: &mut Items<'_>) -> Result<Vec<Output>, Error> {
        match invoke {
            Invoke::Function(function) => function(args),
            Invoke::Stream(function) => {
                function(args, &mut |item| items.push(item))?;
                items.end()
            }
            Invoke::Constructor { class, new } => {
                if self.actor_slot().is_some() {
                    return Err(Error::Unsupported(format!("this process already runs an actor, not a {class}")));
                }
                let state = new(args)?;
                *self.actor_slot() = Some(state);
                Ok(vec![crate::task::output(())])
            }
            Invoke::Method { class, call } => self.on_actor(class, |state| call(state, args)),
            Invoke::StreamMethod { class, call } => self.on_actor(class, |state| {
                call(state, args, &mut |item| items.push(item))?;
                items.end()
            }),
        }
    }

    /// Run a method of actor type `class` on this process's actor.
    fn on_actor(
        &self,
        class: &str,
        method: impl FnOnce(&mut (dyn Any + Send)) -> Result<Vec<Output>, Error>,
    ) -> Result<Vec<Output>, Error> {
        let taken = self.actor_slot().take();
        let Some(mut state) = taken else {
            return Err(Error::Unsupported(format!("this process runs no {class} (a method runs on its actor)")));
        };
        // Put back however the method ends: a panic leaves the actor alive
        // with its state, as in Ray.
        let result = catch_unwind(AssertUnwindSafe(|| method(&mut *state)));
        *self.actor_slot() = Some(state);
        result.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }

    /// Run one task and queue its report.
    fn run(&self, execute: Execute) {
        let short = self.run_times().get(&execute.function).is_some_and(|&t| t < SHORT_TASK);
        let flush = {
            let out = self.client.out();
            let overdue = out.batch_since.is_some_and(|since| since.elapsed() >= MAX_BATCH_DELAY);
            !short || overdue || out.batched >= MAX_BATCH
        };
        if flush {
            let _ = self.client.flush();
        }
        let task = execute.task;
        self.client.begin_task(task);
        let started = Instant::now();
        let (function, outputs) = if self.client.is_cancelled(task) {
            // Cancelled before it started: it never runs.
            let function = execute.function.clone();
            (execute.function, vec![Placed::Failed(Error::TaskCancelled { function })])
        } else {
            self.run_task(execute)
        };
        let elapsed = started.elapsed();
        // What the task printed without a newline goes out with it.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if !self.client.is_cancelled(task) {
            // (A cancelled task stopped early, or never started.)
            self.run_times()
                .entry(function)
                .and_modify(|average| *average = (*average * 3 + elapsed) / 4)
                .or_insert(elapsed);
        }
        let elapsed_ns = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        self.client.end_task(ToNode::TaskDone { task, outputs, elapsed_ns }, started + elapsed);
    }

    /// Before a task of `function` for `owner` prints: say so in the
    /// output, unless it is what runs already.
    fn say_running(&self, function: &registry::RemoteFunction, owner: u64) {
        let name = match function.invoke {
            Invoke::Constructor { class, .. } | Invoke::Method { class, .. } | Invoke::StreamMethod { class, .. } => {
                class
            }
            Invoke::Function(_) | Invoke::Stream(_) => function.name,
        };
        if *self.said() != Some((name, owner)) {
            self.say(name, owner);
        }
    }

    /// Say in the output that `name` runs now, for `owner` (see `node/logs.rs`).
    fn say(&self, name: &'static str, owner: u64) {
        use std::io::Write;
        // On both pipes: each relay reads its note in order with its lines.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}{owner} {name}", logs::MARKER);
        let _ = out.flush();
        let _ = writeln!(std::io::stderr().lock(), "{}{owner} {name}", logs::MARKER);
        *self.said() = Some((name, owner));
    }

    fn said(&self) -> std::sync::MutexGuard<'_, Option<(&'static str, u64)>> {
        self.said.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run one task; returns its function's name and its outputs.
    fn run_task(&self, execute: Execute) -> (String, Vec<Placed>) {
        let pid = std::process::id();
        let Execute { task, function: name, args, backpressure, nested, owner } = execute;
        let Some(function) = registry::lookup(&name) else {
            let program = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
            return (name.clone(), vec![Placed::Failed(Error::FunctionNotFound { function: name, program })]);
        };
        // A task run on top of a blocked one prints under that one's name:
        // switching names there and back would cost two writes a task.
        if self.labels && nested.is_none() {
            self.say_running(function, owner);
        }
        let result = {
            let mut args = ArgReader { runtime: &self.runtime, args: args.into_iter() };
            let mut items = Items { runner: self, task, next: 0, taken: 0, backpressure, failed: None };
            catch_unwind(AssertUnwindSafe(|| self.invoke(&function.invoke, &mut args, &mut items)))
        };
        let outputs = match result {
            Ok(Ok(outputs)) => outputs.into_iter().map(|o| self.place(o)).collect(),
            Ok(Err(e)) => vec![Placed::Failed(e)],
            Err(payload) => {
                let message = panic_message(&*payload);
                vec![Placed::Failed(Error::TaskPanicked { function: name.clone(), message, pid })]
            }
        };
        (name, outputs)
    }

    /// Put one output where it belongs: inline, or into an arena allocation
    /// the node hands out.
    fn place(&self, output: Output) -> Placed {
        let (layout, write) = match output.0 {
            Ok(measured) => measured,
            Err(e) => return Placed::Failed(e),
        };
        // A value's second serialization pass runs user code: a panic there
        // fails this output, never unwinds into the loop (or a nested wait).
        match catch_unwind(AssertUnwindSafe(|| self.client.place(layout, write))) {
            Ok(placed) => placed.unwrap_or_else(Placed::Failed),
            Err(_) => Placed::Failed(Error::Serialization("serializing an output panicked".into())),
        }
    }
}
