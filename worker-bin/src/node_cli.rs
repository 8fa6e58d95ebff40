//! `shoal start` and `shoal stop`: a standalone node that drivers connect
//! to, outliving the shell that started it.
//!
//! `start` without `--block` runs itself again with `--block`, in a process
//! group of its own, its stderr appended to a log file; it relays the child's
//! first lines (the address, or why not) and returns. The node's process
//! blocks the termination signals before any thread exists and waits for
//! one: `stop` sends SIGTERM and waits until the node is no standalone node
//! any more (its workers stopped, its socket directory removed).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal};

/// What `shoal start` takes.
pub struct StartArgs {
    pub workers: Option<usize>,
    pub store_bytes: Option<u64>,
    pub spill_dir: Option<PathBuf>,
    pub socket_dir: Option<PathBuf>,
    pub worker_program: Option<PathBuf>,
    /// Serve the node's metrics over HTTP here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub block: bool,
    /// Run by a user in a terminal (`--block` by hand), not detached by `start`.
    pub attached: bool,
}

/// How long `stop` waits for the node's process to end.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

fn base_config(socket_dir: Option<&Path>) -> shoal::Config {
    match socket_dir {
        Some(dir) => shoal::Config::default().socket_dir(dir),
        None => shoal::Config::default(),
    }
}

/// The node's address line, as `eval "$(shoal start)"` takes it.
fn address_line(address: &Path) -> String {
    format!("{}={}", shoal::ADDRESS_ENV, address.display())
}

pub fn start(args: StartArgs) -> anyhow::Result<()> {
    let probe = base_config(args.socket_dir.as_deref());
    if let Some((address, pid)) = shoal::standalone_nodes(&probe).into_iter().next() {
        bail!("a shoal node is already running (pid {pid}) at {}; stop it first with `shoal stop`", address.display());
    }
    let program = match &args.worker_program {
        Some(p) => Some(p.canonicalize().with_context(|| format!("worker program {}", p.display()))?),
        None => None,
    };
    if args.block {
        return serve(args, program);
    }
    let mut child = Command::new(std::env::current_exe().context("this executable")?);
    child.arg("start").arg("--block").arg("--detached");
    if let Some(p) = &program {
        child.arg("--worker-program").arg(p);
    }
    if let Some(n) = args.workers {
        child.arg("--workers").arg(n.to_string());
    }
    if let Some(b) = args.store_bytes {
        child.arg("--store-bytes").arg(b.to_string());
    }
    if let Some(d) = &args.spill_dir {
        child.arg("--spill-dir").arg(d);
    }
    if let Some(d) = &args.socket_dir {
        child.arg("--socket-dir").arg(d);
    }
    if let Some(a) = &args.metrics_addr {
        child.arg("--metrics-addr").arg(a.to_string());
    }
    let log = log_path(args.socket_dir.as_deref());
    let log_file =
        std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| log.display().to_string())?;
    let mut child = child
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .process_group(0)
        .env_remove(shoal::ADDRESS_ENV)
        .spawn()
        .context("starting the node's process")?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if line.starts_with(&format!("{}=", shoal::ADDRESS_ENV)) {
            // Its output ends here: it runs on alone.
            return Ok(());
        }
    }
    let status = child.wait()?;
    bail!("the node did not start ({status}); its log: {}", log.display())
}

/// Where a detached node's stderr goes.
fn log_path(socket_dir: Option<&Path>) -> PathBuf {
    let base = socket_dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    base.join(format!("shoal-node-{}.log", nix::unistd::geteuid().as_raw()))
}

/// Run the node in this process until SIGTERM, SIGINT or SIGHUP.
fn serve(args: StartArgs, program: Option<PathBuf>) -> anyhow::Result<()> {
    let signals: SigSet = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP].into_iter().collect();
    // Before any thread exists, so every thread inherits the mask and the
    // signals wait for `wait` below.
    signals.thread_block().context("blocking the termination signals")?;
    let metrics = match args.metrics_addr.map(crate::metrics::bind).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            println!("error: {e:#}");
            return Err(e);
        }
    };
    let mut config = base_config(args.socket_dir.as_deref());
    if let Some(program) = program {
        config = config.worker_program(program);
    }
    if let Some(n) = args.workers {
        config = config.workers(n);
    }
    if let Some(b) = args.store_bytes {
        config = config.store_bytes(b);
    }
    if let Some(d) = args.spill_dir {
        config = config.spill_dir(d);
    }
    let node = match shoal::serve(config) {
        Ok(node) => node,
        Err(e) => {
            // The starting shell reads stdout.
            println!("error: {e}");
            return Err(e.into());
        }
    };
    eprintln!("shoal node {} serving at {}", std::process::id(), node.socket_path().display());
    if let Some(listener) = metrics {
        let at = listener.local_addr()?;
        crate::metrics::serve(listener, node.socket_path().to_path_buf())?;
        eprintln!("shoal node {}: metrics at http://{at}/metrics", std::process::id());
    }
    println!("{}", address_line(node.socket_path()));
    if !args.attached {
        // The starting command has read its line and gone: what the node
        // writes to stdout (its workers' lines) goes to its log from now on.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = nix::unistd::dup2(2, 1);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => continue, // the terminal went; the node stays
            Ok(signal) => {
                eprintln!("shoal node {}: {signal}, stopping", std::process::id());
                break;
            }
            Err(e) => bail!("waiting for a signal: {e}"),
        }
    }
    drop(node);
    Ok(())
}

/// The node a command means: `address`, else `SHOAL_ADDRESS`, else the one
/// standalone node this user runs. (An embedded node is named by address.)
pub fn node_address(address: Option<PathBuf>, socket_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match address.or_else(address_from_env) {
        Some(address) => Ok(address),
        None => Ok(find_node(None, socket_dir)?.0),
    }
}

fn address_from_env() -> Option<PathBuf> {
    std::env::var_os(shoal::ADDRESS_ENV).filter(|a| !a.is_empty()).map(PathBuf::from)
}

/// The standalone node `stop` means: `address`, else `SHOAL_ADDRESS`, else
/// the one this user runs.
fn find_node(address: Option<PathBuf>, socket_dir: Option<&Path>) -> anyhow::Result<(PathBuf, u32)> {
    let nodes = shoal::standalone_nodes(&base_config(socket_dir));
    let wanted = address.or_else(address_from_env);
    match wanted {
        Some(address) => nodes
            .into_iter()
            .find(|(a, _)| *a == address)
            .with_context(|| format!("no shoal node is running at {}", address.display())),
        None => match nodes.as_slice() {
            [] => bail!("no shoal node is running (start one with `shoal start`)"),
            [one] => Ok(one.clone()),
            many => bail!(
                "{} shoal nodes are running; say which with --address or {}: {}",
                many.len(),
                shoal::ADDRESS_ENV,
                many.iter().map(|(a, _)| a.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

pub fn stop(address: Option<PathBuf>, socket_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (address, pid) = find_node(address, socket_dir.as_deref())?;
    let target = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(target, Signal::SIGTERM).with_context(|| format!("signalling the node (pid {pid})"))?;
    // Stopped once it is no standalone node any more: its workers gone and
    // its socket directory removed (or its process gone).
    let config = base_config(socket_dir.as_deref());
    let started = Instant::now();
    while shoal::standalone_nodes(&config).iter().any(|(a, _)| *a == address) {
        if started.elapsed() > STOP_PATIENCE {
            bail!("the node (pid {pid}) did not stop within {STOP_PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("stopped the shoal node at {} (pid {pid})", address.display());
    Ok(())
}
