//! The one error type users match on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything that can go wrong in shoal, as variants a caller can match.
///
/// A failed task's error flows unchanged into every task that depends on it,
/// so the variant and its message always describe the *first* failure.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// The remote function panicked. The worker caught the panic and lives on.
    #[error("remote function `{function}` panicked in worker {pid}: {message}")]
    TaskPanicked {
        /// Registered name of the function that panicked first.
        function: String,
        /// The panic message.
        message: String,
        /// Process id of the worker it ran in.
        pid: u32,
    },
    /// The worker process running the task died, and so did every retry.
    #[error("worker {pid} died while running `{function}` (after {attempts} attempts): {cause}{}", stderr_tail(stderr))]
    WorkerDied {
        /// Registered name of the function.
        function: String,
        /// Process id of the last worker that died running it.
        pid: u32,
        /// How many times the task was started.
        attempts: u32,
        /// How that worker ended: `killed by signal 11 (SIGSEGV)`, `exited
        /// with code 3`, or why the node dropped its connection.
        cause: String,
        /// The last lines that worker wrote to its stderr (a Rust abort's
        /// "has overflowed its stack", a C library's complaint), if any.
        stderr: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The object store cannot hold the object, even after spilling every
    /// object that may be spilled (what no one references is freed already).
    #[error(
        "object store full: {requested} bytes requested, {free} of {capacity} bytes free (largest free block {largest_free}), {pinned} bytes pinned by readers and running tasks"
    )]
    ObjectStoreFull {
        /// Bytes the object needs.
        requested: u64,
        /// Arena size.
        capacity: u64,
        /// Bytes currently free.
        free: u64,
        /// Largest contiguous free block.
        largest_free: u64,
        /// Bytes of objects that could not be spilled: read in place (a
        /// view, a `get` in progress), arguments of running tasks, held by
        /// a worker process.
        pinned: u64,
    },
    /// The object was written as another type than the one it is read as.
    #[error("type mismatch: {detail}")]
    TypeMismatch {
        /// What was asked for and what went wrong.
        detail: String,
    },
    /// The worker binary does not contain a remote function the driver has.
    #[error("remote function `{function}` is not registered in the worker binary `{program}`")]
    FunctionNotFound {
        /// The missing function's registered name.
        function: String,
        /// The worker program.
        program: String,
    },
    /// No node is running in this process, and none starts on first use:
    /// the node this process had was stopped (its `Shoal` dropped), or the
    /// call needs a node that exists (`is_cancelled`, `cancel`, `wait`).
    #[error("shoal is not initialized in this process: call shoal::init first")]
    NotInitialized,
    /// `shoal::init` was called while a node is already running (or
    /// `shoal::init_once` with another configuration).
    #[error("shoal is already initialized in this process")]
    AlreadyInitialized,
    /// The node shut down before the object was produced.
    #[error("the shoal node shut down before the object was ready")]
    NodeStopped,
    /// A value could not be serialized, or an object not deserialized.
    #[error("serialization: {0}")]
    Serialization(String),
    /// The object is not known to the node (its last reference was dropped, or
    /// the reference was forged from a raw id).
    #[error("object {0} is not in the object store")]
    ObjectNotFound(u64),
    /// A worker could not be started or refused the handshake.
    #[error("worker startup: {0}")]
    WorkerStartup(String),
    /// A call's arguments make no sense (for example `wait` for more refs than given).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The task asks for more of a resource (CPUs or a custom one) than the
    /// node has.
    #[error("task `{function}` needs {needed} {resource} but the node has {available}")]
    Unschedulable {
        /// The function.
        function: String,
        /// The resource: `CPU`, or a custom resource's name.
        resource: String,
        /// Amount requested.
        needed: f64,
        /// Amount the node has.
        available: f64,
    },
    /// The operation is not available where it was called.
    #[error("unsupported here: {0}")]
    Unsupported(String),
    /// The actor a method was called on is gone: its process died and was
    /// not restarted (or the call ran out of retries), its constructor
    /// failed, it was killed, or it could not be created.
    #[error("actor {actor} died: {cause}")]
    ActorDied {
        /// The actor: its type, and its name if it has one
        /// (`demo::Counter "hits"`), or its id.
        actor: String,
        /// Why: `its process was killed by signal 9 (SIGKILL)`, `its
        /// constructor panicked: …`, `killed by shoal::kill`, …
        cause: String,
    },
    /// The task was cancelled (`shoal::cancel`, `shoal::cancel_force`), or
    /// one it depends on was.
    #[error("task `{function}` was cancelled")]
    TaskCancelled {
        /// Registered name of the function (or method) cancelled first.
        function: String,
    },
    /// No live actor has this name (see `options().name(…)`).
    #[error("no live actor is named `{0}`")]
    ActorNotFound(String),
    /// The standalone node at `address` could not be reached, or refused
    /// this driver (another build, another user, …).
    #[error("cannot connect to the shoal node at {address}: {reason}")]
    Connect {
        /// The node's socket.
        address: String,
        /// Why not.
        reason: String,
    },
    /// The Ray cluster (the Ray backend, [`Config::ray`](crate::Config::ray))
    /// failed a call for a reason of its own: it could not be reached, it
    /// lost an object, it refused a submission.
    #[error("the Ray cluster: {0}")]
    Ray(String),
}

impl From<shoal_store::StoreError> for Error {
    fn from(e: shoal_store::StoreError) -> Self {
        match e {
            shoal_store::StoreError::Full { requested, capacity, free, largest_free } => {
                Error::ObjectStoreFull { requested, capacity, free, largest_free, pinned: 0 }
            }
            // The host could not back the whole store: what is reserved is all
            // there is.
            shoal_store::StoreError::Unreserved { wanted, reserved, .. } => Error::ObjectStoreFull {
                requested: wanted.saturating_sub(reserved),
                capacity: reserved,
                free: 0,
                largest_free: 0,
                pinned: 0,
            },
            other => Error::Serialization(other.to_string()),
        }
    }
}

impl From<shoal_store::DecodeError> for Error {
    fn from(e: shoal_store::DecodeError) -> Self {
        match e {
            shoal_store::DecodeError::TypeMismatch { .. } => Error::TypeMismatch { detail: e.to_string() },
            other => Error::Serialization(other.to_string()),
        }
    }
}

impl From<shoal_store::EncodeError> for Error {
    fn from(e: shoal_store::EncodeError) -> Self {
        Error::Serialization(e.to_string())
    }
}

/// The stderr part of a `WorkerDied` message.
fn stderr_tail(stderr: &str) -> String {
    if stderr.is_empty() { String::new() } else { format!("; its last stderr lines:\n{stderr}") }
}

/// `Result` with [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a panic carried (`panic!("…")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
