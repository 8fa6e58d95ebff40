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
use crate::options::{ActorOptions, TaskOptions};
use crate::status::{MemoryReport, NodeStatus, TaskEvent};

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

/// What [`ToClient::Resume`] says once the stream has ended: stop, no one
/// takes more.
pub(crate) const STREAM_ENDED: u64 = u64::MAX;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// An actor created by a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CreateActor {
    /// The actor's id: a fresh id in the client's range, for its handle
    /// object (the client holds one reference to it).
    pub id: u64,
    /// The actor type's registered name.
    pub class: String,
    /// Its options.
    pub options: ActorOptions,
    /// Its constructor's arguments.
    pub args: Vec<SubmitArg>,
    /// The arguments could not be prepared: the actor dies at once.
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
    /// Create an actor.
    CreateActor(CreateActor),
    /// Call a method of actor `actor` (`submit.function`).
    Call {
        /// The actor's id.
        actor: u64,
        /// The call, as a task.
        submit: Submit,
    },
    /// Answer with [`ToClient::ActorFound`]: the live actor named `name`.
    GetActor {
        /// Echoed in the reply.
        request: u64,
        /// The name.
        name: String,
    },
    /// End this actor now (`shoal::kill`).
    KillActor(u64),
    /// Cancel the task producing object `id` (and its descendants);
    /// answered by [`ToClient::Cancelled`].
    Cancel {
        /// Echoed in the reply.
        request: u64,
        /// The object.
        id: u64,
        /// Kill the worker running it.
        force: bool,
    },
    /// Item `index` (counted from 0 in each attempt) of streaming task
    /// `task`, which runs here: the node names the object and holds it for
    /// the stream's consumer (an index it has already is a retry's
    /// duplicate, freed).
    StreamItem {
        /// The task.
        task: u64,
        /// Its position in the stream.
        index: u64,
        /// The item (never `Failed`: an error ends the task).
        placed: Placed,
    },
    /// Answer with [`ToClient::StreamItem`] once item `index` of the stream
    /// whose end object is `stream` exists, or the stream has ended. Asking
    /// for `index` says the items before it were taken.
    StreamNext {
        /// Echoed in the reply.
        request: u64,
        /// The stream's end object.
        stream: u64,
        /// The item wanted.
        index: u64,
        /// As in [`ToNode::Get`].
        task: Option<u64>,
    },
    /// The consumer of the stream whose end object is this is gone: cancel
    /// its task if it runs, free the items not taken.
    StreamClose(u64),
    /// Streaming task `task`, running here, pauses: answer with
    /// [`ToClient::Resume`] once its consumer has taken `consumed` items, or
    /// the stream has ended.
    Backpressure {
        /// Echoed in the reply.
        request: u64,
        /// The task.
        task: u64,
        /// Items the consumer must have taken.
        consumed: u64,
    },
    /// Answer with [`ToClient::Status`]: what the node reports about itself.
    Status {
        /// Echoed in the reply.
        request: u64,
    },
    /// Answer with [`ToClient::Memory`]: the node's objects.
    Memory {
        /// Echoed in the reply.
        request: u64,
        /// The most objects to list (totals cover them all).
        limit: u64,
    },
    /// Answer with [`ToClient::Timeline`]: the tasks the node finished lately.
    Timeline {
        /// Echoed in the reply.
        request: u64,
    },
}

