//! The node: scheduler and object-store owner, running as threads inside the
//! driver process (the embedded default).
//!
//! It owns the arena and its allocator (only this process allocates), the
//! object table with reference counts, the task graph and the worker pool.
//! Driver threads call it directly — submission runs on the caller's thread,
//! which writes the task straight to a worker's socket — and each worker
//! connection has a reader thread that applies what the worker reports.
//!
//! The node knows objects and tasks by id, never by `ObjectRef` handle:
//! the runtime above it wraps ids in handles. Clients (workers now,
//! connecting drivers later) speak `crate::protocol` over the same sockets.

mod actor_book;
mod actors;
mod cancel;
mod clients;
pub(crate) mod code;
mod conn;
mod ids;
mod inspect;
pub(crate) mod logs;
mod pool;
mod programs;
mod room;
mod spill;
pub(crate) mod state;
mod streams;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use shoal_store::{Arena, Layout};

pub(crate) use code::{NodeCode, code_of};
use conn::Outbox;
use conn::WorkerConn;
pub(crate) use pool::{ENV_PARENT, ENV_SOCKET, ENV_TOKEN};
use pool::{SpawnPlan, SupervisorCmd};
use state::{ArgSpec, Death, NodeState, ObjectState, WorkerSlot};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::SubmitArg;
use crate::status::{MemoryReport, NodeStatus, StoreStats, TaskEvent};

/// Where worker output goes (`logs::Routes`): the node's own streams, or
/// the connected driver a task works for. Weak: the relays may outlive the node.
struct NodeRoutes(std::sync::Weak<Node>);

impl logs::Routes for NodeRoutes {
    fn label(&self, pid: u32) -> String {
        self.0.upgrade().map_or_else(|| logs::prefix(None, pid), |n| n.label_of(pid))
    }

    fn deliver(&self, owner: u64, sink: logs::Sink, line: &[u8]) {
        let sent = owner != actor_book::LOCAL && self.0.upgrade().is_some_and(|n| n.output_to(owner, sink, line));
        if !sent {
            sink.write(line);
        }
    }
}

/// The most objects a memory listing holds (about 10 MB encoded).
pub(crate) const MAX_LISTED: usize = 100_000;

/// The file that marks a standalone node's socket directory (`shoal::serve`).
pub(crate) const STANDALONE: &str = "standalone";

/// How long a waiter spins for a result before it sleeps.
const SPIN: Duration = Duration::from_micros(50);
/// A waiter reading the workers' sockets (see `Node::spin_until`). Dropping
/// it, on any path out (a panic included), hands the connections back to
/// their reader threads.
struct Helping<'a> {
    node: &'a Node,
    conns: &'a [Arc<WorkerConn>],
    /// Whether parked readers must be woken now (the waiter goes to sleep
    /// without its result, so someone else must read); not when it got it.
    wake_readers: bool,
}

impl<'a> Helping<'a> {
    fn start(node: &'a Node, conns: &'a [Arc<WorkerConn>]) -> Self {
        for conn in conns {
            conn.helped.store(true, Ordering::Release);
        }
        Helping { node, conns, wake_readers: true }
    }
}

impl Drop for Helping<'_> {
    fn drop(&mut self) {
        for conn in self.conns {
            conn.helped.store(false, Ordering::Release);
        }
        self.node.helping.store(false, Ordering::Release);
        if self.wake_readers {
            self.node.wake_parked_readers();
        }
    }
}

/// Longest a reader thread stands aside for a waiter reading its socket.
const HELPED_PARK: Duration = Duration::from_micros(200);

/// How long an allocation waits for tasks to unpin what it could spill,
/// when nothing else can make room, before it is `ObjectStoreFull`.
const FULL_WAIT: Duration = Duration::from_secs(10);

/// How long `init` waits for every worker to finish its handshake.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Node {
    state: Mutex<NodeState>,
    changed: Condvar,
    arena: Arc<Arena>,
    pub(crate) config: Config,
    pub(crate) table: Vec<(String, u64)>,
    /// What this node's own program registers.
    code: code::CodeTable,
    pub(crate) build_hash: u64,
    /// A secret handed to our workers through their environment: it tells our
    /// own workers apart from any other client of the socket.
    pub(crate) worker_token: u64,
    /// The programs of drivers built from other code (index − 1).
    programs: std::sync::RwLock<Vec<Arc<programs::Program>>>,
    /// Serialises making a program (describing a driver's executable).
    making_program: Mutex<()>,
    pub(crate) next_worker: AtomicUsize,
    stopped: AtomicBool,
    /// Bumped by every `notify`, for waiters that spin before they sleep.
    changes: std::sync::atomic::AtomicU64,
    /// Threads sleeping on `changed` (see `Node::sleep`).
    sleepers: AtomicUsize,
    /// Spinning only pays when another core can run the worker meanwhile.
    spin_enabled: bool,
    /// Set while a waiting thread reads the workers' sockets (see `spin_until`).
    helping: AtomicBool,
    /// Where reader threads park while `helping` is set.
    help_parked: Mutex<()>,
    help_ended: Condvar,
    socket_dir: PathBuf,
    socket_path: PathBuf,
    accepted: AtomicUsize,
    refusals: Mutex<Vec<Error>>,
    supervisor: Mutex<Option<(Sender<SupervisorCmd>, JoinHandle<()>)>>,
    listener: Mutex<Option<JoinHandle<()>>>,
    spill_dir: spill::SpillDir,
    /// Spilled objects that tasks or clients wait for, to the restore thread.
    restorer: Mutex<Option<Sender<u64>>>,
    /// Allocations waiting for readers to unpin (an unpin wakes them).
    room_waiters: AtomicUsize,
}

