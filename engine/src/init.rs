//! Starting a node in this process and the guard that stops it: [`init`],
//! [`init_once`] (one node for every caller), and the node started on first
//! use when no one called either ([`current_or_start`]: `put` and, through
//! generated code, `remote`). What a running
//! node reports about itself ([`Shoal`]'s methods) is here too.
//!
//! It owns no node machinery: `node/` does, and the runtime below it says
//! which node this process talks to.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::node::{Node, STANDALONE};
use crate::registry;
use crate::runtime::Runtime;
use crate::status::{ActorInfo, MemoryReport, NodeStatus, StoreStats, TaskEvent};

/// This process's node: an embedded one, or a connection to a standalone
/// node ([`Config::address`]). Dropping an embedded node stops every worker;
/// dropping a connection disconnects, releasing what this process held, and
/// leaves the node running. Afterwards, new calls report
/// [`Error::NotInitialized`]; a ref that outlives the node still reads an
/// object that was ready (it keeps the store mapped), and one that was
/// pending reports [`Error::NodeStopped`].
///
/// Its methods report on the node; a connected driver asks the node, and
/// gets empty figures if it cannot be reached. A connected driver's
/// [`SharedArray`](crate::SharedArray) views are valid while it is
/// connected: drop them before the guard.
#[must_use = "the node shuts down (or the connection closes) when this guard is dropped"]
pub struct Shoal {
    node: NodeHandle,
}

/// The node a [`Shoal`] stands for.
enum NodeHandle {
    Embedded(Arc<Node>),
    Connected {
        client: Arc<Client>,
        address: PathBuf,
    },
    /// A Ray cluster (the `ray` feature); `address` as given.
    #[cfg_attr(not(feature = "ray"), allow(dead_code))]
    Ray {
        address: PathBuf,
    },
}

impl Shoal {
    fn report(&self) -> NodeStatus {
        match &self.node {
            NodeHandle::Embedded(node) => node.report(),
            NodeHandle::Connected { client, .. } => client.report().unwrap_or_default(),
            NodeHandle::Ray { .. } => NodeStatus::default(),
        }
    }

    /// Path of the node's Unix socket (inside a private, mode 0700 directory).
    pub fn socket_path(&self) -> &Path {
        match &self.node {
            NodeHandle::Embedded(node) => node.socket_path(),
            NodeHandle::Connected { address, .. } | NodeHandle::Ray { address } => address,
        }
    }

    /// What `shoal status` prints: the node's process, CPUs and resources
    /// in use, workers (what each runs, for which driver), tasks by state,
    /// store, connected drivers and actors.
    ///
    /// ```no_run
    /// #[shoal::remote]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// # fn main() -> shoal::Result<()> {
    /// let node = shoal::init(shoal::Config::default().workers(2))?;
    /// let squares: Vec<u64> = shoal::get_all(&(0..10).map(square::remote).collect::<Vec<_>>())?;
    /// let status = node.status()?;
    /// assert_eq!(status.cpus, 2);
    /// assert!(status.tasks.finished >= 10);
    /// assert_eq!(status.workers.len(), 2);
    /// # drop(squares); Ok(()) }
    /// ```
    pub fn status(&self) -> Result<NodeStatus> {
        match &self.node {
            NodeHandle::Embedded(node) => Ok(node.report()),
            NodeHandle::Connected { client, .. } => client.report(),
            NodeHandle::Ray { .. } => Err(on_ray("status")),
        }
    }

    /// What `shoal memory` prints: the `limit` largest objects (size,
    /// place, references, what made it, pinned or not) and totals over all.
    ///
    /// ```no_run
    /// # fn main() -> shoal::Result<()> {
    /// let node = shoal::init(shoal::Config::default())?;
    /// let big = shoal::put(ndarray::Array1::<f32>::zeros(1 << 20))?;
    /// let memory = node.memory(10)?;
    /// assert_eq!(memory.objects[0].place, shoal::ObjectPlace::Arena);
    /// assert_eq!(memory.objects[0].created_by, "put");
    /// # drop(big); Ok(()) }
    /// ```
    pub fn memory(&self, limit: usize) -> Result<MemoryReport> {
        match &self.node {
            NodeHandle::Embedded(node) => Ok(node.memory(limit)),
            NodeHandle::Connected { client, .. } => client.memory(limit),
            NodeHandle::Ray { .. } => Err(on_ray("memory")),
        }
    }