/// The `Hello::token` of a monitor (`shoal::Monitor`, the `shoal status`
/// family): a client that may only ask what the node reports, so it needs
/// neither the node's build nor its arena.
pub(crate) const MONITOR_TOKEN: u64 = u64::MAX;

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
    /// A streaming task pauses while this many of its items are not taken
    /// ([`ToNode::Backpressure`]).
    pub backpressure: Option<u32>,
    /// Whom its output is for: the client id of the connected driver whose
    /// task (or whose task's descendant) it is, or [`u64::MAX`] for the
    /// node's own process. The worker names it in its note of what runs.
    pub owner: u64,
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
    /// Answer to [`ToNode::GetActor`]: the actor's id (with a reference
    /// counted for the client) and type, or why not.
    ActorFound {
        /// The request answered.
        request: u64,
        /// The actor, or why not.
        found: Result<(u64, String), Error>,
    },
    /// Answer to [`ToNode::Cancel`].
    Cancelled {
        /// The request answered.
        request: u64,
        /// Done, or why not.
        result: Result<(), Error>,
    },
    /// Task `task`, sent to this client, was cancelled: `is_cancelled()`
    /// is true while it runs, and it is not started if it has not been.
    Cancel {
        /// The task.
        task: u64,
    },
    /// Answer to [`ToNode::StreamNext`]: the item's id (with a reference
    /// counted for the client), `None` once the stream ended after its last
    /// item, or the error that ended it.
    StreamItem {
        /// The request answered.
        request: u64,
        /// The item, the end, or the error.
        item: Result<Option<u64>, Error>,
    },
    /// Answer to [`ToNode::Backpressure`]: the producer may go on.
    Resume {
        /// The request answered.
        request: u64,
        /// Items its consumer has taken (all of them once the stream ended).
        consumed: u64,
    },
    /// Answer to [`ToNode::Status`].
    Status {
        /// The request answered.
        request: u64,
        /// The node's report.
        report: NodeStatus,
    },
    /// Answer to [`ToNode::Memory`].
    Memory {
        /// The request answered.
        request: u64,
        /// The objects, largest first, and totals.
        report: MemoryReport,
    },
    /// Lines a worker wrote while running a task of this driver, prefixed
    /// (`(fn pid=N) …`): for its own stdout or stderr.
    Output {
        /// For stderr, else stdout.
        stderr: bool,
        /// Whole lines.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Answer to [`ToNode::Timeline`].
    Timeline {
        /// The request answered.
        request: u64,
        /// Finished tasks, oldest first.
        events: Vec<TaskEvent>,
    },
}

