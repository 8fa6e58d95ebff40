//! Nested tasks, a Ray user's classic: a recursive quicksort where each task
//! sorts its halves in child tasks and gathers them, plus a task that fans
//! out children and `wait`s on them, and a recursive Fibonacci — all on an
//! embedded node with two workers.
//!
//! ```sh
//! cargo run --release -p shoal --example recursive_sort
//! ```

use std::time::{Duration, Instant};

use shoal::ObjectRef;

/// Below this many numbers a task sorts in place.
const LEAF: usize = 8_192;

#[shoal::remote]
fn quicksort(mut v: Vec<i64>) -> Vec<i64> {
    if v.len() <= LEAF {
        v.sort_unstable();
        return v;
    }
    let pivot = v[v.len() / 2];
    let (less, rest): (Vec<i64>, Vec<i64>) = v.into_iter().partition(|&x| x < pivot);
    let (equal, greater): (Vec<i64>, Vec<i64>) = rest.into_iter().partition(|&x| x == pivot);
    // Both halves start at once; this task then waits for them (its thread
    // runs one of them itself meanwhile).
    let (less, greater) = (quicksort::remote(less), quicksort::remote(greater));
    let mut sorted = shoal::get(&less).expect("lower half");
    sorted.extend(equal);
    sorted.extend(shoal::get(&greater).expect("upper half"));
    sorted
}

#[shoal::remote]
fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = (fib::remote(n - 1), fib::remote(n - 2));
    shoal::get(&a).expect("fib(n - 1)") + shoal::get(&b).expect("fib(n - 2)")
}

#[shoal::remote]
fn word_length(word: String) -> usize {
    word.len()
}

/// Fans out one child per word, takes results as they come with `wait`.
#[shoal::remote]
fn total_length(text: String) -> usize {
    let mut pending: Vec<ObjectRef<usize>> =
        text.split_whitespace().map(|w| word_length::remote(w.to_string())).collect();
    let mut total = 0;
    while !pending.is_empty() {
        let (ready, rest) = shoal::wait(&pending, 1, Some(Duration::from_secs(10))).expect("wait");
        total += shoal::get_all(&ready).expect("ready children").iter().sum::<usize>();
        pending = rest;
    }
    total
}

fn main() -> anyhow::Result<()> {
    let node = shoal::init(shoal::Config::default().workers(2).store_bytes(512 << 20))?;

    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let numbers: Vec<i64> = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64
        })
        .collect();
    let started = Instant::now();
    let sorted = shoal::get(&quicksort::remote(numbers.clone()))?;
    let took = started.elapsed();
    let mut expected = numbers;
    expected.sort_unstable();
    anyhow::ensure!(sorted == expected, "quicksort returned the numbers out of order");
    println!("sorted {} numbers with nested tasks in {took:.2?}", sorted.len());

    let started = Instant::now();
    let f = shoal::get(&fib::remote(16))?;
    anyhow::ensure!(f == 987, "fib(16) = {f}");
    println!("fib(16) = {f}: ~3 200 nested tasks in {:.2?}", started.elapsed());

    let text = "the quick brown fox jumps over the lazy dog ".repeat(20);
    let total = shoal::get(&total_length::remote(text.clone()))?;
    anyhow::ensure!(total == text.split_whitespace().map(str::len).sum::<usize>(), "total_length = {total}");
    println!("total length of {} words, one child each: {total}", text.split_whitespace().count());

    println!("workers now: {} (extra workers go when idle)", node.live_workers());
    Ok(())
}
