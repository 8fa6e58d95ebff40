//! Remote functions end to end: invocation, dependencies, values.

use std::time::Duration;

use shoal::ObjectRef;
use shoal_tests::shared_node;

#[shoal::remote]
fn increment(n: i64) -> i64 {
    n + 1
}

#[shoal::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[shoal::remote(num_returns = 2)]
fn split(v: Vec<i64>) -> (Vec<i64>, Vec<i64>) {
    let mid = v.len() / 2;
    (v[..mid].to_vec(), v[mid..].to_vec())
}

#[test]
fn increment_runs_in_a_worker() -> anyhow::Result<()> {
    shared_node();
    let x: ObjectRef<i64> = increment::remote(1);
    let y = increment::remote(&x);
    assert_eq!(shoal::get(&y)?, 3);
    assert_eq!(increment(41), 42, "the plain function stays callable");
    Ok(())
}

#[test]
fn chain_of_a_thousand() -> anyhow::Result<()> {
    shared_node();
    let mut r = increment::remote(0);
    for _ in 0..1000 {
        r = increment::remote(r);
    }
    assert_eq!(shoal::get_timeout(&r, Duration::from_secs(60))?, 1001);
    Ok(())
}

#[test]
fn diamond_and_same_ref_twice() -> anyhow::Result<()> {
    shared_node();
    let top = increment::remote(1);
    let left = increment::remote(&top);
    let right = add::remote(&top, 10);
    let bottom = add::remote(&left, &right);
    assert_eq!(shoal::get(&bottom)?, 3 + 12);
    let twice = add::remote(&top, &top);
    assert_eq!(shoal::get(&twice)?, 4);
    Ok(())
}

#[test]
fn num_returns_gives_two_refs() -> anyhow::Result<()> {
    shared_node();
    let (a, b) = split::remote(vec![1, 2, 3, 4, 5]);
    assert_eq!(shoal::get(&a)?, vec![1, 2]);
    assert_eq!(shoal::get(&b)?, vec![3, 4, 5]);
    let (c, _d) = split::options().max_retries(0).remote(&b);
    assert_eq!(shoal::get(&c)?, vec![3]);
    Ok(())
}
