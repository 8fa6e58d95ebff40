//! The node's bookkeeping: objects, tasks, workers, and the scheduling
//! decisions between them. Pure data under the node's one lock: no I/O here.
//! Every operation that can send a message pushes it to an [`Outbox`]; the
//! caller queues those on their connections before releasing the lock (so a
//! worker receives its tasks in the order `in_flight` records them, which
//! `worker_lost` relies on) and sends them after.
//!
//! Design notes
//! - An object's `refs` counts live handles in every process, pending tasks
//!   that take it as an argument (one per use), and objects that contain a
//!   reference to it. It is freed when `refs` reaches zero and it is no longer
//!   pending.
//! - A task waits until every argument object is sealed (`waiting_on`), then
//!   joins the ready queue. If any argument failed, the task fails with that
//!   same error without running, and so on down the graph.
//! - Dispatch prefers the least loaded worker. A worker takes up to
//!   `pipeline_depth` tasks so the next one is already in its socket when the
//!   current one finishes, and more (up to [`MAX_PIPELINE`]) while the tasks
//!   queued at it are known to be short: their functions' measured run times
//!   add up to at most [`PIPELINE_BUDGET_NS`]. So a burst of tiny tasks
//!   travels in batches (one write, one wake-up for many tasks), while a long
//!   task never has more than `pipeline_depth - 1` others stuck behind it.
//!   A function's run time is an average of what workers report; a function
//!   not yet measured counts as long.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_store::Allocator;

use crate::error::Error;
use crate::node::actor_book::{ActorBook, ActorCall, LOCAL};
use crate::node::conn::{Outbox, WorkerConn};
use crate::node::programs::ProgramPool;
use crate::node::spill::SpillBook;
use crate::options::TaskOptions;
use crate::protocol::{ArgData, Execute, Placed, SubmitArg, ToClient};

/// Most tasks queued at one worker, however short.
pub(crate) const MAX_PIPELINE: usize = 64;
/// Measured run time, in nanoseconds, that may wait at one worker beyond
/// `pipeline_depth` tasks: the longest a task can be delayed by short tasks
/// queued ahead of it at a busy worker while another worker idles.
pub(crate) const PIPELINE_BUDGET_NS: u64 = 200_000;

pub(crate) use crate::node::ids::IdMap;

/// An argument as the node keeps it.
#[derive(Debug)]
pub(crate) enum ArgSpec {
    /// A small value (an encoded object), and the refs serialized inside it,
    /// which the task keeps alive until it ends.
    Inline { bytes: Arc<[u8]>, fingerprint: u64, refs: Vec<u64> },
    /// An object, pinned (counted in `refs`) until the task ends.
    Object { id: u64, fingerprint: u64 },
}

impl From<SubmitArg> for ArgSpec {
    fn from(arg: SubmitArg) -> Self {
        match arg {
            SubmitArg::Inline { bytes, fingerprint, refs } => {
                ArgSpec::Inline { bytes: bytes.into(), fingerprint, refs }
            }
            SubmitArg::Object { id, fingerprint } => ArgSpec::Object { id, fingerprint },
        }
    }
}

/// What an object holds.
#[derive(Debug, Clone)]
pub(crate) enum ObjectState {
    /// Its task has not finished.
    Pending,
    /// A small encoded object.
    Inline(Arc<[u8]>),
    /// A sealed object in the arena.
    Arena { offset: u64, len: u64 },
    /// A sealed object of `len` bytes whose only copy is in a spill file
    /// (`SpillBook::copies`); read back into the arena when needed.
    Spilled { len: u64 },
    /// Its task failed (or one it depended on did).
    Failed(Box<Error>),
}

#[derive(Debug)]
pub(crate) struct ObjectEntry {
    pub refs: usize,
    pub state: ObjectState,
    /// Tasks waiting for this object, once per argument position.
    pub dependents: Vec<u64>,
    /// Objects referenced from inside this one, in the order it serialized
    /// them (each counted once in its `refs`; an id there twice, twice).
    pub contained: Vec<u64>,
    /// Client requests (worker, request) parked until this object seals.
    pub watchers: Vec<(usize, u64)>,
    /// The task that produces it, while it is pending or its task, cancelled,
    /// still runs (task ids start at 1:
    /// the niche keeps the entry, on the path of every object, 8 bytes smaller).
    pub producer: Option<std::num::NonZeroU64>,
    /// Readers of its arena bytes in place: the node's own threads reading
    /// it (a driver `get`, a view), and dispatched tasks taking it as an
    /// argument. A pinned object is never spilled.
    pub pins: u32,
    /// What made it ([`NodeState::creator_name`]): 0 for a `put`, else
    /// 1 + an index into `NodeState::creators`. (A `u32` fits the entry's
    /// padding: the entry does not grow.)
    pub creator: u32,
}

/// A finished task, as the timeline keeps it (`Copy`: recording one
/// allocates nothing on the task path).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimelineEntry {
    pub task: u64,
    pub function: &'static str,
    pub worker: u32,
    /// When its report arrived, from the node's start.
    pub end_ns: u64,
    /// Its run time, as its worker measured it.
    pub run_ns: u64,
    pub failed: bool,
}

/// Tasks finished and failed since the node started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskTotals {
    pub finished: u64,
    pub failed: u64,
}

#[derive(Debug)]
pub(crate) struct Task {
    pub function: &'static str,
    pub args: Vec<ArgSpec>,
    pub outputs: Vec<u64>,
    pub waiting_on: usize,
    pub options: TaskOptions,
    pub attempts: u32,
    pub worker: Option<usize>,
    /// Its function's expected run time when it was dispatched (counted in
    /// its worker's `queued_ns` until it finishes).
    pub expected_ns: u64,
    /// The tasks it was submitted from, nearest first (at most
    /// [`MAX_ANCESTRY`]): a blocked task may run its descendants.
    pub ancestors: Vec<u64>,
    /// Sent to run on top of a blocked task (`WorkerSlot::levels`).
    pub nested: bool,
    /// Holds its custom resources (while it is at a worker).
    pub holds_resources: bool,
    /// Pins its arena arguments (while it is at a worker).
    pub pins_args: bool,
    /// It is a call of an actor (queued there, not in `ready`).
    pub actor: Option<ActorCall>,
    /// Cancelled while at a worker: its outputs have failed with
    /// `TaskCancelled`; it is never retried.
    pub cancelled: bool,
    /// It submitted tasks (a cancel looks for its descendants only then).
    pub submitted: bool,
    /// Whom its output is for (`Execute::owner`): the connected driver it
    /// works for, or `LOCAL`.
    pub owner: u64,
    /// The program whose workers run it (`WorkerConn::program`): its
    /// submitter's.
    pub program: u32,
}

impl Task {
    /// The error its outputs are when it is cancelled.
    pub fn cancelled_error(&self) -> Error {
        Error::TaskCancelled { function: self.function.to_string() }
    }
}

/// Workers of a program that may exit before their handshake, in a row,
/// before its ready tasks fail.
pub(crate) const MAX_START_FAILURES: u32 = 3;

/// Ancestors a task remembers; a deeper descendant is still run by a
/// blocked ancestor's worker when it is older, or else by another worker.
pub(crate) const MAX_ANCESTRY: usize = 64;

/// One level of a worker's task thread: a task that blocked in a request
/// (its ordinary running task, or a nested task that blocked in turn), and
/// the tasks sent to run on top of it while it waits.
#[derive(Debug)]
pub(crate) struct Level {
    pub task: u64,
    /// The request this level is blocked in.
    pub parked: Option<u64>,
    /// Sent as nested (else it is the worker's running ordinary task).
    pub nested: bool,
    /// Tasks sent to run on top of it, in order: the first is running.
    pub offered: VecDeque<u64>,
    /// Their expected run times, summed.
    pub offered_ns: u64,
}

impl Level {
    pub fn new(task: u64, parked: Option<u64>, nested: bool) -> Self {
        Level { task, parked, nested, offered: VecDeque::new(), offered_ns: 0 }
    }
}

pub(crate) struct WorkerSlot {
    pub conn: Arc<WorkerConn>,
    /// Tasks sent to this worker and not yet done, oldest first.
    pub in_flight: VecDeque<u64>,
    /// Handles the worker process holds, per object.
    pub holds: HashMap<u64, usize>,
    /// Arena allocations handed to the worker and not yet sealed.
    pub unsealed: HashSet<u64>,
    /// Set while a multi-CPU task running on that worker holds this one.
    pub reserved_by: Option<usize>,
    /// Sum of the expected run times of the tasks in `in_flight`.
    pub queued_ns: u64,
    /// The task thread's stack above its ordinary running task (see
    /// [`Level`]); it is blocked when the top level is parked.
    pub levels: Vec<Level>,
    /// Requests parked from the worker's other threads.
    pub parked_other: HashSet<u64>,
    /// Told to exit (an extra worker no longer needed): gets no tasks.
    pub retiring: bool,
    /// When a request of its task thread was last answered.
    pub answered_at: Option<std::time::Instant>,
    /// The actor this process runs (it takes no pool tasks).
    pub actor: Option<u64>,
    /// A driver (a client the node did not start): it takes no tasks, and
    /// when it goes, the tasks it submitted that no one else wants are
    /// cancelled (`submitted`).
    pub driver: bool,
    /// A driver's submitted tasks, to look at when it goes (pruned as it grows).
    pub submitted: Vec<u64>,
}

