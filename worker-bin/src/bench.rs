//! `shoal bench`: every metric of `shared/BENCHMARKS.md` on an embedded node,
//! beside the machine's own limits measured in the same run.
//!
//! Output (stdout), one line per metric, named as `ray microbenchmark` names
//! them so the two line up:
//!
//! ```text
//! <metric>\t<value>\t<unit>\t± <spread>
//! ```
//!
//! The value is the median over [`REPS`] repetitions after one warm-up, the
//! spread half the range between the slowest and the fastest. Progress goes
//! to stderr. `benches/compare/` runs this beside Ray's equivalents.
//!
//! What each metric times is written beside its group below; where shoal's
//! shape differs from Ray's the group says so. The multi-client metrics and
//! `nested tasks sync` submit and `put` from inside tasks, as Ray's do.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, ensure};
use ndarray::Array1;
use shoal::ObjectRef;
use shoal_worker::*;

/// Timed repetitions per metric (after one warm-up).
const REPS: usize = 5;
/// Megabytes of the large arrays (`put gigabytes`, `zero-copy get`) by
/// default, as in Ray's benchmark (100 Mi × 8 bytes there). The array the
/// `array tasks` sum is an eighth of it (100 MB).
pub const DEFAULT_LARGE_MB: usize = 800;
/// Tasks in `array tasks`.
const ARRAY_TASKS: usize = 20;
/// Concurrent submitters in the `multi client` metrics.
const CLIENTS: usize = 4;
/// Tasks each client submits in `multi client tasks async`.
const CLIENT_TASKS: u32 = 10_000;
/// Calls per server (or per task) in the `1:n` and `n:n` actor metrics
/// (Ray's `n`).
const ACTOR_BATCH: u32 = 5_000;
/// Tasks cancelled per repetition of `cancel pending`.
const CANCELS: usize = 10_000;
/// Items of the one streaming task in `streaming items`.
const STREAM_ITEMS: u64 = 100_000;
/// Children one task submits and gets, one at a time, in `nested tasks sync`.
const NESTED_CHILDREN: u32 = 2_000;

/// A group of metrics measured together, and the function measuring them.
struct Group {
    metrics: &'static [&'static str],
    run: fn(&mut Bench) -> anyhow::Result<()>,
}

const GROUPS: &[Group] = &[
    Group { metrics: &["machine memcpy gigabytes", "machine memcpy gigabytes all cores"], run: machine_memcpy },
    Group { metrics: &["init cpu seconds", "idle node rss"], run: idle_node },
    Group { metrics: &["cold put gigabytes"], run: cold_put },
    Group {
        metrics: &[
            "machine disk write gigabytes",
            "machine disk write and sync gigabytes",
            "spill gigabytes",
            "restore gigabytes",
        ],
        run: spill,
    },
    Group { metrics: &["machine unix socket ping-pong"], run: machine_ping_pong },
    Group { metrics: &["machine worker start"], run: machine_process_start },
    Group { metrics: &["init to first result", "shutdown"], run: init_and_shutdown },
    Group { metrics: &["single client tasks sync"], run: tasks_sync },
    Group { metrics: &["single client tasks async"], run: tasks_async },
    Group { metrics: &["multi client tasks async"], run: multi_client_tasks_async },
    Group { metrics: &["nested tasks sync"], run: nested_tasks_sync },
    Group { metrics: &["1:1 actor calls sync", "1:1 actor calls async"], run: actor_calls_one_to_one },
    Group {
        metrics: &["1:n actor calls async", "n:n actor calls async", "n:n actor calls with arg async"],
        run: actor_calls_many,
    },
    Group { metrics: &["single client tasks and get batch"], run: tasks_and_get_batch },
    Group { metrics: &["cancel pending"], run: cancel_pending },
    Group { metrics: &["streaming items"], run: streaming_items },
    Group { metrics: &["single client put calls"], run: put_calls },
    Group { metrics: &["single client get calls"], run: get_calls },
    Group {
        metrics: &[
            "single client put gigabytes",
            "put owned gigabytes",
            "put_with gigabytes",
            "put nested arrays gigabytes",
            "get owned gigabytes",
        ],
        run: put_gigabytes,
    },
    Group { metrics: &["multi client put gigabytes"], run: multi_client_put_gigabytes },
    Group { metrics: &["single client get object containing 10k refs"], run: get_10k_refs },
    Group { metrics: &["single client wait 1k refs"], run: wait_1k_refs },
    Group { metrics: &["zero-copy get gigabytes", "zero-copy get per call"], run: zero_copy_get },
    Group {
        metrics: &[
            "array tasks",
            "array tasks compute floor",
            "array tasks ratio to floor",
            "array tasks threaded floor",
            "array tasks ratio to threaded floor",
        ],
        run: array_tasks,
    },
    Group { metrics: &["dependent chain"], run: dependent_chain },
];

