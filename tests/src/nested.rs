//! Remote functions that call the API inside tasks (nested tasks), shared by
//! the `nested_*` tests.

use shoal::ObjectRef;

/// Fibonacci, recursively, one task per call: ~2 000 tasks for `fib(15)`.
#[shoal::remote]
pub fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = (fib::remote(n - 1), fib::remote(n - 2));
    shoal::get(&a).expect("fib(n - 1)") + shoal::get(&b).expect("fib(n - 2)")
}

/// Below this many numbers, `quicksort` sorts in place instead of recursing.
pub const SORT_LEAF: usize = 4096;

/// Quicksort with each half sorted by a child task.
#[shoal::remote]
pub fn quicksort(mut v: Vec<i64>) -> Vec<i64> {
    if v.len() <= SORT_LEAF {
        v.sort_unstable();
        return v;
    }
    let pivot = v[v.len() / 2];
    let (less, rest): (Vec<i64>, Vec<i64>) = v.into_iter().partition(|&x| x < pivot);
    let (equal, greater): (Vec<i64>, Vec<i64>) = rest.into_iter().partition(|&x| x == pivot);
    let (less, greater) = (quicksort::remote(less), quicksort::remote(greater));
    let mut sorted = shoal::get(&less).expect("lower half");
    sorted.extend(equal);
    sorted.extend(shoal::get(&greater).expect("upper half"));
    sorted
}

/// `n * n`.
#[shoal::remote]
pub fn square(n: u64) -> u64 {
    n * n
}

/// Fan out `n` children, `wait` for all of them, then sum their results.
#[shoal::remote]
pub fn fan_out(n: u64) -> u64 {
    let children: Vec<ObjectRef<u64>> = (0..n).map(square::remote).collect();
    let (ready, pending) = shoal::wait(&children, children.len(), None).expect("wait");
    assert!(pending.is_empty(), "wait returned {} pending refs", pending.len());
    shoal::get_all(&ready).expect("children").iter().sum()
}

/// The sum of squares below `n`, as `fan_out` computes it.
pub fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}
