//! Word count, Ray's classic: map chunks to counts in tasks, merge them in a
//! tree of tasks, keep a running total in an actor.
//!
//! On one host (an embedded node):
//!
//! ```sh
//! cargo run -p ray-word-count
//! ```
//!
//! On a Ray cluster, unchanged: build this crate's library as the worker
//! library, then point the driver at the cluster and the library.
//!
//! ```sh
//! cargo rustc -p ray-word-count --lib --features ray --crate-type cdylib
//! mkdir -p target/word-count-library && cp target/debug/libray_word_count.so target/word-count-library/
//! SHOAL_RAY_ADDRESS=host:6379 SHOAL_RAY_LIBRARY=target/word-count-library cargo run -p ray-word-count --features ray
//! ```

use std::collections::BTreeSet;

use anyhow::ensure;
use ray_word_count::{Counts, Tally, count_words, merge, whereabouts};
use shoal::ObjectRef;

const TEXT: &str = "the quick brown fox jumps over the lazy dog and the dog sleeps while the fox runs";

fn main() -> anyhow::Result<()> {
    // `SHOAL_RAY_ADDRESS` set: a Ray cluster; else an embedded node.
    let _node = shoal::init(shoal::Config::default().workers(2))?;
    let chunks: Vec<String> = (0..32).map(|i| format!("{TEXT} chunk{}", i % 4)).collect();

    // Map: one task per chunk.
    let mut counts: Vec<ObjectRef<Counts>> = chunks.into_iter().map(count_words::remote).collect();
    // A running total in an actor, fed the same refs.
    let tally = Tally::remote();
    let totals: Vec<ObjectRef<u64>> = counts.iter().map(|c| tally.add(c)).collect();
    // Reduce: merge pairs of refs until one is left; each merge runs once
    // its two inputs are ready.
    while counts.len() > 1 {
        let mut next = Vec::with_capacity(counts.len().div_ceil(2));
        for pair in counts.chunks(2) {
            next.push(match pair {
                [a, b] => merge::remote(a, b),
                [a] => a.clone(),
                _ => unreachable!(),
            });
        }
        counts = next;
    }
    let total: Counts = shoal::get(&counts[0])?;
    let words: u64 = total.values().sum();
    ensure!(total["the"] == 4 * 32, "the: {}", total["the"]);
    ensure!(total["fox"] == 2 * 32);
    ensure!(shoal::get_all(&totals)?.last() == Some(&words), "the tally agrees");
    let mut top: Vec<(&String, &u64)> = total.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("{words} words, {} distinct; most frequent: {:?}", total.len(), &top[..3]);

    let places: BTreeSet<String> =
        shoal::get_all(&(0..8).map(whereabouts::remote).collect::<Vec<_>>())?.into_iter().collect();
    println!("the work ran in {} worker processes: {places:?}", places.len());
    Ok(())
}
