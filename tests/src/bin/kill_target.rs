//! A driver for `process_lifecycle.rs` to `kill -9`: starts a node with two
//! workers, runs one task, prints `ready <socket> <worker pid>…` and sleeps
//! until killed.

use std::io::Write;

/// The task that proves the node works before the driver is killed.
#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

fn main() -> shoal::Result<()> {
    let node = shoal::init(shoal::Config::default().workers(2).store_bytes(64 << 20))?;
    assert_eq!(shoal::get(&double::remote(21))?, 42);
    let pids: Vec<String> = node.worker_pids().iter().map(u32::to_string).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {} {}", node.socket_path().display(), pids.join(" ")).expect("write the ready line");
    out.flush().expect("flush the ready line");
    drop(out);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