/// Every metric name `shoal bench` can print, in order.
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    GROUPS.iter().flat_map(|g| g.metrics.iter().copied())
}

/// State shared by the groups: the embedded node, started on first use.
struct Bench {
    workers: Option<usize>,
    /// Bytes of the large arrays.
    large: usize,
    /// A standalone node to run on, as a connected driver (`--address`).
    address: Option<PathBuf>,
    /// A Ray cluster to run on, and the worker library's folder (`--ray`).
    ray: Option<(String, PathBuf)>,
    node: Option<shoal::Shoal>,
}

/// The metrics `--ray` runs: the task path's, which Ray's C++ API can take.
const RAY_METRICS: &[&str] = &[
    "single client tasks sync",
    "single client tasks async",
    "1:1 actor calls sync",
    "1:1 actor calls async",
    "dependent chain",
];

impl Bench {
    /// The node the task and store metrics run on: one worker per core (or
    /// `--workers`), a store with room for two large arrays, fully reserved
    /// before any figure is taken.
    fn node(&mut self) -> anyhow::Result<&shoal::Shoal> {
        if let (None, Some((address, library))) = (&self.node, &self.ray) {
            let config = shoal::Config::default().ray(address).ray_library(library);
            self.node = Some(shoal::init(config).context("connecting to the Ray cluster")?);
            eprintln!("  connected to the Ray cluster at {address}");
        }
        if let (None, Some(address)) = (&self.node, &self.address) {
            // A running node, its store as it was started.
            let node = shoal::init(shoal::Config::default().address(address)).context("connecting to the node")?;
            eprintln!("  connected to {} ({} workers)", address.display(), node.live_workers());
            self.node = Some(node);
        }
        if self.node.is_none() {
            let store = 2 * self.large as u64 + (512 << 20);
            let mut config = shoal::Config::default().store_bytes(store);
            if let Some(n) = self.workers {
                config = config.workers(n);
            }
            let node = shoal::init(config).context("starting the node")?;
            eprintln!("  node up with {} workers; reserving the store", node.live_workers());
            // The arena is reserved in the background; writing across all of
            // it waits until that is done, so no figure competes with it.
            drop(shoal::put(Array1::<u8>::zeros(store as usize - (256 << 20)))?);
            // The margin beyond that put is reserved after it: wait for it
            // too, so no task metric shares the cores with the reserver.
            let deadline = Instant::now() + std::time::Duration::from_secs(120);
            while node.store_reserved_bytes() < store {
                ensure!(Instant::now() < deadline, "the store was not reserved within 2 minutes");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.node = Some(node);
        }
        Ok(self.node.as_ref().expect("started above"))
    }
}

/// Run the groups with a metric containing `filter` (all with `None`).
pub fn run(
    filter: Option<&str>,
    workers: Option<usize>,
    large_mb: usize,
    address: Option<PathBuf>,
    ray: Option<(String, PathBuf)>,
) -> anyhow::Result<()> {
    ensure!(large_mb >= 8, "--large-mb must be at least 8");
    let on_ray = |g: &&Group| ray.is_none() || g.metrics.iter().all(|m| RAY_METRICS.contains(m));
    let chosen: Vec<&Group> = GROUPS
        .iter()
        .filter(on_ray)
        .filter(|g| filter.is_none_or(|f| g.metrics.iter().any(|m| m.contains(f))))
        .collect();
    ensure!(!chosen.is_empty(), "no metric matches {:?}; metrics: {:?}", filter, metric_names().collect::<Vec<_>>());
    let mut bench = Bench { workers, large: large_mb * 1_000_000, address, ray, node: None };
    let started = Instant::now();
    for (i, group) in chosen.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} ({:.0} s)",
            i + 1,
            chosen.len(),
            group.metrics.join(", "),
            started.elapsed().as_secs_f64()
        );
        (group.run)(&mut bench).with_context(|| format!("measuring {}", group.metrics[0]))?;
    }
    drop(bench);
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Print one metric line: median and half the range of `samples`.
fn report(name: &str, samples: &[f64], unit: &str) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let spread = (sorted[sorted.len() - 1] - sorted[0]) / 2.0;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{name}\t{}\t{unit}\t± {}", significant(median), significant(spread));
    let _ = out.flush();
}

