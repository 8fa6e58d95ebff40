//! The whole API inside a task: `remote`, `options()…remote`, `put`, `get`,
//! `get_timeout`, `get_all`, `get_shared`, `get_view` and `wait`, from the
//! task's own thread and from threads it starts; refs a task makes outliving
//! it; a failed child as an `Err` for its parent; results never held back
//! while their worker blocks.

use std::time::Duration;

use ndarray::{Array1, Array2, Ix1, Ix2};
use serde::{Deserialize, Serialize};
use shoal::{Error, ObjectRef, SharedArray};
use shoal_tests::shared_node;

const PATIENCE: Duration = Duration::from_secs(60);

#[shoal::remote]
fn increment(n: i64) -> i64 {
    n + 1
}

#[shoal::remote]
fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Frame {
    name: String,
    pixels: Array2<u8>,
}

#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Frame)]
struct FrameView {
    name: String,
    pixels: SharedArray<u8, Ix2>,
}

#[shoal::remote]
fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Every call of the API, as a task makes it; returns a report of what it
/// saw, checked by the test.
fn exercise_api(seed: i64) -> Vec<String> {
    let mut seen = Vec::new();
    // remote and options().remote, with a value, a ref and a &ref.
    let a = increment::remote(seed);
    let b = increment::options().max_retries(0).num_cpus(1).remote(&a);
    let c = increment::remote(b.clone());
    seen.push(format!("chain {}", shoal::get(&c).unwrap()));
    // put + get, get_all.
    let p = shoal::put(vec![seed; 3]).unwrap();
    seen.push(format!("put {:?}", shoal::get(&p).unwrap()));
    let refs: Vec<ObjectRef<i64>> = (0..5).map(|i| increment::remote(seed + i)).collect();
    seen.push(format!("get_all {:?}", shoal::get_all(&refs).unwrap()));
    // An array put in the task, read zero-copy here and by a child.
    let array = shoal::put(Array1::<f64>::from_elem(1 << 16, 0.5)).unwrap();
    let shared = shoal::get_shared(&array).unwrap();
    seen.push(format!("shared {}", shared.view().sum()));
    seen.push(format!("child total {}", shoal::get(&total::remote(&array)).unwrap()));
    // A view twin.
    let frame = shoal::put(Frame { name: format!("f{seed}"), pixels: Array2::from_elem((64, 64), 3) }).unwrap();
    let view: FrameView = shoal::get_view(&frame).unwrap();
    seen.push(format!("view {} {}", view.name, view.pixels.view().iter().map(|&p| p as u64).sum::<u64>()));
    // wait: one ready, one not, until the timeout runs out; get_timeout.
    let quick = sleepy::remote(0);
    shoal::get(&quick).unwrap();
    let slow = sleepy::remote(2_000);
    let both = [quick.clone(), slow.clone()];
    let (ready, pending) = shoal::wait(&both, 2, Some(Duration::from_millis(200))).unwrap();
    seen.push(format!("wait {} ready {} pending", ready.len(), pending.len()));
    match shoal::get_timeout(&slow, Duration::from_millis(10)) {
        Err(Error::Timeout(_)) => seen.push("get_timeout timed out".into()),
        other => seen.push(format!("get_timeout gave {other:?}")),
    }
    seen
}

fn expected(seed: i64) -> Vec<String> {
    vec![
        format!("chain {}", seed + 3),
        format!("put {:?}", vec![seed; 3]),
        format!("get_all {:?}", (0..5).map(|i| seed + i + 1).collect::<Vec<_>>()),
        format!("shared {}", 0.5 * 65536.0),
        format!("child total {}", 0.5 * 65536.0),
        format!("view f{seed} {}", 3 * 64 * 64),
        "wait 1 ready 1 pending".into(),
        "get_timeout timed out".into(),
    ]
}

#[shoal::remote]
fn api_on_the_task_thread(seed: i64) -> Vec<String> {
    exercise_api(seed)
}

#[shoal::remote]
fn api_on_started_threads(seeds: Vec<i64>) -> Vec<Vec<String>> {
    let handles: Vec<_> = seeds.into_iter().map(|s| std::thread::spawn(move || exercise_api(s))).collect();
    handles.into_iter().map(|h| h.join().expect("thread")).collect()
}

#[test]
fn the_whole_api_works_on_the_task_thread() -> anyhow::Result<()> {
    shared_node();
    assert_eq!(shoal::get_timeout(&api_on_the_task_thread::remote(10), PATIENCE)?, expected(10));
    Ok(())
}

