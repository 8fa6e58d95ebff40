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

/// A library built from other code is refused at `init`, naming what
/// differs. Run in a child process (a process has one backend): this test
/// binary itself, with `SHOAL_RAY_LIBRARY` pointing at another crate's library.
#[test]
fn a_stale_library_is_refused() -> Result<()> {
    let Ok(other) = std::env::var("SHOAL_RAY_OTHER_LIBRARY") else {
        bail!("SHOAL_RAY_OTHER_LIBRARY: run tests/ray/run")
    };
    if std::env::var_os("SHOAL_CONFORMANCE_CHILD").is_some() {
        match setup() {
            Err(e) => {
                let text = e.to_string();
                ensure!(text.contains("built from other code"), "{text}");
                println!("REFUSED: {text}");
                return Ok(());
            }
            Ok(()) => bail!("a stale library was accepted"),
        }
    }
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "a_stale_library_is_refused", "--nocapture"])
        .env("SHOAL_CONFORMANCE_CHILD", "1")
        .env(shoal::RAY_LIBRARY_ENV, other)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("REFUSED"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(stdout.contains("conformance"), "the message names no function: {stdout}");
    Ok(())
}