impl WorkerSlot {
    /// A fresh slot for a connection.
    pub fn new(conn: Arc<WorkerConn>) -> Self {
        WorkerSlot {
            conn,
            in_flight: VecDeque::new(),
            holds: HashMap::new(),
            unsealed: HashSet::new(),
            reserved_by: None,
            queued_ns: 0,
            levels: Vec::new(),
            parked_other: HashSet::new(),
            retiring: false,
            answered_at: None,
            actor: None,
            driver: false,
            submitted: Vec::new(),
        }
    }

    /// One of the pool's worker processes (not an actor's, not a driver).
    pub fn in_pool(&self) -> bool {
        self.actor.is_none() && !self.driver
    }

    /// Whether its reader should watch its socket before sleeping: its task
    /// thread runs tasks on top of a blocked one, or was answered just now
    /// (a task waiting on child after child asks again within microseconds).
    pub fn in_nested_exchange(&self) -> bool {
        !self.levels.is_empty() || self.answered_at.is_some_and(|t| t.elapsed() < NESTED_EXCHANGE)
    }

    /// The level the task thread is blocked in, with nothing to run on top.
    pub fn blocked_in(&self) -> Option<&Level> {
        self.levels.last().filter(|l| l.parked.is_some() && l.offered.is_empty())
    }

    /// A task left the worker (done or handed back): off the levels.
    pub fn forget_task(&mut self, task: u64, expected_ns: u64) {
        self.levels.retain(|l| !(l.nested && l.task == task));
        for level in &mut self.levels {
            if let Some(at) = level.offered.iter().position(|&t| t == task) {
                level.offered.remove(at);
                level.offered_ns = level.offered_ns.saturating_sub(expected_ns);
            }
        }
        // A level whose wait ended stays only while tasks run on top of it.
        self.levels.retain(|l| l.nested || l.parked.is_some() || !l.offered.is_empty());
    }

    /// Whether it holds a CPU: running a task and not blocked in a `get` or
    /// `wait` on any thread (a blocked task gives its CPU back, as in Ray).
    /// (An actor's process holds none: an actor's CPUs are held for its
    /// lifetime, in `ActorBook::cpus`.)
    pub fn holds_cpu(&self) -> bool {
        self.in_pool()
            && (self.reserved_by.is_some()
                || (!self.in_flight.is_empty() && self.blocked_in().is_none() && self.parked_other.is_empty()))
    }

    /// Takes ordinary tasks: a pool worker, not blocked, not running tasks
    /// on a blocked stack.
    fn takes_ordinary(&self) -> bool {
        self.in_pool() && self.accepts_calls() && self.reserved_by.is_none()
    }

    /// Takes more work in its queue: not blocked in a request on any
    /// thread (a blocked worker hands its queue back), not leaving.
    pub fn accepts_calls(&self) -> bool {
        !self.retiring && self.levels.is_empty() && self.parked_other.is_empty()
    }

    /// May run tasks on top of a blocked one: a pool worker, not leaving,
    /// blocked on its task thread only.
    fn runs_nested(&self) -> bool {
        self.in_pool() && !self.retiring && self.parked_other.is_empty()
    }
}

/// How a worker's process ended, as the supervisor saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Death {
    /// `killed by signal 9 (SIGKILL)`, `exited with code 1`, …
    pub cause: String,
    /// The last lines it wrote to stderr.
    pub stderr: String,
}

/// One stream's items and who waits on it (see `streams.rs`).
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Items not yet known to be taken, from position `first`; each holds
    /// one reference of the stream's.
    pub items: VecDeque<u64>,
    pub first: u64,
    /// Items it was sent (a position below this is a duplicate).
    pub produced: u64,
    /// Items handed to the consumer (for backpressure).
    pub taken: u64,
    /// Clients' requests parked for an item: (worker, request, position).
    pub waiters: Vec<(usize, u64, u64)>,
    /// A paused producer's request, parked (`ParkedKind::Backpressure`):
    /// (worker, request, items that must be taken).
    pub paused: Option<(usize, u64, u64)>,
}

/// A client request the node answers later.
#[derive(Debug)]
pub(crate) struct ParkedRequest {
    pub kind: ParkedKind,
    /// From the client's task thread (else another thread).
    pub main: bool,
}

#[derive(Debug)]
pub(crate) enum ParkedKind {
    Get(u64),
    Wait {
        ids: Vec<u64>,
        num: usize,
        limit: usize,
        ready: usize,
    },
    /// An item of the stream ending in this object (see `streams.rs`).
    StreamNext(u64),
    /// That stream's producer, paused: it holds no CPU meanwhile.
    Backpressure(u64),
}

pub(crate) struct NodeState {
    pub objects: IdMap<ObjectEntry>,
    pub tasks: IdMap<Task>,
    pub ready: VecDeque<u64>,
    pub workers: HashMap<usize, WorkerSlot>,
    pub allocator: Allocator,
    pub next_task: u64,
    pub pipeline_depth: usize,
    /// Average run time per function, as workers measure it.
    pub run_times: HashMap<&'static str, u64>,
    pub total_cpus: u32,
    pub stopped: bool,
    /// Custom resources: what the node has, and what running tasks hold.
    pub resources: HashMap<String, (f64, f64)>,
    /// Client requests waiting for objects, by (worker, request).
    pub parked: HashMap<(usize, u64), ParkedRequest>,
    /// Replies to client requests, sent with the next dispatch.
    pub replies: Vec<(usize, ToClient)>,
    /// (worker, request, task): a task thread blocked in `request` waits
    /// for ready `task`; the next dispatch runs it there if it can.
    pub run_first: Vec<(usize, u64, u64)>,
    /// Most worker processes at once, and extra ones asked for but not yet
    /// connected; `spawn_wanted` is what the next dispatch asks for.
    pub worker_cap: usize,
    pub spawn_pending: usize,
    pub spawn_wanted: usize,
    /// Spill files and the objects in them (see `room.rs`).
    pub spill: SpillBook,
    /// Actors and their calls (see `actors.rs`).
    pub actors: ActorBook,
    /// Streaming tasks' items, by end object (see `streams.rs`).
    pub streams: IdMap<Stream>,
    /// Ends of streams whose consumer is gone without closing them (the end
    /// lost its last reference while pending): closed at the next dispatch.
    pub unwanted_streams: Vec<u64>,
    /// Pids of processes to kill, for the supervisor: a killed actor's, the
    /// worker of a task cancelled by force.
    pub kill: Vec<u32>,
    /// When the node started: the timeline's zero.
    pub born: std::time::Instant,
    /// The last `TIMELINE_LEN` finished tasks, oldest first.
    pub timeline: VecDeque<TimelineEntry>,
    pub task_totals: TaskTotals,
    /// Names that made objects (`ObjectEntry::creator`), and their codes
    /// by the name's address (names are the registry's `&'static str`s).
    pub creators: Vec<&'static str>,
    pub creator_codes: IdMap<u32>,
    /// The workers of each program besides the node's own (index − 1, see
    /// `programs.rs`), and the workers the next dispatch asks for, one
    /// program index each.
    pub program_pools: Vec<ProgramPool>,
    pub program_spawns: Vec<u32>,
}

impl NodeState {
    #[cfg(test)]
    pub fn new(arena_len: u64, pipeline_depth: usize, cpus: u32) -> Self {
        Self::with_limits(arena_len, pipeline_depth, cpus, cpus as usize, &[])
    }

    /// A node with `cpus` CPUs, at most `worker_cap` workers and these
    /// custom resources.
    pub fn with_limits(
        arena_len: u64,
        pipeline_depth: usize,
        cpus: u32,
        worker_cap: usize,
        resources: &[(String, f64)],
    ) -> Self {
        NodeState {
            objects: IdMap::default(),
            tasks: IdMap::default(),
            ready: VecDeque::new(),
            workers: HashMap::new(),
            allocator: Allocator::new(arena_len),
            next_task: 1,
            pipeline_depth,
            run_times: HashMap::new(),
            total_cpus: cpus,
            stopped: false,
            resources: resources.iter().map(|(n, a)| (n.clone(), (*a, 0.0))).collect(),
            parked: HashMap::new(),
            replies: Vec::new(),
            run_first: Vec::new(),
            worker_cap,
            spawn_pending: 0,
            spawn_wanted: 0,
            spill: SpillBook::default(),
            actors: ActorBook::default(),
            streams: IdMap::default(),
            unwanted_streams: Vec::new(),
            kill: Vec::new(),
            born: std::time::Instant::now(),
            timeline: VecDeque::new(),
            task_totals: TaskTotals::default(),
            creators: Vec::new(),
            creator_codes: IdMap::default(),
            program_pools: Vec::new(),
            program_spawns: Vec::new(),
        }
    }

