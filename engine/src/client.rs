//! The socket client: how a process other than the node's own talks to the
//! node, in `crate::protocol` over its Unix socket. Workers use it now (for
//! tasks that call the API); drivers connecting to a standalone node will
//! use the very same code.
//!
//! Design notes
//! - **Ids without a round trip.** The client names the objects it makes
//!   (`protocol::client_id_base`), so `submit` and `put` are one-way
//!   messages; only `get`, `wait` and arena allocations wait for a reply.
//! - **One ordered stream out.** Every message goes through [`Out`] in the
//!   order it was made, so the node sees an object's creation before any
//!   use of it. Reference acquisitions wait there as one `Refs` frame ahead
//!   of the next message; releases made while a task runs wait until after
//!   its `TaskDone` (an output may contain those refs). A request flushes
//!   everything before it, so no finished task's result is ever held back
//!   while its worker waits (that result may be what it waits for).
//! - **Whoever waits reads.** No reader thread: a thread waiting for a reply
//!   (or the idle task loop) takes the reading role, reads the socket and
//!   hands each message to whom it is for, waking them; the others sleep on
//!   a condvar. The task thread waiting for its own reply therefore reads it
//!   itself, with no other thread woken on the way.
//! - **A blocked task thread.** When the task thread blocks in `get`/`wait`,
//!   it hands back ordinary tasks queued at it (the node runs them
//!   elsewhere: one may be what it waits for), and runs the tasks the node
//!   sends it for that request (`Execute::nested`) on top of its stack.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use shoal_ipc::{FrameBuffer, FrameReader, HandshakeReply, Hello, Welcome, encode_frame};
use shoal_store::{Arena, Layout};

use crate::error::{Error, Result};
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::{
    CreateActor, Execute, ObjectData, Placed, RefOp, Submit, SubmitArg, ToClient, ToNode, client_id_base,
};
use crate::status::{MemoryReport, NodeStatus, TaskEvent};

/// How long a reader watches the socket before it sleeps in `poll`: a reply
/// a few microseconds away then costs no wake-up.
const SPIN: Duration = Duration::from_micros(50);

/// Submissions a task thread makes go out in one write, at most this many...
const SUBMIT_BATCH: usize = 32;
/// ... and at most this long after the first (the flusher thread sends
/// them if the task makes no other call meanwhile).
const SUBMIT_DELAY: Duration = Duration::from_micros(50);

/// Runs a task the node sent to the blocked task thread (set by the worker
/// loop, which knows how to run tasks).
pub(crate) type NestedRunner = Box<dyn Fn(Execute) + Send + Sync>;

/// How often `is_cancelled()` inside a busy task reads what the node sent.
const PEEK_EVERY: Duration = Duration::from_micros(50);

/// A connection to a node.
pub(crate) struct Client {
    arena: Arc<Arena>,
    stream: UnixStream,
    inline_max: usize,
    spin: bool,
    /// The task thread: the one that runs tasks (and may run nested ones).
    main: ThreadId,
    id_base: u64,
    next_object: AtomicU64,
    next_request: AtomicU64,
    /// The task on top of the task thread's stack (0: none).
    top_task: AtomicU64,
    /// Some task sent here was cancelled (`Shared::cancelled` is not empty):
    /// only then is that set looked at.
    any_cancelled: AtomicBool,
    /// When `current_cancelled` last read the socket, in nanoseconds since
    /// `born`.
    peeked_at: AtomicU64,
    born: Instant,
    closed: AtomicBool,
    out: Mutex<Out>,
    /// Wakes the flusher thread when a submission waits in `out`.
    submitted: Condvar,
    input: Mutex<FrameBuffer>,
    shared: Mutex<Shared>,
    changed: Condvar,
    nested_runner: OnceLock<NestedRunner>,
    /// A driver connected to a standalone node: its thread's submissions
    /// and releases are batched as a task's are (see `write_or_batch`).
    driver: bool,
    /// Write the worker output the node sends (`Config::log_to_driver`).
    show_output: AtomicBool,
}

/// Messages not yet written, in order.
#[derive(Default)]
pub(crate) struct Out {
    buf: Vec<u8>,
    /// Acquisitions not yet encoded: one `Refs` frame before whatever comes next.
    acquires: Vec<RefOp>,
    /// Releases made while a task runs: sent after its `TaskDone`.
    deferred: Vec<RefOp>,
    /// Tasks running on the task thread, bottom first.
    stack: Vec<u64>,
    /// Finished tasks whose results wait in `buf`, and since when.
    pub(crate) batched: usize,
    pub(crate) batch_since: Option<Instant>,
    /// Submissions waiting in `buf`, and since when.
    submits: usize,
    submits_since: Option<Instant>,
}

impl Out {
    fn encode(&mut self, msg: &ToNode) {
        if !self.acquires.is_empty() {
            let acquires = ToNode::Refs(std::mem::take(&mut self.acquires));
            encode_frame(&acquires, &mut self.buf).expect("encoding to memory");
        }
        if let Err(e) = encode_frame(msg, &mut self.buf) {
            tracing::error!("cannot encode a message to the node: {e}");
        }
    }
}

