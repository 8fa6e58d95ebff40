//! `shoal metrics` and `shoal start --metrics-addr`: a node's counters in
//! the Prometheus (OpenMetrics) text format, built from one `NodeStatus`
//! by `prometheus-client`, and served over HTTP to a scraper by a small
//! responder here (one `GET` a connection; nothing else is asked of it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use shoal::{NodeStatus, WorkerState};

type Labelled = Family<Vec<(&'static str, String)>, Gauge>;
type LabelledF64 = Family<Vec<(&'static str, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>;

fn labelled(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
}

fn gauge(v: impl TryInto<i64>) -> ConstGauge {
    ConstGauge::new(v.try_into().unwrap_or(i64::MAX))
}

/// The node's figures in the OpenMetrics text format (names `shoal_…`).
pub fn render(status: &NodeStatus) -> String {
    let mut r = Registry::with_prefix("shoal");
    r.register_with_unit(
        "uptime",
        "How long the node has run",
        Unit::Seconds,
        ConstGauge::new(status.uptime.as_secs_f64()),
    );
    r.register("cpus", "CPUs the node schedules", gauge(status.cpus));
    r.register("cpus_in_use", "CPUs running tasks and actors hold", gauge(status.cpus_in_use));
    let workers = Labelled::default();
    for state in
        [WorkerState::Idle, WorkerState::Running, WorkerState::Blocked, WorkerState::Actor, WorkerState::Retiring]
    {
        let n = status.workers.iter().filter(|w| w.state == state).count();
        workers.get_or_create(&labelled(&[("state", state.as_str())])).set(n as i64);
    }
    r.register("workers", "Worker processes by state", workers);
    let tasks = Labelled::default();
    for (state, n) in
        [("waiting", status.tasks.waiting), ("ready", status.tasks.ready), ("running", status.tasks.running)]
    {
        tasks.get_or_create(&labelled(&[("state", state)])).set(n as i64);
    }
    r.register("tasks", "Tasks not finished, by state", tasks);
    r.register("tasks_finished", "Tasks finished since the node started", ConstCounter::new(status.tasks.finished));
    r.register("tasks_failed", "Tasks that failed since the node started", ConstCounter::new(status.tasks.failed));
    let store = &status.store;
    r.register_with_unit("store_capacity", "Size of the shared-memory store", Unit::Bytes, gauge(store.capacity));
    r.register_with_unit("store_used", "Store bytes allocated", Unit::Bytes, gauge(store.used_bytes));
    r.register_with_unit("store_reserved", "Store bytes backed by memory", Unit::Bytes, gauge(status.reserved_bytes));
    r.register("objects", "Objects the node tracks", gauge(store.objects));
    r.register("spilled_objects", "Objects whose only copy is on disk", gauge(store.spilled_objects));
    r.register_with_unit("spilled", "Bytes of objects only on disk", Unit::Bytes, gauge(store.spilled_bytes));
    r.register("spill_files", "Spill files open", gauge(store.spill_files));
    r.register_with_unit(
        "spill_written",
        "Bytes written to spill files",
        Unit::Bytes,
        ConstCounter::new(store.total_spilled_bytes),
    );
    r.register_with_unit(
        "spill_read",
        "Bytes read back from spill files",
        Unit::Bytes,
        ConstCounter::new(store.total_restored_bytes),
    );
    r.register("drivers", "Drivers connected", gauge(status.drivers.len()));
    r.register("actors", "Actors alive, starting or restarting", gauge(status.actors.len()));
    if !status.resources.is_empty() {
        let (total, in_use) = (LabelledF64::default(), LabelledF64::default());
        for res in &status.resources {
            total.get_or_create(&labelled(&[("resource", &res.name)])).set(res.total);
            in_use.get_or_create(&labelled(&[("resource", &res.name)])).set(res.in_use);
        }
        r.register("resource_total", "Custom resources the node has", total);
        r.register("resource_in_use", "Custom resources running tasks hold", in_use);
    }
    let mut text = String::new();
    encode(&mut text, &r).expect("writing to a String cannot fail");
    text
}

/// Serve the node at `node`'s metrics at `/metrics` (and `/`) of
/// `listener`, one thread, until the process exits.
pub fn serve(listener: TcpListener, node: PathBuf) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("shoal-metrics".into())
        .spawn(move || {
            let mut monitor = None;
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &node, &mut monitor) {
                    eprintln!("shoal metrics: {e:#}");
                }
            }
        })
        .context("starting the metrics thread")?;
    Ok(())
}

/// Bind the metrics address before the node starts, so a taken port is a
/// clear error of `shoal start`.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot serve metrics at {addr}"))
}

/// The longest a scraper may take to send its request.
const REQUEST_PATIENCE: Duration = Duration::from_secs(5);

/// Answer one HTTP request.
fn answer(mut stream: TcpStream, node: &PathBuf, monitor: &mut Option<shoal::Monitor>) -> anyhow::Result<()> {
    // One deadline for the whole request: a client trickling bytes holds
    // the one metrics thread no longer than this.
    let deadline = std::time::Instant::now() + REQUEST_PATIENCE;
    stream.set_write_timeout(Some(REQUEST_PATIENCE))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        anyhow::ensure!(!left.is_zero(), "a request slower than {REQUEST_PATIENCE:?}");
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0 && head.len() < 16 << 10, "a request without its end");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    let mut words = line.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, kind, body) = if method != "GET" {
        ("405 Method Not Allowed", "text/plain", "GET only\n".to_string())
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", "text/plain", "the metrics are at /metrics\n".to_string())
    } else {
        // One monitor, kept while it answers (a scrape is one request).
        let report = match monitor.as_ref().map(shoal::Monitor::status) {
            Some(Ok(report)) => Ok(report),
            _ => shoal::Monitor::connect(node).and_then(|m| {
                let report = m.status();
                *monitor = Some(m);
                report
            }),
        };
        match report {
            Ok(report) => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", render(&report)),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("{e}\n")),
        }
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    Ok(())
}
