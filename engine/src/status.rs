//! What a node reports about itself: plain data, the same whether the
//! node runs in this process or is reached over its socket (a connected
//! driver or a monitor asks with `ToNode::Status`, `Memory`, `Timeline`).
//! The node fills it in (`node/inspect.rs`); `Shoal`'s and `Monitor`'s
//! methods and the `shoal` CLI read it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `Shoal::actors` reports of one actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActorInfo {
    /// Its id (the id of its handle object).
    pub id: u64,
    /// Its type's registered name, `my_crate::module::Counter`.
    pub class: String,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Its process, once started.
    pub pid: Option<u32>,
    /// Where its life stands.
    pub state: ActorState,
    /// How many times its process was started again.
    pub restarts: u32,
}

/// Where an actor's life stands (see [`ActorInfo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorState {
    /// Waiting for CPUs or for its process, or running its constructor.
    Starting,
    /// Running calls.
    Alive,
    /// Being started again after its process died.
    Restarting,
}

/// Figures of a node's object store ([`Shoal::store_stats`](crate::Shoal::store_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Size of the shared-memory arena.
    pub capacity: u64,
    /// Arena bytes allocated now.
    pub used_bytes: u64,
    /// Objects the node tracks (pending, in memory, spilled).
    pub objects: usize,
    /// Objects whose only copy is on disk now, and their bytes.
    pub spilled_objects: usize,
    /// Bytes of those objects.
    pub spilled_bytes: u64,
    /// Spill files open now and their bytes (a file goes when the last
    /// object in it is freed; objects read back keep their copy, so
    /// spilling them again writes nothing).
    pub spill_files: usize,
    /// Bytes of the spill files open now.
    pub spill_file_bytes: u64,
    /// Objects and bytes written to spill files since the node started.
    pub total_spilled_objects: u64,
    /// Bytes written to spill files since the node started.
    pub total_spilled_bytes: u64,
    /// Objects and bytes read back from them.
    pub total_restored_objects: u64,
    /// Bytes read back from spill files since the node started.
    pub total_restored_bytes: u64,
}

/// A snapshot of a node, taken under its lock: what `shoal status` prints
/// ([`Shoal::status`](crate::Shoal::status), [`Monitor::status`](crate::Monitor::status)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's process (a driver's own, for an embedded node).
    pub pid: u32,
    /// The node's socket, its address.
    pub socket: PathBuf,
    /// How long it has run.
    pub uptime: Duration,
    /// Started by `shoal start` (else embedded in a driver).
    pub standalone: bool,
    /// CPUs the node schedules, and those running tasks and actors hold now.
    pub cpus: u32,
    /// CPUs held now.
    pub cpus_in_use: u32,
    /// Custom resources, by name.
    pub resources: Vec<ResourceUse>,
    /// The pool's workers and the actors' processes, by pid.
    pub workers: Vec<WorkerInfo>,
    /// Tasks by state, and totals since the node started.
    pub tasks: TaskCounts,
    /// The object store.
    pub store: StoreStats,
    /// Bytes of the arena backed by memory so far.
    pub reserved_bytes: u64,
    /// Drivers connected over the socket (an embedded node's own driver is
    /// not listed).
    pub drivers: Vec<DriverInfo>,
    /// Actors that have not died.
    pub actors: Vec<ActorInfo>,
}

/// A custom resource of a node ([`NodeStatus::resources`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceUse {
    /// Its name, as in [`Config::resource`](crate::Config::resource).
    pub name: String,
    /// How much the node has.
    pub total: f64,
    /// How much running tasks hold now.
    pub in_use: f64,
}

/// One worker process ([`NodeStatus::workers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its process.
    pub pid: u32,
    /// What it does now.
    pub state: WorkerState,
    /// The function (or actor method) it runs now.
    pub function: Option<String>,
    /// The driver whose task it runs: a connected driver's pid, or the
    /// node's own for an embedded node's driver.
    pub driver: Option<u32>,
    /// Tasks sent to it and not yet done (the running one included).
    pub queued: usize,
}