/// What readers hand to waiters.
#[derive(Default)]
struct Shared {
    /// A thread is reading the socket.
    reading: bool,
    replies: HashMap<u64, ToClient>,
    /// Requests someone still waits for.
    waiting: HashSet<u64>,
    /// Ordinary tasks for the task loop.
    executes: VecDeque<Execute>,
    /// Tasks to run on the blocked task thread, all for the innermost
    /// request it is blocked in.
    nested: VecDeque<Execute>,
    /// The requests the task thread is blocked in, outermost first (a
    /// task run on top of a blocked one may block in turn).
    main_open: Vec<u64>,
    /// Threads blocked in a `get` or `wait`.
    blocked: usize,
    /// Tasks sent here that were cancelled (until they end).
    cancelled: HashSet<u64>,
}

/// What a request waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// An answer the node gives at once (an allocation).
    Reply,
    /// An object: the thread blocks. While any thread does, ordinary tasks
    /// queued at this worker are handed back (one may be what it waits
    /// for); `task_thread`: it is the task thread, which may be sent tasks
    /// to run meanwhile.
    Object { task_thread: bool },
}

impl Client {
    /// Handshake on `stream` with `hello`; on welcome, map the arena.
    pub(crate) fn connect(stream: UnixStream, hello: &Hello) -> Result<(Client, Welcome)> {
        let io = |e: &dyn std::fmt::Display| Error::WorkerStartup(e.to_string());
        let mut buf = Vec::new();
        encode_frame(hello, &mut buf).map_err(|e| io(&e))?;
        (&stream).write_all(&buf).map_err(|e| io(&e))?;
        let welcome = match FrameReader::with_cap(&stream, 1 << 20).read::<HandshakeReply>().map_err(|e| io(&e))? {
            HandshakeReply::Welcome(w) => w,
            HandshakeReply::Refused(reason) => {
                return Err(Error::WorkerStartup(format!("refused by the node: {reason}")));
            }
        };
        let fd = shoal_ipc::fdpass::recv_fd(&stream).map_err(|e| io(&e))?;
        let arena = Arc::new(Arena::open(fd, false)?);
        let client = Client {
            arena,
            stream,
            inline_max: welcome.inline_max as usize,
            spin: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            main: std::thread::current().id(),
            id_base: client_id_base(welcome.client_id),
            next_object: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            top_task: AtomicU64::new(0),
            any_cancelled: AtomicBool::new(false),
            peeked_at: AtomicU64::new(0),
            born: Instant::now(),
            closed: AtomicBool::new(false),
            out: Mutex::default(),
            submitted: Condvar::new(),
            input: Mutex::default(),
            shared: Mutex::default(),
            changed: Condvar::new(),
            nested_runner: OnceLock::new(),
            driver: hello.token == 0,
            show_output: AtomicBool::new(true),
        };
        Ok((client, welcome))
    }

    /// Whether a driver writes the worker output the node sends it.
    pub(crate) fn show_output(&self, show: bool) {
        self.show_output.store(show, Ordering::Relaxed);
    }

    pub(crate) fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Whether a value of this layout travels inline rather than in the arena.
    pub(crate) fn is_inline(&self, layout: &Layout) -> bool {
        layout.fits_inline(self.inline_max)
    }

    /// Install what runs tasks sent to the blocked task thread.
    pub(crate) fn set_nested_runner(&self, runner: NestedRunner) {
        let _ = self.nested_runner.set(runner);
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.shared();
        self.changed.notify_all();
        self.submitted.notify_all();
    }

    /// Start the thread that sends a task's submissions when the task makes
    /// no other call within [`SUBMIT_DELAY`] (children start while their
    /// parent computes).
    pub(crate) fn start_flusher(self: &Arc<Self>) -> std::io::Result<()> {
        let client = Arc::downgrade(self);
        std::thread::Builder::new().name("shoal-flush".into()).spawn(move || {
            while let Some(client) = client.upgrade() {
                if !client.flush_submits() {
                    return;
                }
            }
        })?;
        Ok(())
    }

