//! A driver for `process_lifecycle.rs` to `kill -9`: starts a node with two
//! workers and its spill directory under its first argument, runs one task,
//! puts more than its store holds (so it has spill files open), prints
//! `ready <socket> <worker pid>…` and sleeps until killed.

use std::io::Write;

/// The task that proves the node works before the driver is killed.
#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

fn main() -> shoal::Result<()> {
    let spill_base = std::env::args().nth(1).expect("a spill directory");
    let node = shoal::init(shoal::Config::default().workers(2).store_bytes(64 << 20).spill_dir(spill_base))?;
    assert_eq!(shoal::get(&double::remote(21))?, 42);
    let held: Vec<_> =
        (0..6).map(|i| shoal::put(ndarray::Array1::from_elem(2 << 20, i as f64))).collect::<Result<_, _>>()?;
    assert!(node.store_stats().spill_files > 0, "96 MiB of arrays spill from a 64 MiB store");
    let pids: Vec<String> = node.worker_pids().iter().map(u32::to_string).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {}", node.socket_path().display(), pids.join(" ")).expect("write the ready line");
    out.flush().expect("flush the ready line");
    drop(out);
    let _held = held;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