/// Four significant digits, without an exponent.
fn significant(x: f64) -> String {
    let digits = if x == 0.0 { 0 } else { (3 - x.abs().log10().floor() as i32).max(0) as usize };
    format!("{x:.digits$}")
}

/// One warm-up call of `f`, then [`REPS`] timed ones.
fn measure(mut f: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<Vec<f64>> {
    f()?;
    (0..REPS).map(|_| f()).collect()
}

/// Operations per second of `ops` calls of `op`.
fn rate(ops: usize, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    measure(|| {
        let t = Instant::now();
        for _ in 0..ops {
            op()?;
        }
        Ok(ops as f64 / t.elapsed().as_secs_f64())
    })
}

/// The ceilings for `put`: one core, then as many threads as cores, copying
/// 800 MB into a memfd already faulted in (the arena's kind of memory).
fn machine_memcpy(bench: &mut Bench) -> anyhow::Result<()> {
    let bytes = bench.large;
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let samples = measure(|| {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e9)
    })?;
    report("machine memcpy gigabytes", &samples, "GB/s");
    drop(dst);
    let memfd = memfd::MemfdOptions::default().create("shoal-bench").context("memfd_create")?;
    memfd.as_file().set_len(bytes as u64)?;
    // SAFETY: the memfd is this function's alone: no other mapping or
    // process can change its size or contents while `map` lives.
    let mut map = unsafe { memmap2::MmapOptions::new().len(bytes).populate().map_mut(memfd.as_file())? };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let part = bytes.div_ceil(threads).next_multiple_of(4096);
    let samples = measure(|| {
        let t = Instant::now();
        std::thread::scope(|scope| {
            for (d, s) in map.chunks_mut(part).zip(src.chunks(part)) {
                scope.spawn(move || d.copy_from_slice(black_box(s)));
            }
        });
        black_box(&mut map);
        Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e9)
    })?;
    report("machine memcpy gigabytes all cores", &samples, "GB/s");
    Ok(())
}

/// A fresh process (`shoal bench-probe idle`) starts a default node, runs one
/// task and idles until the node has been up 5 s; it reports its CPU time
/// since `init` and its resident memory then. Workers are other processes
/// and not counted.
fn idle_node(_: &mut Bench) -> anyhow::Result<()> {
    let mut rss = Vec::new();
    let cpu = measure(|| {
        let out = probe(&["idle"])?;
        let [cpu, mb] = out[..] else { anyhow::bail!("bench-probe idle printed {out:?}") };
        rss.push(mb);
        Ok(cpu)
    })?;
    report("init cpu seconds", &cpu, "s");
    report("idle node rss", &rss[1..], "MB");
    Ok(())
}

/// The first 800 MB `put_array` in a fresh process right after `init` with
/// a default config (`shoal bench-probe cold-put`): the store's pages are
/// new, so this times reserving them as well as the copy.
fn cold_put(bench: &mut Bench) -> anyhow::Result<()> {
    let mb = (bench.large / 1_000_000).to_string();
    let samples = measure(|| {
        let out = probe(&["cold-put", &mb])?;
        out.first().copied().context("bench-probe cold-put printed nothing")
    })?;
    report("cold put gigabytes", &samples, "GB/s");
    Ok(())
}

/// Spilling 1 GiB against the disk (`shoal bench-probe spill`, a fresh
/// process each time): writing 1 GiB in 64 MiB writes to an unlinked file
/// in the temp dir, as spill files are written (through the page cache, no
/// sync), then the same with a sync at the end; then sixteen 64 MiB arrays
/// put into a 256 MiB store (the bytes spilled over the time of the puts),
/// and read back in place one after another (the bytes read back over the
/// time of the reads).
fn spill(_: &mut Bench) -> anyhow::Result<()> {
    let mut figures: Vec<[f64; 4]> = Vec::new();
    measure(|| {
        let out = probe(&["spill"])?;
        let [disk, synced, spill, restore] = out[..] else { anyhow::bail!("bench-probe spill printed {out:?}") };
        figures.push([disk, synced, spill, restore]);
        Ok(spill)
    })?;
    let names = [
        "machine disk write gigabytes",
        "machine disk write and sync gigabytes",
        "spill gigabytes",
        "restore gigabytes",
    ];
    for (i, name) in names.iter().enumerate() {
        let samples: Vec<f64> = figures[1..].iter().map(|f| f[i]).collect();
        report(name, &samples, "GB/s");
    }
    Ok(())
}