/// A private directory for this node's socket, under `base/shoal-<uid>/`.
/// Directories left by nodes whose process is gone are removed on the way.
fn make_private_dir(base: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    let parent = base.join(format!("shoal-{}", nix::unistd::geteuid().as_raw()));
    shoal_ipc::peer::create_private_dir(&parent)?;
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|n| n.strip_prefix('-'))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid {
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = parent.join(format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    shoal_ipc::peer::create_private_dir(&dir)?;
    Ok(dir)
}

/// One pin of an object read in place in this process (see
/// `ObjectEntry::pins`), taken by [`Node::wait_sealed`]; dropping it unpins.
pub(crate) struct Pin {
    node: Arc<Node>,
    id: u64,
}

impl Pin {
    /// Adopt the pin `wait_sealed` took on `id` for the caller.
    pub(crate) fn new(node: Arc<Node>, id: u64) -> Pin {
        Pin { node, id }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.node.unpin(self.id);
    }
}

/// The restore thread: reads back the spilled objects that ready tasks and
/// clients' `get`s wait for, then dispatches. A failed read fails them (see
/// `NodeState::finish_restore`). Ends with the node.
fn restore_wanted(node: std::sync::Weak<Node>, wanted: crossbeam_channel::Receiver<u64>) {
    while let Ok(id) = wanted.recv() {
        let Some(node) = node.upgrade() else { return };
        let still_wanted = {
            let mut state = node.lock();
            state.spill.requested.remove(&id);
            state.waits_for(id)
        };
        if !still_wanted {
            // Its task ran meanwhile; others may want their turn.
            node.change_and_dispatch(|_| ());
            continue;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.restore(id, None))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot read spilled object {id} back: {e}"),
            Err(panic) => {
                tracing::error!("reading spilled object {id} back panicked: {}", crate::error::panic_message(&*panic))
            }
        }
    }
}

impl Node {
    /// Create the arena, start the threads and the workers, and wait until
    /// every worker has completed its handshake.
    pub(crate) fn start(config: Config, code: NodeCode) -> Result<Arc<Node>> {
        let arena = Arc::new(Arena::create_unreserved(config.store_bytes)?);
        let base = config.socket_base();
        let startup = |e: std::io::Error| Error::WorkerStartup(format!("socket directory: {e}"));
        let socket_dir = make_private_dir(&base, "node").map_err(startup)?;
        let spill_base = config.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spill_dir = make_private_dir(&spill_base, "spill")
            .map_err(|e| Error::WorkerStartup(format!("spill directory under {}: {e}", spill_base.display())))?;
        let socket_path = socket_dir.join("node.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket_path).map_err(startup)?;
        let mut table: Vec<(String, u64)> =
            code.names.iter().zip(&code.sources).map(|(n, &h)| (n.to_string(), h)).collect();
        table.sort();
        table.dedup();
        let mut state = NodeState::with_limits(
            arena.len(),
            config.pipeline_depth,
            config.workers as u32,
            config.worker_cap(),
            &config.resources,
        );
        let worker_token = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        };
        state.actors.token_base = worker_token;
        let node = Arc::new(Node {
            state: Mutex::new(state),
            changed: Condvar::new(),
            arena,
            code: code::CodeTable::new(&code),
            build_hash: code.build_hash,
            worker_token,
            programs: std::sync::RwLock::new(Vec::new()),
            making_program: Mutex::new(()),
            table,
            next_worker: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            changes: std::sync::atomic::AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            spin_enabled: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            helping: AtomicBool::new(false),
            help_parked: Mutex::new(()),
            help_ended: Condvar::new(),
            socket_dir,
            socket_path,
            accepted: AtomicUsize::new(0),
            refusals: Mutex::new(Vec::new()),
            supervisor: Mutex::new(None),
            listener: Mutex::new(None),
            spill_dir: spill::SpillDir::new(spill_dir),
            restorer: Mutex::new(None),
            room_waiters: AtomicUsize::new(0),
            config,
        });
        if let Err(e) = node.start_threads(listener) {
            node.shutdown();
            return Err(e);
        }
        if let Err(e) = node.wait_for_workers() {
            node.shutdown();
            return Err(e);
        }
        Ok(node)
    }

    /// Start reserving the arena, the listener and the supervisor (which
    /// starts the workers).
    fn start_threads(self: &Arc<Self>, listener: std::os::unix::net::UnixListener) -> Result<()> {
        let spawn_error = |e: std::io::Error| Error::WorkerStartup(format!("cannot start a thread: {e}"));
        if self.config.prefault {
            let reserving = self.arena.clone();
            std::thread::Builder::new()
                .name("shoal-reserve".into())
                .spawn(move || reserving.run_reserver())
                .map_err(spawn_error)?;
        } else {
            self.arena.skip_reservation();
        }
        let node = self;
        let (restore_tx, restore_rx) = crossbeam_channel::unbounded();
        let restore_node = Arc::downgrade(node);
        std::thread::Builder::new()
            .name("shoal-restore".into())
            .spawn(move || restore_wanted(restore_node, restore_rx))
            .map_err(spawn_error)?;
        *node.restorer.lock().expect("fresh lock") = Some(restore_tx);
        let listen_node = node.clone();
        let listener = std::thread::Builder::new()
            .name("shoal-listener".into())
            .spawn(move || pool::listen(listen_node, listener))
            .map_err(spawn_error)?;
        *node.listener.lock().expect("fresh lock") = Some(listener);

        let (tx, rx) = crossbeam_channel::unbounded();
        let plan = SpawnPlan {
            program: node.worker_program().to_path_buf(),
            socket: node.socket_path.clone(),
            workers: node.config.workers,
            token: node.worker_token,
            label: node.config.log_to_driver.then(|| Arc::new(NodeRoutes(Arc::downgrade(node))) as logs::Label),
        };
        let sup_node = node.clone();
        let supervisor = std::thread::Builder::new()
            .name("shoal-supervisor".into())
            .spawn(move || pool::supervise(sup_node, plan, rx))
            .map_err(spawn_error)?;
        *node.supervisor.lock().expect("fresh lock") = Some((tx, supervisor));
        Ok(())
    }