    /// Whether a change outside the task path (a release, a stream taken)
    /// left something for a dispatch to do: replies, processes to kill,
    /// streams to close.
    pub fn needs_dispatch(&self) -> bool {
        !self.replies.is_empty() || !self.kill.is_empty() || !self.unwanted_streams.is_empty()
    }

    /// Worker processes of the pool (not running actors).
    pub fn pool_size(&self) -> usize {
        self.workers.values().filter(|s| s.in_pool() && s.conn.program == 0).count()
    }

    /// The connections of the live workers.
    pub fn connections(&self) -> Vec<Arc<WorkerConn>> {
        self.workers.values().map(|w| w.conn.clone()).collect()
    }

    /// A new object id with one reference (the caller's handle). Ids are
    /// unique in the process, across nodes, so a ref that outlives its node
    /// can never name an object of a later one.
    pub fn new_object(&mut self, state: ObjectState, contained: Vec<u64>) -> u64 {
        static NEXT_OBJECT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_OBJECT.fetch_add(1, Ordering::Relaxed);
        self.insert_object(id, state, contained);
        id
    }

    /// Record object `id` (new) with one reference.
    pub fn insert_object(&mut self, id: u64, state: ObjectState, contained: Vec<u64>) {
        let contained = self.count_contained(contained);
        let entry = ObjectEntry {
            refs: 1,
            state,
            dependents: Vec::new(),
            contained,
            watchers: Vec::new(),
            producer: None,
            pins: 0,
            creator: 0,
        };
        self.objects.insert(id, entry);
    }

    /// Count one reference to each contained id that exists; returns those.
    /// (An id that does not exist, forged or long freed, is never counted, so
    /// it is never released either.)
    fn count_contained(&mut self, mut contained: Vec<u64>) -> Vec<u64> {
        contained.retain(|&c| self.add_ref(c));
        contained
    }

    /// Count one more reference to `id`; false (and nothing counted) if no
    /// such object exists.
    pub fn add_ref(&mut self, id: u64) -> bool {
        match self.objects.get_mut(&id) {
            Some(entry) => {
                entry.refs += 1;
                true
            }
            None => false,
        }
    }

    /// Drop one reference; frees the object (and, transitively, what it
    /// contains) when none are left and it is not pending.
    pub fn release(&mut self, id: u64) {
        // The common case, a count that stays above zero, allocates nothing.
        let Some(mut work) = self.release_one(id) else { return };
        while let Some(id) = work.pop() {
            if let Some(contained) = self.release_one(id) {
                work.extend(contained);
            }
        }
    }

    /// Drop one reference to `id`; if that frees it, returns what it contained.
    fn release_one(&mut self, id: u64) -> Option<Vec<u64>> {
        let entry = self.objects.get_mut(&id)?;
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs != 0 || matches!(entry.state, ObjectState::Pending) {
            if entry.refs == 0 && !self.streams.is_empty() && self.streams.contains_key(&id) {
                // No one can take its items any more.
                self.unwanted_streams.push(id);
            }
            return None;
        }
        let entry = self.objects.remove(&id).expect("present");
        match entry.state {
            ObjectState::Arena { offset, .. } => {
                self.allocator.free(offset);
            }
            ObjectState::Spilled { len } => {
                self.spill.spilled_objects -= 1;
                self.spill.spilled_bytes -= len;
            }
            _ => {}
        }
        if !self.spill.copies.is_empty() {
            self.spill.drop_copy(id);
        }
        if !self.actors.actors.is_empty() && self.actors.actors.contains_key(&id) {
            self.actor_unreferenced(id);
        }
        if !self.streams.is_empty() && self.streams.contains_key(&id) {
            self.drop_stream(id);
        }
        Some(entry.contained)
    }

    /// Record a task; returns its output ids (each with one reference, the
    /// caller's). Ready tasks join the queue; the caller then dispatches.
    /// A task whose arguments could not be prepared is recorded with `failed`
    /// and fails at once.
    pub fn add_task(
        &mut self,
        function: &'static str,
        options: TaskOptions,
        args: Vec<ArgSpec>,
        num_returns: usize,
        failed: Option<Error>,
    ) -> Vec<u64> {
        let outputs = self.new_outputs(num_returns);
        self.add_task_for(function, options, args, outputs.clone(), failed, Vec::new(), None);
        outputs
    }