/// The child side of [`spill`].
fn spill_probe() -> anyhow::Result<()> {
    use std::io::Write;
    const PART: usize = 64 << 20;
    const PARTS: usize = 16;
    let chunk = vec![1u8; PART];
    let mut disk = Vec::new();
    for sync in [false, true] {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("shoal-bench-disk-{}", std::process::id()));
        let mut file = std::fs::File::create(&path)?;
        std::fs::remove_file(&path)?;
        let t = Instant::now();
        for _ in 0..PARTS {
            file.write_all(&chunk)?;
        }
        if sync {
            file.sync_data()?;
        }
        disk.push((PART * PARTS) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    drop(chunk);
    let node = shoal::init(shoal::Config::default().store_bytes(256 << 20))?;
    let array = Array1::from_elem(PART / 8, 2.5f64);
    let t = Instant::now();
    let refs: Vec<_> = (0..PARTS).map(|_| shoal::put_array(&array)).collect::<Result<_, _>>()?;
    let spill_secs = t.elapsed().as_secs_f64();
    let spilled = node.store_stats().total_spilled_bytes;
    ensure!(spilled >= 12 * PART as u64, "only {spilled} bytes spilled");
    let t = Instant::now();
    for r in &refs {
        ensure!(shoal::get_shared(r)?.as_slice()[PART / 16] == 2.5, "wrong value read back");
    }
    let restore_secs = t.elapsed().as_secs_f64();
    let restored = node.store_stats().total_restored_bytes;
    println!("{} {} {} {}", disk[0], disk[1], spilled as f64 / spill_secs / 1e9, restored as f64 / restore_secs / 1e9);
    drop((refs, node));
    Ok(())
}

/// Run `shoal bench-probe ARGS…` and parse the numbers it prints.
fn probe(args: &[&str]) -> anyhow::Result<Vec<f64>> {
    let out = Command::new(std::env::current_exe()?).arg("bench-probe").args(args).stderr(Stdio::inherit()).output()?;
    ensure!(out.status.success(), "bench-probe {args:?} failed: {}", out.status);
    String::from_utf8(out.stdout)?.split_whitespace().map(|w| Ok(w.parse::<f64>()?)).collect()
}

/// The child side of [`idle_node`] (`idle`), [`cold_put`] (`cold-put MB`)
/// and [`spill`] (`spill`).
pub fn probe_child(what: &str, mb: Option<usize>) -> anyhow::Result<()> {
    match what {
        "idle" => {
            let cpu_before = process_cpu_seconds()?;
            let started = Instant::now();
            let node = shoal::init(shoal::Config::default())?;
            ensure!(shoal::get(&small_value::remote())? == *b"ok", "wrong result");
            std::thread::sleep(std::time::Duration::from_secs(5).saturating_sub(started.elapsed()));
            let cpu = process_cpu_seconds()? - cpu_before;
            println!("{cpu} {}", resident_megabytes()?);
            drop(node);
        }
        "cold-put" => {
            let len = mb.context("cold-put needs a size in MB")? * 1_000_000 / 8;
            let array = Array1::from_elem(len, 1.5f64);
            let node = shoal::init(shoal::Config::default())?;
            let t = Instant::now();
            let r = shoal::put_array(&array)?;
            let secs = t.elapsed().as_secs_f64();
            println!("{}", len as f64 * 8.0 / secs / 1e9);
            drop((r, node));
        }
        "spill" => spill_probe()?,
        other => anyhow::bail!("unknown probe {other:?}"),
    }
    Ok(())
}

/// User and system CPU time of this process, all threads, in seconds.
fn process_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // After the command name (which may hold spaces): utime and stime are
    // the 12th and 13th fields.
    let rest = stat.rsplit_once(')').context("malformed /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ is 100 on every Linux ABI.
    Ok(ticks / 100.0)
}

/// This process's resident set (VmRSS), in MB.
fn resident_megabytes() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kb: f64 = line.split_whitespace().nth(1).context("malformed VmRSS")?.parse()?;
    Ok(kb * 1024.0 / 1e6)
}

/// The ceiling for a task round trip: one byte each way over a Unix socket
/// between this process and a child (`shoal bench-echo`).
fn machine_ping_pong(_: &mut Bench) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("shoal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let mut child = Command::new(std::env::current_exe()?).arg("bench-echo").arg(&path).spawn()?;
    let (mut stream, _) = listener.accept()?;
    let mut byte = [0u8; 1];
    let samples = rate(20_000, || {
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
        Ok(())
    });
    drop(stream);
    child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    report("machine unix socket ping-pong", &samples?, "round trips/s");
    Ok(())
}