#[test]
fn the_whole_api_works_on_threads_a_task_starts() -> anyhow::Result<()> {
    shared_node();
    let reports = shoal::get_timeout(&api_on_started_threads::remote(vec![1, 2, 3]), PATIENCE)?;
    assert_eq!(reports, vec![expected(1), expected(2), expected(3)]);
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Made {
    child: ObjectRef<i64>,
    stored: ObjectRef<Vec<u32>>,
    array: ObjectRef<Array1<f64>>,
}

/// Makes refs (a child, a put, a large put) and returns them without
/// reading them: they must outlive this task.
#[shoal::remote]
fn make_refs(n: i64) -> Made {
    Made {
        child: increment::remote(n),
        stored: shoal::put(vec![7u32; 10]).unwrap(),
        array: shoal::put(Array1::<f64>::from_elem(200_000, 2.0)).unwrap(),
    }
}

#[shoal::remote]
fn spawn_child(n: i64) -> ObjectRef<i64> {
    increment::remote(n)
}

#[shoal::remote]
fn read_made(made: Made) -> (i64, u32, f64) {
    (
        shoal::get(&made.child).unwrap(),
        shoal::get(&made.stored).unwrap().iter().sum(),
        shoal::get(&made.array).unwrap().sum(),
    )
}

#[test]
fn refs_a_task_makes_outlive_it_and_travel() -> anyhow::Result<()> {
    shared_node();
    let made = shoal::get_timeout(&make_refs::remote(41), PATIENCE)?;
    assert_eq!(shoal::get_timeout(&made.child, PATIENCE)?, 42);
    assert_eq!(shoal::get(&made.stored)?, vec![7u32; 10]);
    assert_eq!(shoal::get_shared(&made.array)?.view().sum(), 400_000.0);
    // Passed back into a task, inside a value and as an argument.
    assert_eq!(shoal::get_timeout(&read_made::remote(made), PATIENCE)?, (42, 70, 400_000.0));
    assert_eq!(shoal::get_timeout(&increment::remote(&shoal::get(&spawn_child::remote(1))?), PATIENCE)?, 3);
    Ok(())
}

#[shoal::remote]
fn explode(n: i64) -> i64 {
    panic!("child exploded on {n}")
}

#[shoal::remote]
fn handle_child_failure(n: i64) -> String {
    match shoal::get(&explode::remote(n)) {
        Ok(v) => format!("unexpected value {v}"),
        Err(e) => format!("handled: {e}"),
    }
}

#[shoal::remote]
fn unwrap_child_failure(n: i64) -> i64 {
    shoal::get(&explode::remote(n)).unwrap()
}

#[test]
fn a_failed_child_is_an_err_for_its_parent() -> anyhow::Result<()> {
    shared_node();
    let report = shoal::get_timeout(&handle_child_failure::remote(5), PATIENCE)?;
    assert!(report.starts_with("handled: "), "{report}");
    assert!(report.contains("explode") && report.contains("child exploded on 5"), "{report}");
    match shoal::get_timeout(&unwrap_child_failure::remote(6), PATIENCE) {
        Err(Error::TaskPanicked { function, message, .. }) => {
            assert!(function.contains("unwrap_child_failure"), "the parent failed: {function}");
            assert!(message.contains("child exploded on 6"), "names the child's failure: {message}");
        }
        other => panic!("expected the parent to panic, got {other:?}"),
    }
    Ok(())
}

#[shoal::remote]
fn quick(n: u64) -> u64 {
    n + 1
}

/// Short on average; reads refs passed inside a value (not dependencies).
#[shoal::remote]
fn read_inside(refs: Vec<ObjectRef<u64>>) -> u64 {
    refs.iter().map(|r| shoal::get(r).unwrap()).sum()
}

#[test]
fn a_result_is_never_held_back_while_its_worker_blocks() -> anyhow::Result<()> {
    shared_node();
    // Both functions measured short, so results batch and tasks pipeline deep.
    for _ in 0..50 {
        shoal::get_all(&(0..20).map(quick::remote).collect::<Vec<_>>())?;
        shoal::get(&read_inside::remote(Vec::new()))?;
    }
    // A quick task, then right behind it (same worker, pipelined) a task
    // that blocks on the quick one's result: the worker must send that result
    // before it blocks, or wait forever.
    for round in 0..200u64 {
        let first = quick::remote(round);
        let reader = read_inside::remote(vec![first.clone()]);
        assert_eq!(shoal::get_timeout(&reader, PATIENCE)?, round + 1, "round {round}");
    }
    Ok(())
}

#[shoal::remote]
fn nested_wait_times_out() -> (usize, usize, bool) {
    let slow = sleepy::remote(1_500);
    let (ready, pending) = shoal::wait(std::slice::from_ref(&slow), 1, Some(Duration::from_millis(50))).unwrap();
    let late = shoal::get(&slow).unwrap() == 1_500;
    (ready.len(), pending.len(), late)
}

#[test]
fn a_nested_wait_with_a_timeout_returns_what_is_ready() -> anyhow::Result<()> {
    shared_node();
    assert_eq!(shoal::get_timeout(&nested_wait_times_out::remote(), PATIENCE)?, (0, 1, true));
    Ok(())
}
