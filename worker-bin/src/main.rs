//! The `shoal` command.
//!
//! `shoal demo` runs the main job on an embedded node: the seed's `increment`
//! (one call, then a dependent chain) and 20 tasks summing one shared 100 MB
//! array, printing results and times. The binary also carries the built-in
//! remote functions, so it is its own worker program. `shoal bench` runs the
//! benchmark suite (see `bench.rs`). `shoal start` and `shoal stop` run a
//! standalone node (see `node_cli.rs`); `shoal status`, `memory`, `timeline`
//! and `metrics` show what a node does (see `inspect_cli.rs`).

mod bench;
mod inspect_cli;
mod metrics;
mod node_cli;
mod timeline;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::{Parser, Subcommand};
use ndarray::Array1;
use shoal::ObjectRef;
use shoal_worker::{increment, total};

#[derive(Parser)]
#[command(name = "shoal", version, about = "Ray's remote functions for Rust, on one host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo job on an embedded node and print results and times.
    Demo {
        /// Worker processes (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Size of the shared array, in MB.
        #[arg(long, default_value_t = 100)]
        mb: usize,
        /// Number of tasks summing it.
        #[arg(long, default_value_t = 20)]
        tasks: usize,
    },
    /// Run the benchmark suite (shared/BENCHMARKS.md) on an embedded node and
    /// print `metric<TAB>value<TAB>unit<TAB>± spread` lines, beside the
    /// machine's limits measured in the same run. Progress goes to stderr.
    Bench {
        /// Run only the metrics whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Worker processes (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Megabytes of the large arrays (put and zero-copy get); the array
        /// tasks sum an eighth of it.
        #[arg(long, default_value_t = bench::DEFAULT_LARGE_MB)]
        large_mb: usize,
        /// Print the metric names and exit.
        #[arg(long)]
        list: bool,
        /// Run against the standalone node at this address, as a connected
        /// driver (start it with `--worker-program` this binary). The store
        /// metrics need a store of about twice `--large-mb`.
        #[arg(long)]
        address: Option<PathBuf>,
        /// Run the task metrics on the Ray cluster at this address
        /// (`host:port` of its head; needs the `ray` feature), with the
        /// worker library in `--ray-library`: this crate built with
        /// `cargo rustc -p shoal-worker --lib --release --features ray --crate-type cdylib`.
        #[arg(long, requires = "ray_library")]
        ray: Option<String>,
        /// The folder holding the worker library for `--ray`.
        #[arg(long)]
        ray_library: Option<PathBuf>,
    },
    /// Start a standalone node that drivers connect to (`Config::address`, or
    /// `SHOAL_ADDRESS`). Prints `SHOAL_ADDRESS=<address>` last, so
    /// `eval "$(shoal start …)"` sets it; the node outlives this command
    /// unless `--block`.
    Start {
        /// The program its workers run for every driver: your binary, or a
        /// worker binary calling `shoal::worker_main()`. Drivers call the
        /// functions they share with it (built from the same source);
        /// others are `FunctionNotFound`. Without it, each driver's tasks
        /// run on workers started from that driver's own executable.
        #[arg(long)]
        worker_program: Option<PathBuf>,
        /// Worker processes (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Object store size in bytes (default: a quarter of memory, at most 4 GiB).
        #[arg(long)]
        store_bytes: Option<u64>,
        /// Where full stores spill objects (default: the temp dir).
        #[arg(long)]
        spill_dir: Option<PathBuf>,
        /// Where the node's socket directory goes (default: $XDG_RUNTIME_DIR, else the temp dir).
        #[arg(long)]
        socket_dir: Option<PathBuf>,
        /// Serve the node's metrics (Prometheus text) over HTTP at this
        /// address, `127.0.0.1:9464` say, at `/metrics`.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Run the node in this process, in the foreground, until SIGTERM or Ctrl-C.
        #[arg(long)]
        block: bool,
        /// Set by `start` for the node it detaches (internal).
        #[arg(long, hide = true)]
        detached: bool,
    },
    /// Stop a standalone node: its workers, store, socket and spill files go.
    /// The node is `--address`, else `SHOAL_ADDRESS`, else the one this user runs.
    Stop {
        /// The node's socket, as `shoal start` printed it.
        #[arg(long)]
        address: Option<PathBuf>,
        /// Where to look for nodes, as given to `shoal start --socket-dir`.
        #[arg(long)]
        socket_dir: Option<PathBuf>,
    },
    /// What a node does: its process, CPUs and resources in use, workers,
    /// tasks by state, store, drivers and actors.
    Status {
        #[command(flatten)]
        node: NodeArg,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A node's objects, largest first (size, place, references, what made
    /// it, pinned), with totals.
    Memory {
        #[command(flatten)]
        node: NodeArg,
        /// The most objects to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tasks a node finished lately, one lane per worker: a Chrome trace
    /// (Perfetto, chrome://tracing) and/or an SVG picture.
    Timeline {
        #[command(flatten)]
        node: NodeArg,
        /// Write the Chrome trace (JSON) here.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Draw the picture (SVG) here.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// A node's counters in the Prometheus text format.
    Metrics {
        #[command(flatten)]
        node: NodeArg,
    },
    /// The echo side of the bench's socket ping-pong (internal).
    #[command(hide = true)]
    BenchEcho { socket: PathBuf },
    /// A fresh process the bench measures: `idle` or `cold-put MB` (internal).
    #[command(hide = true)]
    BenchProbe { what: String, mb: Option<usize> },
}

/// Which node a command looks at.
#[derive(clap::Args)]
struct NodeArg {
    /// The node's socket (a standalone node's, as `shoal start` printed it,
    /// or an embedded one's, `Shoal::socket_path`); else `SHOAL_ADDRESS`,
    /// else the one standalone node this user runs.
    #[arg(long)]
    address: Option<PathBuf>,
    /// Where to look for standalone nodes, as given to `shoal start --socket-dir`.
    #[arg(long)]
    socket_dir: Option<PathBuf>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn demo(workers: Option<usize>, mb: usize, tasks: usize) -> anyhow::Result<()> {
    let elements = mb * 1_000_000 / 8;
    let mut config = shoal::Config::default().store_bytes((2 * mb as u64 * 1_000_000).max(256 << 20));
    if let Some(n) = workers {
        config = config.workers(n);
    }
    let started = Instant::now();
    let node = shoal::init(config).context("starting the node")?;
    println!("node up with {} workers in {:.1} ms", node.live_workers(), ms(started));

    let t = Instant::now();
    let x: ObjectRef<i64> = increment::remote(1);
    let y = increment::remote(&x);
    let y = shoal::get(&y)?;
    println!("increment(increment(1)) = {y}  ({:.2} ms)", ms(t));
    ensure!(y == 3, "wrong answer");

    let t = Instant::now();
    let mut r = increment::remote(0);
    for _ in 1..1000 {
        r = increment::remote(&r);
    }
    let chained = shoal::get(&r)?;
    println!("a chain of 1000 dependent increments = {chained}  ({:.1} µs per link)", ms(t) * 1e3 / 1000.0);
    ensure!(chained == 1000, "wrong answer");

    let t = Instant::now();
    let array = Array1::<f64>::from_shape_fn(elements, |i| (i % 7) as f64);
    let expected: f64 = array.sum();
    let fill_ms = ms(t);
    let t = Instant::now();
    let a = shoal::put(array)?;
    let put_ms = ms(t);
    println!(
        "put a {mb} MB array into the store in {put_ms:.1} ms ({:.2} GB/s; filling it took {fill_ms:.1} ms)",
        (elements * 8) as f64 / put_ms / 1e6
    );

    let shared = shoal::get_shared(&a)?;
    let t = Instant::now();
    let local: f64 = (0..tasks).map(|_| shared.view().sum()).sum::<f64>() / tasks as f64;
    let local_ms = ms(t);
    let t = Instant::now();
    let sums: Vec<ObjectRef<f64>> = (0..tasks).map(|_| total::remote(&a)).collect();
    let values = shoal::get_all(&sums)?;
    let remote_ms = ms(t);
    ensure!(values.iter().all(|&v| v == expected) && local == expected, "wrong sums");
    let workers = node.live_workers();
    println!("{tasks} tasks summed the shared array: each got {expected}");
    println!(
        "  {remote_ms:.1} ms on {workers} workers; {tasks} sums in this process took {local_ms:.1} ms, \
         so the floor on {workers} workers is {:.1} ms (ratio {:.2})",
        local_ms / workers as f64,
        remote_ms / (local_ms / workers as f64)
    );

    drop(shared);
    let t = Instant::now();
    drop(node);
    println!("shut down in {:.1} ms", ms(t));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo { workers, mb, tasks } => demo(workers, mb, tasks),
        Command::Bench { list: true, .. } => {
            bench::metric_names().for_each(|m| println!("{m}"));
            Ok(())
        }
        Command::Bench { filter, workers, large_mb, list: false, address, ray, ray_library } => {
            bench::run(filter.as_deref(), workers, large_mb, address, ray.zip(ray_library))
        }
        Command::Start {
            worker_program,
            workers,
            store_bytes,
            spill_dir,
            socket_dir,
            metrics_addr,
            block,
            detached,
        } => node_cli::start(node_cli::StartArgs {
            workers,
            store_bytes,
            spill_dir,
            socket_dir,
            worker_program,
            metrics_addr,
            block,
            attached: !detached,
        }),
        Command::Status { node, json } => inspect_cli::status(node.address, node.socket_dir, json),
        Command::Memory { node, limit, json } => inspect_cli::memory(node.address, node.socket_dir, limit, json),
        Command::Timeline { node, output, svg } => inspect_cli::timeline(node.address, node.socket_dir, output, svg),
        Command::Metrics { node } => inspect_cli::print_metrics(node.address, node.socket_dir),
        Command::Stop { address, socket_dir } => node_cli::stop(address, socket_dir),
        Command::BenchEcho { socket } => bench::echo(&socket),
        Command::BenchProbe { what, mb } => bench::probe_child(&what, mb),
    }
}
