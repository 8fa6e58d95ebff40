//! `shoal status`, `memory`, `timeline` and `metrics`: what a node reports,
//! asked over its socket as a monitor (`shoal::Monitor`), so they answer
//! for a standalone node and, given its `--address`, an embedded one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use shoal::{MemoryReport, Monitor, NodeStatus};

use crate::{metrics, node_cli, timeline};

fn monitor(address: Option<PathBuf>, socket_dir: Option<&Path>) -> anyhow::Result<Monitor> {
    let address = node_cli::node_address(address, socket_dir)?;
    Ok(Monitor::connect(&address)?)
}

/// `1.5 GiB`, `12 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// The text `shoal status` prints.
pub fn status_text(s: &NodeStatus) -> String {
    let mut out = String::new();
    let kind = if s.standalone { "standalone" } else { "embedded" };
    let _ = writeln!(out, "shoal node {} ({kind}), up {}", s.pid, uptime(s.uptime));
    let _ = writeln!(out, "  address: {}", s.socket.display());
    let _ = write!(out, "CPUs: {} of {} in use", s.cpus_in_use, s.cpus);
    for r in &s.resources {
        let _ = write!(out, "; {}: {} of {} in use", r.name, r.in_use, r.total);
    }
    let _ = writeln!(out, "\nworkers ({}):", s.workers.len());
    for w in &s.workers {
        let _ = write!(out, "  pid {:<8} {}", w.pid, w.state.as_str());
        if let Some(function) = &w.function {
            let _ = write!(out, "  {function}");
        }
        if let Some(driver) = w.driver {
            let _ = write!(out, " (driver {driver})");
        }
        if w.queued > 1 {
            let _ = write!(out, " +{} queued", w.queued - 1);
        }
        out.push('\n');
    }
    let t = &s.tasks;
    let _ = writeln!(
        out,
        "tasks: {} waiting, {} ready, {} running; {} finished ({} failed)",
        t.waiting, t.ready, t.running, t.finished, t.failed
    );
    let st = &s.store;
    let _ = writeln!(
        out,
        "store: {} of {} used ({} reserved), {} objects; spilled {} objects, {} in {} files",
        bytes(st.used_bytes),
        bytes(st.capacity),
        bytes(s.reserved_bytes),
        st.objects,
        st.spilled_objects,
        bytes(st.spilled_bytes),
        st.spill_files
    );
    let _ = writeln!(out, "drivers ({}):", s.drivers.len());
    for d in &s.drivers {
        let _ = writeln!(out, "  pid {:<8} {} tasks, {} references", d.pid, d.tasks, d.references);
    }
    let _ = writeln!(out, "actors ({}):", s.actors.len());
    for a in &s.actors {
        let name = a.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
        let pid = a.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        let _ = writeln!(out, "  {}{name}{pid} {:?}, {} restarts", a.class, a.state, a.restarts);
    }
    out
}

/// The text `shoal memory` prints.
pub fn memory_text(m: &MemoryReport) -> String {
    let mut out = format!("{:<20} {:>10} {:<8} {:>5} {:<6} CREATED BY\n", "ID", "SIZE", "PLACE", "REFS", "PINNED");
    for o in &m.objects {
        let pinned = if o.pinned { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:<8} {:>5} {:<6} {}",
            o.id,
            bytes(o.size),
            o.place.as_str(),
            o.references,
            pinned,
            o.created_by
        );
    }
    if m.objects.len() < m.total_objects {
        let _ = writeln!(out, "… and {} smaller objects", m.total_objects - m.objects.len());
    }
    let _ = writeln!(
        out,
        "total: {} objects, {}: arena {} ({}), inline {} ({}), spilled {} ({}); {} pinned",
        m.total_objects,
        bytes(m.total_bytes),
        m.arena_objects,
        bytes(m.arena_bytes),
        m.inline_objects,
        bytes(m.inline_bytes),
        m.spilled_objects,
        bytes(m.spilled_bytes),
        m.pinned_objects
    );
    out
}

/// Print a report as JSON, or as text.
fn print(as_json: bool, json: serde_json::Result<String>, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if as_json {
        println!("{}", json?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

pub fn status(address: Option<PathBuf>, socket_dir: Option<PathBuf>, as_json: bool) -> anyhow::Result<()> {
    let status = monitor(address, socket_dir.as_deref())?.status()?;
    print(as_json, serde_json::to_string_pretty(&status), || status_text(&status))
}

pub fn memory(
    address: Option<PathBuf>,
    socket_dir: Option<PathBuf>,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<()> {
    let report = monitor(address, socket_dir.as_deref())?.memory(limit)?;
    print(as_json, serde_json::to_string_pretty(&report), || memory_text(&report))
}

pub fn timeline(
    address: Option<PathBuf>,
    socket_dir: Option<PathBuf>,
    trace: Option<PathBuf>,
    picture: Option<PathBuf>,
) -> anyhow::Result<()> {
    anyhow::ensure!(trace.is_some() || picture.is_some(), "say where to write: -o TRACE.json and/or --svg PICTURE.svg");
    let monitor = monitor(address, socket_dir.as_deref())?;
    let events = monitor.timeline()?;
    let pid = monitor.status()?.pid;
    if let Some(path) = &trace {
        let json = serde_json::to_vec(&timeline::chrome_trace(&events, pid))?;
        std::fs::write(path, json).with_context(|| path.display().to_string())?;
        println!(
            "wrote {} tasks to {} (open it in https://ui.perfetto.dev or chrome://tracing)",
            events.len(),
            path.display()
        );
    }
    if let Some(path) = &picture {
        std::fs::write(path, timeline::svg(&events)).with_context(|| path.display().to_string())?;
        println!("drew {} tasks in {}", events.len(), path.display());
    }
    Ok(())
}

pub fn print_metrics(address: Option<PathBuf>, socket_dir: Option<PathBuf>) -> anyhow::Result<()> {
    print!("{}", metrics::render(&monitor(address, socket_dir.as_deref())?.status()?));
    Ok(())
}
