//! What a node reports about itself: plain data, the same whether the
//! node runs in this process or is reached over its socket (a connected
//! driver asks with `ToNode::Status`). The node fills it in (`Node::report`);
//! `Shoal`'s methods read it.

use std::path::PathBuf;

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

/// Figures of a node's object store ([`Shoal::store_stats`]).
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

/// A snapshot of a node, taken under its lock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeReport {
    /// The node's socket.
    pub socket: PathBuf,
    /// Pids of the pool's connected workers.
    pub workers: Vec<u32>,
    /// Actors that have not died.
    pub actors: Vec<ActorInfo>,
    /// The object store.
    pub store: StoreStats,
    /// Bytes of the arena backed by memory so far.
    pub reserved_bytes: u64,
}