/// What a worker does now ([`WorkerInfo::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkerState {
    /// Waiting for a task.
    Idle,
    /// Running a task.
    Running,
    /// Its task waits for an object (a nested `get`, `wait`, a stream), and
    /// it runs no task on top.
    Blocked,
    /// The process of an actor.
    Actor,
    /// An extra worker told to exit.
    Retiring,
}

impl WorkerState {
    /// The word `shoal status` and the metrics' `state` label use.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Running => "running",
            WorkerState::Blocked => "blocked",
            WorkerState::Actor => "actor",
            WorkerState::Retiring => "retiring",
        }
    }
}

/// Tasks of a node by state ([`NodeStatus::tasks`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Waiting for arguments still being computed.
    pub waiting: usize,
    /// Ready, waiting for a CPU or a worker.
    pub ready: usize,
    /// Sent to a worker (running, or queued behind its running task).
    pub running: usize,
    /// Finished since the node started, failures included.
    pub finished: u64,
    /// Of those, failed: a panic, a death past retries, a cancel, a failed
    /// argument, or a submission the node refused (unknown function, too
    /// many CPUs).
    pub failed: u64,
}

/// A driver connected to a node ([`NodeStatus::drivers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DriverInfo {
    /// Its process.
    pub pid: u32,
    /// Its tasks not yet finished.
    pub tasks: usize,
    /// Object references it holds.
    pub references: usize,
}

/// One object of a node's store ([`MemoryReport::objects`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Its id.
    pub id: u64,
    /// Its encoded size in bytes (0 while pending).
    pub size: u64,
    /// Where it is.
    pub place: ObjectPlace,
    /// References counted for it: handles in processes, tasks that take it,
    /// objects that contain it.
    pub references: usize,
    /// The function whose task made it, `put`, or for an actor's handle
    /// the actor's type.
    pub created_by: String,
    /// Read in place now (a view, a running task's argument): never spilled.
    pub pinned: bool,
}

/// Where an object is ([`ObjectInfo::place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ObjectPlace {
    /// Its task has not finished.
    Pending,
    /// Small, kept in the node's table.
    Inline,
    /// In the shared-memory arena.
    Arena,
    /// Only on disk, in a spill file.
    Spilled,
    /// An error (its task failed).
    Failed,
}

impl ObjectPlace {
    /// The word `shoal memory` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectPlace::Pending => "pending",
            ObjectPlace::Inline => "inline",
            ObjectPlace::Arena => "arena",
            ObjectPlace::Spilled => "spilled",
            ObjectPlace::Failed => "failed",
        }
    }
}

/// The objects of a node, largest first, with totals over all of them
/// ([`Shoal::memory`](crate::Shoal::memory)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryReport {
    /// The largest objects, at most the limit asked for (and at most
    /// 100 000, so the answer fits in one message).
    pub objects: Vec<ObjectInfo>,
    /// Every object the node tracks.
    pub total_objects: usize,
    /// Their bytes.
    pub total_bytes: u64,
    /// Objects and bytes in the arena.
    pub arena_objects: usize,
    /// Bytes of those.
    pub arena_bytes: u64,
    /// Objects kept inline, and their bytes.
    pub inline_objects: usize,
    /// Bytes of those.
    pub inline_bytes: u64,
    /// Objects only on disk, and their bytes.
    pub spilled_objects: usize,
    /// Bytes of those.
    pub spilled_bytes: u64,
    /// Objects read in place now.
    pub pinned_objects: usize,
}

/// One task a node ran ([`Shoal::timeline`](crate::Shoal::timeline)): the
/// last [`TIMELINE_LEN`] are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskEvent {
    /// The task's id.
    pub task: u64,
    /// Its function (or actor method).
    pub function: String,
    /// The worker process that ran it.
    pub worker: u32,
    /// When it started, from the node's start, as its worker measured
    /// the run (the time to reach the worker is not in it).
    pub start: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// Its outputs are errors (it panicked, or was cancelled).
    pub failed: bool,
}

/// How many finished tasks a node remembers for its timeline.
pub const TIMELINE_LEN: usize = 16_384;
