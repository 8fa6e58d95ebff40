//! The Ray backend (the `ray` feature): the same API on a Ray cluster,
//! through ray-cpp's C++ API. Layered, each file using only those above it:
//!
//! - `ffi`: the C shim (`shim.cc`) over `libray_api.so`, made safe;
//! - `frame`: how values, failures and several outputs travel as Ray objects;
//! - `cluster`: a process's connection (`Runtime::Ray`): shoal ids over Ray's;
//! - `library`: the worker side, registering the registry with Ray
//!   (and `table`, the built-in entries both sides name).
//!
//! It owns nothing of the one-host engine (`node/`), and the engine above
//! it sees only [`Cluster`] through `Runtime`.

mod cluster;
mod ffi;
mod frame;
mod library;
mod table;

use std::path::Path;

pub(crate) use cluster::Cluster;
pub(crate) use frame::decode;

use crate::error::{Error, Result};

/// The environment variable naming this host's address in the cluster, as
/// its node was started with (`ray start --node-ip-address`); unset, Ray
/// guesses.
pub(crate) const NODE_IP_ENV: &str = "SHOAL_RAY_NODE_IP";

/// Connect this driver to the Ray cluster at `address`, whose workers load
/// the worker library from `library` (a folder, or one `.so` in it), and
/// check that library against this binary. A library built from other code
/// is refused, naming the first function that differs.
pub(crate) fn connect(address: &str, library: &Path) -> Result<Cluster> {
    let shown = library.display().to_string();
    let dir = if library.is_file() { library.parent().unwrap_or(library) } else { library };
    let has_library = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "so")))
        .unwrap_or(false);
    if !has_library {
        return Err(Error::WorkerStartup(format!(
            "no worker library (a `.so`) in {shown}: build one with `cargo rustc --lib --release --crate-type cdylib --features shoal/ray` (README, \"When one machine is not enough\")"
        )));
    }
    // A file is loaded alone; a folder, every `.so` in it.
    let search = library.canonicalize().map_err(|e| Error::WorkerStartup(format!("{shown}: {e}")))?;
    let dir = dir.canonicalize().map_err(|e| Error::WorkerStartup(format!("{shown}: {e}")))?;
    if ffi::initialized() {
        return Err(Error::AlreadyInitialized);
    }
    reachable(address)?;
    // The host's address in the cluster: Ray guesses it from the routes,
    // which a cluster started on another interface (loopback) contradicts.
    let node_ip = std::env::var(NODE_IP_ENV).unwrap_or_default();
    ffi::init(address, &search.display().to_string(), &node_ip)
        .map_err(|e| Error::Ray(format!("cannot connect to the cluster at {address}: {e}")))?;
    // A driver whose guard is never dropped (`init_once`, a node started on
    // first use) must not run libray_api.so's static destructors while
    // Ray's threads run (the exit crashes), nor wait for Ray's graceful
    // shutdown (seconds, and a forced exit with status 1 after 30 s): it
    // leaves at once, with the status it exits with, as a killed driver
    // would. Handlers run in the reverse order of registration, so this
    // runs before those destructors.
    unsafe extern "C" {
        fn on_exit(handler: extern "C" fn(libc::c_int, *mut libc::c_void), arg: *mut libc::c_void) -> libc::c_int;
    }
    extern "C" fn leave(status: libc::c_int, _: *mut libc::c_void) {
        if ffi::initialized() {
            // Rust's own buffers were flushed before `exit` (its cleanup);
            // C's stdio buffers are flushed here, then nothing more runs.
            // SAFETY: `fflush(NULL)` flushes every C stream; `_exit` ends
            // the process at once.
            unsafe {
                libc::fflush(std::ptr::null_mut());
                libc::_exit(status);
            }
        }
    }
    // SAFETY: glibc's `on_exit` with a handler that lives as long as the
    // program and an unused argument; registering it twice is harmless
    // (the first to run ends the process).
    unsafe { on_exit(leave, std::ptr::null_mut()) };
    let cluster = Cluster::new(dir.display().to_string());
    if let Err(e) = check_library(&cluster, &dir.display().to_string()) {
        ffi::shutdown();
        return Err(e);
    }
    Ok(cluster)
}

/// Whether the head at `address` (`host:port`) accepts a connection:
/// ray-cpp's `Init` aborts the process on an address it cannot use, so
/// what can be checked first is, and is an error. (A port that answers but
/// is no Ray head still reaches `Init`.)
fn reachable(address: &str) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let unreachable = |why: String| Error::Ray(format!("cannot reach the Ray cluster at {address}: {why}"));
    let found: Vec<_> =
        address.to_socket_addrs().map_err(|e| unreachable(format!("{e} (expected host:port)")))?.collect();
    // `localhost` may resolve to `::1` first while the head listens on IPv4.
    let mut last = "no such host".to_string();
    for addr in found {
        match TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

/// Ask a Ray worker what the library was built from.
fn check_library(cluster: &Cluster, dir: &str) -> Result<()> {
    let theirs = cluster.library_table()?;
    let ours = table::own_table();
    if theirs == ours {
        return Ok(());
    }
    let differs = ours
        .functions
        .iter()
        .find(|f| !theirs.functions.contains(f))
        .map(|(name, _)| format!("`{name}` is not in it, or was built from other source"))
        .or_else(|| {
            theirs
                .functions
                .iter()
                .find(|f| !ours.functions.contains(f))
                .map(|(name, _)| format!("it has `{name}`, which this driver has not"))
        })
        .unwrap_or_else(|| "another shoal version".into());
    Err(Error::WorkerStartup(format!(
        "the worker library in {dir} was built from other code than this driver (build {:016x}, the driver's {:016x}): {differs}; rebuild it",
        theirs.build_hash, ours.build_hash
    )))
}

/// Disconnect this driver from its cluster.
pub(crate) fn disconnect() {
    ffi::shutdown();
}