    /// Wait for submissions to wait in `out`, give the task
    /// [`SUBMIT_DELAY`] to send them itself, then send them. False once the
    /// connection closed.
    fn flush_submits(&self) -> bool {
        let mut out = self.out();
        while out.submits == 0 {
            if self.stopped() {
                return false;
            }
            out = self.submitted.wait_timeout(out, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        let since = out.submits_since;
        drop(out);
        std::thread::sleep(SUBMIT_DELAY);
        let mut out = self.out();
        if out.submits > 0 && out.submits_since == since {
            let _ = self.write_out(&mut out);
        }
        !self.stopped()
    }

    fn new_id(&self) -> u64 {
        self.id_base + self.next_object.fetch_add(1, Ordering::Relaxed)
    }

    fn on_task_thread(&self) -> bool {
        std::thread::current().id() == self.main
    }

    /// Write what waits, in one write.
    fn write_out(&self, out: &mut Out) -> Result<()> {
        if !out.acquires.is_empty() {
            let acquires = ToNode::Refs(std::mem::take(&mut out.acquires));
            encode_frame(&acquires, &mut out.buf).expect("encoding to memory");
        }
        out.batched = 0;
        out.batch_since = None;
        out.submits = 0;
        out.submits_since = None;
        if out.buf.is_empty() {
            return Ok(());
        }
        let written = (&self.stream).write_all(&out.buf);
        out.buf.clear();
        if written.is_err() {
            self.close();
            return Err(Error::NodeStopped);
        }
        Ok(())
    }

    /// Write everything queued.
    pub(crate) fn flush(&self) -> Result<()> {
        self.write_out(&mut self.out())
    }

    /// Queue messages behind everything before them and write them all.
    fn send(&self, msgs: &[ToNode]) -> Result<()> {
        let mut out = self.out();
        for msg in msgs {
            out.encode(msg);
        }
        self.write_out(&mut out)
    }

    /// Record a reference change (see the module notes for when it goes).
    pub(crate) fn push_ref_op(&self, op: RefOp) {
        let mut out = self.out();
        match op {
            RefOp::Acquire(_) => out.acquires.push(op),
            RefOp::Release(_) if !out.stack.is_empty() => out.deferred.push(op),
            RefOp::Release(_) => {
                out.encode(&ToNode::Refs(vec![op]));
                // Idle: nothing else would carry it soon, but a driver's
                // next request (or its flusher).
                self.write_or_batch(out);
                return;
            }
        }
        if out.stack.is_empty() {
            let _ = self.write_out(&mut out);
        }
    }

    /// A task starts on the task thread.
    pub(crate) fn begin_task(&self, task: u64) {
        self.out().stack.push(task);
        self.top_task.store(task, Ordering::Release);
    }

    /// The task on top of the task thread ended (its result ready at
    /// `ready`): queue its report, before the releases made while it ran.
    pub(crate) fn end_task(&self, done: ToNode, ready: Instant) {
        if self.any_cancelled.load(Ordering::Acquire) {
            if let ToNode::TaskDone { task, .. } = &done {
                let mut shared = self.shared();
                shared.cancelled.remove(task);
                self.any_cancelled.store(!shared.cancelled.is_empty(), Ordering::Release);
            }
        }
        let mut out = self.out();
        out.stack.pop();
        self.top_task.store(out.stack.last().copied().unwrap_or(0), Ordering::Release);
        out.encode(&done);
        if !out.deferred.is_empty() {
            let releases = ToNode::Refs(std::mem::take(&mut out.deferred));
            out.encode(&releases);
        }
        out.batched += 1;
        out.batch_since.get_or_insert(ready);
    }

    /// Submit a task (`actor`: a call of that actor's method `function`);
    /// returns its output ids (this client holds one reference to each).
    pub(crate) fn submit(
        &self,
        function: &str,
        options: &TaskOptions,
        args: Vec<SubmitArg>,
        num_returns: usize,
        failed: Option<Error>,
        actor: Option<u64>,
    ) -> Vec<u64> {
        let outputs: Vec<u64> = (0..num_returns).map(|_| self.new_id()).collect();
        let parent = Some(self.top_task.load(Ordering::Acquire)).filter(|&t| t != 0 && self.on_task_thread());
        let submit = Submit {
            function: function.to_string(),
            options: options.clone(),
            args,
            outputs: outputs.clone(),
            parent,
            failed,
        };
        let msg = match actor {
            None => ToNode::Submit(submit),
            Some(actor) => ToNode::Call { actor, submit },
        };
        self.queue_submission(&msg);
        outputs
    }

    /// Create an actor of `class`; returns its id (this client holds one
    /// reference to its handle object).
    pub(crate) fn create_actor(
        &self,
        class: &str,
        options: &ActorOptions,
        args: Vec<SubmitArg>,
        failed: Option<Error>,
    ) -> u64 {
        let id = self.new_id();
        let create = CreateActor { id, class: class.to_string(), options: options.clone(), args, failed };
        if self.driver {
            // At once: a named actor outlives a driver that exits right away.
            let _ = self.send(&[ToNode::CreateActor(create)]);
        } else {
            self.queue_submission(&ToNode::CreateActor(create));
        }
        id
    }

    /// The live actor named `name`: its id (with a reference counted for
    /// this client) and class.
    pub(crate) fn get_actor(&self, name: &str) -> Result<(u64, String)> {
        let make = |request| ToNode::GetActor { request, name: name.to_string() };
        match self.request(make, None, Waiting::Reply)? {
            ToClient::ActorFound { found, .. } => found,
            other => Err(unexpected(&other)),
        }
    }

    /// End actor `id` now.
    pub(crate) fn kill_actor(&self, id: u64) -> Result<()> {
        self.send(&[ToNode::KillActor(id)])
    }

    /// Cancel the task producing object `id` (see `node/cancel.rs`).
    pub(crate) fn cancel(&self, id: u64, force: bool) -> Result<()> {
        match self.request(|request| ToNode::Cancel { request, id, force }, None, Waiting::Reply)? {
            ToClient::Cancelled { result, .. } => result,
            other => Err(unexpected(&other)),
        }
    }

    /// Item `index` of the stream ending in `end`, waiting until the
    /// deadline (as a `get` waits: the task thread runs tasks meanwhile):
    /// its id, with a reference counted for this client; `None` after the
    /// last item; or the error that ended the stream.
    pub(crate) fn stream_next(&self, end: u64, index: u64, deadline: Option<Instant>) -> Result<Option<u64>> {
        let (waiting, task) = self.object_wait(deadline);
        match self.request(|request| ToNode::StreamNext { request, stream: end, index, task }, deadline, waiting)? {
            ToClient::StreamItem { item, .. } => item,
            other => Err(unexpected(&other)),
        }
    }

    /// What the node reports about itself.
    pub(crate) fn report(&self) -> Result<NodeStatus> {
        match self.request(|request| ToNode::Status { request }, None, Waiting::Reply)? {
            ToClient::Status { report, .. } => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// The node's `limit` largest objects, with totals.
    pub(crate) fn memory(&self, limit: usize) -> Result<MemoryReport> {
        let limit = limit as u64;
        match self.request(|request| ToNode::Memory { request, limit }, None, Waiting::Reply)? {
            ToClient::Memory { report, .. } => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// The tasks the node finished lately.
    pub(crate) fn timeline(&self) -> Result<Vec<TaskEvent>> {
        match self.request(|request| ToNode::Timeline { request }, None, Waiting::Reply)? {
            ToClient::Timeline { events, .. } => Ok(events),
            other => Err(unexpected(&other)),
        }
    }

    /// A driver is done: everything queued goes, then the connection
    /// closes (the node releases what this process held).
    pub(crate) fn disconnect(&self) {
        let _ = self.flush();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.close();
    }

    /// The consumer of the stream ending in `end` is gone.
    pub(crate) fn stream_close(&self, end: u64) {
        let _ = self.send(&[ToNode::StreamClose(end)]);
    }

    /// Item `index` of streaming task `task`, running here: batched with
    /// the task's submissions, so a burst of items costs few writes.
    ///
    /// The releases the task made so far go right behind it instead of
    /// after its `TaskDone`: they wait there only because an output may
    /// hold those refs, and a streaming task's one output (the count) holds
    /// none, while every item holding one is ahead of them (the node counts
    /// its refs first). So a long stream does not keep what it dropped.
    /// (Tasks run on top of this one sent theirs with their `TaskDone`.)
    pub(crate) fn stream_item(&self, task: u64, index: u64, placed: Placed) {
        let mut out = self.out();
        out.encode(&ToNode::StreamItem { task, index, placed });
        if !out.deferred.is_empty() {
            let releases = ToNode::Refs(std::mem::take(&mut out.deferred));
            out.encode(&releases);
        }
        self.write_or_batch(out);
    }

    /// Streaming task `task`, running here, waits until its consumer has
    /// taken `consumed` items; returns how many it has
    /// ([`STREAM_ENDED`](crate::protocol::STREAM_ENDED): stop). Blocked as
    /// in a `get` (tasks queued here are handed back), but it runs none.
    pub(crate) fn backpressure(&self, task: u64, consumed: u64) -> Result<u64> {
        let make = |request| ToNode::Backpressure { request, task, consumed };
        match self.request(make, None, Waiting::Object { task_thread: false })? {
            ToClient::Resume { consumed, .. } => Ok(consumed),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether task `task`, sent here, was cancelled (it stays so until it
    /// ends).
    pub(crate) fn is_cancelled(&self, task: u64) -> bool {
        self.any_cancelled.load(Ordering::Acquire) && self.shared().cancelled.contains(&task)
    }

    /// Whether the task running on the task thread (on top, if tasks run
    /// on top of blocked ones) was cancelled. The task thread is busy in
    /// the task and no one else may be reading: what has arrived is read
    /// here first, without waiting.
    pub(crate) fn current_cancelled(&self) -> bool {
        let top = self.top_task.load(Ordering::Acquire);
        if top == 0 {
            return false;
        }
        // A task checking in a tight loop reads the socket at most every
        // PEEK_EVERY, not once per check.
        let now = self.born.elapsed().as_nanos() as u64;
        if now.saturating_sub(self.peeked_at.load(Ordering::Relaxed)) >= PEEK_EVERY.as_nanos() as u64 {
            self.peeked_at.store(now, Ordering::Relaxed);
            self.read_arrived();
        }
        self.is_cancelled(top)
    }

    /// Read and deliver what the node has sent so far, unless another
    /// thread is reading; never waits. It takes the reading role meanwhile,
    /// as `read_or_sleep` does, so a thread about to read for its own reply
    /// waits for this delivery instead of sleeping in `poll` for a reply
    /// already taken.
    fn read_arrived(&self) {
        {
            let mut shared = self.shared();
            if shared.reading {
                return;
            }
            shared.reading = true;
        }
        let msgs = self.read_available();
        if !msgs.is_empty() {
            self.deliver(msgs);
        }
        self.shared().reading = false;
        self.changed.notify_all();
    }

    /// What has arrived, read without waiting (the caller has the reading
    /// role).
    fn read_available(&self) -> Vec<std::result::Result<ToClient, shoal_ipc::FrameError>> {
        let mut msgs = Vec::new();
        let Ok(mut frames) = self.input.try_lock() else { return msgs };
        loop {
            while let Some(msg) = frames.next_frame::<ToClient>() {
                msgs.push(msg);
            }
            match frames.fill_from(self.stream.as_fd()) {
                Ok(true) => {}
                Ok(false) => return msgs,
                Err(e) => {
                    tracing::debug!("connection to the node ended: {e}");
                    drop(frames);
                    self.close();
                    return msgs;
                }
            }
        }
    }

    /// Queue a submission (a task, a call, an actor): written at once from
    /// outside a task; from a task's thread, batched with the task's other
    /// submissions (see `start_flusher`). A stopped node fails the
    /// outputs' reads with `NodeStopped`.
    fn queue_submission(&self, msg: &ToNode) {
        let mut out = self.out();
        out.encode(msg);
        self.write_or_batch(out);
    }

    /// A submission was queued in `out`: write it, or batch it — from the
    /// task thread while a task runs, and from a driver's own thread, whose
    /// `get` right after a `remote` then costs one write for both.
    fn write_or_batch(&self, mut out: MutexGuard<'_, Out>) {
        if (out.stack.is_empty() && !self.driver) || !self.on_task_thread() {
            let _ = self.write_out(&mut out);
            return;
        }
        // A task's burst of submissions goes in batches (see `start_flusher`).
        out.submits += 1;
        if out.submits >= SUBMIT_BATCH {
            let _ = self.write_out(&mut out);
        } else if out.submits == 1 {
            out.submits_since = Some(Instant::now());
            self.submitted.notify_one();
        }
    }

    /// Place a value measured as `layout`: inline, or written into an arena
    /// allocation. On failure nothing stays allocated.
    pub(crate) fn place<E: Into<Error>>(
        &self,
        layout: Layout,
        write: impl FnOnce(&Layout, &mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<Placed> {
        let refs = layout.contained_refs().to_vec();
        if self.is_inline(&layout) {
            let bytes = layout.into_inline().expect("inline layouts hold no arrays");
            return Ok(Placed::Inline { bytes, refs });
        }
        let len = layout.total_len() as u64;
        let offset = self.allocate(len)?;
        // SAFETY: (1) the node allocated `offset..offset+len` to this client
        // alone and publishes it to no one until this client seals it; (2)
        // this is the only reference to those bytes in this process.
        let written = match unsafe { self.arena.bytes_mut(offset, len) } {
            // `write` runs user code (`Serialize`): a panic gives the
            // allocation back on its way out.
            Ok(dst) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&layout, dst))) {
                Ok(written) => written.map_err(Into::into),
                Err(panic) => {
                    let _ = self.send(&[ToNode::Abandon(vec![offset])]);
                    std::panic::resume_unwind(panic);
                }
            },
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            let _ = self.send(&[ToNode::Abandon(vec![offset])]);
            return Err(e);
        }
        Ok(Placed::Arena { offset, len, refs })
    }

    /// Store an object of `layout` that `write` writes; returns its id (this
    /// client holds one reference).
    pub(crate) fn put(&self, layout: Layout, write: impl FnOnce(&Layout, &mut [u8]) -> Result<()>) -> Result<u64> {
        if self.stopped() {
            return Err(Error::NodeStopped);
        }
        let placed = self.place(layout, write)?;
        let id = self.new_id();
        self.send(&[ToNode::Put { id, placed }])?;
        Ok(id)
    }

    /// Store an already encoded object holding no arrays.
    pub(crate) fn put_bytes(&self, bytes: &[u8], refs: Vec<u64>) -> Result<u64> {
        if self.stopped() {
            return Err(Error::NodeStopped);
        }
        let len = bytes.len() as u64;
        let offset = self.allocate(len)?;
        // SAFETY: as in `place`: the allocation is this client's alone and
        // unpublished.
        match unsafe { self.arena.bytes_mut(offset, len) } {
            Ok(dst) => dst.copy_from_slice(bytes),
            Err(e) => {
                let _ = self.send(&[ToNode::Abandon(vec![offset])]);
                return Err(e.into());
            }
        }
        let id = self.new_id();
        self.send(&[ToNode::Put { id, placed: Placed::Arena { offset, len, refs } }])?;
        Ok(id)
    }

    fn allocate(&self, size: u64) -> Result<u64> {
        match self.request(|request| ToNode::Allocate { request, size }, None, Waiting::Reply)? {
            ToClient::Allocated { result, .. } => result,
            other => Err(unexpected(&other)),
        }
    }

    /// Wait until object `id` is sealed (or failed); returns its contents
    /// and the objects it contains, each with one reference counted for
    /// this client.
    pub(crate) fn get(&self, id: u64, deadline: Option<Instant>, timeout: Duration) -> Result<(ObjectData, Vec<u64>)> {
        let (waiting, task) = self.object_wait(deadline);
        match self.request(|request| ToNode::Get { request, id, task }, deadline, waiting) {
            Ok(ToClient::Object { data, contained, .. }) => Ok((data, contained)),
            Ok(other) => Err(unexpected(&other)),
            Err(Error::Timeout(_)) => Err(Error::Timeout(timeout)),
            Err(e) => Err(e),
        }
    }

    /// [`get`](Self::get) for many objects: one `wait` for all of them
    /// (which runs tasks meanwhile, as `get` does), then their contents in
    /// one write of requests the node answers at once.
    pub(crate) fn get_many(&self, ids: &[u64]) -> Result<Vec<(ObjectData, Vec<u64>)>> {
        self.wait(ids, ids.len(), None)?;
        let first = self.next_request.fetch_add(ids.len() as u64, Ordering::Relaxed);
        let requests = first..first + ids.len() as u64;
        self.shared().waiting.extend(requests.clone());
        let msgs: Vec<ToNode> =
            requests.clone().zip(ids).map(|(request, &id)| ToNode::Get { request, id, task: None }).collect();
        if let Err(e) = self.send(&msgs) {
            requests.for_each(|r| self.end_request(r, Waiting::Reply));
            return Err(e);
        }
        let mut found = Vec::with_capacity(ids.len());
        for request in requests.clone() {
            match self.await_reply(request, None, Waiting::Reply) {
                Ok(ToClient::Object { data, contained, .. }) => found.push((data, contained)),
                other => {
                    // What is still coming is answered to no one.
                    (request + 1..requests.end).for_each(|r| self.end_request(r, Waiting::Reply));
                    let contained = found.into_iter().flat_map(|(_, c)| c).collect::<Vec<_>>();
                    contained.into_iter().for_each(|id| self.push_ref_op(RefOp::Release(id)));
                    return Err(match other {
                        Ok(reply) => unexpected(&reply),
                        Err(e) => e,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Wait until `num` of `ids` are sealed or failed, or the deadline
    /// passes; returns the positions of the first `num` ready (fewer after
    /// the deadline).
    pub(crate) fn wait(&self, ids: &[u64], num: usize, deadline: Option<Instant>) -> Result<Vec<usize>> {
        let (waiting, task) = self.object_wait(deadline);
        let wait = |num: usize, limit: usize| {
            let ids = ids.to_vec();
            move |request| ToNode::Wait { request, ids, num: num as u32, limit: limit as u32, task }
        };
        let reply = match self.request(wait(num, num), deadline, waiting) {
            // What is ready by now.
            Err(Error::Timeout(_)) => self.request(wait(0, num), None, Waiting::Reply)?,
            other => other?,
        };
        match reply {
            ToClient::Ready { positions, .. } => Ok(positions.into_iter().map(|p| p as usize).collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// How a `get` or `wait` from this thread waits, and the task it
    /// blocks on the task thread, if the node may send tasks to run on top
    /// of it meanwhile: only without a deadline (a task run on top of a
    /// timed wait could outlast it).
    fn object_wait(&self, deadline: Option<Instant>) -> (Waiting, Option<u64>) {
        let top = self.top_task.load(Ordering::Acquire);
        let task_thread = self.on_task_thread() && top != 0;
        (Waiting::Object { task_thread }, (task_thread && deadline.is_none()).then_some(top))
    }

    /// Send the request `make(request)` (after everything queued) and wait
    /// for its reply (see the module notes for `waiting`).
    fn request(
        &self,
        make: impl FnOnce(u64) -> ToNode,
        deadline: Option<Instant>,
        waiting: Waiting,
    ) -> Result<ToClient> {
        if self.stopped() {
            return Err(Error::NodeStopped);
        }
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let handed_back = {
            let mut shared = self.shared();
            shared.waiting.insert(request);
            match waiting {
                Waiting::Reply => Vec::new(),
                Waiting::Object { task_thread } => {
                    shared.blocked += 1;
                    Self::block_in(&mut shared, task_thread.then_some(request))
                }
            }
        };
        let mut msgs = Vec::with_capacity(2);
        if !handed_back.is_empty() {
            msgs.push(ToNode::Requeue(handed_back));
        }
        msgs.push(make(request));
        if let Err(e) = self.send(&msgs) {
            self.end_request(request, waiting);
            return Err(e);
        }
        self.await_reply(request, deadline, waiting)
    }

    /// A thread blocks (the task thread, in `request`): returns the tasks
    /// queued here, to hand back — ordinary ones (one may be what it waits
    /// for), and tasks sent to run on top of an outer request of the task
    /// thread (they could not run before this request ends).
    fn block_in(shared: &mut Shared, request: Option<u64>) -> Vec<u64> {
        let mut handed_back: Vec<u64> = shared.executes.drain(..).map(|e| e.task).collect();
        if let Some(request) = request {
            shared.main_open.push(request);
            handed_back.extend(shared.nested.drain(..).map(|e| e.task));
        }
        Self::forget_cancelled(shared, &handed_back);
        handed_back
    }

    /// Tasks handed back will not run here: their cancellation is the
    /// node's business now.
    fn forget_cancelled(shared: &mut Shared, tasks: &[u64]) {
        if !shared.cancelled.is_empty() {
            tasks.iter().for_each(|t| {
                shared.cancelled.remove(t);
            });
        }
    }

    /// Stop waiting for `request`; hand back nested tasks still queued for it.
    fn end_request(&self, request: u64, waiting: Waiting) {
        let (handed_back, dropped): (Vec<u64>, Option<ToClient>) = {
            let mut shared = self.shared();
            shared.waiting.remove(&request);
            // A reply that came in after its waiter gave up.
            let dropped = shared.replies.remove(&request);
            let Waiting::Object { task_thread } = waiting else {
                drop(shared);
                self.release_contained(dropped);
                return;
            };
            shared.blocked -= 1;
            if !task_thread {
                drop(shared);
                self.release_contained(dropped);
                return;
            }
            shared.main_open.retain(|&r| r != request);
            let handed_back: Vec<u64> = shared.nested.drain(..).map(|e| e.task).collect();
            Self::forget_cancelled(&mut shared, &handed_back);
            (handed_back, dropped)
        };
        self.release_contained(dropped);
        if !handed_back.is_empty() {
            let _ = self.send(&[ToNode::Requeue(handed_back)]);
        }
    }

    /// Release the references the node counted for a reply no one reads.
    fn release_contained(&self, reply: Option<ToClient>) {
        reply.into_iter().flat_map(counted_refs).for_each(|id| self.push_ref_op(RefOp::Release(id)));
    }

    fn await_reply(&self, request: u64, deadline: Option<Instant>, waiting: Waiting) -> Result<ToClient> {
        let mut shared = self.shared();
        let mut ran_nested = false;
        loop {
            if let Some(reply) = shared.replies.remove(&request) {
                drop(shared);
                self.end_request(request, waiting);
                if ran_nested {
                    // The results of tasks run meanwhile go now, not with
                    // whatever this task sends next.
                    let _ = self.flush();
                }
                return Ok(reply);
            }
            if self.stopped() {
                drop(shared);
                self.end_request(request, waiting);
                return Err(Error::NodeStopped);
            }
            if waiting == (Waiting::Object { task_thread: true }) {
                // Tasks sent to run on top of this wait (see `block_in`).
                if let Some(execute) = shared.nested.pop_front() {
                    drop(shared);
                    debug_assert_eq!(execute.nested, Some(request));
                    if let Some(run) = self.nested_runner.get() {
                        run(execute);
                    }
                    ran_nested = true;
                    shared = self.shared();
                    continue;
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                drop(shared);
                self.end_request(request, waiting);
                let _ = self.send(&[ToNode::Forget { request }]);
                return Err(Error::Timeout(Duration::ZERO));
            }
            // About to wait: nothing this process owes the node waits with it.
            drop(shared);
            let _ = self.flush();
            shared = self.shared();
            let runs_nested = waiting == (Waiting::Object { task_thread: true });
            if shared.replies.contains_key(&request) || (runs_nested && !shared.nested.is_empty()) {
                continue;
            }
            shared = self.read_or_sleep(shared, deadline);
        }
    }

    /// Take the reading role and read (until something arrives or the
    /// deadline), or, if another thread reads, sleep until it hands
    /// something over or the deadline passes. Returns the lock again.
    fn read_or_sleep<'a>(
        &'a self,
        mut shared: MutexGuard<'a, Shared>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Shared> {
        if !shared.reading {
            shared.reading = true;
            drop(shared);
            self.read_input(deadline);
            let mut shared = self.shared();
            shared.reading = false;
            self.changed.notify_all();
            return shared;
        }
        match deadline {
            None => self.changed.wait(shared).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                self.changed.wait_timeout(shared, left).unwrap_or_else(|e| e.into_inner()).0
            }
        }
    }

    /// For the task loop: the next ordinary task, waiting (and reading) for
    /// one; `None` once the node says stop or goes away.
    pub(crate) fn next_execute(&self) -> Option<Execute> {
        let mut shared = self.shared();
        loop {
            if self.stopped() {
                return None;
            }
            if let Some(execute) = shared.executes.pop_front() {
                return Some(execute);
            }
            shared = self.read_or_sleep(shared, None);
        }
    }

    /// For the task loop: an ordinary task already received (or whole in
    /// the input buffer), without reading the socket.
    pub(crate) fn buffered_execute(&self) -> Option<Execute> {
        if let Some(execute) = self.shared().executes.pop_front() {
            return Some(execute);
        }
        let msgs = {
            let Ok(mut frames) = self.input.try_lock() else { return None };
            let mut msgs = Vec::new();
            while let Some(msg) = frames.next_frame::<ToClient>() {
                msgs.push(msg);
            }
            msgs
        };
        if msgs.is_empty() {
            return None;
        }
        self.deliver(msgs);
        self.shared().executes.pop_front()
    }

    /// The reading role: read what arrives (watching the socket for
    /// [`SPIN`] first, then sleeping in `poll` until the deadline) and
    /// deliver it.
    fn read_input(&self, deadline: Option<Instant>) {
        let mut msgs = Vec::new();
        {
            let mut frames = self.input.lock().unwrap_or_else(|e| e.into_inner());
            let fd = self.stream.as_fd();
            let started = Instant::now();
            loop {
                while let Some(msg) = frames.next_frame::<ToClient>() {
                    msgs.push(msg);
                }
                if !msgs.is_empty() {
                    break;
                }
                match frames.fill_from(fd) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!("connection to the node ended: {e}");
                        self.close();
                        return;
                    }
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                if self.spin && now - started < SPIN {
                    std::thread::yield_now();
                    continue;
                }
                let timeout = match deadline {
                    None => PollTimeout::NONE,
                    Some(d) => PollTimeout::try_from((d - now).as_millis().saturating_add(1).min(60_000) as u64)
                        .unwrap_or(PollTimeout::MAX),
                };
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                if let Err(e) = poll(&mut fds, timeout) {
                    if e != nix::errno::Errno::EINTR {
                        self.close();
                        return;
                    }
                }
            }
        }
        self.deliver(msgs);
    }

    /// Hand each message to whom it is for, and wake them.
    fn deliver(&self, msgs: Vec<std::result::Result<ToClient, shoal_ipc::FrameError>>) {
        let mut cancel_running = Vec::new();
        let mut handed_back = Vec::new();
        let mut orphans = Vec::new();
        let mut output: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut stop = false;
        {
            let mut shared = self.shared();
            for msg in msgs {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => {
                        tracing::error!("malformed message from the node: {e}");
                        stop = true;
                        break;
                    }
                };
                match msg {
                    ToClient::Execute(execute) => match execute.nested {
                        Some(r) if shared.main_open.last() == Some(&r) => shared.nested.push_back(execute),
                        Some(_) => handed_back.push(execute.task),
                        None if shared.blocked > 0 => handed_back.push(execute.task),
                        None => shared.executes.push_back(execute),
                    },
                    ToClient::Shutdown => stop = true,
                    ToClient::Output { stderr, bytes } => output.push((stderr, bytes)),
                    ToClient::Cancel { task } => {
                        let queued = |e: &Execute| e.task == task;
                        if shared.executes.iter().any(queued) || shared.nested.iter().any(queued) {
                            shared.cancelled.insert(task);
                            self.any_cancelled.store(true, Ordering::Release);
                        } else {
                            // Running here, or already done (then forgotten).
                            cancel_running.push(task);
                        }
                    }
                    reply => {
                        let request = reply.request().unwrap_or(u64::MAX);
                        if shared.waiting.contains(&request) {
                            shared.replies.insert(request, reply);
                        } else {
                            // Answered after its waiter gave up.
                            orphans.extend(counted_refs(reply));
                        }
                    }
                }
            }
            self.changed.notify_all();
        }
        if self.show_output.load(Ordering::Relaxed) {
            // Outside the lock: a slow terminal holds up no waiter.
            use std::io::Write;
            for (stderr, bytes) in output {
                let _ = if stderr {
                    std::io::stderr().lock().write_all(&bytes)
                } else {
                    std::io::stdout().lock().write_all(&bytes)
                };
            }
        }
        if !cancel_running.is_empty() {
            // A running task is on the task thread's stack: kept until it
            // ends (`end_task`). (Lock order: `out`, then `shared`.)
            let out = self.out();
            let mut shared = self.shared();
            for task in cancel_running.into_iter().filter(|t| out.stack.contains(t)) {
                shared.cancelled.insert(task);
                self.any_cancelled.store(true, Ordering::Release);
            }
        }
        if !handed_back.is_empty() {
            let _ = self.send(&[ToNode::Requeue(handed_back)]);
        }
        for id in orphans {
            self.push_ref_op(RefOp::Release(id));
        }
        if stop {
            self.close();
        }
    }
}

/// The references the node counted for this client in a reply.
fn counted_refs(reply: ToClient) -> Vec<u64> {
    match reply {
        ToClient::Object { contained, .. } => contained,
        ToClient::StreamItem { item: Ok(Some(id)), .. } => vec![id],
        _ => Vec::new(),
    }
}

fn unexpected(reply: &ToClient) -> Error {
    Error::Serialization(format!("unexpected reply from the node: {reply:?}"))
}