    fn wait_for_workers(&self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(e) = self.refusals.lock().expect("refusals").first() {
                return Err(e.clone());
            }
            if self.accepted.load(Ordering::SeqCst) >= self.config.workers {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WorkerStartup(format!(
                    "only {} of {} workers connected within {STARTUP_TIMEOUT:?}",
                    self.accepted.load(Ordering::SeqCst),
                    self.config.workers
                )));
            }
            state = self.sleep(state, Some((deadline - now).min(Duration::from_millis(100))));
        }
    }

    pub(crate) fn worker_program(&self) -> &Path {
        self.config.worker_program.as_deref().unwrap_or(Path::new("/proc/self/exe"))
    }

    pub(crate) fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub(crate) fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wake every waiter: something was sealed, failed or stopped. The
    /// condvar is touched only when someone sleeps on it: waking no one
    /// still costs a futex system call, on the path of every finished task.
    pub(crate) fn notify(&self) {
        self.changes.fetch_add(1, Ordering::Release);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Sleep on the node's condvar, `state` released meanwhile, until
    /// notified or `timeout` passes. Counted in `sleepers` while the lock is
    /// held, so a change made after the caller last looked (under the
    /// lock) sees it and notifies.
    fn sleep<'a>(&'a self, state: MutexGuard<'a, NodeState>, timeout: Option<Duration>) -> MutexGuard<'a, NodeState> {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let state = match timeout {
            None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some(timeout) => self.changed.wait_timeout(state, timeout).unwrap_or_else(|e| e.into_inner()).0,
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        state
    }

    /// For a connection's reader thread woken by input: while a waiting
    /// thread is reading this connection (`spin_until`), stand aside for up
    /// to [`HELPED_PARK`] instead of competing with it for the input and for
    /// a CPU. Returns whether it parked. A waiter that stops without its
    /// result (or with tasks still to read) wakes parked readers at once.
    pub(crate) fn park_while_helped(&self, conn: &WorkerConn) -> bool {
        if !conn.helped.load(Ordering::Acquire) {
            return false;
        }
        let guard = self.help_parked.lock().unwrap_or_else(|e| e.into_inner());
        if conn.helped.load(Ordering::Acquire) {
            drop(self.help_ended.wait_timeout(guard, HELPED_PARK).unwrap_or_else(|e| e.into_inner()));
        }
        true
    }

    /// Spin, without the lock, until `done` holds, the deadline passes, or
    /// nothing has happened for [`SPIN`]: a result a few microseconds away is
    /// then picked up without the cost of sleeping and being woken.
    ///
    /// One waiting thread at a time also reads the workers' sockets itself
    /// while it spins (see [`WorkerConn::help_read`]): a result then reaches
    /// it with no other thread woken on the way, and the tasks that depend on
    /// it are dispatched from here. The connections' reader threads stand
    /// aside meanwhile, and do the reading whenever no one is spinning. `seen`
    /// is the change count read under the lock, when `done` was last false.
    fn spin_until(
        &self,
        mut seen: u64,
        conns: &[Arc<WorkerConn>],
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut NodeState) -> bool,
    ) {
        let helping = (!self.helping.swap(true, Ordering::Acquire)).then(|| Helping::start(self, conns));
        let mut quiet_since = Instant::now();
        loop {
            let mut arrived = false;
            if helping.is_some() {
                for conn in conns {
                    arrived |= conn.help_read(self);
                }
            }
            let changes = self.changes.load(Ordering::Acquire);
            if changes != seen {
                seen = changes;
                arrived = true;
                if done(&mut self.lock()) {
                    if let Some(mut helping) = helping {
                        helping.wake_readers = false;
                    }
                    return;
                }
            }
            let now = Instant::now();
            if arrived {
                quiet_since = now;
            } else if now - quiet_since >= SPIN || self.is_stopped() {
                return;
            }
            if deadline.is_some_and(|d| now >= d) {
                return;
            }
            std::thread::yield_now();
        }
    }

    pub(crate) fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Remember why one of our workers was refused (the first reason is
    /// what `init` reports).
    pub(crate) fn record_refusal(&self, error: Error) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if refusals.is_empty() {
            refusals.push(error);
        }
        drop(refusals);
        let _guard = self.lock();
        self.notify();
    }

    /// Change the bookkeeping with `change`, then dispatch what became
    /// ready and wake waiters: messages are queued under the lock and sent
    /// after it (see `state.rs`). Returns what `change` returned.
    pub(crate) fn change_and_dispatch<R>(&self, change: impl FnOnce(&mut NodeState) -> R) -> R {
        let (result, ready) = {
            let mut state = self.lock();
            let result = change(&mut state);
            (result, self.dispatch_locked(&mut state))
        };
        self.notify();
        conn::push(ready);
        result
    }

    /// Dispatch under the lock: queue the messages (returns the connections
    /// to push once it is released) and ask for the extra workers wanted.
    fn dispatch_locked(&self, state: &mut NodeState) -> Vec<Arc<WorkerConn>> {
        let mut outbox = Outbox::new();
        state.dispatch(&mut outbox);
        if !state.spill.wanted.is_empty() {
            let wanted = std::mem::take(&mut state.spill.wanted);
            if let Some(tx) = &*self.restorer.lock().unwrap_or_else(|e| e.into_inner()) {
                for id in wanted {
                    let _ = tx.send(id);
                }
            }
        }
        let spawn = std::mem::take(&mut state.spawn_wanted);
        let for_processes =
            !state.actors.spawn.is_empty() || !state.kill.is_empty() || !state.program_spawns.is_empty();
        if spawn > 0 || for_processes {
            if let Some((tx, _)) = &*self.supervisor.lock().unwrap_or_else(|e| e.into_inner()) {
                if spawn > 0 {
                    let _ = tx.send(SupervisorCmd::Spawn(spawn));
                }
                for program in state.program_spawns.drain(..) {
                    if let Some(program) = self.program(program) {
                        let _ = tx.send(SupervisorCmd::SpawnOf(program));
                    }
                }
                for (token, program) in state.actors.spawn.drain(..) {
                    let _ = tx.send(SupervisorCmd::SpawnActor(token, self.program(program)));
                }
                for pid in state.kill.drain(..) {
                    let _ = tx.send(SupervisorCmd::Kill(pid));
                }
            }
        }
        conn::queue(outbox)
    }

    /// Whether a reader should watch worker `id`'s socket before sleeping
    /// (see `WorkerSlot::in_nested_exchange`).
    pub(crate) fn spins_for(&self, id: usize) -> bool {
        self.spin_enabled && self.lock().workers.get(&id).is_some_and(|s| s.in_nested_exchange())
    }

    /// An extra worker asked for (of `program`) could not start.
    pub(crate) fn spawn_failed(&self, program: u32) {
        let mut state = self.lock();
        match program.checked_sub(1) {
            None => state.spawn_pending = state.spawn_pending.saturating_sub(1),
            Some(i) => {
                if let Some(pool) = state.program_pools.get_mut(i as usize) {
                    pool.pending = pool.pending.saturating_sub(1);
                    pool.failures += 1;
                }
            }
        }
    }

    /// Whether a client with process id `pid` is connected (it passed its
    /// handshake and its connection has not been reaped).
    pub(crate) fn knows_pid(&self, pid: u32) -> bool {
        self.lock().workers.values().any(|s| s.conn.pid == pid)
    }

    /// Program `index` of a driver built from other code (`None` for 0).
    pub(crate) fn program(&self, index: u32) -> Option<Arc<programs::Program>> {
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        index.checked_sub(1).and_then(|i| programs.get(i as usize)).cloned()
    }

    /// The registered name `name`, if program `program` (0: this node's
    /// own) has that remote function.
    pub(crate) fn function(&self, program: u32, name: &str) -> Option<&'static str> {
        match program {
            0 => self.code.function(name),
            p => self.program(p)?.code.function(name),
        }
    }

    /// The actor method `name` and its class, if program `program` has it.
    pub(crate) fn method(&self, program: u32, name: &str) -> Option<(&'static str, &'static str)> {
        match program {
            0 => self.code.method(name),
            p => self.program(p)?.code.method(name),
        }
    }

    /// The actor type `class` and its constructor, if program `program` has it.
    pub(crate) fn actor_class(&self, program: u32, class: &str) -> Option<(&'static str, &'static str)> {
        match program {
            0 => self.code.actor_class(class),
            p => self.program(p)?.code.actor_class(class),
        }
    }

    /// The program a driver built from other code (`build`) runs its tasks
    /// on: that of an earlier driver of the same build, else its own
    /// executable (process `pid`), described and checked against `build`.
    pub(crate) fn program_for_driver(&self, pid: i32, build: u64) -> Result<u32> {
        let _making = self.making_program.lock().unwrap_or_else(|e| e.into_inner());
        let known =
            self.programs.read().unwrap_or_else(|e| e.into_inner()).iter().find(|p| p.build_hash == build).cloned();
        let index = match known {
            Some(program) => program.index,
            None => {
                let exe = programs::Program::open_exe(pid)
                    .map_err(|e| Error::WorkerStartup(format!("cannot open the driver's executable: {e}")))?;
                let code = code::code_of(&exe.1)?;
                if code.build_hash != build {
                    return Err(Error::WorkerStartup(format!(
                        "the driver's executable `{}` was built from other code than the driver runs",
                        exe.2.display()
                    )));
                }
                let mut programs = self.programs.write().unwrap_or_else(|e| e.into_inner());
                let index = programs.len() as u32 + 1;
                let token = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::hash::DefaultHasher::new();
                    (self.worker_token, index).hash(&mut h);
                    h.finish()
                };
                programs.push(Arc::new(programs::Program::new(index, exe, token, code)));
                // Not under `programs`: a dispatch holds the state lock and
                // reads `programs`. (No worker or driver of the program
                // exists before this returns.)
                drop(programs);
                self.lock().program_pools.push(programs::ProgramPool::default());
                index
            }
        };
        Ok(index)
    }

    /// The build a client presenting `token` must have: the node's for its
    /// workers, a program's for that program's, and for an actor's process
    /// its program's; `None` for a token the node did not give out.
    pub(crate) fn expected_build(&self, token: u64) -> Option<(u32, u64)> {
        if token == self.worker_token {
            return Some((0, self.build_hash));
        }
        let programs = self.programs.read().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = programs.iter().find(|p| p.token == token) {
            return Some((p.index, p.build_hash));
        }
        drop(programs);
        let program = self.lock().actor_program(token)?;
        Some((program, self.program(program).map_or(self.build_hash, |p| p.build_hash)))
    }

    /// Tell idle workers beyond the configured count to exit (the
    /// supervisor calls this now and then).
    pub(crate) fn retire_idle_extras(&self) {
        let retiring = self.lock().retire_idle(self.config.workers);
        for conn in retiring {
            conn.send(&crate::protocol::ToClient::Shutdown);
        }
    }

    /// A client passed the handshake presenting `token`: a pool worker, an
    /// actor's process, or another client.
    fn register_worker(&self, mut slot: WorkerSlot, token: u64) {
        self.change_and_dispatch(|state| {
            match state.actor_connected(token, slot.conn.id, slot.conn.pid) {
                Some((actor, serves)) => {
                    slot.actor = Some(actor);
                    if !serves {
                        slot.retiring = true;
                        state.replies.push((slot.conn.id, crate::protocol::ToClient::Shutdown));
                    }
                }
                None if token == self.worker_token => state.spawn_pending = state.spawn_pending.saturating_sub(1),
                None if slot.conn.program != 0 && token != 0 => {
                    let pool = &mut state.program_pools[slot.conn.program as usize - 1];
                    pool.pending = pool.pending.saturating_sub(1);
                    pool.failures = 0;
                }
                // Not started by this node: a driver, which runs no tasks.
                None => {
                    slot.driver = true;
                    if let Some(pool) = slot.conn.program.checked_sub(1).map(|i| &mut state.program_pools[i as usize]) {
                        pool.drivers += 1;
                    }
                }
            }
            let driver = slot.driver;
            state.workers.insert(slot.conn.id, slot);
            if !driver {
                // Under the lock, so `wait_for_workers` cannot miss the wake-up.
                self.accepted.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    /// A worker's connection ended (`dropped`: the node ended it, why). The
    /// supervisor reaps the process first, so the tasks that fail name how
    /// it ended and what it last wrote to stderr; then a replacement starts.
    fn worker_lost(&self, conn: &Arc<WorkerConn>, dropped: Option<String>) {
        // No task goes to it while the supervisor reaps it.
        if let Some(slot) = self.lock().workers.get_mut(&conn.id) {
            slot.retiring = true;
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        let asked = match &*self.supervisor.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((tx, _)) => tx.send(SupervisorCmd::Lost { pid: conn.pid, dropped, reply }).is_ok(),
            None => false,
        };
        // The supervisor waits at most about a second for an exit; a node
        // stopping meanwhile drops the question.
        let death = asked.then(|| answer.recv_timeout(Duration::from_secs(5)).ok()).flatten();
        // Unreaped, the process may still write into its allocations: they
        // are leaked rather than handed to someone else. (A driver, no child
        // of ours, counts as gone with its connection: see "Known limits".)
        let reaped = death.is_some();
        let death = death.unwrap_or_else(|| Death { cause: "it was not reaped in time".into(), stderr: String::new() });
        self.change_and_dispatch(|state| state.worker_lost(conn.id, conn.pid, &death, reaped));
    }

    /// Count a new handle to `id`; false if no such object exists.
    pub(crate) fn acquire(&self, id: u64) -> bool {
        self.lock().add_ref(id)
    }

    pub(crate) fn release(&self, id: u64) {
        self.release_all(std::slice::from_ref(&id));
    }

    /// Drop one reference per entry of `ids`, in one lock hold.
    pub(crate) fn release_all(&self, ids: &[u64]) {
        let mut state = self.lock();
        for &id in ids {
            state.release(id);
        }
        if state.needs_dispatch() {
            // An actor lost its last handle: its process is told to exit.
            let ready = self.dispatch_locked(&mut state);
            drop(state);
            conn::push(ready);
        }
    }

    /// Whether a value of this layout travels inline rather than in the arena.
    pub(crate) fn is_inline(&self, layout: &Layout) -> bool {
        layout.fits_inline(self.config.inline_max)
    }

    /// An arena allocation of `len` bytes, for this process (`worker`
    /// `None`) or for a worker's object (recorded as its unsealed
    /// allocation). When the arena is full, objects are spilled to make room
    /// (see `room.rs`): written out without the lock, in batches, and the
    /// allocation tried again; when nothing more can be spilled, the error
    /// is `ObjectStoreFull` naming what is pinned.
    pub(crate) fn allocate(&self, len: u64, worker: Option<usize>) -> Result<u64> {
        self.allocate_as(len, worker, false, None)
    }

    /// [`allocate`](Self::allocate); a `restore` may not push out objects
    /// read back for tasks not yet dispatched (`SpillBook::kept`). Waiting
    /// for room ends at `deadline` (a `get_timeout`'s).
    fn allocate_as(&self, len: u64, worker: Option<usize>, restore: bool, deadline: Option<Instant>) -> Result<u64> {
        let mut state = self.lock();
        let mut give_up = None;
        loop {
            let full = match worker {
                Some(worker) => state.allocate_for(worker, len),
                None => state.allocator.allocate(len).map_err(Error::from),
            };
            let (requested, capacity, free, largest_free) = match full {
                Ok(offset) => return Ok(offset),
                Err(Error::ObjectStoreFull { requested, capacity, free, largest_free, .. }) => {
                    (requested, capacity, free, largest_free)
                }
                Err(other) => return Err(other),
            };
            let full = |state: &NodeState| Error::ObjectStoreFull {
                requested,
                capacity,
                free,
                largest_free,
                pinned: state.pinned_bytes(),
            };
            if len > state.allocator.capacity() || !self.config.spill {
                return Err(full(&state));
            }
            // A driver thread reading the workers' sockets may have got here
            // (a worker's `Allocate`): spilling or waiting takes long, so the
            // readers must not stand aside for it meanwhile.
            self.stop_helping(&state);
            let (evicted, batch) = state.make_room(len, restore);
            if batch.is_empty() {
                if evicted > 0 {
                    continue;
                }
                if state.spill.batches_in_flight > 0 {
                    // Another thread's spill may make room: wait for it.
                    state = self.sleep(state, None);
                    continue;
                }
                // Tasks out at other workers pin their arguments until they
                // end (as plasma queues a create while the store is full);
                // the asking worker's own cannot end while it waits here.
                let give_up = *give_up.get_or_insert_with(|| {
                    let wait_ends = Instant::now() + FULL_WAIT;
                    deadline.map_or(wait_ends, |d| d.min(wait_ends))
                });
                let now = Instant::now();
                let others_busy = state.workers.iter().any(|(&id, w)| Some(id) != worker && !w.in_flight.is_empty());
                if others_busy && now < give_up && !self.is_stopped() {
                    let wait = (give_up - now).min(Duration::from_millis(50));
                    self.room_waiters.fetch_add(1, Ordering::AcqRel);
                    state = self.sleep(state, Some(wait));
                    self.room_waiters.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                return Err(full(&state));
            }
            drop(state);
            let file = self.write_batch(&batch);
            state = self.lock();
            let written = file.is_some();
            state.finish_spill(&batch, file);
            self.notify();
            if !written {
                // The same objects would be chosen again (disk full, the
                // directory gone): what cannot be spilled is a full store.
                return Err(full(&state));
            }
        }
    }

    /// Make every connection's reader read for itself again (see
    /// [`Node::park_while_helped`]), whoever is helping.
    fn stop_helping(&self, state: &NodeState) {
        if self.helping.load(Ordering::Acquire) {
            for slot in state.workers.values() {
                slot.conn.helped.store(false, Ordering::Release);
            }
            self.wake_parked_readers();
        }
    }

    /// Wake the reader threads standing aside in [`Node::park_while_helped`].
    fn wake_parked_readers(&self) {
        let _guard = self.help_parked.lock().unwrap_or_else(|e| e.into_inner());
        self.help_ended.notify_all();
    }

    /// Write a batch of objects chosen to spill into a new spill file.
    fn write_batch(&self, batch: &[room::Victim]) -> Option<Arc<std::fs::File>> {
        let parts: Result<Vec<&[u8]>> = batch
            .iter()
            .map(|v| {
                // SAFETY: (1) each victim is sealed, so no process writes its
                // bytes; (2) `make_room` holds a reference to it and marks it
                // as being written, so it is neither freed nor evicted (its
                // allocation reused) until `finish_spill`, after the write.
                unsafe { self.arena.bytes(v.offset, v.len) }.map_err(Error::from)
            })
            .collect();
        let written = parts.map_err(|e| std::io::Error::other(e.to_string())).and_then(|parts| {
            let file = self.spill_dir.new_file()?;
            spill::write_parts(&file, &parts)?;
            Ok(file)
        });
        match written {
            Ok(file) => Some(Arc::new(file)),
            Err(e) => {
                tracing::error!("cannot spill to {}: {e}", self.spill_dir.path().display());
                None
            }
        }
    }

    /// Read object `id` back into the arena if it is spilled (another
    /// thread reading it back is waited for), waiting for room and for
    /// that thread no longer than `deadline`.
    pub(crate) fn restore(&self, id: u64, deadline: Option<Instant>) -> Result<()> {
        loop {
            let mut state = self.lock();
            let (file, pos, len) = match state.begin_restore(id) {
                room::Restore::NotSpilled => return Ok(()),
                room::Restore::InProgress => {
                    match deadline {
                        None => drop(self.sleep(state, None)),
                        Some(d) => {
                            let now = Instant::now();
                            if now >= d {
                                return Err(Error::Timeout(Duration::ZERO));
                            }
                            drop(self.sleep(state, Some(d - now)));
                        }
                    }
                    continue;
                }
                room::Restore::Read { file, pos, len } => (file, pos, len),
            };
            drop(state);
            // Whatever happens, `finish_restore` runs: a panic here must not
            // leave the object marked as being read back.
            let read_back = std::panic::AssertUnwindSafe(|| {
                self.allocate_as(len, None, true, deadline).and_then(|offset| {
                    let read = self.arena.prepare(offset, len).map_err(Error::from).and_then(|()| {
                        // SAFETY: `offset..offset+len` was just allocated to this
                        // thread and no object refers to it until
                        // `finish_restore` publishes it.
                        let dst = unsafe { self.arena.bytes_mut(offset, len) }?;
                        spill::read_at(&file, pos, dst)
                            .map_err(|e| Error::Serialization(format!("reading spilled object {id} back: {e}")))
                    });
                    match read {
                        Ok(()) => Ok(offset),
                        Err(e) => {
                            self.lock().allocator.free(offset);
                            Err(e)
                        }
                    }
                })
            });
            let restored = std::panic::catch_unwind(read_back).unwrap_or_else(|panic| {
                Err(Error::Serialization(format!(
                    "reading spilled object {id} back panicked: {}",
                    crate::error::panic_message(&*panic)
                )))
            });
            let failed = restored.as_ref().err().cloned();
            self.change_and_dispatch(|state| state.finish_restore(id, restored));
            return failed.map_or(Ok(()), Err);
        }
    }

    /// A reader of object `id` in place is done (see `ObjectEntry::pins`);
    /// an allocation waiting for room may try again.
    pub(crate) fn unpin(&self, id: u64) {
        self.lock().unpin(id);
        if self.room_waiters.load(Ordering::Acquire) > 0 {
            self.notify();
        }
    }

    /// Store an object of `layout` that `write` writes; returns its id with
    /// one reference (the caller's). On failure nothing stays allocated.
    pub(crate) fn put(&self, layout: Layout, write: impl FnOnce(&Layout, &mut [u8]) -> Result<()>) -> Result<u64> {
        let refs = layout.contained_refs().to_vec();
        if self.is_inline(&layout) {
            let bytes = layout.into_inline().expect("inline layouts hold no arrays");
            return Ok(self.lock().new_object(ObjectState::Inline(bytes.into()), refs));
        }
        let len = layout.total_len() as u64;
        let offset = self.allocate(len, None)?;
        let writing = match self.arena.prepare_write(offset, len) {
            Ok(writing) => writing,
            Err(e) => {
                self.lock().allocator.free(offset);
                return Err(e.into());
            }
        };
        // SAFETY: (1) `offset..offset+len` was just allocated to this thread by
        // the allocator, which only this node runs; (2) no object id refers to
        // it yet, so no other thread or process can reach those bytes until
        // `new_object` below publishes them.
        let written = match unsafe { self.arena.bytes_mut(offset, len) } {
            // `write` runs user code (`Serialize`): a panic frees the
            // allocation on its way out.
            Ok(dst) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&layout, dst))) {
                Ok(written) => written,
                Err(panic) => {
                    drop(writing);
                    self.lock().allocator.free(offset);
                    std::panic::resume_unwind(panic);
                }
            },
            Err(e) => Err(e.into()),
        };
        drop(writing);
        if let Err(e) = written {
            self.lock().allocator.free(offset);
            return Err(e);
        }
        Ok(self.lock().new_object(ObjectState::Arena { offset, len }, refs))
    }

    /// Store an already encoded object (holding no arrays) in the arena.
    pub(crate) fn put_bytes(&self, bytes: &[u8], refs: Vec<u64>) -> Result<u64> {
        let len = bytes.len() as u64;
        let offset = self.allocate(len, None)?;
        let written = self.arena.prepare(offset, len).map_err(Error::from).and_then(|()| {
            // SAFETY: as in `put`: the range was just allocated to this thread
            // and no id refers to it yet.
            let dst = unsafe { self.arena.bytes_mut(offset, len) }?;
            dst.copy_from_slice(bytes);
            Ok(())
        });
        if let Err(e) = written {
            self.lock().allocator.free(offset);
            return Err(e);
        }
        Ok(self.lock().new_object(ObjectState::Arena { offset, len }, refs))
    }

    /// Submit a task from this process. Returns its output ids, each with
    /// one reference (the caller's). The caller keeps the objects in `args`
    /// alive until this returns.
    /// `actor`: a call of that actor's method `function`.
    pub(crate) fn submit(
        &self,
        function: &'static str,
        options: &TaskOptions,
        args: Vec<SubmitArg>,
        num_returns: usize,
        failure: Option<Error>,
        actor: Option<u64>,
    ) -> Vec<u64> {
        let args = args.into_iter().map(ArgSpec::from).collect();
        let (outputs, ready) = {
            let mut state = self.lock();
            let outputs = match actor {
                None => state.add_task(function, options.clone(), args, num_returns, failure),
                Some(actor) => {
                    let outputs = state.new_outputs(num_returns);
                    let class = self.code.method(function).map(|(_, class)| class);
                    let caller = (actor_book::LOCAL, 0);
                    state.add_call(actor, caller, function, class, args, outputs.clone(), failure, Vec::new());
                    outputs
                }
            };
            (outputs, self.dispatch_locked(&mut state))
        };
        conn::push(ready);
        outputs
    }

    /// Create an actor of `class`; returns its id, the id of its handle
    /// object, with one reference (the caller's).
    pub(crate) fn create_actor(
        &self,
        class: &'static str,
        options: &ActorOptions,
        args: Vec<SubmitArg>,
        failure: Option<Error>,
    ) -> u64 {
        let (id, ready) = {
            let mut state = self.lock();
            let id = state.new_object(ObjectState::Inline(Vec::new().into()), Vec::new());
            let (class, constructor, failure) = match self.actor_class(0, class) {
                Some((class, constructor)) => (class, constructor, failure),
                None => {
                    let program = self.worker_program().display().to_string();
                    (
                        "<unknown actor>",
                        "<unknown constructor>",
                        Some(Error::FunctionNotFound { function: class.into(), program }),
                    )
                }
            };
            state.create_actor(id, class, constructor, options.clone(), args, failure, 0);
            (id, self.dispatch_locked(&mut state))
        };
        conn::push(ready);
        id
    }

    /// The live actor named `name`: its id, with a reference counted for
    /// the caller, and its class.
    pub(crate) fn get_actor(&self, name: &str) -> Result<(u64, &'static str)> {
        let mut state = self.lock();
        let (id, class) = state.find_actor(name)?;
        state.add_ref(id);
        Ok((id, class))
    }

    /// Cancel the task producing object `id` (see `cancel.rs`).
    pub(crate) fn cancel(&self, id: u64, force: bool) -> Result<()> {
        self.change_and_dispatch(|state| state.cancel_object(id, force))
    }

    /// End actor `id` now (`shoal::kill`).
    pub(crate) fn kill_actor(&self, id: u64) {
        self.change_and_dispatch(|state| state.kill_actor(id));
    }

    /// Send a worker's `line` to connected driver `owner` (a client id);
    /// false if no such driver is connected.
    fn output_to(&self, owner: u64, sink: logs::Sink, line: &[u8]) -> bool {
        let state = self.lock();
        let Some(slot) = usize::try_from(owner).ok().and_then(|id| state.workers.get(&id)).filter(|s| s.driver) else {
            return false;
        };
        let stderr = matches!(sink, logs::Sink::Stderr);
        slot.conn.send(&crate::protocol::ToClient::Output { stderr, bytes: line.to_vec() });
        true
    }

    /// The prefix of worker `pid`'s output lines: what it runs now.
    fn label_of(&self, pid: u32) -> String {
        let state = self.lock();
        let slot = state.workers.values().find(|w| w.conn.pid == pid);
        let name = slot.and_then(|slot| match slot.actor {
            Some(actor) => state.actors.actors.get(&actor).map(|a| a.class),
            None => slot.in_flight.front().and_then(|t| state.tasks.get(t)).map(|t| t.function),
        });
        logs::prefix(name, pid)
    }

    /// What this node reports about itself.
    pub(crate) fn report(&self) -> NodeStatus {
        let standalone = self.socket_dir().join(STANDALONE).exists();
        let state = self.lock();
        let totals = state.spill.totals;
        let store = StoreStats {
            capacity: state.allocator.capacity(),
            used_bytes: state.allocator.capacity() - state.allocator.free_bytes(),
            objects: state.objects.len(),
            spilled_objects: state.spill.spilled_objects,
            spilled_bytes: state.spill.spilled_bytes,
            spill_files: state.spill.open_files(),
            spill_file_bytes: state.spill.file_bytes,
            total_spilled_objects: totals.spilled_objects,
            total_spilled_bytes: totals.spilled_bytes,
            total_restored_objects: totals.restored_objects,
            total_restored_bytes: totals.restored_bytes,
        };
        NodeStatus {
            pid: std::process::id(),
            socket: self.socket_path.clone(),
            uptime: state.born.elapsed(),
            standalone,
            store,
            reserved_bytes: self.arena.reserved(),
            ..state.status()
        }
    }

    /// The `limit` largest objects, with totals.
    /// At most [`MAX_LISTED`] objects: an answer fits in one frame.
    pub(crate) fn memory(&self, limit: usize) -> MemoryReport {
        self.lock().memory(limit.min(MAX_LISTED))
    }

    /// The tasks this node finished lately, oldest first (copied out
    /// under the lock, made into events after).
    pub(crate) fn timeline(&self) -> Vec<TaskEvent> {
        let entries: Vec<state::TimelineEntry> = self.lock().timeline.iter().copied().collect();
        inspect::timeline_events(&entries)
    }

    /// Wait until object `id` is sealed or failed (read back if it was
    /// spilled); returns its state — an arena object pinned for the caller,
    /// which unpins it when it no longer reads it in place — and,
    /// with `precount`, the objects it contains with one reference counted
    /// for the caller per entry (an id contained twice is listed, and
    /// counted, twice), in the order the object serialized them.
    pub(crate) fn wait_sealed(
        &self,
        id: u64,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        precount: bool,
    ) -> Result<(ObjectState, Vec<u64>)> {
        let mut state = self.lock();
        let mut spun = false;
        loop {
            match state.objects.get_mut(&id) {
                None => return Err(Error::ObjectNotFound(id)),
                Some(entry) if matches!(entry.state, ObjectState::Spilled { .. }) => {
                    drop(state);
                    // Room for it is waited for no longer than the caller waits.
                    self.restore(id, deadline).map_err(|e| match deadline {
                        Some(d) if Instant::now() >= d => Error::Timeout(timeout.unwrap_or_default()),
                        _ => e,
                    })?;
                    state = self.lock();
                    continue;
                }
                Some(entry) if !matches!(entry.state, ObjectState::Pending) => {
                    let sealed = entry.state.clone();
                    if matches!(sealed, ObjectState::Arena { .. }) {
                        // Read in place by the caller, which unpins it.
                        entry.pins += 1;
                    }
                    let mut counted = if precount { entry.contained.clone() } else { Vec::new() };
                    // Each is live (this object counts it), but only what was
                    // really counted is handed out.
                    counted.retain(|&c| state.add_ref(c));
                    return Ok((sealed, counted));
                }
                Some(_) if self.is_stopped() => return Err(Error::NodeStopped),
                Some(_) => {}
            }
            if !spun && self.spin_enabled {
                spun = true;
                let seen = self.changes.load(Ordering::Acquire);
                let conns = state.connections();
                drop(state);
                self.spin_until(seen, &conns, deadline, |state| {
                    state.objects.get(&id).is_none_or(|e| !matches!(e.state, ObjectState::Pending))
                });
                state = self.lock();
                continue;
            }
            state = match deadline {
                None => self.sleep(state, None),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout(timeout.unwrap_or_default()));
                    }
                    self.sleep(state, Some(deadline - now))
                }
            };
        }
    }

    /// Wait until at least `num` of `len` objects are sealed or failed, or the
    /// deadline passes. Returns the positions of the first `num` that are, in
    /// order (fewer if the deadline passed); `id(i)` is the id at position `i`.
    pub(crate) fn wait_any(
        &self,
        len: usize,
        id: impl Fn(usize) -> u64,
        num: usize,
        deadline: Option<Instant>,
    ) -> Vec<usize> {
        // Only the first `num` finished ids matter: the scan stops there, so
        // Ray's `wait(pending, 1)` loop over finished refs costs O(1) here.
        let scan = |state: &NodeState| -> Vec<usize> {
            (0..len)
                .filter(|&i| state.objects.get(&id(i)).is_none_or(|e| !matches!(e.state, ObjectState::Pending)))
                .take(num)
                .collect()
        };
        self.wait_for(deadline, |state| Some(scan(state)).filter(|done| done.len() >= num))
            .unwrap_or_else(|| scan(&self.lock()))
    }

    /// Item `index` of the stream ending in object `end` (see `streams.rs`),
    /// waiting until the deadline: its id, with a reference counted for the
    /// caller; `None` after the last item; or the error that ended the
    /// stream.
    pub(crate) fn stream_next(&self, end: u64, index: u64, deadline: Option<Instant>) -> Result<Option<u64>> {
        // Taking the items before `index` releases them, and taking item
        // `index` may resume a paused producer: what that leaves to do is
        // sent at once, whether the item is there or not (the first look,
        // before any sleep, is the only one that releases).
        let take = |state: &mut NodeState, ready: &mut Vec<Arc<WorkerConn>>| {
            let found = state.stream_next(end, index);
            if let Some(Ok(Some(id))) = found {
                state.add_ref(id);
            }
            if state.needs_dispatch() {
                ready.extend(self.dispatch_locked(state));
            }
            found
        };
        let mut ready = Vec::new();
        let first = take(&mut self.lock(), &mut ready);
        conn::push(std::mem::take(&mut ready));
        let found = first.or_else(|| self.wait_for(deadline, |state| take(state, &mut ready)));
        conn::push(ready);
        match found {
            Some(found) => found,
            None if self.is_stopped() => Err(Error::NodeStopped),
            None => Err(Error::Timeout(Duration::ZERO)),
        }
    }

    /// The consumer of the stream ending in `end` is gone (see `streams.rs`).
    pub(crate) fn stream_close(&self, end: u64) {
        self.change_and_dispatch(|state| state.stream_close(end));
    }

    /// Wait until `take` finds what the caller waits for (looked for under
    /// the lock), spinning first (see [`spin_until`](Self::spin_until)), then
    /// sleeping; `None` once the node stopped or the deadline passed.
    fn wait_for<R>(&self, deadline: Option<Instant>, mut take: impl FnMut(&mut NodeState) -> Option<R>) -> Option<R> {
        let mut state = self.lock();
        let mut spun = false;
        loop {
            if let Some(found) = take(&mut state) {
                return Some(found);
            }
            if self.is_stopped() {
                return None;
            }
            if !spun && self.spin_enabled {
                spun = true;
                let seen = self.changes.load(Ordering::Acquire);
                let conns = state.connections();
                drop(state);
                let mut found = None;
                self.spin_until(seen, &conns, deadline, |state| {
                    found = take(state);
                    found.is_some()
                });
                if found.is_some() {
                    return found;
                }
                state = self.lock();
                continue;
            }
            state = match deadline {
                None => self.sleep(state, None),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.sleep(state, Some(deadline - now))
                }
            };
        }
    }

    /// Stop the node: fail what is pending, stop the workers, remove the socket.
    pub(crate) fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let conns: Vec<Arc<WorkerConn>> = {
            let mut state = self.lock();
            state.stop();
            state.workers.values().map(|w| w.conn.clone()).collect()
        };
        self.notify();
        for conn in &conns {
            conn.send(&crate::protocol::ToClient::Shutdown);
        }
        if let Some((tx, handle)) = self.supervisor.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(SupervisorCmd::Shutdown);
            let _ = handle.join();
        }
        for conn in &conns {
            conn.close();
        }
        // Wake the listener's accept() so it sees the stop flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.socket_path);
        if let Some(handle) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
        // The files in it have no names: they go when the node's state does.
        let _ = std::fs::remove_dir_all(self.spill_dir.path());
        self.restorer.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.arena.cancel_reservation();
    }
}
