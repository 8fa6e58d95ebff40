//! The engine's messages between the node and its clients, carried in
//! `shoal_ipc` frames after the handshake: one request/reply protocol that
//! every process other than the node's own speaks (today: workers).
//!
//! Node → client: [`ToClient`]. Client → node: [`ToNode`].
//! - One-way: reference changes, submissions, seals (`Put`), finished tasks.
//!   The client names the objects it creates itself (see [`client_id_base`]),
//!   so none of these waits for an answer.
//! - Requests carry a client-chosen `request` number echoed in the reply:
//!   `Allocate` → `Allocated`, `Get` → `Object`, `Wait` → `Ready`.
//!   A client that stops waiting sends `Forget`.
//!
//! A worker writes reference-count changes and a finished task's outputs in
//! one frame batch, so a task costs one write each way.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::options::TaskOptions;

/// Ids the node makes itself have this bit clear; a client's have it set,
/// then the client's number, then its own sequence ([`client_id_base`]).
pub(crate) const CLIENT_ID_BIT: u64 = 1 << 63;
/// Bits of a client-made id left for the client's own sequence.
pub(crate) const CLIENT_SEQ_BITS: u32 = 40;

/// The first object id client `client` may use; its ids are this plus a
/// sequence number below `1 << CLIENT_SEQ_BITS`.
pub(crate) fn client_id_base(client: u32) -> u64 {
    CLIENT_ID_BIT | (u64::from(client & 0x7f_ffff) << CLIENT_SEQ_BITS)
}

/// Whether `id` is in client `client`'s range.
pub(crate) fn is_client_id(client: u32, id: u64) -> bool {
    id >> CLIENT_SEQ_BITS == client_id_base(client) >> CLIENT_SEQ_BITS
}

/// A change to a client process's references to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RefOp {
    /// The client made a new handle (for example by deserializing a ref).
    Acquire(u64),
    /// The client dropped a handle.
    Release(u64),
}

/// Where one output of a finished task (or one `put` object) is.
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

/// One argument of a submitted task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SubmitArg {
    /// A small value passed directly, and the refs serialized inside it.
    Inline {
        /// The encoded object.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Fingerprint of the type it was written as.
        fingerprint: u64,
        /// Ids of the refs inside it (the task keeps them alive).
        refs: Vec<u64>,
    },
    /// An object: the task waits until it is sealed.
    Object {
        /// Object id.
        id: u64,
        /// Fingerprint of the type it was written as.
        fingerprint: u64,
    },
}

/// A task submitted by a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Submit {
    /// Registered function name.
    pub function: String,
    /// Per-call options.
    pub options: TaskOptions,
    /// Arguments in order.
    pub args: Vec<SubmitArg>,
    /// Ids for its outputs, in the client's range; the client holds one
    /// reference to each.
    pub outputs: Vec<u64>,
    /// The task running on the client's task thread when it submitted this
    /// one (its parent), if any.
    pub parent: Option<u64>,
    /// The arguments could not be prepared: the task fails with this at once.
    pub failed: Option<Error>,
}

/// Client → node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToNode {
    /// Reference-count changes, applied in order.
    Refs(Vec<RefOp>),
    /// Reserve `size` bytes of arena; answered by [`ToClient::Allocated`].
    Allocate {
        /// Echoed in the reply.
        request: u64,
        /// Bytes needed.
        size: u64,
    },
    /// Allocations the client could not fill: free them.
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
    /// Submit a task.
    Submit(Submit),
    /// Seal a new object `id` (in the client's range) that the client made:
    /// it holds one reference to it.
    Put {
        /// The new object's id.
        id: u64,
        /// Its contents (never `Failed`).
        placed: Placed,
    },
    /// Answer with [`ToClient::Object`] once object `id` is sealed or failed.
    Get {
        /// Echoed in the reply.
        request: u64,
        /// The object.
        id: u64,
        /// Set when the client's task thread asks, blocked inside task
        /// `task` (the top of its stack): the node may hand it tasks to run
        /// meanwhile (see [`Execute::nested`]).
        task: Option<u64>,
    },
    /// Answer with [`ToClient::Ready`] once `num` of `ids` are sealed or
    /// failed.
    Wait {
        /// Echoed in the reply.
        request: u64,
        /// The objects.
        ids: Vec<u64>,
        /// How many must be ready.
        num: u32,
        /// Report at most this many positions (at least `num`).
        limit: u32,
        /// As in [`ToNode::Get`].
        task: Option<u64>,
    },
    /// The client stopped waiting for `request` (it timed out).
    Forget {
        /// The request given up.
        request: u64,
    },
    /// Tasks sent to this client that it hands back without running them
    /// (its task thread blocked with them queued).
    Requeue(Vec<u64>),
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
    /// `Some(request)`: run it at once on the task thread, which is blocked
    /// in that request (a nested `get`/`wait`), on top of the task blocked
    /// there; if the thread is no longer blocked in it, hand the task back
    /// with [`ToNode::Requeue`]. `None`: an ordinary task, run in order.
    pub nested: Option<u64>,
}

/// A sealed object, as a reply carries it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ObjectData {
    /// A small object, whole.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// In the arena.
    Arena {
        /// Offset in the arena.
        offset: u64,
        /// Object length.
        len: u64,
    },
    /// The object is this error (or is unknown).
    Failed(Error),
}

/// Node → client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToClient {
    /// Run a task.
    Execute(Execute),
    /// Answer to [`ToNode::Allocate`]: the offset, or why not.
    Allocated {
        /// The request answered.
        request: u64,
        /// The offset, or why not.
        result: Result<u64, Error>,
    },
    /// Answer to [`ToNode::Get`].
    Object {
        /// The request answered.
        request: u64,
        /// The object.
        data: ObjectData,
        /// Objects it contains, each with one reference counted for the
        /// client (in the order the object serialized them).
        contained: Vec<u64>,
    },
    /// Answer to [`ToNode::Wait`]: positions (in `ids`) of the first
    /// `limit` ready objects.
    Ready {
        /// The request answered.
        request: u64,
        /// Positions, ascending.
        positions: Vec<u32>,
    },
    /// Finish and exit.
    Shutdown,
}