/// The other side of [`machine_ping_pong`]: echo bytes until the socket closes.
pub fn echo(path: &Path) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(path)?;
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        stream.write_all(&byte)?;
    }
    Ok(())
}

/// The floor under starting a worker: exec of this binary until it exits
/// (`shoal --version`: loading, linking, argument parsing; no node).
fn machine_process_start(_: &mut Bench) -> anyhow::Result<()> {
    let exe: PathBuf = std::env::current_exe()?;
    let samples = measure(|| {
        let t = Instant::now();
        let status = Command::new(&exe).arg("--version").stdout(Stdio::null()).status()?;
        ensure!(status.success(), "{} --version failed", exe.display());
        Ok(t.elapsed().as_secs_f64() * 1e3)
    })?;
    report("machine worker start", &samples, "ms");
    Ok(())
}

/// A whole node's life: `init` (store, scheduler, one worker per core) to the
/// first task's result, then shutdown. Runs before the long-lived node starts.
fn init_and_shutdown(bench: &mut Bench) -> anyhow::Result<()> {
    ensure!(bench.node.is_none(), "init and shutdown must run before the shared node starts");
    let mut shutdowns = Vec::new();
    let inits = measure(|| {
        let mut config = shoal::Config::default().store_bytes(64 << 20);
        if let Some(n) = bench.workers {
            config = config.workers(n);
        }
        let t = Instant::now();
        let node = shoal::init(config)?;
        ensure!(shoal::get(&small_value::remote())? == *b"ok", "wrong result");
        let init_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        drop(node);
        shutdowns.push(t.elapsed().as_secs_f64() * 1e3);
        Ok(init_ms)
    })?;
    report("init to first result", &inits, "ms");
    report("shutdown", &shutdowns[1..], "ms");
    Ok(())
}

/// `get(small_value::remote())`, one at a time.
fn tasks_sync(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = rate(5_000, || {
        shoal::get(&small_value::remote())?;
        Ok(())
    })?;
    report("single client tasks sync", &samples, "tasks/s");
    Ok(())
}

/// Submit 10 000 tasks, then get them all; tasks per second.
fn tasks_async(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = measure(|| {
        let t = Instant::now();
        submit_and_get(10_000)?;
        Ok(10_000.0 / t.elapsed().as_secs_f64())
    })?;
    report("single client tasks async", &samples, "tasks/s");
    Ok(())
}

/// Ray's shape: [`CLIENTS`] tasks at once, each submitting
/// [`CLIENT_TASKS`] no-op tasks and getting them all; the driver submits the
/// clients and gets them. Tasks per second over all the children. (Ray's
/// clients are actors holding no CPU; shoal's are tasks, which give their CPU
/// back while they wait for their children.)
fn multi_client_tasks_async(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = measure(|| {
        let t = Instant::now();
        let clients: Vec<ObjectRef<u32>> = (0..CLIENTS).map(|_| client_tasks_async::remote(CLIENT_TASKS)).collect();
        let done: u32 = shoal::get_all(&clients)?.iter().sum();
        let secs = t.elapsed().as_secs_f64();
        ensure!(done == CLIENTS as u32 * CLIENT_TASKS, "the clients ran {done} tasks");
        Ok(f64::from(done) / secs)
    })?;
    report("multi client tasks async", &samples, "tasks/s");
    Ok(())
}

/// One task submitting a no-op child and getting it, one at a time,
/// [`NESTED_CHILDREN`] times; the driver times one call of it (its own
/// submission included). Children per second.
fn nested_tasks_sync(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = measure(|| {
        let t = Instant::now();
        let done = shoal::get(&nested_sync::remote(NESTED_CHILDREN))?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(done == NESTED_CHILDREN, "the task ran {done} children");
        Ok(f64::from(done) / secs)
    })?;
    report("nested tasks sync", &samples, "tasks/s");
    Ok(())
}

/// One actor: `get(a.small_value())` one at a time (sync), then 1 000
/// calls and get them all (async); calls per second.
fn actor_calls_one_to_one(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let a = BenchActor::remote();
    let samples = rate(5_000, || {
        shoal::get(&a.small_value())?;
        Ok(())
    })?;
    report("1:1 actor calls sync", &samples, "calls/s");
    let samples = measure(|| {
        let t = Instant::now();
        for _ in 0..10 {
            let refs: Vec<ObjectRef<[u8; 2]>> = (0..1_000).map(|_| a.small_value()).collect();
            shoal::get_all(&refs)?;
        }
        Ok(10_000.0 / t.elapsed().as_secs_f64())
    })?;
    report("1:1 actor calls async", &samples, "calls/s");
    Ok(())
}

