//! Node configuration.

use std::path::PathBuf;

/// The largest `inline_max` accepted: messages stay far below the frame cap.
const MAX_INLINE: usize = 1 << 20;

/// How to start a node. A builder: `Config::default().workers(4).store_bytes(1 << 30)`.
///
/// The defaults serve a laptop and a many-core box alike: one worker per
/// available core, and an object store of a quarter of physical memory capped
/// at 4 GiB.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) workers: usize,
    pub(crate) store_bytes: u64,
    pub(crate) inline_max: usize,
    pub(crate) prefault: bool,
    pub(crate) worker_program: Option<PathBuf>,
    pub(crate) pipeline_depth: usize,
    pub(crate) socket_dir: Option<PathBuf>,
    pub(crate) max_workers: Option<usize>,
    pub(crate) resources: Vec<(String, f64)>,
    pub(crate) spill: bool,
    pub(crate) spill_dir: Option<PathBuf>,
    pub(crate) address: Option<PathBuf>,
    pub(crate) log_to_driver: bool,
    pub(crate) ray: Option<String>,
    pub(crate) ray_library: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let ram = physical_memory().unwrap_or(4 << 30);
        Config {
            workers: cores,
            store_bytes: (ram / 4).min(4 << 30),
            inline_max: 100 * 1024,
            prefault: true,
            worker_program: None,
            pipeline_depth: 2,
            socket_dir: None,
            max_workers: None,
            resources: Vec::new(),
            spill: true,
            spill_dir: None,
            address: None,
            log_to_driver: true,
            ray: None,
            ray_library: None,
        }
    }
}

impl Config {
    /// Number of worker processes (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Size of the shared-memory object store in bytes.
    pub fn store_bytes(mut self, bytes: u64) -> Self {
        self.store_bytes = bytes;
        self
    }

    /// Values whose encoding is at most this many bytes (and holds no arrays)
    /// travel inline in messages instead of through the arena. Default 100 KiB,
    /// at most 1 MiB.
    pub fn inline_max(mut self, bytes: usize) -> Self {
        self.inline_max = bytes.min(MAX_INLINE);
        self
    }

    /// Whether to reserve the store's memory (default `true`): every page is
    /// allocated and mapped, in the background from the moment `init` starts,
    /// low offsets first. `put` then runs at memory bandwidth, and a host
    /// without the memory gives `ObjectStoreFull` instead of a SIGBUS. With
    /// `false`, pages are allocated on first touch.
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Run workers from this executable instead of re-executing the driver's
    /// own. It must be built with the same remote functions; the handshake
    /// refuses one that is not.
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Tasks queued at one worker at a time (the running one included), to hide
    /// the round trip between tasks. Default 2. Tasks whose functions the
    /// node has measured as short are queued deeper, up to about 200 µs of
    /// expected work and 64 tasks per worker, so bursts of tiny tasks travel
    /// in batches; a long or never-measured function gets this depth.
    pub fn pipeline_depth(mut self, depth: usize) -> Self {
        self.pipeline_depth = depth.max(1);
        self
    }

    /// Directory under which the node creates its private socket directory
    /// (default: `$XDG_RUNTIME_DIR`, else the system temp dir).
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Connect to the standalone node at `address` (its socket, as `shoal
    /// start` prints it) instead of starting an embedded one: `init` then
    /// makes this process a driver of that node, the rest of the config
    /// being the node's. Without it, the `SHOAL_ADDRESS` environment
    /// variable, when set and not empty, does the same (as Ray's
    /// `RAY_ADDRESS`).
    ///
    /// ```no_run
    /// #[shoal::remote]
    /// fn double(n: u64) -> u64 { n * 2 }
    ///
    /// # fn main() -> shoal::Result<()> {
    /// // After `eval "$(shoal start --worker-program ./target/release/my-app)"`:
    /// let address = std::env::var("SHOAL_ADDRESS").expect("a running node");
    /// let _driver = shoal::init(shoal::Config::default().address(address))?;
    /// assert_eq!(shoal::get(&double::remote(21))?, 42);
    /// # Ok(()) }
    /// ```
    pub fn address(mut self, address: impl Into<PathBuf>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Whether worker processes' output reaches this process's stdout and
    /// stderr (default `true`): each line prefixed with what printed it, as
    /// Ray's `(fn pid=123)`. `false` drops it (a worker's last stderr lines
    /// still go into `WorkerDied` errors).
    pub fn log_to_driver(mut self, on: bool) -> Self {
        self.log_to_driver = on;
        self
    }

    /// Where nodes of this config keep their socket directories:
    /// [`socket_dir`](Self::socket_dir), else `$XDG_RUNTIME_DIR`, else the
    /// system temp dir.
    pub(crate) fn socket_base(&self) -> PathBuf {
        self.socket_dir
            .clone()
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir)
    }

    /// The node to connect to: [`address`](Self::address), else
    /// `SHOAL_ADDRESS`; `None`: start an embedded node.
    pub(crate) fn node_address(&self) -> Option<PathBuf> {
        self.address.clone().or_else(|| std::env::var_os(ADDRESS_ENV).filter(|a| !a.is_empty()).map(PathBuf::from))
    }
}