    /// What `shoal timeline` draws: the tasks the node finished lately
    /// (the last [`TIMELINE_LEN`](crate::TIMELINE_LEN)), oldest first, each
    /// with its worker, start and run time.
    pub fn timeline(&self) -> Result<Vec<TaskEvent>> {
        match &self.node {
            NodeHandle::Embedded(node) => Ok(node.timeline()),
            NodeHandle::Connected { client, .. } => client.timeline(),
            NodeHandle::Ray { .. } => Err(on_ray("timeline")),
        }
    }

    /// Number of the pool's worker processes connected right now (actors'
    /// processes are listed by [`actors`](Self::actors)).
    pub fn live_workers(&self) -> usize {
        self.worker_pids().len()
    }

    /// Process ids of the pool's connected workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        let workers = self.report().workers.into_iter();
        workers.filter(|w| !matches!(w.state, crate::status::WorkerState::Actor)).map(|w| w.pid).collect()
    }

    /// The actors that live (starting, alive or restarting), by id: type,
    /// name, process, state, restarts.
    ///
    /// ```no_run
    /// pub struct Model { weights: Vec<f32> }
    ///
    /// #[shoal::actor]
    /// impl Model {
    ///     pub fn new(n: usize) -> Self { Model { weights: vec![0.5; n] } }
    ///     pub fn predict(&self, x: f32) -> f32 { self.weights.iter().map(|w| w * x).sum() }
    /// }
    ///
    /// # fn main() -> shoal::Result<()> {
    /// let node = shoal::init(shoal::Config::default())?;
    /// let model = Model::options().name("model").remote(4);
    /// assert_eq!(shoal::get(&model.predict(2.0))?, 4.0);
    /// let actors = node.actors();
    /// assert_eq!(actors[0].name.as_deref(), Some("model"));
    /// assert_eq!(actors[0].state, shoal::ActorState::Alive);
    /// assert!(actors[0].class.ends_with("::Model"));
    /// # Ok(()) }
    /// ```
    pub fn actors(&self) -> Vec<ActorInfo> {
        self.report().actors
    }

    /// Bytes of the object store in use.
    pub fn store_used_bytes(&self) -> u64 {
        self.report().store.used_bytes
    }

    /// Bytes of the object store's memory reserved so far (allocated and
    /// mapped, from offset 0). The store reserves ahead of use: a margin
    /// beyond the highest allocation, at least 32 MiB, as much again as
    /// lies below it, never more than the store's size.
    pub fn store_reserved_bytes(&self) -> u64 {
        self.report().reserved_bytes
    }

    /// Number of objects the node tracks (pending ones included).
    pub fn object_count(&self) -> usize {
        self.report().store.objects
    }

    /// The object store's figures now: use, spill files, and what was
    /// spilled and read back since the node started.
    ///
    /// ```no_run
    /// # fn main() -> shoal::Result<()> {
    /// let node = shoal::init(shoal::Config::default().store_bytes(256 << 20))?;
    /// let parts: Vec<_> = (0..16).map(|i| shoal::put(ndarray::Array1::<f64>::from_elem(8 << 20, i as f64))).collect::<Result<_, _>>()?;
    /// let stats = node.store_stats();
    /// assert!(stats.spilled_objects > 0, "1 GiB does not fit in 256 MiB");
    /// assert_eq!(shoal::get(&parts[0])?[0], 0.0); // read back from disk
    /// # drop(parts); Ok(()) }
    /// ```
    pub fn store_stats(&self) -> StoreStats {
        self.report().store
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        STOPPED.store(true, std::sync::atomic::Ordering::Release);
        Runtime::uninstall();
        match &self.node {
            NodeHandle::Embedded(node) => node.shutdown(),
            NodeHandle::Connected { client, .. } => client.disconnect(),
            #[cfg(feature = "ray")]
            NodeHandle::Ray { .. } => crate::ray::disconnect(),
            #[cfg(not(feature = "ray"))]
            NodeHandle::Ray { .. } => {}
        }
    }
}