/// Ray's shapes, with its `n_cpu = cores / 2` actors (at least one):
/// `1:n`: one client actor calls each of them [`ACTOR_BATCH`] times and
/// gets all; `n:n`: [`CLIENTS`] tasks each make [`ACTOR_BATCH`] calls spread
/// over them; `n:n with arg`: one client actor per server, each making
/// [`ACTOR_BATCH`] calls with an object argument. Calls per second, the
/// driver's submissions and gets included.
fn actor_calls_many(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let n_cpu = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1);
    let servers: Vec<shoal::ActorHandle<BenchActor>> = (0..n_cpu).map(|_| BenchActor::remote()).collect();
    let client = BenchClient::remote(servers.clone());
    let samples = measure(|| {
        let t = Instant::now();
        let calls = shoal::get(&client.small_value_batch(ACTOR_BATCH))?;
        Ok(f64::from(calls) / t.elapsed().as_secs_f64())
    })?;
    report("1:n actor calls async", &samples, "calls/s");
    let samples = measure(|| {
        let t = Instant::now();
        let tasks: Vec<ObjectRef<u32>> =
            (0..CLIENTS).map(|_| call_actors::remote(servers.clone(), ACTOR_BATCH)).collect();
        let calls: u32 = shoal::get_all(&tasks)?.iter().sum();
        Ok(f64::from(calls) / t.elapsed().as_secs_f64())
    })?;
    report("n:n actor calls async", &samples, "calls/s");
    let clients: Vec<shoal::ActorHandle<BenchClient>> =
        servers.iter().map(|s| BenchClient::remote(vec![s.clone()])).collect();
    let samples = measure(|| {
        let t = Instant::now();
        let batches: Vec<ObjectRef<u32>> = clients.iter().map(|c| c.small_value_batch_arg(ACTOR_BATCH)).collect();
        let calls: u32 = shoal::get_all(&batches)?.iter().sum();
        Ok(f64::from(calls) / t.elapsed().as_secs_f64())
    })?;
    report("n:n actor calls with arg async", &samples, "calls/s");
    Ok(())
}

/// [`CANCELS`] tasks waiting for an argument a long task computes, then
/// `cancel` each (only the cancels timed); cancels per second. The gate is
/// cancelled by force after the last repetition.
fn cancel_pending(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let blocker = gate::remote(600_000);
    let samples = measure(|| {
        let pending: Vec<ObjectRef<[u8; 2]>> = (0..CANCELS).map(|_| after_gate::remote(&blocker)).collect();
        let t = Instant::now();
        for r in &pending {
            shoal::cancel(r)?;
        }
        let secs = t.elapsed().as_secs_f64();
        ensure!(
            matches!(shoal::get(&pending[CANCELS - 1]), Err(shoal::Error::TaskCancelled { .. })),
            "a cancelled task gave no TaskCancelled"
        );
        Ok(CANCELS as f64 / secs)
    })?;
    shoal::cancel_force(&blocker)?;
    report("cancel pending", &samples, "cancels/s");
    Ok(())
}

