//! A standalone node whose workers run another program
//! (`Config::worker_program`, `shoal start --worker-program`) serves a
//! driver built from other code: the functions both build from the same
//! source run, nested calls included; one the program lacks is
//! `FunctionNotFound`, for a task, an actor and an actor's method, and the
//! driver and node go on.
//!
//! The node's host is this test binary run again as a child (the ignored
//! `node_host` test), serving the `shared_worker` program, which links
//! only `shoal_tests::nested`; this binary registers more.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use shoal::{Config, Error};
use shoal_tests::nested::{fib, square};
use shoal_tests::wait_until;

const HOST_ENV: &str = "SHOAL_TEST_PROGRAM_HOST";

/// Only this test binary registers it.
#[shoal::remote]
fn only_here(n: u64) -> u64 {
    n + 1
}

/// An actor only this binary registers.
pub struct Local;

#[shoal::actor]
impl Local {
    /// A local actor.
    pub fn new(_tag: u8) -> Self {
        Local
    }

    /// Its one method.
    pub fn ping(&self) -> u8 {
        1
    }
}

#[test]
#[ignore = "the node's host, run by the test as a child process"]
fn node_host() -> anyhow::Result<()> {
    let Some(ready) = std::env::var_os(HOST_ENV) else { return Ok(()) };
    let program = PathBuf::from(env!("CARGO_BIN_EXE_shared_worker"));
    let node = shoal::serve(Config::default().worker_program(program).workers(2).store_bytes(64 << 20))?;
    std::fs::write(ready, node.socket_path().as_os_str().as_encoded_bytes())?;
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    Ok(())
}

#[test]
fn a_driver_of_other_code_calls_what_it_shares_with_the_worker_program() -> anyhow::Result<()> {
    let ready = std::env::temp_dir().join(format!("shoal-program-host-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut host = Command::new(std::env::current_exe()?)
        .args(["--exact", "node_host", "--ignored", "--nocapture"])
        .env(HOST_ENV, &ready)
        .env_remove(shoal::ADDRESS_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    assert!(wait_until(Duration::from_secs(30), || ready.exists()), "the host started no node");
    std::thread::sleep(Duration::from_millis(20));
    let address = PathBuf::from(std::fs::read_to_string(&ready)?);
    let _ = std::fs::remove_file(&ready);

    let node = shoal::init(Config::default().address(&address))?;
    // Shared code runs on the program's workers, recursion included.
    assert_eq!(shoal::get(&square::remote(12))?, 144);
    assert_eq!(shoal::get(&fib::remote(12))?, 144);
    // What only this binary has is refused by name, and nothing else is.
    match shoal::get(&only_here::remote(1)) {
        Err(Error::FunctionNotFound { function, .. }) => assert!(function.ends_with("::only_here"), "{function}"),
        other => panic!("a function the worker program lacks: {other:?}"),
    }
    let local = Local::remote(0);
    match shoal::get(&local.ping()) {
        Err(Error::FunctionNotFound { function, .. }) => assert!(function.contains("Local"), "{function}"),
        other => panic!("an actor the worker program lacks: {other:?}"),
    }
    assert_eq!(shoal::get(&square::remote(3))?, 9);
    let status = node.status()?;
    assert_eq!(status.drivers.len(), 1);
    assert_eq!(status.tasks.failed, 3, "only_here, the constructor and its call: {:?}", status.tasks);
    drop(node);
    drop(host.stdin.take());
    host.wait()?;
    Ok(())
}