    /// `n` new pending objects, each with one reference (the caller's).
    pub fn new_outputs(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.new_object(ObjectState::Pending, Vec::new())).collect()
    }

    /// [`add_task`](Self::add_task) with outputs already recorded as pending
    /// objects, the task's ancestry, and the actor it is a call of.
    /// Returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn add_task_for(
        &mut self,
        function: &'static str,
        options: TaskOptions,
        args: Vec<ArgSpec>,
        outputs: Vec<u64>,
        mut failed: Option<Error>,
        ancestors: Vec<u64>,
        call: Option<ActorCall>,
    ) -> u64 {
        let task_id = self.next_task;
        self.next_task += 1;
        let creator = self.creator_code(function);
        for out in &outputs {
            if let Some(entry) = self.objects.get_mut(out) {
                entry.producer = std::num::NonZeroU64::new(task_id);
                entry.creator = creator;
            }
        }
        let mut waiting_on = 0;
        for arg in &args {
            if let ArgSpec::Inline { refs, .. } = arg {
                for &r in refs {
                    if !self.add_ref(r) {
                        failed = failed.or(Some(Error::ObjectNotFound(r)));
                    }
                }
            }
            if let ArgSpec::Object { id, .. } = arg {
                match self.objects.get_mut(id) {
                    Some(entry) => {
                        entry.refs += 1;
                        match &entry.state {
                            ObjectState::Pending => {
                                entry.dependents.push(task_id);
                                waiting_on += 1;
                            }
                            ObjectState::Failed(e) => failed = failed.or(Some((**e).clone())),
                            _ => {}
                        }
                    }
                    None => failed = failed.or(Some(Error::ObjectNotFound(*id))),
                }
            }
        }
        let needed = options.num_cpus;
        if needed > self.total_cpus {
            failed = failed.or(Some(Error::Unschedulable {
                function: function.to_string(),
                resource: "CPU".into(),
                needed: f64::from(needed),
                available: f64::from(self.total_cpus),
            }));
        }
        for (name, amount) in &options.resources {
            let available = self.resources.get(name).map_or(0.0, |r| r.0);
            if *amount > available {
                failed = failed.or(Some(Error::Unschedulable {
                    function: function.to_string(),
                    resource: name.clone(),
                    needed: *amount,
                    available,
                }));
            }
        }
        let task = Task {
            function,
            args,
            outputs,
            waiting_on,
            options,
            attempts: 0,
            worker: None,
            expected_ns: 0,
            ancestors,
            nested: false,
            holds_resources: false,
            pins_args: false,
            actor: call,
            cancelled: false,
            submitted: false,
            owner: LOCAL,
            program: 0,
        };
        // The task that submitted it: its parent, or for an actor's call the
        // calling task (a call's ancestry stops at the actor).
        let caller = call.filter(|c| !c.constructor && c.caller.1 != 0).map(|c| c.caller.1);
        if let Some(submitter) = task.ancestors.first().copied().or(caller).and_then(|t| self.tasks.get_mut(&t)) {
            submitter.submitted = true;
            if submitter.cancelled {
                // Submitted by a cancelled task that still runs: cancelled too.
                failed = failed.or(Some(submitter.cancelled_error()));
            }
        }
        self.tasks.insert(task_id, task);
        if let Some(call) = call.filter(|c| self.actors.actors.contains_key(&c.actor)) {
            // Each call keeps its actor's handle object alive.
            self.add_ref(call.actor);
            if failed.is_none() {
                let entry = self.actors.actors.get_mut(&call.actor).expect("checked");
                if call.constructor {
                    entry.calls.push_front(task_id);
                } else {
                    entry.calls.push_back(task_id);
                }
                self.actors.mark(call.actor);
            }
        }
        if let Some(error) = failed {
            self.fail_task(task_id, error);
        } else if waiting_on == 0 && call.is_none() {
            self.ready.push_back(task_id);
        }
        task_id
    }

    /// A task that was sent and came back unstarted (or is retried) goes
    /// first: to the front of its actor's queue, or of the ready queue.
    pub(super) fn requeue_front(&mut self, task_id: u64) {
        if let Some(task) = self.tasks.get(&task_id).filter(|t| t.cancelled) {
            // Cancelled while at a worker: it never runs again.
            let error = task.cancelled_error();
            self.fail_task(task_id, error);
            return;
        }
        match self.tasks.get(&task_id).and_then(|t| t.actor) {
            Some(call) => self.requeue_call(call.actor, task_id),
            None => self.ready.push_front(task_id),
        }
    }

    /// Take a task that ends unsent out of its queue; a constructor's end
    /// is its actor's death.
    fn unqueue(&mut self, task_id: u64, task: &Task, error: &Error) {
        match task.actor {
            None => self.ready.retain(|&t| t != task_id),
            Some(call) => {
                if let Some(entry) = self.actors.actors.get_mut(&call.actor) {
                    entry.calls.retain(|&t| t != task_id);
                }
                if call.constructor {
                    self.constructor_done(call.actor, task_id, Err(error));
                }
            }
        }
    }

    /// Ready tasks and actor calls: in the ready queue, or queued at their
    /// actor with every argument sealed.
    pub(super) fn ready_or_calls(&self) -> impl Iterator<Item = u64> + '_ {
        let calls = self.actors.actors.values().flat_map(|a| a.calls.iter().copied());
        self.ready.iter().copied().chain(calls.filter(|t| self.tasks[t].waiting_on == 0))
    }

    /// Seal object `id` with `state`, then wake (or fail) its dependents, and
    /// their dependents, without recursion.
    pub fn seal(&mut self, id: u64, state: ObjectState, contained: Vec<u64>) {
        let mut failures = Vec::new();
        self.seal_one(id, state, contained, &mut failures);
        while let Some((task_id, error)) = failures.pop() {
            let Some(task) = self.tasks.remove(&task_id) else { continue };
            self.task_totals.failed += 1;
            self.unqueue(task_id, &task, &error);
            for out in self.release_task(task) {
                self.seal_one(out, ObjectState::Failed(Box::new(error.clone())), Vec::new(), &mut failures);
            }
        }
    }

    fn seal_one(&mut self, id: u64, state: ObjectState, contained: Vec<u64>, failures: &mut Vec<(u64, Error)>) {
        let pending = self.objects.get(&id).is_some_and(|e| matches!(e.state, ObjectState::Pending));
        if !pending {
            // Unknown, or already sealed (a result arriving after shutdown
            // failed it): a sealed object never changes. Drop the new state.
            if let ObjectState::Arena { offset, .. } = state {
                self.allocator.free(offset);
            }
            return;
        }
        let contained = self.count_contained(contained);
        let entry = self.objects.get_mut(&id).expect("checked above");
        let failed = if let ObjectState::Failed(e) = &state { Some((**e).clone()) } else { None };
        entry.state = state;
        entry.contained = contained;
        entry.producer = None;
        let dependents = std::mem::take(&mut entry.dependents);
        let watchers = std::mem::take(&mut entry.watchers);
        let unreferenced = entry.refs == 0;
        for key in watchers {
            self.watched_sealed(key, id);
        }
        if !self.streams.is_empty() && self.streams.contains_key(&id) {
            self.stream_sealed(id);
        }
        for task_id in dependents {
            match &failed {
                Some(e) => failures.push((task_id, e.clone())),
                None => {
                    if let Some(task) = self.tasks.get_mut(&task_id) {
                        task.waiting_on -= 1;
                        if task.waiting_on == 0 {
                            match task.actor {
                                Some(call) => self.actors.mark(call.actor),
                                None => self.ready.push_back(task_id),
                            }
                        }
                    }
                }
            }
        }
        if unreferenced {
            // Every handle went away while it was pending: free it now.
            self.add_ref(id);
            self.release(id);
        }
    }

    /// Fail a task: every output becomes `error`, which flows to dependents.
    pub fn fail_task(&mut self, task_id: u64, error: Error) {
        let Some(task) = self.tasks.remove(&task_id) else { return };
        self.task_totals.failed += 1;
        self.unqueue(task_id, &task, &error);
        for out in self.release_task(task) {
            self.seal(out, ObjectState::Failed(Box::new(error.clone())), Vec::new());
        }
    }

    /// The node is stopping: every task that has not finished fails with
    /// `NodeStopped` (and late results are ignored).
    pub fn stop(&mut self) {
        self.stopped = true;
        let tasks: Vec<(u64, bool)> = self.tasks.iter().map(|(&id, t)| (id, t.worker.is_some())).collect();
        for (task_id, running) in tasks {
            if !running {
                self.fail_task(task_id, Error::NodeStopped);
            } else if let Some(task) = self.tasks.get(&task_id) {
                // Its worker may still be reading its arguments: keep them
                // pinned until the worker reports or dies; fail the outputs.
                for out in task.outputs.clone() {
                    self.seal(out, ObjectState::Failed(Box::new(Error::NodeStopped)), Vec::new());
                }
            }
        }
    }

    /// Unpin a task's arguments and free its workers; returns its outputs.
    fn release_task(&mut self, task: Task) -> Vec<u64> {
        self.task_totals.finished += 1;
        if let Some(w) = task.worker {
            self.unreserve(w);
        }
        if task.pins_args {
            self.unpin_args(&task.args);
        }
        if task.holds_resources {
            self.free_resources_of(&task.options);
        }
        if let Some(call) = task.actor {
            if let Some(slot) = task.worker.and_then(|w| self.workers.get(&w)) {
                // Room for the next call.
                if slot.actor == Some(call.actor) {
                    self.actors.mark(call.actor);
                }
            }
            if self.actors.actors.contains_key(&call.actor) {
                self.release(call.actor);
            }
        }
        for arg in task.args {
            match arg {
                ArgSpec::Object { id, .. } => self.release(id),
                ArgSpec::Inline { refs, .. } => refs.into_iter().for_each(|r| self.release(r)),
            }
        }
        task.outputs
    }

    /// Task `task_id` left `worker` without finishing (requeued, retried):
    /// it holds no worker, CPUs or resources until it is sent again.
    pub(super) fn take_back(&mut self, task_id: u64, worker: usize) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        task.worker = None;
        task.expected_ns = 0;
        task.nested = false;
        let wide = task.options.num_cpus > 1;
        let options = std::mem::take(&mut task.holds_resources).then(|| task.options.clone());
        if std::mem::take(&mut task.pins_args) {
            let args = std::mem::take(&mut task.args);
            self.unpin_args(&args);
            self.tasks.get_mut(&task_id).expect("present").args = args;
        }
        if let Some(options) = options {
            self.free_resources_of(&options);
        }
        if wide {
            self.unreserve(worker);
        }
    }

    /// One reader fewer of `id`'s arena bytes (see `ObjectEntry::pins`).
    pub fn unpin(&mut self, id: u64) {
        if let Some(entry) = self.objects.get_mut(&id) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }

    fn unpin_args(&mut self, args: &[ArgSpec]) {
        for arg in args {
            if let ArgSpec::Object { id, .. } = arg {
                self.unpin(*id);
            }
        }
    }

    /// Whether any argument of ready task `task_id` is spilled; those are
    /// wanted back (the restore thread reads them, then dispatches), a few
    /// at a time: objects read back long before their task can run would
    /// only push each other out again.
    pub(super) fn needs_restore(&mut self, task_id: u64) -> bool {
        if self.spill.spilled_objects == 0 {
            return false;
        }
        let spilled: Vec<u64> = self.tasks[&task_id]
            .args
            .iter()
            .filter_map(|arg| match arg {
                ArgSpec::Object { id, .. } => Some(*id),
                ArgSpec::Inline { .. } => None,
            })
            .filter(|id| matches!(self.objects.get(id).map(|e| &e.state), Some(ObjectState::Spilled { .. })))
            .collect();
        for &id in &spilled {
            if self.spill.requested.len() + self.spill.restoring.len() < RESTORES_AHEAD {
                self.want_back(id);
            }
        }
        !spilled.is_empty()
    }

    /// Hand spilled object `id` to the restore thread (once).
    pub fn want_back(&mut self, id: u64) {
        if self.spill.requested.insert(id) {
            self.spill.wanted.push(id);
        }
    }

    /// Whether a ready task or a parked `get` still waits for object `id`.
    pub fn waits_for(&self, id: u64) -> bool {
        self.objects.get(&id).is_some_and(|e| !e.watchers.is_empty()) || self.ready_task_takes(id)
    }

    /// Whether a ready task takes object `id` as an argument.
    pub fn ready_task_takes(&self, id: u64) -> bool {
        let takes_it =
            |t: u64| self.tasks[&t].args.iter().any(|a| matches!(a, ArgSpec::Object { id: arg, .. } if *arg == id));
        self.ready_or_calls().any(takes_it)
    }

    pub(super) fn unreserve(&mut self, worker: usize) {
        for slot in self.workers.values_mut() {
            if slot.reserved_by == Some(worker) {
                slot.reserved_by = None;
            }
        }
    }

    /// A worker reports a finished task. An error is a protocol violation
    /// (the caller drops the connection).
    /// `elapsed_ns` is how long the function ran, as the worker measured it.
    pub fn task_done(
        &mut self,
        worker: usize,
        task_id: u64,
        outputs: Vec<Placed>,
        elapsed_ns: u64,
    ) -> Result<(), String> {
        // Check the whole report before changing anything: on a violation the
        // task stays in flight, and `worker_lost` retries it.
        let slot = self.workers.get(&worker).ok_or("unknown worker")?;
        let pos = slot
            .in_flight
            .iter()
            .position(|&t| t == task_id)
            .ok_or_else(|| format!("task {task_id} was not sent to this worker"))?;
        if !self.tasks.contains_key(&task_id) {
            if slot.actor.is_some() && slot.retiring {
                // A call of an actor that died meanwhile: failed already.
                self.workers.get_mut(&worker).expect("checked above").in_flight.remove(pos);
                return Ok(());
            }
            return Err(format!("unknown task {task_id}"));
        }
        let mut claimed = HashSet::new();
        for placed in &outputs {
            if let Placed::Arena { offset, len, .. } = placed {
                if !slot.unsealed.contains(offset) || !claimed.insert(*offset) {
                    return Err(format!("offset {offset} was not allocated to this worker, or is claimed twice"));
                }
                if self.allocator.allocation_len(*offset).is_none_or(|size| *len > size) {
                    return Err(format!("object of {len} bytes overruns its allocation at {offset}"));
                }
            }
        }
        let slot = self.workers.get_mut(&worker).expect("checked above");
        slot.in_flight.remove(pos);
        slot.queued_ns = slot.queued_ns.saturating_sub(self.tasks[&task_id].expected_ns);
        slot.forget_task(task_id, self.tasks[&task_id].expected_ns);
        for offset in &claimed {
            slot.unsealed.remove(offset);
        }
        let mut checked: Vec<(ObjectState, Vec<u64>)> = outputs
            .into_iter()
            .map(|placed| match placed {
                Placed::Inline { bytes, refs } => (ObjectState::Inline(bytes.into()), refs),
                Placed::Arena { offset, len, refs } => (ObjectState::Arena { offset, len }, refs),
                Placed::Failed(e) => (ObjectState::Failed(Box::new(e)), Vec::new()),
            })
            .collect();
        let pid = slot.conn.pid;
        let task = self.tasks.remove(&task_id).expect("checked above");
        let failed = task.cancelled
            || checked.len() != task.outputs.len()
            || checked.iter().any(|(state, _)| matches!(state, ObjectState::Failed(_)));
        self.record_run(task_id, task.function, pid, elapsed_ns, failed);
        if !task.cancelled {
            // (A cancelled task stopped early, or never started.)
            let average = self.run_times.entry(task.function).or_insert(elapsed_ns);
            *average = average.saturating_mul(3).saturating_add(elapsed_ns) / 4;
        }
        let panicked = checked
            .iter()
            .any(|(state, _)| matches!(state, ObjectState::Failed(e) if matches!(**e, Error::TaskPanicked { .. })));
        let retry = task.options.retry_panics && task.attempts <= task.options.max_retries && !task.cancelled;
        if panicked && retry && !self.stopped {
            for (state, _) in &checked {
                if let ObjectState::Arena { offset, .. } = state {
                    self.allocator.free(*offset);
                }
            }
            self.tasks.insert(task_id, task);
            self.take_back(task_id, worker);
            self.requeue_front(task_id);
            return Ok(());
        }
        if checked.len() != task.outputs.len() {
            // A task that failed before producing outputs reports one error for all.
            for (state, _) in &checked {
                if let ObjectState::Arena { offset, .. } = state {
                    self.allocator.free(*offset);
                }
            }
            let error = match checked.pop() {
                Some((ObjectState::Failed(e), _)) if checked.is_empty() => *e,
                _ => Error::Serialization(format!("`{}` returned the wrong number of values", task.function)),
            };
            self.tasks.insert(task_id, task);
            self.fail_task(task_id, error);
            return Ok(());
        }
        if failed {
            self.task_totals.failed += 1;
        }
        let constructor = task.actor.filter(|c| c.constructor);
        let outputs = self.release_task(task);
        if let Some(call) = constructor {
            let result = match &checked[0].0 {
                ObjectState::Failed(e) => Err(&**e),
                _ => Ok(()),
            };
            self.constructor_done(call.actor, task_id, result);
        }
        for (id, (state, refs)) in outputs.into_iter().zip(checked) {
            self.seal(id, state, refs);
        }
        Ok(())
    }

    /// Reserve arena space for a worker's output.
    pub fn allocate_for(&mut self, worker: usize, size: u64) -> Result<u64, Error> {
        if self.stopped {
            return Err(Error::NodeStopped);
        }
        let offset = self.allocator.allocate(size)?;
        match self.workers.get_mut(&worker) {
            Some(slot) => {
                slot.unsealed.insert(offset);
                Ok(offset)
            }
            None => {
                self.allocator.free(offset);
                Err(Error::NodeStopped)
            }
        }
    }

    /// Free an allocation a worker could not fill.
    pub fn abandon(&mut self, worker: usize, offset: u64) {
        if self.workers.get_mut(&worker).is_some_and(|slot| slot.unsealed.remove(&offset)) {
            self.allocator.free(offset);
        }
    }

    /// Apply a worker's reference change; an acquisition returns whether
    /// it counted (the object exists).
    pub fn worker_ref(&mut self, worker: usize, acquire: bool, id: u64) -> bool {
        let Some(slot) = self.workers.get_mut(&worker) else { return false };
        if acquire {
            let Some(entry) = self.objects.get_mut(&id) else { return false };
            entry.refs += 1;
            *slot.holds.entry(id).or_default() += 1;
            return true;
        } else if let Some(n) = slot.holds.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                slot.holds.remove(&id);
            }
            self.release(id);
        }
        false
    }

    /// A worker's connection ended (`death`: how its process ended): reclaim
    /// what it held and retry (or fail) its tasks. Its unsealed allocations
    /// are freed only once the process is `reaped` (else leaked: it might
    /// still write them). Returns whether it was known.
    pub fn worker_lost(&mut self, worker: usize, pid: u32, death: &Death, reaped: bool) -> bool {
        let Some(slot) = self.workers.remove(&worker) else { return false };
        self.unreserve(worker);
        self.parked.retain(|&(w, _), _| w != worker);
        if !self.streams.is_empty() {
            self.forget_stream_requests(worker);
        }
        if reaped {
            for offset in slot.unsealed {
                self.allocator.free(offset);
            }
        } else if !slot.unsealed.is_empty() {
            tracing::error!("leaking {} allocations of worker {pid}, which was not reaped", slot.unsealed.len());
        }
        for (id, n) in slot.holds {
            for _ in 0..n {
                self.release(id);
            }
        }
        if slot.driver {
            self.driver_gone(&slot.submitted);
            self.program_driver_gone(slot.conn.program);
            return true;
        }
        if let Some(actor) = slot.actor {
            self.actor_process_lost(actor, worker, &slot.in_flight, pid, death);
            return true;
        }
        // The worker runs its tasks in order: only the oldest had started. The
        // others never ran, so their attempt does not count.
        // Tasks on a blocked stack had started too.
        for (position, &task_id) in slot.in_flight.iter().enumerate().rev() {
            let Some(task) = self.tasks.get_mut(&task_id) else { continue };
            let started = position == 0 || task.nested;
            if !started {
                task.attempts -= 1;
            }
            self.take_back(task_id, worker);
            let Some(task) = self.tasks.get_mut(&task_id) else { continue };
            if self.stopped {
                self.fail_task(task_id, Error::NodeStopped);
            } else if task.cancelled {
                // Its outputs failed when it was cancelled: never run again.
                let error = task.cancelled_error();
                self.fail_task(task_id, error);
            } else if task.attempts <= task.options.max_retries {
                self.requeue_front(task_id);
            } else {
                let error = Error::WorkerDied {
                    function: task.function.to_string(),
                    pid,
                    attempts: task.attempts,
                    cause: death.cause.clone(),
                    stderr: death.stderr.clone(),
                };
                self.fail_task(task_id, error);
            }
        }
        true
    }

    /// A driver went (its references released already): the tasks it
    /// submitted whose outputs no one holds any more are cancelled — the
    /// latest first, so a task only its dropped dependents wanted goes too.
    /// Tasks whose results someone else holds run on.
    fn driver_gone(&mut self, submitted: &[u64]) {
        for &task_id in submitted.iter().rev() {
            let Some(task) = self.tasks.get(&task_id) else { continue };
            let unwanted = task.outputs.iter().all(|o| self.objects.get(o).is_none_or(|e| e.refs == 0));
            if unwanted && !task.cancelled {
                // Not its descendants: someone else may hold what they make.
                self.cancel_task(task_id, false);
            }
        }
    }

    /// Send ready tasks to workers, as far as workers, CPUs and resources
    /// allow, and queue the replies to client requests answered meanwhile.
    ///
    /// A task goes to an ordinary worker (idle, with a free CPU, or with
    /// room in its pipeline), else, if a CPU is free, to a worker whose task
    /// thread is blocked in a request inside a task that may run it on top
    /// (see [`may_run_on`]). What neither can take while a CPU is free, with
    /// tasks blocked, asks for an extra worker (up to the cap).
    pub fn dispatch(&mut self, out: &mut Outbox) {
        if !self.unwanted_streams.is_empty() {
            for end in std::mem::take(&mut self.unwanted_streams) {
                self.stream_close(end);
            }
        }
        for (worker, reply) in self.replies.drain(..) {
            if let Some(slot) = self.workers.get(&worker) {
                out.push((slot.conn.clone(), reply));
            }
        }
        if !self.actors.work.is_empty() && !self.stopped {
            self.dispatch_actors(out);
        }
        if self.stopped || self.ready.is_empty() {
            return;
        }
        // Actors hold their CPUs for as long as they live.
        let mut used: u32 = self.workers.values().filter(|s| s.holds_cpu()).count() as u32 + self.actors.cpus;
        // A blocked task thread runs the task it waits for itself, as
        // rayon's `join` does: no other worker woken, none kept from others.
        // (Were that task to wait for the blocked one, they would wait for
        // each other wherever it ran.)
        let mut restoring = Vec::new();
        for (worker, request, task_id) in std::mem::take(&mut self.run_first) {
            // The whole queue: past a window, work no worker can take would
            // hide it (and the blocked thread waits for it).
            let Some(position) = self.ready.iter().position(|&t| t == task_id) else { continue };
            // (A ref may reach another program's task: only its own runs here.)
            let program = self.tasks[&task_id].program;
            let blocked_here = self
                .workers
                .get(&worker)
                .filter(|s| !s.retiring && s.in_pool() && s.conn.program == program)
                .and_then(|s| s.blocked_in())
                .is_some_and(|l| l.parked == Some(request));
            if blocked_here && self.needs_restore(task_id) {
                // Run there once its arguments are back.
                restoring.push((worker, request, task_id));
                continue;
            }
            let task = &self.tasks[&task_id];
            if !blocked_here
                || used >= self.total_cpus
                || task.options.num_cpus > 1
                || !self.resources_free(&task.options)
            {
                continue;
            }
            let expected_ns = self.run_times.get(task.function).copied().unwrap_or(PIPELINE_BUDGET_NS);
            self.ready.remove(position);
            used += 1;
            self.send_task(task_id, worker, Some(request), expected_ns, out);
        }
        self.run_first.extend(restoring);
        let blocked = self
            .workers
            .values()
            .filter(|s| s.in_pool() && (s.blocked_in().is_some() || !s.parked_other.is_empty()))
            .count();
        let pool = self.pool_size();
        let mut position = 0;
        let mut skipped = 0;
        let mut starved = 0;
        // Tasks passed by for want of a worker of their program (bounded as
        // `skipped` is), and each other program's ready tasks seen.
        let mut passed = 0;
        let mut seen: Vec<usize> = vec![0; self.program_pools.len()];
        while let Some(&task_id) = self.ready.get(position) {
            if self.needs_restore(task_id) {
                // Not counted toward the bound, for the reason below.
                position += 1;
                continue;
            }
            let task = &self.tasks[&task_id];
            let cpus = task.options.num_cpus.max(1);
            let free = self.total_cpus.saturating_sub(used);
            if !self.resources_free(&task.options) {
                position += 1;
                continue;
            }
            let expected_ns = self.run_times.get(task.function).copied().unwrap_or(PIPELINE_BUDGET_NS);
            // With a CPU free because tasks are blocked, a task waits for a
            // worker to run on rather than queue behind a running one
            // (unless no more workers may start).
            let can_spawn = pool + self.spawn_pending < self.worker_cap;
            let pipeline = blocked == 0 || free == 0 || !can_spawn;
            let program = task.program;
            if let Some((worker, idle)) = self.pick_workers(program, cpus as usize, expected_ns, free, pipeline) {
                self.ready.remove(position);
                if idle {
                    used += cpus;
                }
                self.send_task(task_id, worker, None, expected_ns, out);
                continue;
            }
            // Tasks of other programs may lie behind one no worker takes.
            let others = !self.program_pools.is_empty();
            if blocked == 0 && !others {
                break;
            }
            if cpus == 1 && blocked > 0 {
                if let Some((worker, request, takes_cpu)) = self.blocked_worker_for(task_id, expected_ns, free) {
                    self.ready.remove(position);
                    used += u32::from(takes_cpu);
                    self.send_task(task_id, worker, Some(request), expected_ns, out);
                    continue;
                }
                if program == 0 {
                    starved += usize::from(free >= 1);
                }
            }
            if let Some(n) = program.checked_sub(1).and_then(|i| seen.get_mut(i as usize)) {
                *n += cpus as usize;
            }
            position += 1;
            // Only a task a blocked task thread may run, waiting for room
            // there, counts toward the bound: tasks no blocked thread may
            // take would hide, past it, the children the blocked threads
            // wait for — forever, with every worker blocked at the cap.
            if cpus == 1 && blocked > 0 && self.blocked_may_run(task_id) {
                skipped += 1;
                if skipped >= MAX_SCAN {
                    break;
                }
            } else if others && blocked == 0 {
                passed += 1;
                if passed >= MAX_SCAN {
                    break;
                }
            }
        }
        let free = self.total_cpus.saturating_sub(used) as usize;
        let room = self.worker_cap.saturating_sub(pool + self.spawn_pending);
        let wanted = starved.min(free).saturating_sub(self.spawn_pending).min(room);
        self.spawn_pending += wanted;
        self.spawn_wanted += wanted;
        if seen.iter().any(|&n| n > 0) {
            self.grow_program_pools(&seen);
        }
    }

    /// Ask for workers of the programs whose ready tasks found none free:
    /// one per CPU waiting, up to `worker_cap` per program (idle workers
    /// cost no CPU; what runs is bounded by the CPUs). A program whose
    /// workers keep exiting before their handshake fails its ready tasks.
    fn grow_program_pools(&mut self, seen: &[usize]) {
        for (i, &waiting) in seen.iter().enumerate() {
            let program = i as u32 + 1;
            if waiting > 0 && self.program_pools[i].failures >= MAX_START_FAILURES {
                self.program_pools[i].failures = 0;
                let tasks: Vec<u64> = self.ready.iter().copied().filter(|t| self.tasks[t].program == program).collect();
                let error = Error::WorkerStartup(format!(
                    "this driver's workers (its own executable) exited before their handshake {MAX_START_FAILURES} \
                     times in a row: see the node's log"
                ));
                for task in tasks {
                    self.ready.retain(|&t| t != task);
                    self.fail_task(task, error.clone());
                }
                continue;
            }
            let live = self.workers.values().filter(|s| s.in_pool() && !s.retiring && s.conn.program == program);
            let idle = live.clone().filter(|s| s.in_flight.is_empty()).count();
            let (live, pool) = (live.count(), &mut self.program_pools[i]);
            let cap = self.worker_cap.max(1);
            let wanted = waiting.saturating_sub(idle + pool.pending).min(cap.saturating_sub(live + pool.pending));
            pool.pending += wanted;
            self.program_spawns.extend(std::iter::repeat_n(program, wanted));
        }
    }

    /// A driver of `program` went: once none is left, its idle workers are
    /// told to exit (busy ones finish what they run; later tasks of the
    /// program start workers again).
    fn program_driver_gone(&mut self, program: u32) {
        let Some(pool) = program.checked_sub(1).and_then(|i| self.program_pools.get_mut(i as usize)) else { return };
        pool.drivers = pool.drivers.saturating_sub(1);
        if pool.drivers > 0 {
            return;
        }
        for slot in self.workers.values_mut() {
            if slot.conn.program == program && slot.in_pool() && !slot.retiring && slot.in_flight.is_empty() {
                slot.retiring = true;
                self.replies.push((slot.conn.id, ToClient::Shutdown));
            }
        }
    }

    /// Record task `task_id` as sent to `worker` and queue its message.
    pub(super) fn send_task(
        &mut self,
        task_id: u64,
        worker: usize,
        nested: Option<u64>,
        expected_ns: u64,
        out: &mut Outbox,
    ) {
        let mut args = Vec::new();
        let task = self.tasks.get_mut(&task_id).expect("ready task exists");
        for arg in &task.args {
            args.push(match arg {
                ArgSpec::Inline { bytes, fingerprint, .. } => {
                    ArgData::Inline { bytes: bytes.to_vec(), fingerprint: *fingerprint }
                }
                ArgSpec::Object { id, fingerprint } => {
                    let entry = self.objects.get_mut(id).expect("arguments are pinned");
                    // Every object argument is pinned while the task is out.
                    entry.pins += 1;
                    if !self.spill.kept.is_empty() {
                        self.spill.kept.remove(id);
                    }
                    match &entry.state {
                        ObjectState::Inline(bytes) => {
                            ArgData::Inline { bytes: bytes.to_vec(), fingerprint: *fingerprint }
                        }
                        ObjectState::Arena { offset, len } => {
                            ArgData::Arena { id: *id, offset: *offset, len: *len, fingerprint: *fingerprint }
                        }
                        ObjectState::Pending | ObjectState::Failed(_) | ObjectState::Spilled { .. } => {
                            unreachable!("ready tasks are dispatched with sealed arguments in memory")
                        }
                    }
                }
            });
        }
        task.pins_args = true;
        task.worker = Some(worker);
        task.attempts += 1;
        task.expected_ns = expected_ns;
        task.nested = nested.is_some();
        let backpressure = task.options.backpressure;
        let owner = task.owner;
        let execute = Execute { task: task_id, function: task.function.to_string(), args, nested, backpressure, owner };
        let options = (!task.options.resources.is_empty()).then(|| task.options.clone());
        task.holds_resources = options.is_some();
        if let Some(options) = options {
            self.take_resources(&options);
        }
        let slot = self.workers.get_mut(&worker).expect("picked worker exists");
        slot.in_flight.push_back(task_id);
        slot.queued_ns = slot.queued_ns.saturating_add(expected_ns);
        if nested.is_some() {
            let level = slot.levels.last_mut().expect("nested tasks go to a blocked level");
            level.offered.push_back(task_id);
            level.offered_ns = level.offered_ns.saturating_add(expected_ns);
        }
        out.push((slot.conn.clone(), ToClient::Execute(execute)));
    }

    /// A worker whose task thread is blocked inside a task that may run
    /// `task_id` on top of it, the request it is blocked in, and whether
    /// the task takes a free CPU there (the first sent to a level does;
    /// others queue behind it, within the pipeline's limits, as ordinary
    /// tasks queue at a busy worker).
    fn blocked_worker_for(&self, task_id: u64, expected_ns: u64, free: u32) -> Option<(usize, u64, bool)> {
        let task = &self.tasks[&task_id];
        if task.ancestors.is_empty() {
            return None;
        }
        self.workers.iter().find_map(|(&id, slot)| {
            let level = slot.levels.last().filter(|l| l.parked.is_some())?;
            let first = level.offered.is_empty();
            let room = first
                || level.offered.len() < self.pipeline_depth
                || (level.offered.len() < MAX_PIPELINE
                    && level.offered_ns.saturating_add(expected_ns) <= PIPELINE_BUDGET_NS);
            let fits = if first { free >= 1 } else { room };
            (fits && slot.conn.program == task.program && slot.runs_nested() && may_run_on(task, level.task))
                .then(|| (id, level.parked.expect("parked"), first))
        })
    }

    /// Whether some blocked task thread may run `task_id` on top of itself
    /// once it has room ([`blocked_worker_for`](Self::blocked_worker_for)
    /// without the room).
    fn blocked_may_run(&self, task_id: u64) -> bool {
        let task = &self.tasks[&task_id];
        !task.ancestors.is_empty()
            && self.workers.values().any(|slot| {
                slot.levels.last().is_some_and(|l| l.parked.is_some() && may_run_on(task, l.task))
                    && slot.runs_nested()
                    && slot.conn.program == task.program
            })
    }

    /// Choose the worker for a task needing `cpus` CPUs and expected to run
    /// `expected_ns`, with `free` CPUs free: the least loaded one with room
    /// in its pipeline (see the module notes); a multi-CPU task needs an
    /// idle worker plus `cpus - 1` more idle ones, which it reserves while it
    /// runs. Busy workers are candidates only with `pipeline`. Returns the
    /// worker and whether it was idle (takes a free CPU).
    fn pick_workers(
        &mut self,
        program: u32,
        cpus: usize,
        expected_ns: u64,
        free: u32,
        pipeline: bool,
    ) -> Option<(usize, bool)> {
        let room = |s: &WorkerSlot| {
            s.in_flight.len() < self.pipeline_depth
                || (s.in_flight.len() < MAX_PIPELINE && s.queued_ns.saturating_add(expected_ns) <= PIPELINE_BUDGET_NS)
        };
        if cpus == 1 {
            return self
                .workers
                .iter()
                .filter(|(_, s)| {
                    let idle = s.in_flight.is_empty();
                    s.conn.program == program && s.takes_ordinary() && room(s) && if idle { free > 0 } else { pipeline }
                })
                .min_by_key(|(id, s)| (s.in_flight.len(), **id))
                .map(|(&id, s)| (id, s.in_flight.is_empty()));
        }
        if (free as usize) < cpus {
            return None;
        }
        let mut idle: Vec<usize> = self
            .workers
            .iter()
            .filter(|(_, s)| s.conn.program == program && s.takes_ordinary() && s.in_flight.is_empty())
            .map(|(&id, _)| id)
            .collect();
        if idle.len() < cpus {
            return None;
        }
        idle.sort_unstable();
        let chosen = idle[0];
        for &other in &idle[1..cpus] {
            self.workers.get_mut(&other).expect("idle worker").reserved_by = Some(chosen);
        }
        Some((chosen, true))
    }

    /// Whether the custom resources `options` asks for are free now.
    fn resources_free(&self, options: &TaskOptions) -> bool {
        options.resources.iter().all(|(name, amount)| {
            self.resources.get(name).is_some_and(|(total, used)| used + amount <= *total + RESOURCE_EPSILON)
        })
    }

    fn take_resources(&mut self, options: &TaskOptions) {
        for (name, amount) in &options.resources {
            if let Some((_, used)) = self.resources.get_mut(name) {
                *used += amount;
            }
        }
    }

    pub(super) fn free_resources_of(&mut self, options: &TaskOptions) {
        for (name, amount) in &options.resources {
            if let Some((_, used)) = self.resources.get_mut(name) {
                *used = (*used - amount).max(0.0);
            }
        }
    }
}