/// One streaming task of [`STREAM_ITEMS`] small items, its items' refs
/// taken by the driver as they come (Ray: a generator task iterated with
/// `for ref in gen`); items per second, from the submission to the end.
fn streaming_items(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = measure(|| {
        let t = Instant::now();
        let mut items = 0u64;
        for item in stream_items::remote(STREAM_ITEMS) {
            black_box(item?);
            items += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        ensure!(items == STREAM_ITEMS, "{items} items of {STREAM_ITEMS}");
        Ok(items as f64 / secs)
    })?;
    report("streaming items", &samples, "items/s");
    Ok(())
}

/// Submit 1 000 tasks and get them; one operation is the batch.
fn tasks_and_get_batch(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = rate(50, || Ok(submit_and_get(1_000)?))?;
    report("single client tasks and get batch", &samples, "batches/s");
    Ok(())
}

/// `put` of a small value (the ref dropped at once, as Ray's does).
fn put_calls(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = rate(100_000, || {
        drop(shoal::put(0i64)?);
        Ok(())
    })?;
    report("single client put calls", &samples, "calls/s");
    Ok(())
}

/// `get` of a small value already in the store.
fn get_calls(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let r = shoal::put(0i64)?;
    let samples = rate(200_000, || {
        black_box(shoal::get(&r)?);
        Ok(())
    })?;
    report("single client get calls", &samples, "calls/s");
    Ok(())
}

/// Every way 800 MB of f64 enters and leaves the store, each timed as a user
/// waits for it:
/// - `single client put gigabytes`: `put_array(&a)`, the caller keeps its
///   array (Ray's `ray.put(arr)`);
/// - `put owned gigabytes`: `put(a)` of an owned copy made outside the timing
///   (freed off the caller's thread);
/// - `put_with gigabytes`: allocate in the store and fill it in place
///   (`fill(1.5)`), against Ray's put of an array already filled;
/// - `put nested arrays gigabytes`: `put` of a `Vec` of 8 × 100 MB arrays
///   (owned, copied outside the timing), beside `put owned`;
/// - `get owned gigabytes`: `get` of the array as an owned `Array` (a copy;
///   dropped outside the timing).
fn put_gigabytes(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let bytes = bench.large;
    let template = Array1::from_elem(bytes / 8, 1.5f64);
    let gigabytes = |secs: f64| bytes as f64 / secs / 1e9;
    let samples = measure(|| {
        let t = Instant::now();
        let r = shoal::put_array(&template)?;
        let secs = t.elapsed().as_secs_f64();
        drop(r);
        Ok(gigabytes(secs))
    })?;
    report("single client put gigabytes", &samples, "GB/s");
    let samples = measure(|| {
        let copy = template.clone();
        let t = Instant::now();
        let r = shoal::put(copy)?;
        let secs = t.elapsed().as_secs_f64();
        drop(r);
        Ok(gigabytes(secs))
    })?;
    report("put owned gigabytes", &samples, "GB/s");
    let samples = measure(|| {
        let t = Instant::now();
        let r: ObjectRef<Array1<f64>> = shoal::put_with(bytes / 8, |mut v| v.fill(1.5))?;
        let secs = t.elapsed().as_secs_f64();
        drop(r);
        Ok(gigabytes(secs))
    })?;
    report("put_with gigabytes", &samples, "GB/s");
    let parts: Vec<Array1<f64>> = (0..8).map(|_| Array1::from_elem(bytes / 8 / 8, 1.5f64)).collect();
    let samples = measure(|| {
        let copy = parts.clone();
        let t = Instant::now();
        let r = shoal::put(copy)?;
        let secs = t.elapsed().as_secs_f64();
        drop(r);
        Ok(gigabytes(secs))
    })?;
    report("put nested arrays gigabytes", &samples, "GB/s");
    drop(parts);
    let r = shoal::put_array(&template)?;
    drop(template);
    let samples = measure(|| {
        let t = Instant::now();
        let owned = shoal::get(&r)?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(owned.len() == bytes / 8 && owned[7] == 1.5, "wrong array back");
        drop(owned);
        Ok(gigabytes(secs))
    })?;
    report("get owned gigabytes", &samples, "GB/s");
    Ok(())
}

/// Ray's shape (puts from tasks): 800 MB in all, [`CLIENTS`] tasks at once
/// each `put`ting its own array of a quarter of it and dropping the ref; the
/// driver times submitting them and getting their (tiny) results. Each
/// worker process fills its array once, in the warm-up ([`PUT_TEMPLATE`]),
/// so the timing holds the copies, not the fills. At most the 800 MB is
/// alive in the store at once (the node's store holds two large arrays).
fn multi_client_put_gigabytes(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let len = bench.large / 8 / CLIENTS;
    let bytes = len * 8 * CLIENTS;
    let samples = measure(|| {
        let t = Instant::now();
        let clients: Vec<ObjectRef<usize>> = (0..CLIENTS).map(|_| client_put::remote(len)).collect();
        let put: usize = shoal::get_all(&clients)?.iter().sum();
        let secs = t.elapsed().as_secs_f64();
        ensure!(put * 8 == bytes, "the clients put {put} elements");
        Ok(bytes as f64 / secs / 1e9)
    })?;
    report("multi client put gigabytes", &samples, "GB/s");
    Ok(())
}

/// `get` of an object holding 10 000 refs (each to a small object).
fn get_10k_refs(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let inner: Vec<ObjectRef<i64>> = (0..10_000).map(shoal::put).collect::<Result<_, _>>()?;
    let outer = shoal::put(inner)?;
    let samples = rate(20, || {
        let refs = shoal::get(&outer)?;
        ensure!(refs.len() == 10_000, "wrong length");
        Ok(())
    })?;
    report("single client get object containing 10k refs", &samples, "calls/s");
    Ok(())
}

/// Ray's shape: submit 1 000 tasks, then `wait` for one at a time until none
/// is pending.
fn wait_1k_refs(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let samples = rate(10, || {
        let mut pending: Vec<ObjectRef<[u8; 2]>> = (0..1_000).map(|_| small_value::remote()).collect();
        while !pending.is_empty() {
            pending = shoal::wait(&pending, 1, None)?.1;
        }
        Ok(())
    })?;
    report("single client wait 1k refs", &samples, "calls/s");
    Ok(())
}

/// `get_shared` of a sealed 800 MB array: the view into the store, no copy.
fn zero_copy_get(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let bytes = bench.large;
    let r = shoal::put(Array1::from_elem(bytes / 8, 1.5f64))?;
    let calls = 100_000;
    let per_call_us = measure(|| {
        let t = Instant::now();
        for _ in 0..calls {
            black_box(shoal::get_shared(&r)?);
        }
        Ok(t.elapsed().as_secs_f64() / calls as f64 * 1e6)
    })?;
    let gigabytes: Vec<f64> = per_call_us.iter().map(|us| bytes as f64 / (us * 1e-6) / 1e9).collect();
    report("zero-copy get gigabytes", &gigabytes, "GB/s");
    report("zero-copy get per call", &per_call_us, "µs");
    Ok(())
}

/// 20 tasks each summing one shared 100 MB array, against the compute floor:
/// the same 20 sums in this process, divided by the worker count. That floor
/// assumes the workers' cores each sum as fast as one core alone; the
/// threaded floor (the sums split over as many threads of this process)
/// shows what the machine gives when they share its memory bandwidth.
fn array_tasks(bench: &mut Bench) -> anyhow::Result<()> {
    let workers = bench.node()?.live_workers();
    let array = Array1::from_shape_fn(bench.large / 8 / 8, |i| (i % 7) as f64);
    let expected = array.sum();
    let a = shoal::put(array)?;
    let local = shoal::get_shared(&a)?;
    let mut floors = Vec::new();
    let mut ratios = Vec::new();
    let mut threaded_floors = Vec::new();
    let mut threaded_ratios = Vec::new();
    let tasks_ms = measure(|| {
        let t = Instant::now();
        let sums: f64 = (0..ARRAY_TASKS).map(|_| black_box(local.view()).sum()).sum();
        let floor_ms = t.elapsed().as_secs_f64() * 1e3 / workers as f64;
        ensure!(sums == expected * ARRAY_TASKS as f64, "wrong local sums");
        // The same sums on `workers` threads of this process: what the
        // hardware gives when that many cores share the memory bus.
        let t = Instant::now();
        let threaded: f64 = std::thread::scope(|s| {
            let threads: Vec<_> = (0..workers)
                .map(|w| {
                    let local = &local;
                    let mine = (w..ARRAY_TASKS).step_by(workers).count();
                    s.spawn(move || (0..mine).map(|_| black_box(local.view()).sum()).sum::<f64>())
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("summing thread panicked")).sum()
        });
        let threaded_ms = t.elapsed().as_secs_f64() * 1e3;
        ensure!(threaded == expected * ARRAY_TASKS as f64, "wrong threaded sums");
        let t = Instant::now();
        let refs: Vec<ObjectRef<f64>> = (0..ARRAY_TASKS).map(|_| sum_in_place::remote(&a)).collect();
        let values = shoal::get_all(&refs)?;
        let tasks_ms = t.elapsed().as_secs_f64() * 1e3;
        ensure!(values.iter().all(|&v| v == expected), "wrong sums from the tasks");
        floors.push(floor_ms);
        ratios.push(tasks_ms / floor_ms);
        threaded_floors.push(threaded_ms);
        threaded_ratios.push(tasks_ms / threaded_ms);
        Ok(tasks_ms)
    })?;
    report("array tasks", &tasks_ms, "ms");
    report("array tasks compute floor", &floors[1..], "ms");
    report("array tasks ratio to floor", &ratios[1..], "x");
    report("array tasks threaded floor", &threaded_floors[1..], "ms");
    report("array tasks ratio to threaded floor", &threaded_ratios[1..], "x");
    Ok(())
}

/// 1 000 tasks, each taking the previous one's ref; time per link.
fn dependent_chain(bench: &mut Bench) -> anyhow::Result<()> {
    bench.node()?;
    let links = 1_000;
    let samples = measure(|| {
        let t = Instant::now();
        let mut r = chain_step::remote(0);
        for _ in 1..links {
            r = chain_step::remote(&r);
        }
        ensure!(shoal::get(&r)? == links as i64, "wrong chain result");
        Ok(t.elapsed().as_secs_f64() * 1e6 / links as f64)
    })?;
    report("dependent chain", &samples, "µs/link");
    Ok(())
}
