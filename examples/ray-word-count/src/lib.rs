//! Word count's remote functions and its tally actor. They live in the
//! crate's library so that, on a Ray cluster, this same crate built as a
//! `cdylib` is the worker library (`src/main.rs` says how).

use std::collections::BTreeMap;

/// Counts of each word.
pub type Counts = BTreeMap<String, u64>;

/// The words of one chunk of text, counted (lower case, letters only).
#[shoal::remote]
pub fn count_words(chunk: String) -> Counts {
    let mut counts = Counts::new();
    for word in chunk.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    counts
}

/// Two counts merged: the reduce step, taking its inputs as refs.
#[shoal::remote]
pub fn merge(a: Counts, b: Counts) -> Counts {
    let mut merged = a;
    for (word, n) in b {
        *merged.entry(word).or_default() += n;
    }
    merged
}

/// The pid and host of the worker that runs it: where the work went.
#[shoal::remote]
pub fn whereabouts(_chunk: u64) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

/// An actor keeping a running total of words seen.
#[derive(Default)]
pub struct Tally {
    words: u64,
}

#[shoal::actor]
impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Tally { words: 0 }
    }

    /// Add a chunk's counts; the total so far.
    pub fn add(&mut self, counts: Counts) -> u64 {
        self.words += counts.values().sum::<u64>();
        self.words
    }
}
