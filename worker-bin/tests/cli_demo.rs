//! The README's main job: `shoal demo` runs on an embedded node, with real
//! workers (the `shoal` binary itself), and reports correct results.

use std::process::Command;

#[test]
fn demo_runs_the_seed_job_and_reports_correct_sums() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["demo", "--workers", "2", "--mb", "8", "--tasks", "6"])
        .output()
        .expect("run shoal demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("node up with 2 workers"), "{stdout}");
    assert!(stdout.contains("increment(increment(1)) = 3"), "{stdout}");
    assert!(stdout.contains("a chain of 1000 dependent increments = 1000"), "{stdout}");
    assert!(stdout.contains("6 tasks summed the shared array"), "{stdout}");
    assert!(stdout.contains("shut down in"), "{stdout}");
}

#[test]
fn unknown_subcommands_are_refused_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal")).arg("frobnicate").output().expect("run shoal");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
}

/// Parse `shoal bench` output: `metric\tvalue\tunit\t± spread` lines.
fn bench_lines(stdout: &str) -> Vec<(String, f64, String)> {
    stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "not a metric line: {line:?}");
            assert!(fields[3].starts_with("± "), "no spread in {line:?}");
            fields[3][3..].parse::<f64>().unwrap_or_else(|_| panic!("spread in {line:?}"));
            let value = fields[1].parse::<f64>().unwrap_or_else(|_| panic!("value in {line:?}"));
            (fields[0].to_string(), value, fields[2].to_string())
        })
        .collect()
}

fn run_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal")).arg("bench").args(args).output().expect("run shoal bench")
}

#[test]
fn bench_lists_every_metric_of_the_suite() {
    let output = run_bench(&["--list"]);
    assert!(output.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    for metric in [
        "single client tasks sync",
        "single client tasks async",
        "multi client tasks async",
        "nested tasks sync",
        "single client tasks and get batch",
        "single client put calls",
        "single client get calls",
        "single client put gigabytes",
        "multi client put gigabytes",
        "single client get object containing 10k refs",
        "single client wait 1k refs",
        "zero-copy get gigabytes",
        "array tasks",
        "dependent chain",
        "machine memcpy gigabytes",
        "machine unix socket ping-pong",
        "machine worker start",
    ] {
        assert!(names.iter().any(|n| n == metric), "{metric} missing from {names:?}");
    }
}

#[test]
fn bench_filter_runs_only_matching_metrics_and_prints_metric_lines() {
    // A node metric, a machine limit that spawns the echo child, and a group
    // that prints three lines; small arrays keep it quick.
    for (filter, expected) in [
        ("single client get calls", &["single client get calls"][..]),
        ("ping-pong", &["machine unix socket ping-pong"][..]),
        (
            "array tasks",
            &[
                "array tasks",
                "array tasks compute floor",
                "array tasks ratio to floor",
                "array tasks threaded floor",
                "array tasks ratio to threaded floor",
            ][..],
        ),
    ] {
        let output = run_bench(&["--filter", filter, "--large-mb", "8", "--workers", "2"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let lines = bench_lines(&stdout);
        let names: Vec<&str> = lines.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, expected);
        assert!(lines.iter().all(|(_, value, _)| *value > 0.0), "{stdout}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("[1/1]"), "no progress shown");
    }
}

#[test]
fn bench_refuses_a_filter_that_matches_nothing() {
    let output = run_bench(&["--filter", "no such metric"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no metric matches"));
}