/// What a report of the node is on the Ray backend.
fn on_ray(what: &str) -> Error {
    Error::Unsupported(format!("`{what}` of a Ray cluster: use Ray's dashboard or `ray status`"))
}

impl std::fmt::Debug for Shoal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shoal").field("socket", &self.socket_path()).finish()
    }
}

/// Start an embedded node in this process: the object store, the scheduler
/// and `config.workers` worker processes. Returns once every worker is ready.
/// (Without it, the first `remote` or `put` starts one from
/// [`Config::default`]; [`init_once`] shares one node among callers.)
///
/// Fails with [`Error::AlreadyInitialized`] if a node is running, and with
/// [`Error::FunctionNotFound`] or [`Error::WorkerStartup`] if the workers
/// cannot start or their binary lacks the driver's functions.
pub fn init(config: Config) -> Result<Shoal> {
    if Runtime::current().is_ok() {
        return Err(Error::AlreadyInitialized);
    }
    if let Some((address, library)) = config.ray_target() {
        return connect_ray(address, library);
    }
    if let Some(address) = config.node_address() {
        return connect(address, config.log_to_driver);
    }
    let node = Node::start(config, registry::code())?;
    if let Err(e) = Runtime::install(Runtime::Local(node.clone())) {
        node.shutdown();
        return Err(e);
    }
    Ok(Shoal { node: NodeHandle::Embedded(node) })
}

/// Start a standalone node in this process: what `shoal start` runs. As
/// [`init`], but for drivers in other processes ([`Config::address`]).
/// With a worker program (`config`'s [`Config::worker_program`]), the
/// node's code is that program's (read from it) and its workers run it for
/// every driver, which calls the functions and actors it builds from the
/// same source as that program (any other is
/// [`Error::FunctionNotFound`]). Without one, each driver's tasks run on
/// workers started from that driver's own executable, shared by the
/// drivers of the same build (the node's own pool runs this binary, for
/// drivers built from it). The node marks itself in its socket directory,
/// where [`standalone_nodes`] finds it. This process stays the node's
/// host: dropping the guard stops it.
pub fn serve(config: Config) -> Result<Shoal> {
    if Runtime::current().is_ok() {
        return Err(Error::AlreadyInitialized);
    }
    let code = match &config.worker_program {
        Some(program) => crate::node::code_of(program)?,
        None => registry::code(),
    };
    let node = Node::start(config, code)?;
    let marked = std::fs::write(node.socket_dir().join(STANDALONE), std::process::id().to_string());
    if let Err(e) = marked.map_err(|e| Error::WorkerStartup(format!("marking the socket directory: {e}"))) {
        node.shutdown();
        return Err(e);
    }
    if let Err(e) = Runtime::install(Runtime::Local(node.clone())) {
        node.shutdown();
        return Err(e);
    }
    Ok(Shoal { node: NodeHandle::Embedded(node) })
}

/// The sockets of the standalone nodes ([`serve`]) this user runs, where
/// nodes of `config` keep their sockets ([`Config::socket_dir`]), with their
/// pids.
pub fn standalone_nodes(config: &Config) -> Vec<(PathBuf, u32)> {
    let parent = config.socket_base().join(format!("shoal-{}", nix::unistd::geteuid().as_raw()));
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut nodes: Vec<(PathBuf, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = std::fs::read_to_string(entry.path().join(STANDALONE)).ok()?.trim().parse().ok()?;
            let alive = process_alive(pid);
            let socket = entry.path().join("node.sock");
            (alive && socket.exists()).then_some((socket, pid))
        })
        .collect();
    nodes.sort();
    nodes
}

/// Whether process `pid` runs (exists and is no zombie).
fn process_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    // `pid (comm) S …`: the state follows the last parenthesis.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