/// The environment variable naming the node a driver connects to.
pub const ADDRESS_ENV: &str = "SHOAL_ADDRESS";

/// The environment variable naming the Ray cluster a driver connects to
/// (see [`Config::ray`]).
pub const RAY_ADDRESS_ENV: &str = "SHOAL_RAY_ADDRESS";

/// The environment variable naming the folder of the worker library (see
/// [`Config::ray_library`]).
pub const RAY_LIBRARY_ENV: &str = "SHOAL_RAY_LIBRARY";

impl Config {
    /// Run on the Ray cluster at `address` (`host:port` of its head, as
    /// `ray start --head` prints it) instead of on this host: `init` makes
    /// this process a Ray driver, and tasks and actors run in the cluster's
    /// workers, from the worker library ([`ray_library`](Self::ray_library)).
    /// Without it, the `SHOAL_RAY_ADDRESS` environment variable, when set
    /// and not empty, does the same. Needs shoal's `ray` feature (else
    /// `init` fails with [`Error::Unsupported`](crate::Error::Unsupported),
    /// and the variable is ignored);
    /// the rest of the config is then unused. What differs from one host:
    /// the README's "When one machine is not enough".
    ///
    /// ```no_run
    /// #[shoal::remote]
    /// fn double(n: u64) -> u64 { n * 2 }
    ///
    /// # fn main() -> shoal::Result<()> {
    /// let config = shoal::Config::default().ray("127.0.0.1:6379").ray_library("target/ray-library");
    /// let _driver = shoal::init(config)?;
    /// assert_eq!(shoal::get(&double::remote(21))?, 42);
    /// # Ok(()) }
    /// ```
    pub fn ray(mut self, address: impl Into<String>) -> Self {
        self.ray = Some(address.into());
        self
    }

    /// The folder holding the worker library that the Ray cluster's workers
    /// load (Ray's `code_search_path`): this crate built as a `cdylib` with
    /// the `ray` feature, checked against this driver at `init`. Without
    /// it, `SHOAL_RAY_LIBRARY`. It must be at the same path on every node.
    pub fn ray_library(mut self, dir: impl Into<PathBuf>) -> Self {
        self.ray_library = Some(dir.into());
        self
    }

    /// The Ray cluster to run on and the worker library's folder, if any.
    /// Without the `ray` feature, `SHOAL_RAY_ADDRESS` is ignored (said
    /// once on stderr): a shell that exported it for a Ray driver still
    /// runs other programs on one host. `Config::ray` is never ignored.
    pub(crate) fn ray_target(&self) -> Option<(String, Option<PathBuf>)> {
        let from_env = || {
            let address = std::env::var(RAY_ADDRESS_ENV).ok().filter(|a| !a.is_empty())?;
            if cfg!(feature = "ray") {
                return Some(address);
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("shoal: {RAY_ADDRESS_ENV}={address} is ignored: this program was built without shoal's `ray` feature")
            });
            None
        };
        let address = self.ray.clone().or_else(from_env)?;
        let library = self.ray_library.clone().or_else(|| std::env::var_os(RAY_LIBRARY_ENV).map(PathBuf::from));
        Some((address, library))
    }
}

impl Config {
    /// Most worker processes the node runs at once (default: four times
    /// `workers`). A task blocked in a nested `get` or `wait` gives back its
    /// CPU; when every CPU is held by blocked tasks and work is ready that
    /// none of them may run meanwhile, the node starts an extra worker, up to
    /// this many in all, and stops extra workers again once they are idle.
    /// Recursion (a task waiting on its own children) needs no extra
    /// process: a blocked task thread runs its children itself. At least
    /// `workers`.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Declare `amount` of a custom resource the node has (a GPU, a licence,
    /// a memory budget): tasks asking for it with
    /// [`TaskOptions::resource`](crate::TaskOptions::resource) run only while
    /// enough of it is free. Declaring a name twice sets it again.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        let name = name.into();
        self.resources.retain(|(n, _)| *n != name);
        self.resources.push((name, amount.max(0.0)));
        self
    }

    /// Directory under which the node creates its private spill directory
    /// (default: the system temp dir, `$TMPDIR` or `/tmp`). When the store
    /// cannot fit a new object, sealed objects no one reads in place are
    /// written there and read back, transparently, when a `get`, a view or
    /// a task needs them. Spill files have no names (they are unlinked when
    /// made), so they never outlive the node, even one killed with `kill -9`.
    ///
    /// ```no_run
    /// # fn main() -> shoal::Result<()> {
    /// let node = shoal::init(shoal::Config::default().store_bytes(1 << 30).spill_dir("/mnt/scratch"))?;
    /// println!("{:?}", node.store_stats());
    /// # Ok(()) }
    /// ```
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Whether to spill at all (default `true`). With `false`, a full
    /// store is [`Error::ObjectStoreFull`](crate::Error::ObjectStoreFull).
    pub fn spill(mut self, spill: bool) -> Self {
        self.spill = spill;
        self
    }

    /// The cap on worker processes, never below `workers`.
    pub(crate) fn worker_cap(&self) -> usize {
        self.max_workers.unwrap_or(self.workers.saturating_mul(4)).max(self.workers)
    }
}

fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
