//! Memory is reclaimed: objects are freed when their last handle goes, a small
//! store survives a stream of large objects, and a store asked to hold more
//! than fits says so (`ObjectStoreFull`) instead of crashing.
//!
//! One node (a 256 MiB store) for the whole file: these tests measure store
//! usage, so they run one at a time under a lock.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ndarray::{Array1, Ix1};
use shoal::{Error, ObjectRef, SharedArray};

const MIB: usize = 1 << 20;

/// The file's node, with spilling off: these tests are about what a full
/// store does (`store_spill.rs` tests spilling).
fn node() -> (&'static shoal::Shoal, MutexGuard<'static, ()>) {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let node = NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(2).store_bytes(256 << 20).spill(false)).expect("node")
    });
    (node, guard)
}

/// Store bytes in use and objects tracked.
fn usage(node: &shoal::Shoal) -> (u64, usize) {
    (node.store_used_bytes(), node.object_count())
}

/// Wait (bounded) until store usage is back to `baseline`: releases from
/// workers and results of tasks nobody waits for arrive asynchronously.
fn settles_to(node: &shoal::Shoal, baseline: (u64, usize)) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if usage(node) == baseline {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[shoal::remote]
fn first_element(a: SharedArray<f64, Ix1>) -> f64 {
    a.as_slice()[0]
}

#[shoal::remote]
fn make_array(n: usize, value: f64) -> Array1<f64> {
    Array1::from_elem(n, value)
}

#[shoal::remote]
fn count_refs(refs: Vec<ObjectRef<Array1<f64>>>) -> usize {
    refs.len()
}

#[test]
fn forty_64mib_arrays_through_a_256mib_store() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    for i in 0..40 {
        let a = shoal::put(Array1::<f64>::from_elem(64 * MIB / 8, i as f64))?;
        assert_eq!(shoal::get(&first_element::remote(&a))?, i as f64);
        let produced = make_array::remote(64 * MIB / 8, i as f64);
        assert_eq!(shoal::get_shared(&produced)?.as_slice()[1], i as f64);
        drop(a);
        drop(produced);
    }
    assert!(settles_to(node, baseline), "store usage returns to {baseline:?}, is {:?}", usage(node));
    Ok(())
}

#[test]
fn more_than_fits_is_store_full_and_loses_nothing() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    let mut live = Vec::new();
    let error = loop {
        match shoal::put(Array1::<f64>::from_elem(64 * MIB / 8, live.len() as f64)) {
            Ok(r) => live.push(r),
            Err(e) => break e,
        }
        assert!(live.len() <= 4, "a 256 MiB store cannot hold five 64 MiB arrays");
    };
    match error {
        Error::ObjectStoreFull { requested, capacity, .. } => {
            assert!(requested >= 64 * MIB as u64, "names the request size: {requested}");
            assert_eq!(capacity, 256 << 20);
        }
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    // What was stored is intact, and a task output that does not fit fails the task only.
    for (i, r) in live.iter().enumerate() {
        assert_eq!(shoal::get_shared(r)?.as_slice()[0], i as f64);
    }
    let too_big = make_array::remote(64 * MIB / 8, 1.0);
    assert!(matches!(shoal::get(&too_big), Err(Error::ObjectStoreFull { .. })));
    drop((live, too_big));
    assert!(settles_to(node, baseline));
    let fits_again = make_array::remote(64 * MIB / 8, 2.0);
    assert_eq!(shoal::get_shared(&fits_again)?.as_slice()[0], 2.0);
    Ok(())
}

#[shoal::remote]
fn first_of_nested(refs: Vec<ObjectRef<Array1<f64>>>) -> Vec<ObjectRef<Array1<f64>>> {
    refs
}

#[test]
fn refs_inside_a_value_argument_stay_alive_until_the_task_ends() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    let inner = shoal::put(Array1::<f64>::from_elem(MIB, 4.0))?;
    let passed_on = first_of_nested::remote(vec![inner.clone()]);
    drop(inner); // only the pending task's argument refers to it now
    let returned = shoal::get(&passed_on)?;
    assert_eq!(shoal::get_shared(&returned[0])?.as_slice()[0], 4.0);
    drop((returned, passed_on));
    assert!(settles_to(node, baseline));
    Ok(())
}

#[test]
fn refs_dropped_inside_workers_free_their_objects() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    let refs: Vec<ObjectRef<Array1<f64>>> = (0..3).map(|i| make_array::remote(MIB, i as f64)).collect();
    let counted = count_refs::remote(refs.clone());
    assert_eq!(shoal::get(&counted)?, 3);
    drop(counted);
    drop(refs);
    assert!(settles_to(node, baseline), "usage back to baseline after the worker dropped its handles");
    Ok(())
}

/// Reads the array, then leaves it to a thread that lets go of it later,
/// after the task is over and the worker is idle.
#[shoal::remote]
fn hand_to_a_thread(a: SharedArray<f64, Ix1>) -> f64 {
    let first = a.as_slice()[0];
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(a);
    });
    first
}

#[test]
fn a_view_dropped_by_an_idle_workers_thread_frees_its_object() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    let a = shoal::put(Array1::<f64>::from_elem(MIB, 6.0))?;
    assert_eq!(shoal::get(&hand_to_a_thread::remote(&a))?, 6.0);
    drop(a);
    // Only the worker's thread holds it now; no further task will run.
    assert!(settles_to(node, baseline), "freed once the thread drops it: {:?} vs {baseline:?}", usage(node));
    Ok(())
}

#[test]
fn a_pending_result_nobody_holds_is_freed_when_it_arrives() -> anyhow::Result<()> {
    let (node, _serial) = node();
    let baseline = usage(node);
    drop(make_array::remote(4 * MIB, 3.0));
    let marker = make_array::remote(8, 0.0);
    shoal::get(&marker)?;
    drop(marker);
    assert!(settles_to(node, baseline));
    Ok(())
}

#[test]
fn a_worker_binary_without_the_function_is_function_not_found() {
    // Runs in this process while the shared node above may be alive, so the
    // expected first error is that a node is already running; check with a
    // dedicated process instead.
    let output = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "function_not_found_child", "--ignored", "--nocapture"])
        .env("SHOAL_TEST_OTHER_WORKER", env!("CARGO_BIN_EXE_other_worker"))
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 passed"), "child test ran: {stdout}");
}

#[test]
#[ignore = "run by a_worker_binary_without_the_function_is_function_not_found in its own process"]
fn function_not_found_child() {
    let Some(program) = std::env::var_os("SHOAL_TEST_OTHER_WORKER") else { return };
    let result = shoal::init(shoal::Config::default().workers(1).store_bytes(16 << 20).worker_program(program));
    match result {
        Err(Error::FunctionNotFound { function, program }) => {
            assert!(function.contains("store_reclaim"), "names a driver function: {function}");
            assert!(program.contains("other_worker"), "names the worker program: {program}");
        }
        other => panic!("expected FunctionNotFound, got {other:?}"),
    }
}
