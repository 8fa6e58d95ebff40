//! A streaming pipeline, Ray's generator way: a producer task yields
//! batches while it still runs, and each batch goes on to the next stage
//! the moment it exists.
//!
//! 1. Word count over a streamed corpus: every batch of lines a reader
//!    task yields is handed, as a ref, to a `count_words` task at once (the
//!    driver never fetches the text); the counts are merged as they finish.
//! 2. Sensor frames (arrays) with backpressure: the producer stays at most
//!    four frames ahead of the driver, which reads each frame in place in
//!    the store. When a frame shows an anomaly the driver drops the stream,
//!    which cancels the producer and frees the frames it did not read.
//! 3. An actor that streams from its state: a log's lines since a cursor.
//!
//! `cargo run --release -p shoal --example streaming_pipeline`

use std::collections::HashMap;
use std::time::Instant;

use ndarray::{Array2, Ix2};
use shoal::{ObjectRef, SharedArray};

const WORDS: [&str; 8] = ["shoal", "ray", "rust", "stream", "task", "actor", "array", "store"];

/// Line `i` of the synthetic corpus.
fn line(i: u64) -> String {
    (0..6).map(|k| WORDS[((i * 7 + k * 3) % WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
}

/// Reads the corpus in batches of `batch` lines, yielding each batch.
#[shoal::remote(streaming)]
fn read_corpus(lines: u64, batch: u64) -> impl Iterator<Item = Vec<String>> {
    (0..lines).step_by(batch as usize).map(move |start| (start..(start + batch).min(lines)).map(line).collect())
}

#[shoal::remote]
fn count_words(batch: Vec<String>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for word in batch.iter().flat_map(|l| l.split_whitespace()) {
        *counts.entry(word.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Frames from a sensor: 256×256 readings each; frame `anomaly_at` has a spike.
#[shoal::remote(streaming)]
fn sensor(frames: u64, anomaly_at: u64) -> impl Iterator<Item = Array2<f32>> {
    (0..frames).map(move |i| {
        let mut frame = Array2::from_elem((256, 256), (i % 10) as f32);
        if i == anomaly_at {
            frame[[128, 128]] = 1e6;
        }
        frame
    })
}

/// A log kept by an actor; readers stream the lines after their cursor.
pub struct Log {
    lines: Vec<String>,
}

#[shoal::actor]
impl Log {
    /// A log whose first line is `header`.
    pub fn new(header: String) -> Self {
        Log { lines: vec![header] }
    }

    /// Append a line; returns the log's length.
    pub fn append(&mut self, line: String) -> usize {
        self.lines.push(line);
        self.lines.len()
    }

    /// The lines from `cursor` on, one item each.
    #[shoal::method(streaming)]
    pub fn since(&self, cursor: usize) -> impl Iterator<Item = String> + '_ {
        self.lines.iter().skip(cursor).cloned()
    }
}

fn main() -> anyhow::Result<()> {
    let _node = shoal::init(shoal::Config::default())?;

    // 1. Word count: batches flow on to counting tasks as they are read.
    let (lines, batch) = (20_000, 500);
    let t = Instant::now();
    let mut counting: Vec<ObjectRef<HashMap<String, u64>>> = Vec::new();
    let mut first_batch_ms = None;
    for batch_ref in read_corpus::remote(lines, batch) {
        first_batch_ms.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
        counting.push(count_words::remote(batch_ref?));
    }
    let mut totals: HashMap<String, u64> = HashMap::new();
    while !counting.is_empty() {
        let (done, rest) = shoal::wait(&counting, 1, None)?;
        for counts in shoal::get_all(&done)? {
            for (word, n) in counts {
                *totals.entry(word).or_insert(0) += n;
            }
        }
        counting = rest;
    }
    let mut expected: HashMap<String, u64> = HashMap::new();
    for word in (0..lines).flat_map(|i| line(i).split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
        *expected.entry(word).or_insert(0) += 1;
    }
    anyhow::ensure!(totals == expected, "the streamed word count differs from the local one");
    println!(
        "word count: {} words in {} batches, first batch after {:.1} ms, all in {:.0} ms",
        totals.values().sum::<u64>(),
        lines / batch,
        first_batch_ms.unwrap_or_default(),
        t.elapsed().as_secs_f64() * 1e3
    );

    // 2. Sensor frames with backpressure; stop at the first anomaly.
    let (frames, anomaly_at) = (1_000, 37);
    let mut stream = sensor::options().backpressure(4).remote(frames, anomaly_at);
    let end = stream.completed().clone();
    let mut seen = 0;
    let anomaly = loop {
        let Some(frame) = stream.next() else { anyhow::bail!("the stream ended without an anomaly") };
        let frame: SharedArray<f32, Ix2> = shoal::get_shared(&frame?)?;
        let peak = frame.view().iter().copied().fold(f32::MIN, f32::max);
        seen += 1;
        if peak > 1e5 {
            break seen - 1;
        }
    };
    drop(stream);
    anyhow::ensure!(anomaly == anomaly_at, "the anomaly is in frame {anomaly_at}, not {anomaly}");
    anyhow::ensure!(
        matches!(shoal::get(&end), Err(shoal::Error::TaskCancelled { .. })),
        "dropping the stream cancels the producer"
    );
    println!("sensor: anomaly in frame {anomaly} of {frames}; the producer was cancelled, {seen} frames read in place");

    // 3. An actor streams from its state.
    let log = Log::remote("started".to_string());
    for i in 1..10 {
        log.append(format!("event {i}"));
    }
    let tail: Vec<String> = log.since(8).map(|r| shoal::get(&r?)).collect::<shoal::Result<_>>()?;
    anyhow::ensure!(tail == ["event 8", "event 9"], "unexpected tail {tail:?}");
    println!("log: {} lines since cursor 8: {tail:?}", tail.len());
    Ok(())
}
