//! Helpers shared by shoal's integration tests (`tests/tests/*.rs`).
//!
//! Every test binary re-executes itself as its workers, so the remote
//! functions a test calls are defined in that test file.

use std::time::{Duration, Instant};

/// One node per test binary, shared by its tests (which run in parallel
/// threads): `shoal::init_once`. It is never dropped: workers exit when the
/// test process does.
pub fn shared_node() -> &'static shoal::Shoal {
    shoal::init_once(shoal::Config::default().workers(2).store_bytes(256 << 20)).expect("start the shared test node")
}

/// Poll `done` every 20 ms until it holds or `timeout` passes; whether it
/// held. For conditions another process or thread brings about.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod nested;