impl ToClient {
    /// The request this message answers; `None` for what the node sends
    /// unasked (a task, a cancel, output, shutdown).
    pub fn request(&self) -> Option<u64> {
        match self {
            ToClient::Allocated { request, .. }
            | ToClient::Object { request, .. }
            | ToClient::Ready { request, .. }
            | ToClient::ActorFound { request, .. }
            | ToClient::Cancelled { request, .. }
            | ToClient::StreamItem { request, .. }
            | ToClient::Resume { request, .. }
            | ToClient::Status { request, .. }
            | ToClient::Memory { request, .. }
            | ToClient::Timeline { request, .. } => Some(*request),
            ToClient::Execute(_) | ToClient::Shutdown | ToClient::Cancel { .. } | ToClient::Output { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The message decoder on hostile bytes: whatever a client sends,
    //! decoding is an error or a message, never a panic, and valid messages
    //! round-trip.

    use super::*;
    use crate::status::{WorkerInfo, WorkerState};
    use proptest::prelude::*;
    use std::time::Duration;

    /// Cases per fuzz property: short by default (`cargo test` runs them in
    /// CI), `PROPTEST_CASES` for a longer run (see ARCHITECTURE.md).
    fn fuzz_config(default: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
        ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn ids() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(any::<u64>(), 0..6)
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..48)
    }

    fn error() -> impl Strategy<Value = Error> {
        prop_oneof![
            Just(Error::NodeStopped),
            ".{0,12}".prop_map(Error::Serialization),
            any::<u64>().prop_map(Error::ObjectNotFound),
            (".{0,8}", ".{0,8}").prop_map(|(function, program)| Error::FunctionNotFound { function, program }),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Error::Timeout(std::time::Duration::new(s, n))),
        ]
    }

    fn placed() -> impl Strategy<Value = Placed> {
        prop_oneof![
            (bytes(), ids()).prop_map(|(bytes, refs)| Placed::Inline { bytes, refs }),
            (any::<u64>(), any::<u64>(), ids()).prop_map(|(offset, len, refs)| Placed::Arena { offset, len, refs }),
            error().prop_map(Placed::Failed),
        ]
    }

    fn submit() -> impl Strategy<Value = Submit> {
        let arg = prop_oneof![
            (bytes(), any::<u64>(), ids()).prop_map(|(bytes, fingerprint, refs)| SubmitArg::Inline {
                bytes,
                fingerprint,
                refs
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, fingerprint)| SubmitArg::Object { id, fingerprint }),
        ];
        let options = (any::<u32>(), any::<u32>(), prop::collection::vec((".{0,6}", 0.001f64..1e9), 0..3)).prop_map(
            |(retries, cpus, resources)| {
                resources
                    .into_iter()
                    .fold(TaskOptions::default().max_retries(retries).num_cpus(cpus), |o, (name, amount)| {
                        o.resource(name, amount)
                    })
            },
        );
        (".{0,20}", options, prop::collection::vec(arg, 0..4), ids(), any::<Option<u64>>(), prop::option::of(error()))
            .prop_map(|(function, options, args, outputs, parent, failed)| Submit {
                function,
                options,
                args,
                outputs,
                parent,
                failed,
            })
    }

    fn to_node() -> impl Strategy<Value = ToNode> {
        let op = prop_oneof![any::<u64>().prop_map(RefOp::Acquire), any::<u64>().prop_map(RefOp::Release)];
        prop_oneof![
            prop::collection::vec(op, 0..8).prop_map(ToNode::Refs),
            (any::<u64>(), any::<u64>()).prop_map(|(request, size)| ToNode::Allocate { request, size }),
            ids().prop_map(ToNode::Abandon),
            (any::<u64>(), prop::collection::vec(placed(), 0..4), any::<u64>())
                .prop_map(|(task, outputs, elapsed_ns)| ToNode::TaskDone { task, outputs, elapsed_ns }),
            submit().prop_map(ToNode::Submit),
            (any::<u64>(), placed()).prop_map(|(id, placed)| ToNode::Put { id, placed }),
            (any::<u64>(), any::<u64>(), any::<Option<u64>>()).prop_map(|(request, id, task)| ToNode::Get {
                request,
                id,
                task
            }),
            (any::<u64>(), ids(), any::<u32>(), any::<u32>(), any::<Option<u64>>())
                .prop_map(|(request, ids, num, limit, task)| ToNode::Wait { request, ids, num, limit, task }),
            any::<u64>().prop_map(|request| ToNode::Forget { request }),
            ids().prop_map(ToNode::Requeue),
            (
                any::<u64>(),
                ".{0,20}",
                any::<(u32, u32, u32)>(),
                prop::option::of(".{0,6}"),
                submit(),
                prop::option::of(error())
            )
                .prop_map(|(id, class, (cpus, restarts, retries), name, submit, failed)| {
                    let options =
                        ActorOptions::default().num_cpus(cpus).max_restarts(restarts).max_task_retries(retries);
                    let options = match name {
                        Some(name) => options.name(name),
                        None => options,
                    };
                    ToNode::CreateActor(CreateActor { id, class, options, args: submit.args, failed })
                }),
            (any::<u64>(), submit()).prop_map(|(actor, submit)| ToNode::Call { actor, submit }),
            (any::<u64>(), ".{0,12}").prop_map(|(request, name)| ToNode::GetActor { request, name }),
            any::<u64>().prop_map(ToNode::KillActor),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(request, id, force)| ToNode::Cancel {
                request,
                id,
                force
            }),
            (any::<u64>(), any::<u64>(), placed()).prop_map(|(task, index, placed)| ToNode::StreamItem {
                task,
                index,
                placed
            }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<Option<u64>>())
                .prop_map(|(request, stream, index, task)| ToNode::StreamNext { request, stream, index, task }),
            any::<u64>().prop_map(ToNode::StreamClose),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(request, task, consumed)| ToNode::Backpressure {
                request,
                task,
                consumed
            }),
            any::<u64>().prop_map(|request| ToNode::Status { request }),
            (any::<u64>(), any::<u64>()).prop_map(|(request, limit)| ToNode::Memory { request, limit }),
            any::<u64>().prop_map(|request| ToNode::Timeline { request }),
        ]
    }

    fn to_client() -> impl Strategy<Value = ToClient> {
        let arg = prop_oneof![
            (bytes(), any::<u64>()).prop_map(|(bytes, fingerprint)| ArgData::Inline { bytes, fingerprint }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(id, offset, len, fingerprint)| ArgData::Arena { id, offset, len, fingerprint }),
        ];
        let data = prop_oneof![
            bytes().prop_map(ObjectData::Inline),
            (any::<u64>(), any::<u64>()).prop_map(|(offset, len)| ObjectData::Arena { offset, len }),
            error().prop_map(ObjectData::Failed),
        ];
        prop_oneof![
            (any::<u64>(), ".{0,20}", prop::collection::vec(arg, 0..4), any::<Option<u64>>(), any::<Option<u32>>())
                .prop_map(|(task, function, args, nested, backpressure)| {
                    ToClient::Execute(Execute { task, function, args, nested, backpressure, owner: task / 2 })
                }),
            (any::<bool>(), bytes()).prop_map(|(stderr, bytes)| ToClient::Output { stderr, bytes }),
            (any::<u64>(), prop_oneof![any::<u64>().prop_map(Ok), error().prop_map(Err)])
                .prop_map(|(request, result)| ToClient::Allocated { request, result }),
            (any::<u64>(), data, ids()).prop_map(|(request, data, contained)| ToClient::Object {
                request,
                data,
                contained
            }),
            (any::<u64>(), prop::collection::vec(any::<u32>(), 0..8))
                .prop_map(|(request, positions)| ToClient::Ready { request, positions }),
            Just(()).prop_map(|()| ToClient::Shutdown),
            (any::<u64>(), prop_oneof![(any::<u64>(), ".{0,12}").prop_map(Ok), error().prop_map(Err)])
                .prop_map(|(request, found)| ToClient::ActorFound { request, found }),
            (any::<u64>(), prop_oneof![Just(Ok(())), error().prop_map(Err)])
                .prop_map(|(request, result)| ToClient::Cancelled { request, result }),
            any::<u64>().prop_map(|task| ToClient::Cancel { task }),
            (any::<u64>(), prop_oneof![any::<Option<u64>>().prop_map(Ok), error().prop_map(Err)])
                .prop_map(|(request, item)| ToClient::StreamItem { request, item }),
            (any::<u64>(), any::<u64>()).prop_map(|(request, consumed)| ToClient::Resume { request, consumed }),
            (any::<u64>(), prop::collection::vec(any::<u32>(), 0..4), any::<u64>()).prop_map(
                |(request, workers, reserved_bytes)| ToClient::Status {
                    request,
                    report: NodeStatus {
                        workers: workers.into_iter().map(worker_info).collect(),
                        reserved_bytes,
                        ..NodeStatus::default()
                    }
                }
            ),
            (any::<u64>(), any::<usize>(), any::<u64>()).prop_map(|(request, total_objects, total_bytes)| {
                ToClient::Memory {
                    request,
                    report: MemoryReport { total_objects, total_bytes, ..MemoryReport::default() },
                }
            }),
            (any::<u64>(), prop::collection::vec((any::<u64>(), any::<u32>(), any::<bool>()), 0..4)).prop_map(
                |(request, events)| ToClient::Timeline {
                    request,
                    events: events.into_iter().map(|(task, worker, failed)| task_event(task, worker, failed)).collect()
                }
            ),
        ]
    }

    fn worker_info(pid: u32) -> WorkerInfo {
        WorkerInfo { pid, state: WorkerState::Running, function: Some("f".into()), driver: Some(pid), queued: 1 }
    }

    fn task_event(task: u64, worker: u32, failed: bool) -> TaskEvent {
        let (start, duration) = (Duration::from_nanos(task), Duration::from_micros(u64::from(worker)));
        TaskEvent { task, function: "f".into(), worker, start, duration, failed }
    }

    /// Decode `bytes` as a `T`; if it decodes, its encoding decodes again to
    /// the same encoding (a decoded message is a well-formed one).
    fn decode_is_stable<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(msg) = postcard::from_bytes::<T>(bytes) {
            let again = postcard::to_stdvec(&msg).unwrap();
            let twice = postcard::to_stdvec(&postcard::from_bytes::<T>(&again).unwrap()).unwrap();
            prop_assert_eq!(again, twice);
        }
        Ok(())
    }

    #[test]
    fn huge_sequence_lengths_are_errors_not_allocations() {
        // `Refs` (variant 0) claiming 2^63 operations, then nothing.
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(postcard::from_bytes::<ToNode>(&bytes).is_err());
        // An `Execute` whose function name claims 4 GiB.
        let bytes = [0u8, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
        assert!(postcard::from_bytes::<ToClient>(&bytes).is_err());
    }

    proptest! {
        #![proptest_config(fuzz_config(1024))]

        #[test]
        fn fuzz_messages_round_trip(to_node in to_node(), to_client in to_client()) {
            let bytes = postcard::to_stdvec(&to_node).unwrap();
            let back: ToNode = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
            let bytes = postcard::to_stdvec(&to_client).unwrap();
            let back: ToClient = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
        }

        #[test]
        fn fuzz_arbitrary_bytes_decode_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            decode_is_stable::<ToNode>(&bytes)?;
            decode_is_stable::<ToClient>(&bytes)?;
        }

        /// Valid messages with a few bytes overwritten, cut short or extended:
        /// close to valid, so decoding gets deep into each message.
        #[test]
        fn fuzz_damaged_messages_decode_without_panicking(
            to_node in to_node(),
            to_client in to_client(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            for mut bytes in [postcard::to_stdvec(&to_node).unwrap(), postcard::to_stdvec(&to_client).unwrap()] {
                for (i, v) in &edits {
                    let i = i.index(bytes.len());
                    bytes[i] = *v;
                }
                decode_is_stable::<ToNode>(&bytes)?;
                decode_is_stable::<ToClient>(&bytes)?;
                let short = &bytes[..cut.index(bytes.len() + 1)];
                decode_is_stable::<ToNode>(short)?;
                decode_is_stable::<ToClient>(short)?;
            }
        }
    }
}
