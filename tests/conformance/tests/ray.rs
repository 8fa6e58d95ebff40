//! The conformance suite on a Ray cluster (the `ray` feature), and what is
//! the Ray backend's own: tasks spread over the cluster's nodes, a stale
//! worker library refused by name, what it does not support.
//!
//! `tests/ray/run` builds the worker library, starts a cluster of two nodes
//! on this host and runs this with `SHOAL_RAY_ADDRESS` and
//! `SHOAL_RAY_LIBRARY` set; without them, every test fails.
#![cfg(feature = "ray")]

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail, ensure};
use shoal::Error;
use shoal_conformance::{Counter, add, after, node_of_worker};

fn setup() -> Result<()> {
    let address = std::env::var(shoal::RAY_ADDRESS_ENV).context("SHOAL_RAY_ADDRESS: run tests/ray/run")?;
    let library = std::env::var(shoal::RAY_LIBRARY_ENV).context("SHOAL_RAY_LIBRARY: run tests/ray/run")?;
    shoal::init_once(shoal::Config::default().ray(address).ray_library(library))?;
    Ok(())
}

shoal_conformance::suite!(setup;
    tasks_and_dependencies,
    put_get_and_get_all,
    wait_for_the_first,
    get_timeout_runs_out,
    panics_reach_get_and_dependents,
    dead_worker_is_worker_died,
    several_returns,
    task_options,
    arrays,
    nested_tasks,
    actors,
);

#[test]
fn tasks_run_on_both_nodes() -> Result<()> {
    setup()?;
    // Batches of tasks holding a CPU each, until both nodes ran one: other
    // tests' tasks may fill a node for a while, never for a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut nodes = BTreeSet::new();
    while nodes.len() < 2 && std::time::Instant::now() < deadline {
        let refs: Vec<_> = (0..6).map(|_| node_of_worker::options().num_cpus(1).remote(300)).collect();
        nodes.extend(shoal::get_all(&refs)?);
    }
    ensure!(!nodes.contains("none"), "nodes: {nodes:?}");
    ensure!(nodes.len() == 2, "in a minute, the tasks ran on {nodes:?} only");
    Ok(())
}

/// ray-cpp hands a task its failed argument's error as the value: the
/// dependent fails with Ray's error, named, not with a decoding error.
#[test]
fn a_dependent_of_a_dead_task_fails_with_ray_s_error() -> Result<()> {
    setup()?;
    let dead = shoal_conformance::die::remote(0);
    let dependent = add::remote(1, 0);
    let after_dead = shoal_conformance::after::remote(0, &dead);
    ensure!(shoal::get(&dependent)? == 1);
    match shoal::get(&after_dead) {
        Err(Error::Ray(m)) => ensure!(m.contains("a Ray error"), "{m}"),
        Err(Error::WorkerDied { .. }) => {}
        other => bail!("expected Ray's error or WorkerDied, got {other:?}"),
    }
    Ok(())
}

#[test]
fn refs_inside_values_are_unsupported() -> Result<()> {
    setup()?;
    let inner = add::remote(1, 1);
    match shoal::put(vec![inner]) {
        Err(Error::Unsupported(why)) => ensure!(why.contains("inside values"), "{why}"),
        other => bail!("expected Unsupported, got {other:?}"),
    }
    Ok(())
}

#[test]
fn cancel_and_reports_are_unsupported() -> Result<()> {
    setup()?;
    let r = after::remote(0, 1);
    ensure!(matches!(shoal::cancel(&r), Err(Error::Unsupported(_))));
    ensure!(shoal::get(&r)? == 1);
    Ok(())
}

#[test]
fn named_actors_and_kill() -> Result<()> {
    setup()?;
    let named = Counter::options().name("conformance-counter").remote(5);
    ensure!(shoal::get(&named.add(1))? == 6);
    let found: shoal::ActorHandle<Counter> = shoal::get_actor("conformance-counter")?;
    ensure!(shoal::get(&found.value())? == 6);
    shoal::kill(&named)?;
    match shoal::get(&found.value()) {
        Err(Error::ActorDied { .. }) => {}
        other => bail!("expected ActorDied after kill, got {other:?}"),
    }
    ensure!(matches!(shoal::get_actor::<Counter>("no-such-actor"), Err(Error::ActorNotFound(_))));
    Ok(())
}

/// Run test `name` of this binary again in a child process with `env`
/// (a process has one backend); its stdout.
fn in_child(name: &str, env: &[(&str, &str)]) -> Result<String> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["--exact", name, "--nocapture"]).env("SHOAL_CONFORMANCE_CHILD", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "child: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(stdout)
}

fn is_child() -> bool {
    std::env::var_os("SHOAL_CONFORMANCE_CHILD").is_some()
}

/// A library built from other code is refused at `init`, naming what
/// differs: this test binary with `SHOAL_RAY_LIBRARY` at another crate's library.
#[test]
fn a_stale_library_is_refused() -> Result<()> {
    let Ok(other) = std::env::var("SHOAL_RAY_OTHER_LIBRARY") else {
        bail!("SHOAL_RAY_OTHER_LIBRARY: run tests/ray/run")
    };
    if is_child() {
        let text = setup().err().context("a stale library was accepted")?.to_string();
        ensure!(text.contains("built from other code"), "{text}");
        println!("REFUSED: {text}");
        return Ok(());
    }
    let stdout = in_child("a_stale_library_is_refused", &[(shoal::RAY_LIBRARY_ENV, &other)])?;
    ensure!(stdout.contains("REFUSED"), "child: {stdout}");
    ensure!(stdout.contains("conformance"), "the message names no function: {stdout}");
    Ok(())
}

/// A cluster that is not there, or no library, is an error at `init`,
/// not a crash of the driver.
#[test]
fn bad_addresses_and_folders_are_errors() -> Result<()> {
    if is_child() {
        let library = std::env::var(shoal::RAY_LIBRARY_ENV)?;
        let init = |address: &str, library: &str| {
            shoal::init(shoal::Config::default().ray(address).ray_library(library)).err().map(|e| e.to_string())
        };
        let nobody = init("127.0.0.1:1", &library).context("no cluster at port 1, yet init worked")?;
        ensure!(nobody.contains("cannot reach the Ray cluster at 127.0.0.1:1"), "{nobody}");
        let garbled = init("no-port-here", &library).context("an address without a port worked")?;
        ensure!(garbled.contains("host:port"), "{garbled}");
        let empty = std::env::temp_dir().join(format!("shoal-no-library-{}", std::process::id()));
        std::fs::create_dir_all(&empty)?;
        let address = std::env::var(shoal::RAY_ADDRESS_ENV)?;
        let no_library = init(&address, &empty.display().to_string()).context("a folder without a library worked")?;
        std::fs::remove_dir(&empty)?;
        ensure!(no_library.contains("no worker library"), "{no_library}");
        println!("ERRORS: {nobody} | {garbled} | {no_library}");
        return Ok(());
    }
    let stdout = in_child("bad_addresses_and_folders_are_errors", &[])?;
    ensure!(stdout.contains("ERRORS"), "child: {stdout}");
    Ok(())
}
