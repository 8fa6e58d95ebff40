//! The engine's messages between the node and a worker, carried in
//! `shoal_ipc` frames after the handshake.
//!
//! Node → worker: [`ToWorker`]. Worker → node: [`ToNode`]. A worker writes
//! reference-count changes and a finished task's outputs in one frame batch,
//! so a task costs one write each way.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A change to a worker process's references to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RefOp {
    /// The worker made a new handle (for example by deserializing a ref).
    Acquire(u64),
    /// The worker dropped a handle.
    Release(u64),
}

/// Where one output of a finished task is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Placed {
    /// Small: the whole object.
    Inline {
        /// The encoded object (one copy in and out, not a serde call per byte).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Ids of the refs serialized inside it.
        refs: Vec<u64>,
    },
    /// Written and sealed into the arena allocation at `offset`.
    Arena {
        /// Offset of the allocation.
        offset: u64,
        /// Object length.
        len: u64,
        /// Ids of the refs serialized inside it.
        refs: Vec<u64>,
    },
    /// The task failed; this output is that error.
    Failed(Error),
}

/// Worker → node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToNode {
    /// Reference-count changes, applied in order.
    Refs(Vec<RefOp>),
    /// Reserve `size` bytes of arena for an output; answered by
    /// [`ToWorker::Allocated`].
    Allocate {
        /// Bytes needed.
        size: u64,
    },
    /// Allocations the worker could not fill: free them.
    Abandon(Vec<u64>),
    /// A task finished (successfully or not).
    TaskDone {
        /// The task id from [`Execute`].
        task: u64,
        /// One entry per return value.
        outputs: Vec<Placed>,
        /// How long the function ran, in nanoseconds (the node schedules by it).
        elapsed_ns: u64,
    },
}

/// One argument of a task, as the worker receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ArgData {
    /// A small object, whole.
    Inline {
        /// The encoded object (one copy in and out, not a serde call per byte).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Fingerprint of the type it must have been written as.
        fingerprint: u64,
    },
    /// An object in the arena, pinned by the task until it finishes.
    Arena {
        /// Object id.
        id: u64,
        /// Offset in the arena.
        offset: u64,
        /// Object length.
        len: u64,
        /// Fingerprint of the type it must have been written as.
        fingerprint: u64,
    },
}

/// A task to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Execute {
    /// Node-assigned task id.
    pub task: u64,
    /// Registered function name.
    pub function: String,
    /// Arguments in order.
    pub args: Vec<ArgData>,
}

/// Node → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run a task.
    Execute(Execute),
    /// Answer to [`ToNode::Allocate`]: the offset, or why not.
    Allocated(Result<u64, Error>),
    /// Finish and exit.
    Shutdown,
}
