//! Nested tasks that recurse and fan out: `fib(15)` (~2 000 tasks, most of
//! them blocked at once) on 2 workers, a nested quicksort, a task fanning
//! out 100 children. The tests run at once on one node; after each, the
//! pool returns to its configured size (extra workers go when idle).

use std::time::{Duration, Instant};

use shoal_tests::nested::{SORT_LEAF, fan_out, fib, quicksort, sum_of_squares};
use shoal_tests::shared_node;

const PATIENCE: Duration = Duration::from_secs(120);

/// The pool goes back to the configured 2 workers once nothing needs more.
fn assert_pool_settles() {
    let node = shared_node();
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.live_workers() != 2 {
        assert!(Instant::now() < deadline, "{} workers, 20 s after the work ended", node.live_workers());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fib_15_runs_on_two_workers() -> anyhow::Result<()> {
    shared_node();
    assert_eq!(shoal::get_timeout(&fib::remote(15), PATIENCE)?, 610);
    assert_pool_settles();
    Ok(())
}

#[test]
fn several_recursions_at_once() -> anyhow::Result<()> {
    shared_node();
    let refs: Vec<_> = (8..14).map(fib::remote).collect();
    let values: Vec<u64> = refs.iter().map(|r| shoal::get_timeout(r, PATIENCE)).collect::<Result<_, _>>()?;
    assert_eq!(values, [21, 34, 55, 89, 144, 233]);
    assert_pool_settles();
    Ok(())
}

#[test]
fn nested_quicksort_of_200_000_numbers() -> anyhow::Result<()> {
    shared_node();
    // A fixed pseudo-random sequence, with repeats.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let input: Vec<i64> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000) as i64 - 500_000
        })
        .collect();
    assert!(input.len() > 16 * SORT_LEAF, "deep enough to recurse");
    let sorted = shoal::get_timeout(&quicksort::remote(input.clone()), PATIENCE)?;
    let mut expected = input;
    expected.sort_unstable();
    assert_eq!(sorted.len(), expected.len());
    assert!(sorted == expected, "the numbers come back sorted, none lost");
    assert_pool_settles();
    Ok(())
}

#[test]
fn a_task_fans_out_100_children_and_waits_for_them() -> anyhow::Result<()> {
    shared_node();
    assert_eq!(shoal::get_timeout(&fan_out::remote(100), PATIENCE)?, sum_of_squares(100));
    // Several at once, each waiting on its own children.
    let many: Vec<_> = (0..4).map(|_| fan_out::remote(100)).collect();
    for r in &many {
        assert_eq!(shoal::get_timeout(r, PATIENCE)?, sum_of_squares(100));
    }
    assert_pool_settles();
    Ok(())
}
