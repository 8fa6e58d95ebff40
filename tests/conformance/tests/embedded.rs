//! The conformance suite on an embedded node of four workers: as many CPUs
//! as `tests/ray/run`'s cluster has (two nodes of two), for the cases'
//! sleeping tasks run side by side there too.

fn setup() -> anyhow::Result<()> {
    shoal::init_once(shoal::Config::default().workers(4))?;
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