/// Connect to the standalone node at `address`, as a driver.
fn connect(address: PathBuf, show_output: bool) -> Result<Shoal> {
    let failed = |reason: String| Error::Connect { address: address.display().to_string(), reason };
    let stream = UnixStream::connect(&address).map_err(|e| failed(e.to_string()))?;
    // A node that accepts but never answers is an error, not a hang (the
    // timeout is the socket's: cleared through this clone afterwards).
    let timeout = stream.try_clone().map_err(|e| failed(e.to_string()))?;
    let _ = timeout.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let (client, _welcome) = Client::connect(stream, &registry::hello(0)).map_err(|e| match e {
        Error::WorkerStartup(reason) => failed(reason),
        other => other,
    })?;
    let _ = timeout.set_read_timeout(None);
    client.show_output(show_output);
    let client = Arc::new(client);
    client.start_flusher().map_err(|e| failed(format!("cannot start a thread: {e}")))?;
    if let Err(e) = Runtime::install(Runtime::Client(client.clone())) {
        client.disconnect();
        return Err(e);
    }
    Ok(Shoal { node: NodeHandle::Connected { client, address } })
}

/// Connect to the Ray cluster at `address`, as a driver whose workers load
/// the worker library in `library`.
#[cfg(feature = "ray")]
fn connect_ray(address: String, library: Option<PathBuf>) -> Result<Shoal> {
    let library = library.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "a Ray driver needs its worker library's folder: Config::ray_library, or {}",
            crate::config::RAY_LIBRARY_ENV
        ))
    })?;
    let cluster = Arc::new(crate::ray::connect(&address, &library)?);
    if let Err(e) = Runtime::install(Runtime::Ray(cluster)) {
        crate::ray::disconnect();
        return Err(e);
    }
    Ok(Shoal { node: NodeHandle::Ray { address: address.into() } })
}

#[cfg(not(feature = "ray"))]
fn connect_ray(address: String, _library: Option<PathBuf>) -> Result<Shoal> {
    Err(Error::Unsupported(format!(
        "running on the Ray cluster at {address}: shoal was built without its `ray` feature"
    )))
}

/// One node for every caller in this process: the first call starts it
/// with `config`; later calls with an equal config get the same node, and
/// one with another config [`Error::AlreadyInitialized`] (so does a call
/// after [`init`] started a node of its own). The node lives until the
/// process exits (its workers exit with it). The way for many `#[test]`s of
/// one binary, which the default runner runs in parallel threads, to share
/// a node:
///
/// ```no_run
/// #[shoal::remote]
/// fn double(n: u64) -> u64 { n * 2 }
///
/// #[test]
/// fn doubles() -> shoal::Result<()> {
///     shoal::init_once(shoal::Config::default().workers(2))?;
///     assert_eq!(shoal::get(&double::remote(21))?, 42);
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub fn init_once(config: Config) -> Result<&'static Shoal> {
    static STARTING: Mutex<()> = Mutex::new(());
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((running, node)) = ONCE.get() {
        return if *running == config { Ok(node) } else { Err(Error::AlreadyInitialized) };
    }
    let node = init(config.clone())?;
    Ok(&ONCE.get_or_init(|| (config, node)).1)
}

/// The node of [`init_once`], with the config it was started with.
static ONCE: OnceLock<(Config, Shoal)> = OnceLock::new();

/// This process's runtime, starting a node from [`Config::default`] (as
/// [`init_once`] does) when none runs: as Ray's `f.remote()` starts Ray.
/// A process whose node was stopped (its [`Shoal`] dropped) does not start
/// another: that is [`Error::NotInitialized`].
pub(crate) fn current_or_start() -> Result<Runtime> {
    match Runtime::current() {
        Err(Error::NotInitialized) if !STOPPED.load(std::sync::atomic::Ordering::Acquire) => {
            match init_once(Config::default()) {
                // Another thread's `init` or `init_once` got there first.
                Ok(_) | Err(Error::AlreadyInitialized) => Runtime::current(),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// Generated code calls this before a remote function's or an actor's
/// `remote` encodes its arguments: without a node, one starts
/// (`current_or_start`).
///
/// # Panics
/// If no node runs and none can start (or this process's node was stopped),
/// naming `what` was called.
pub fn start_on_first_use(what: &str) {
    if Runtime::installed() {
        return;
    }
    if let Err(e) = current_or_start() {
        panic!("cannot call `{what}::remote`: {e}");
    }
}

/// A node this process started was stopped.
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
