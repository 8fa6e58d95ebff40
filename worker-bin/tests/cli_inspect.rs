//! `shoal status`, `memory`, `timeline` and `metrics`, run as a user would
//! against this test's embedded node (by `--address`), while a task runs
//! and objects are held; checked against what the test knows it did.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ndarray::Array1;
use shoal::{MemoryReport, NodeStatus, ObjectPlace, WorkerState};

#[shoal::remote]
fn square(x: u64) -> u64 {
    x * x
}

#[shoal::remote]
fn fill(n: usize) -> Array1<f64> {
    Array1::from_elem(n, 1.5)
}

/// Runs until `gate` exists.
#[shoal::remote]
fn hold(gate: String) -> u32 {
    while !Path::new(&gate).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::process::id()
}

/// Waits for `hold(gate)`, run as its child.
#[shoal::remote]
fn outer(gate: String) -> u32 {
    shoal::get(&hold::remote(gate)).expect("the held child")
}

fn shoal_cli(args: &[&str], address: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .arg("--address")
        .arg(address)
        .env_remove(shoal::ADDRESS_ENV)
        .output()
        .expect("run shoal");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "shoal {args:?} failed: {stderr}");
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_embedded_node_answers_status_memory_timeline_and_metrics() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default().workers(2))?;
    let address = node.socket_path().to_path_buf();
    let squares: Vec<u64> = shoal::get_all(&(0..20).map(square::remote).collect::<Vec<_>>())?;
    assert_eq!(squares[19], 361);
    let big = shoal::put(Array1::<f64>::zeros(1 << 20))?; // 8 MiB
    let made = fill::remote(1 << 18); // 2 MiB
    assert_eq!(shoal::get_shared(&made)?.view()[0], 1.5);
    let view = shoal::get_shared(&big)?; // pinned while held
    let dir = std::env::temp_dir().join(format!("shoal-cli-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let gate = dir.join("gate");
    let held = hold::remote(gate.display().to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status: NodeStatus = serde_json::from_slice(&shoal_cli(&["status", "--json"], &address).stdout)?;
        if status.tasks.running == 1 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };

    // Status: this process is the node; its workers, one running `hold`
    // for this driver; the tasks it finished.
    assert_eq!(status.pid, std::process::id());
    assert!(!status.standalone);
    assert_eq!(status.socket, address);
    assert_eq!(status.cpus, 2);
    assert_eq!(status.cpus_in_use, 1);
    let mut pids: Vec<u32> = status.workers.iter().map(|w| w.pid).collect();
    let mut known = node.worker_pids();
    pids.sort();
    known.sort();
    assert_eq!(pids, known);
    let running: Vec<_> = status.workers.iter().filter(|w| w.state == WorkerState::Running).collect();
    assert_eq!(running.len(), 1, "{status:?}");
    assert!(running[0].function.as_deref().is_some_and(|f| f.ends_with("::hold")), "{status:?}");
    assert_eq!(running[0].driver, Some(std::process::id()));
    assert_eq!(status.tasks.running, 1);
    assert_eq!(status.tasks.finished, 21, "20 squares and a fill");
    assert_eq!(status.tasks.failed, 0);
    assert!(status.drivers.is_empty(), "an embedded node's own driver is not a connected one");
    let text = stdout(&shoal_cli(&["status"], &address));
    assert!(text.contains(&format!("shoal node {} (embedded)", std::process::id())), "{text}");
    assert!(text.contains("running") && text.contains("::hold"), "{text}");
    assert!(text.contains("21 finished (0 failed)"), "{text}");

    // Memory: the put array first, pinned; then the task's; totals over all.
    let memory: MemoryReport =
        serde_json::from_slice(&shoal_cli(&["memory", "--json", "--limit", "2"], &address).stdout)?;
    assert_eq!(memory.objects.len(), 2);
    let (first, second) = (&memory.objects[0], &memory.objects[1]);
    assert_eq!(first.id, big.id());
    assert!(first.size >= 8 << 20 && first.place == ObjectPlace::Arena && first.pinned, "{first:?}");
    assert_eq!(first.created_by, "put");
    assert_eq!(second.id, made.id());
    assert!(second.created_by.ends_with("::fill") && !second.pinned, "{second:?}");
    assert!(memory.total_objects > 2 && memory.arena_objects >= 2 && memory.pinned_objects == 1, "{memory:?}");
    assert!(memory.total_bytes >= first.size + second.size);
    let text = stdout(&shoal_cli(&["memory", "--limit", "1"], &address));
    assert!(text.contains(&format!("{} ", big.id())) && text.contains("arena") && text.contains("put"), "{text}");
    assert!(text.contains("smaller objects"), "{text}");

    // Timeline: every finished task, in its worker's lane.
    let (trace, picture) = (dir.join("trace.json"), dir.join("timeline.svg"));
    let (trace_arg, picture_arg) = (trace.display().to_string(), picture.display().to_string());
    shoal_cli(&["timeline", "-o", &trace_arg, "--svg", &picture_arg], &address);
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace)?)?;
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let tasks: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(tasks.len(), 21, "{trace}");
    assert_eq!(tasks.iter().filter(|e| e["name"].as_str().is_some_and(|n| n.ends_with("square"))).count(), 20);
    for task in &tasks {
        let lane = task["tid"].as_u64().expect("a lane") as u32;
        assert!(known.contains(&lane), "lane {lane} is a worker");
        assert!(task["dur"].as_f64().is_some_and(|d| d >= 0.0) && task["ts"].as_f64().is_some());
    }
    let lanes = events.iter().filter(|e| e["name"] == "thread_name").count();
    assert!((1..=2).contains(&lanes), "{trace}");
    let svg = std::fs::read_to_string(&picture)?;
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<title>").count(), 21, "a bar per task");
    assert!(svg.contains("::square") && svg.contains(" ms</text>"), "a legend and an axis");

    // Metrics: the same figures, in the Prometheus text format.
    let metrics = stdout(&shoal_cli(&["metrics"], &address));
    assert!(metrics.contains("shoal_tasks_finished_total 21"), "{metrics}");
    assert!(metrics.contains("shoal_workers{state=\"running\"} 1"), "{metrics}");
    assert!(metrics.contains("shoal_cpus 2") && metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // The same in code.
    assert_eq!(node.status()?.tasks.finished, 21);
    assert_eq!(node.memory(1)?.objects[0].id, big.id());
    std::fs::write(&gate, b"")?;
    shoal::get(&held)?;
    let timeline = node.timeline()?;
    assert_eq!(timeline.len(), 22);
    let last = timeline.last().expect("the held task");
    assert!(last.function.ends_with("::hold") && last.duration >= Duration::from_millis(1), "{last:?}");

    // A task blocked on its child is shown blocked, and the child running
    // (on another worker, or on top of the blocked one).
    let second_gate = dir.join("second gate");
    let waiting = outer::remote(second_gate.display().to_string());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = node.status()?;
        let runs = |w: &&shoal::WorkerInfo, f: &str| w.function.as_deref().is_some_and(|n| n.ends_with(f));
        if status.workers.iter().any(|w| runs(&w, "::hold")) || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let shown = |f: &str| -> Vec<WorkerState> {
        let named = status.workers.iter().filter(|w| w.function.as_deref().is_some_and(|n| n.ends_with(f)));
        named.map(|w| w.state).collect()
    };
    assert_eq!(shown("::hold"), vec![WorkerState::Running], "{status:?}");
    assert!(matches!(shown("::outer").as_slice(), [] | [WorkerState::Blocked]), "{status:?}");
    std::fs::write(&second_gate, b"")?;
    shoal::get(&waiting)?;
    drop(view);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn a_missing_node_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["status", "--address", "/nonexistent/shoal.sock"])
        .output()
        .expect("run shoal");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/shoal.sock"), "{stderr}");
}
