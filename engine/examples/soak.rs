//! Soak: a million small tasks, then ten thousand put/drop cycles of a 10 MiB
//! array, on one embedded node, with every result checked. Prints the
//! node's resident memory (the node runs inside this process), the store's
//! use and the object count before, after each phase, and the deltas, and
//! exits non-zero if memory grew past a small bound or the store did not
//! return to where it started: a leak of a few dozen bytes per task, or of
//! one array in a thousand cycles, fails it.
//!
//! ```text
//! cargo run --release -p shoal --example soak   # ~12 s here (~15 s unoptimised, as CI runs it)
//! cargo run --release -p shoal --example soak -- --quick   # a tenth of the counts
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ndarray::Array1;
use shoal::ObjectRef;

/// Tasks per batch: submitted at once, then gathered with one `get_all`.
const BATCH: u64 = 10_000;
/// f64 elements of a 10 MiB array.
const ARRAY_LEN: usize = (10 << 20) / std::mem::size_of::<f64>();
/// Check a stored array's contents every this many cycles.
const CHECK_EVERY: u64 = 250;

/// How much resident memory may grow over the run. The node keeps, on
/// purpose and once: the store's reservation margin, which grows with the
/// highest allocation (here by one 10 MiB array, past the 32 MiB reserved
/// at start) and never shrinks; and the heap the largest batch in flight
/// needed (task and object maps, messages), which malloc keeps for reuse
/// rather than return. Measured here: +8 MiB after the tasks (the same
/// after 100 000 as after 1 000 000: the peak of one batch, not a growth
/// per task) and +10 MiB of reservation after the puts. What the bound is
/// for: a leak that scales with the work — 64 bytes per task is 61 MiB
/// over a million, one 10 MiB array in 1 000 cycles is 100 MiB — goes
/// past it.
const RSS_BOUND: i64 = 64 << 20;

/// What the store reserves (allocates and maps) right after `init`, before
/// any object: its minimum margin.
const FIRST_MARGIN: u64 = 32 << 20;

/// Patience for releases still in flight to reach the node (workers send
/// theirs after the task's result), not a speed requirement.
const SETTLE: Duration = Duration::from_secs(10);

#[shoal::remote]
fn mix(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7)
}

/// The figures this example watches.
#[derive(Clone, Copy)]
struct Figures {
    rss: i64,
    reserved: u64,
    store_used: u64,
    objects: usize,
}

/// `VmRSS` of this process, in bytes.
fn rss() -> anyhow::Result<i64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The figures once the store is back to `base` (or `SETTLE` has passed:
/// the caller judges).
fn settle(node: &shoal::Shoal, base: Option<Figures>) -> anyhow::Result<Figures> {
    let deadline = Instant::now() + SETTLE;
    while let Some(base) = base {
        if (node.store_used_bytes() == base.store_used && node.object_count() == base.objects)
            || Instant::now() >= deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Figures {
        rss: rss()?,
        reserved: node.store_reserved_bytes(),
        store_used: node.store_used_bytes(),
        objects: node.object_count(),
    })
}

fn report(label: &str, now: Figures, base: Figures) {
    println!(
        "{label:<12} rss {:6.1} MiB ({:+6.1})  store reserved {:5.1} MiB ({:+5.1})  used {} B ({:+})  objects {} ({:+})",
        mib(now.rss),
        mib(now.rss - base.rss),
        mib(now.reserved as i64),
        mib(now.reserved as i64 - base.reserved as i64),
        now.store_used,
        now.store_used as i64 - base.store_used as i64,
        now.objects,
        now.objects as i64 - base.objects as i64,
    );
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    let (tasks, cycles) = if quick { (100_000, 1_000) } else { (1_000_000, 10_000) };
    let node = shoal::init(shoal::Config::default().workers(2).store_bytes(256 << 20))?;

    // The store reserves its first margin in the background after `init`;
    // the baseline waits for it, so the deltas are what the work left.
    let deadline = Instant::now() + SETTLE;
    while node.store_reserved_bytes() < FIRST_MARGIN && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let base = settle(&node, None)?;
    report("before", base, base);

    let started = Instant::now();
    let mut done = 0;
    while done < tasks {
        let n = BATCH.min(tasks - done);
        let refs: Vec<ObjectRef<u64>> = (done..done + n).map(mix::remote).collect();
        for (i, got) in (done..).zip(shoal::get_all(&refs)?) {
            ensure!(got == i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7), "mix({i}) = {got}");
        }
        done += n;
    }
    let after_tasks = settle(&node, Some(base))?;
    println!("{tasks} tasks in batches of {BATCH}: {:.2?}", started.elapsed());
    report("after tasks", after_tasks, base);

    // One array, kept by the driver; each cycle marks one element so a
    // check reads this cycle's object, not an earlier one's bytes.
    let started = Instant::now();
    let mut array = Array1::from_shape_fn(ARRAY_LEN, |i| i as f64);
    for cycle in 0..cycles {
        let at = (cycle as usize * 7919) % ARRAY_LEN;
        array[at] = -(cycle as f64);
        let r = shoal::put_array(&array)?;
        array[at] = at as f64;
        if cycle % CHECK_EVERY == 0 {
            let shared = shoal::get_shared(&r)?;
            let view = shared.as_slice();
            ensure!(view.len() == ARRAY_LEN, "cycle {cycle}: {} elements", view.len());
            ensure!(view[at] == -(cycle as f64), "cycle {cycle}: element {at} is {}", view[at]);
            let other = (at + ARRAY_LEN / 2) % ARRAY_LEN;
            ensure!(view[other] == other as f64, "cycle {cycle}: element {other} is {}", view[other]);
            ensure!(view[ARRAY_LEN - 1] == (ARRAY_LEN - 1) as f64, "cycle {cycle}: the last element");
        }
    }
    let gib = (cycles as f64 * (ARRAY_LEN * 8) as f64) / (1u64 << 30) as f64;
    println!("{cycles} put/drop cycles of a 10 MiB array ({gib:.0} GiB): {:.2?}", started.elapsed());
    drop(array);
    let after_puts = settle(&node, Some(base))?;
    report("after puts", after_puts, base);

    let grew = after_puts.rss - base.rss;
    println!("rss grew {:.1} MiB (bound {:.0} MiB)", mib(grew), mib(RSS_BOUND));
    ensure!(
        after_puts.store_used == base.store_used && after_puts.objects == base.objects,
        "the store did not return to where it started: {} bytes, {} objects (was {}, {})",
        after_puts.store_used,
        after_puts.objects,
        base.store_used,
        base.objects
    );
    ensure!(grew <= RSS_BOUND, "resident memory grew {:.1} MiB, past the {:.0} MiB bound", mib(grew), mib(RSS_BOUND));
    println!("soak passed");
    Ok(())
}
