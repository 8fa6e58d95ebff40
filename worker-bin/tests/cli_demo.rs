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
