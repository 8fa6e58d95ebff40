//! `shoal timeline`: a node's finished tasks drawn two ways — a Chrome
//! trace (`traceEvents`, one lane per worker; Perfetto and
//! `chrome://tracing` load it) and an SVG picture of the same lanes, tasks
//! coloured by function over a time axis.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use shoal::TaskEvent;

/// The trace of `events`, all in the process `node_pid`, a thread per worker.
pub fn chrome_trace(events: &[TaskEvent], node_pid: u32) -> serde_json::Value {
    let mut trace = vec![json!({
        "name": "process_name", "ph": "M", "pid": node_pid, "tid": 0,
        "args": { "name": format!("shoal node {node_pid}") },
    })];
    for worker in lanes(events).keys() {
        trace.push(json!({
            "name": "thread_name", "ph": "M", "pid": node_pid, "tid": worker,
            "args": { "name": format!("worker {worker}") },
        }));
    }
    for e in events {
        trace.push(json!({
            "name": short_name(&e.function),
            "cat": if e.failed { "task,failed" } else { "task" },
            "ph": "X",
            "ts": e.start.as_secs_f64() * 1e6,
            "dur": e.duration.as_secs_f64() * 1e6,
            "pid": node_pid,
            "tid": e.worker,
            "args": { "task": e.task, "function": e.function, "failed": e.failed },
        }));
    }
    json!({ "traceEvents": trace, "displayTimeUnit": "ms" })
}

/// Workers in pid order, each with its lane number.
fn lanes(events: &[TaskEvent]) -> BTreeMap<u32, usize> {
    let mut lanes: BTreeMap<u32, usize> = events.iter().map(|e| (e.worker, 0)).collect();
    for (i, lane) in lanes.values_mut().enumerate() {
        *lane = i;
    }
    lanes
}

/// `my_crate::module::f` as `module::f`: what fits on a bar.
fn short_name(function: &str) -> &str {
    let mut parts = function.rmatch_indices("::");
    match (parts.next(), parts.next()) {
        (Some(_), Some((at, _))) => &function[at + 2..],
        _ => function,
    }
}

/// A colour per function, the same in every drawing.
fn colour(function: &str) -> String {
    let hash = function.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
    format!("hsl({}, 65%, 55%)", hash % 360)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const WIDTH: f64 = 1200.0;
const LABEL: f64 = 120.0;
const LANE: f64 = 26.0;
const TOP: f64 = 30.0;

/// The picture of `events`: a lane per worker, a bar per task (hover for its
/// function, task id and run time), a time axis in milliseconds, a legend.
pub fn svg(events: &[TaskEvent]) -> String {
    let lanes = lanes(events);
    let start = events.iter().map(|e| e.start).min().unwrap_or_default();
    let end = events.iter().map(|e| e.start + e.duration).max().unwrap_or_default();
    let span = (end - start).as_secs_f64().max(1e-6);
    let plot = WIDTH - LABEL - 20.0;
    let x = |t: f64| LABEL + (t - start.as_secs_f64()) / span * plot;
    let mut functions: Vec<&str> = events.iter().map(|e| e.function.as_str()).collect();
    functions.sort_unstable();
    functions.dedup();
    let axis_y = TOP + LANE * lanes.len() as f64 + 10.0;
    let height = axis_y + 40.0 + 18.0 * functions.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="18" font-size="14">shoal timeline: {} tasks on {} workers over {:.3} ms</text>"#,
        events.len(),
        lanes.len(),
        span * 1e3
    );
    for (worker, &lane) in &lanes {
        let y = TOP + LANE * lane as f64;
        let _ = writeln!(out, r#"<text x="10" y="{:.1}">worker {worker}</text>"#, y + LANE * 0.65);
        let _ =
            writeln!(out, r##"<line x1="{LABEL}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, WIDTH - 20.0);
    }
    for e in events {
        let y = TOP + LANE * lanes[&e.worker] as f64 + 3.0;
        let (x0, x1) = (x(e.start.as_secs_f64()), x((e.start + e.duration).as_secs_f64()));
        let stroke = if e.failed { r#" stroke="red" stroke-width="2""# } else { "" };
        let _ = writeln!(
            out,
            r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"{stroke}><title>{} (task {}, {:.3} ms{})</title></rect>"#,
            (x1 - x0).max(0.5),
            LANE - 6.0,
            colour(&e.function),
            escape(&e.function),
            e.task,
            e.duration.as_secs_f64() * 1e3,
            if e.failed { ", failed" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{LABEL}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="black"/>"#,
        LABEL + plot
    );
    for i in 0..=10 {
        let t = span * f64::from(i) / 10.0;
        let tx = LABEL + plot * f64::from(i) / 10.0;
        let _ = writeln!(
            out,
            r#"<line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{:.3} ms</text>"#,
            axis_y + 5.0,
            axis_y + 18.0,
            t * 1e3
        );
    }
    for (i, function) in functions.iter().enumerate() {
        let y = axis_y + 34.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{LABEL}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 10.0,
            colour(function),
            LABEL + 18.0,
            escape(function)
        );
    }
    out.push_str("</svg>\n");
    out
}