/// How long after an answer a worker's exchange counts as ongoing.
const NESTED_EXCHANGE: std::time::Duration = std::time::Duration::from_micros(200);

/// Spilled arguments of ready tasks read back ahead of their dispatch.
const RESTORES_AHEAD: usize = 2;

/// Ready tasks a blocked worker may run but has no room for, looked at past
/// the first that no worker takes, when some worker is blocked (the
/// dispatch looks for tasks a blocked worker may run).
const MAX_SCAN: usize = 256;

/// Slack for sums of fractional resource amounts.
const RESOURCE_EPSILON: f64 = 1e-9;

/// Whether a task thread blocked inside task `blocked` may run task `task`
/// on top of it: yes for its descendants, which cannot wait, directly or
/// not, for `blocked` to end (see ARCHITECTURE.md, "Clients and nested
/// tasks"), so running them there never deadlocks. (A task merely
/// submitted earlier can: its argument may be a pending object that comes
/// to hold `blocked`'s output.)
/// A streaming task never does: it may wait for its consumer to take items
/// (backpressure), and that may be `blocked`.
pub(crate) fn may_run_on(task: &Task, blocked: u64) -> bool {
    !task.options.streaming && task.ancestors.contains(&blocked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn node_with_workers(n: usize) -> (NodeState, Vec<UnixStream>) {
        let mut state = NodeState::new(1 << 20, 2, n as u32);
        let mut peers = Vec::new();
        for id in 0..n {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(theirs);
            let conn = WorkerConn::start(id, 1000 + id as u32, 0, ours).unwrap();
            let slot = WorkerSlot::new(conn);
            state.workers.insert(id, slot);
        }
        (state, peers)
    }

    fn submit(state: &mut NodeState, options: TaskOptions) -> (u64, u64) {
        let out = state.add_task("tests::f", options, Vec::new(), 1, None)[0];
        let task = *state.tasks.keys().max().unwrap();
        (task, out)
    }

    #[test]
    fn a_bad_report_changes_nothing_and_the_task_stays_in_flight() {
        let (mut state, _peers) = node_with_workers(1);
        let (task, out) = submit(&mut state, TaskOptions::default());
        state.dispatch(&mut Outbox::new());
        let offset = state.allocate_for(0, 100).unwrap();
        let twice = vec![
            Placed::Arena { offset, len: 100, refs: Vec::new() },
            Placed::Arena { offset, len: 100, refs: Vec::new() },
        ];
        assert!(state.task_done(0, task, twice, 0).is_err(), "one allocation claimed twice");
        let foreign = vec![Placed::Arena { offset: offset + 4096, len: 1, refs: Vec::new() }];
        assert!(state.task_done(0, task, foreign, 0).is_err(), "an offset never allocated to it");
        let overrun = vec![Placed::Arena { offset, len: 1 << 19, refs: Vec::new() }];
        assert!(state.task_done(0, task, overrun, 0).is_err(), "longer than its allocation");
        assert_eq!(state.workers[&0].in_flight, [task]);
        assert!(matches!(state.objects[&out].state, ObjectState::Pending));
        // The worker dies: its allocation is reclaimed and the task requeued.
        state.worker_lost(0, 1000, &Death::default(), true);
        assert_eq!(state.allocator.allocations(), 0);
        assert_eq!(state.ready, [task]);
    }

    fn item(offset: u64) -> Placed {
        Placed::Arena { offset, len: 64, refs: Vec::new() }
    }

    #[test]
    fn a_stream_item_out_of_place_claims_nothing_and_a_duplicate_is_freed() {
        let (mut state, _peers) = node_with_workers(1);
        let (task, end) = submit(&mut state, TaskOptions::default());
        state.dispatch(&mut Outbox::new());
        let first = state.allocate_for(0, 64).unwrap();
        assert!(state.stream_item(0, task, 1, item(first)).is_err(), "an item skipping position 0");
        assert!(state.workers[&0].unsealed.contains(&first), "its allocation is still the worker's");
        state.stream_item(0, task, 0, item(first)).unwrap();
        // A retry's first item again: freed, the stream keeps the first.
        let again = state.allocate_for(0, 64).unwrap();
        state.stream_item(0, task, 0, item(again)).unwrap();
        assert_eq!(state.allocator.allocations(), 1);
        let Some(Ok(Some(id))) = state.stream_next(end, 0) else { panic!("item 0 is there") };
        assert!(matches!(state.objects[&id].state, ObjectState::Arena { offset, .. } if offset == first));
        assert!(state.stream_next(end, 1).is_none(), "item 1 is still to come");
        // The end seals: the consumer gets it after the items; freeing it frees the items.
        state.task_done(0, task, vec![Placed::Inline { bytes: vec![1], refs: Vec::new() }], 0).unwrap();
        assert!(matches!(state.stream_next(end, 1), Some(Ok(None))));
        state.release(end);
        assert!(state.streams.is_empty() && state.objects.is_empty() && state.allocator.allocations() == 0);
    }

    #[test]
    fn a_stream_whose_end_loses_its_last_reference_is_closed_and_its_task_cancelled() {
        let (mut state, _peers) = node_with_workers(1);
        let (task, end) = submit(&mut state, TaskOptions::default());
        state.dispatch(&mut Outbox::new());
        let offset = state.allocate_for(0, 64).unwrap();
        state.stream_item(0, task, 0, item(offset)).unwrap();
        state.release(end);
        assert_eq!(state.unwanted_streams, [end]);
        state.dispatch(&mut Outbox::new());
        assert!(state.tasks[&task].cancelled, "the task was cancelled");
        assert!(state.streams.is_empty(), "its items were released");
        assert_eq!(state.allocator.allocations(), 0);
        // What it sends later is freed.
        let late = state.allocate_for(0, 64).unwrap();
        state.stream_item(0, task, 1, item(late)).unwrap();
        assert_eq!(state.allocator.allocations(), 0);
    }

    #[test]
    fn only_the_running_task_is_charged_when_its_worker_dies() {
        let (mut state, _peers) = node_with_workers(1);
        let once = TaskOptions::default().max_retries(0);
        let (first, first_out) = submit(&mut state, once.clone());
        let (second, _) = submit(&mut state, once);
        state.dispatch(&mut Outbox::new());
        assert_eq!(state.workers[&0].in_flight, [first, second], "both pipelined to the one worker");
        state.worker_lost(0, 1000, &Death::default(), true);
        assert!(
            matches!(&state.objects[&first_out].state, ObjectState::Failed(e) if matches!(**e, Error::WorkerDied { attempts: 1, .. }))
        );
        assert_eq!(state.ready, [second], "the queued task never ran: requeued, not charged");
        assert_eq!(state.tasks[&second].attempts, 0);
    }

    fn finish_all(state: &mut NodeState, elapsed_ns: u64) {
        let done: Vec<u64> = state.workers[&0].in_flight.iter().copied().collect();
        for task in done {
            state.task_done(0, task, vec![Placed::Inline { bytes: Vec::new(), refs: Vec::new() }], elapsed_ns).unwrap();
        }
    }

    #[test]
    fn only_tasks_measured_short_are_queued_deeper_than_the_pipeline_depth() {
        let (mut state, _peers) = node_with_workers(1);
        let _outputs: Vec<_> = (0..1000).map(|_| submit(&mut state, TaskOptions::default())).collect();
        state.dispatch(&mut Outbox::new());
        assert_eq!(state.workers[&0].in_flight.len(), 2, "a function not yet measured counts as long");

        // Measured at 1 ms: still no deeper than the pipeline depth.
        finish_all(&mut state, 1_000_000);
        state.dispatch(&mut Outbox::new());
        assert_eq!(state.workers[&0].in_flight.len(), 2);
        assert_eq!(state.workers[&0].queued_ns, 2 * state.run_times["tests::f"]);

        // Measured at 1 µs (the average converges within a few reports):
        // the worker takes a batch, up to the cap.
        for _ in 0..12 {
            finish_all(&mut state, 1_000);
            state.dispatch(&mut Outbox::new());
        }
        assert!(state.run_times["tests::f"] < 2_000);
        assert_eq!(state.workers[&0].in_flight.len(), MAX_PIPELINE);
        finish_all(&mut state, 1_000);
        assert_eq!(state.workers[&0].queued_ns, 0, "finished tasks leave the worker's queue estimate");
    }

    #[test]
    fn a_multi_cpu_task_reserves_idle_workers_until_it_ends() {
        let (mut state, _peers) = node_with_workers(3);
        let (wide, wide_out) = submit(&mut state, TaskOptions::default().num_cpus(2));
        state.dispatch(&mut Outbox::new());
        let runner = state.tasks[&wide].worker.unwrap();
        let reserved: Vec<usize> =
            state.workers.iter().filter(|(_, s)| s.reserved_by == Some(runner)).map(|(&id, _)| id).collect();
        assert_eq!(reserved.len(), 1);
        // Narrow tasks go to the one free worker only (and its pipeline).
        for _ in 0..4 {
            submit(&mut state, TaskOptions::default());
        }
        state.dispatch(&mut Outbox::new());
        assert!(state.workers[&reserved[0]].in_flight.is_empty(), "the reserved worker takes nothing");
        assert_eq!(state.ready.len(), 4 - 2 - 1, "two pipelined on the free worker, one behind the wide task");
        state.task_done(runner, wide, vec![Placed::Inline { bytes: Vec::new(), refs: Vec::new() }], 0).unwrap();
        assert!(matches!(state.objects[&wide_out].state, ObjectState::Inline(_)));
        assert!(state.workers.values().all(|s| s.reserved_by.is_none()));
    }

    #[test]
    fn a_result_nobody_holds_is_freed_and_its_refs_released() {
        let (mut state, _peers) = node_with_workers(1);
        let inner = state.new_object(ObjectState::Inline(Vec::new().into()), Vec::new());
        let (task, out) = submit(&mut state, TaskOptions::default());
        state.release(out); // the caller dropped its ref while the task ran
        state.dispatch(&mut Outbox::new());
        state
            .task_done(0, task, vec![Placed::Inline { bytes: Vec::new(), refs: vec![inner, 987_654_321] }], 0)
            .unwrap();
        assert!(!state.objects.contains_key(&out));
        assert_eq!(
            state.objects[&inner].refs, 1,
            "the container's count on it came and went; the unknown id was never counted"
        );
    }

    /// A node with one worker of its own (id 0) and one of program 1 (id 1).
    fn node_with_a_program() -> (NodeState, Vec<UnixStream>) {
        let mut state = NodeState::new(1 << 20, 2, 2);
        state.program_pools.push(ProgramPool { drivers: 1, ..ProgramPool::default() });
        let mut peers = Vec::new();
        for (id, program) in [(0usize, 0u32), (1, 1)] {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(theirs);
            let conn = WorkerConn::start(id, 1000 + id as u32, program, ours).unwrap();
            state.workers.insert(id, WorkerSlot::new(conn));
        }
        (state, peers)
    }

    #[test]
    fn a_task_runs_only_on_a_worker_of_its_program() {
        let (mut state, _peers) = node_with_a_program();
        let (own, _) = submit(&mut state, TaskOptions::default());
        let (theirs, _) = submit(&mut state, TaskOptions::default());
        state.tasks.get_mut(&theirs).unwrap().program = 1;
        // Program 1's task first in line: the node's own still runs.
        state.ready.retain(|&t| t != theirs);
        state.ready.push_front(theirs);
        state.dispatch(&mut Outbox::new());
        assert_eq!(state.tasks[&own].worker, Some(0));
        assert_eq!(state.tasks[&theirs].worker, Some(1));
    }

    #[test]
    fn a_program_without_a_free_worker_asks_for_one_per_cpu_waiting() {
        let (mut state, _peers) = node_with_a_program();
        state.workers.remove(&1);
        state.worker_cap = 8;
        let (_, _) = submit(&mut state, TaskOptions::default());
        let (wide, _) = submit(&mut state, TaskOptions::default().num_cpus(2));
        for task in state.tasks.values_mut() {
            task.program = 1;
        }
        state.dispatch(&mut Outbox::new());
        assert!(state.tasks.values().all(|t| t.worker.is_none()), "no worker of program 1");
        assert_eq!(state.program_spawns, vec![1, 1, 1], "one CPU and two CPUs wait");
        assert_eq!(state.program_pools[0].pending, 3);
        // Asked once: the next dispatch waits for those.
        state.program_spawns.clear();
        state.dispatch(&mut Outbox::new());
        assert!(state.program_spawns.is_empty());
        // Workers that keep dying before their handshake fail the tasks.
        state.program_pools[0] = ProgramPool { failures: MAX_START_FAILURES, drivers: 1, pending: 0 };
        state.dispatch(&mut Outbox::new());
        assert!(state.tasks.is_empty(), "failed: {:?}", state.tasks.keys().collect::<Vec<_>>());
        assert!(!state.objects.values().any(|o| matches!(o.state, ObjectState::Pending)), "{wide}");
    }

    #[test]
    fn a_programs_workers_retire_only_once_no_driver_uses_it() {
        let (mut state, _peers) = node_with_a_program();
        assert!(state.retire_idle(1).is_empty(), "its driver is connected; the node's own pool is at its size");
        assert_eq!(state.pool_size(), 1, "program workers are not the node's own pool");
        state.program_pools[0].drivers = 0;
        let retired: Vec<usize> = state.retire_idle(1).iter().map(|c| c.id).collect();
        assert_eq!(retired, vec![1]);
    }
}
