//! A client that passed the handshake and then misbehaves: malformed,
//! truncated, oversized and protocol-violating frames on the node's socket,
//! and corrupt objects sealed into the arena. Each time only that connection
//! is dropped; the node keeps serving, and its object count and store use
//! come back to where they were.
//!
//! The test speaks the wire protocol itself. `shoal`'s protocol types are
//! private to the engine, so [`wire`] mirrors them (postcard encodes by field
//! and variant order, not by name), reusing the public `shoal::Error` and
//! `shoal::TaskOptions`. Every scenario first makes a round trip that only a
//! correctly encoded message gets answered, so a mirror that drifted from
//! the engine fails the test instead of passing for the wrong reason.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ndarray::Array1;
use shoal::{Error, ObjectRef};
use shoal_ipc::handshake::HELLO_MAGIC;
use shoal_ipc::{FrameReader, HandshakeReply, Hello, PROTOCOL_VERSION, encode_frame};

use wire::{CreateActor, ObjectData, Placed, RefOp, Submit, ToClient, ToNode};

/// Mirrors of `engine/src/protocol.rs` (and `status.rs`'s `NodeReport`),
/// field for field, variant for variant.
mod wire {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub enum RefOp {
        Acquire(u64),
        Release(u64),
    }

    // postcard writes `Vec<u8>` and serde_bytes' bytes identically.
    #[derive(Debug, Serialize, Deserialize)]
    pub enum Placed {
        Inline { bytes: Vec<u8>, refs: Vec<u64> },
        Arena { offset: u64, len: u64, refs: Vec<u64> },
        Failed(shoal::Error),
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub enum SubmitArg {
        Inline { bytes: Vec<u8>, fingerprint: u64, refs: Vec<u64> },
        Object { id: u64, fingerprint: u64 },
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Submit {
        pub function: String,
        pub options: shoal::TaskOptions,
        pub args: Vec<SubmitArg>,
        pub outputs: Vec<u64>,
        pub parent: Option<u64>,
        pub failed: Option<shoal::Error>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct CreateActor {
        pub id: u64,
        pub class: String,
        pub options: shoal::ActorOptions,
        pub args: Vec<SubmitArg>,
        pub failed: Option<shoal::Error>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub enum ToNode {
        Refs(Vec<RefOp>),
        Allocate { request: u64, size: u64 },
        Abandon(Vec<u64>),
        TaskDone { task: u64, outputs: Vec<Placed>, elapsed_ns: u64 },
        Submit(Submit),
        Put { id: u64, placed: Placed },
        Get { request: u64, id: u64, task: Option<u64> },
        Wait { request: u64, ids: Vec<u64>, num: u32, limit: u32, task: Option<u64> },
        Forget { request: u64 },
        Requeue(Vec<u64>),
        CreateActor(CreateActor),
        Call { actor: u64, submit: Submit },
        GetActor { request: u64, name: String },
        KillActor(u64),
        Cancel { request: u64, id: u64, force: bool },
        StreamItem { task: u64, index: u64, placed: Placed },
        StreamNext { request: u64, stream: u64, index: u64, task: Option<u64> },
        StreamClose(u64),
        Backpressure { request: u64, task: u64, consumed: u64 },
        Status { request: u64 },
        Memory { request: u64, limit: u64 },
        Timeline { request: u64 },
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub enum ArgData {
        Inline { bytes: Vec<u8>, fingerprint: u64 },
        Arena { id: u64, offset: u64, len: u64, fingerprint: u64 },
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Execute {
        pub task: u64,
        pub function: String,
        pub args: Vec<ArgData>,
        pub nested: Option<u64>,
        pub backpressure: Option<u32>,
        pub owner: u64,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub enum ObjectData {
        Inline(Vec<u8>),
        Arena { offset: u64, len: u64 },
        Failed(shoal::Error),
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub enum ToClient {
        Execute(Execute),
        Allocated { request: u64, result: Result<u64, shoal::Error> },
        Object { request: u64, data: ObjectData, contained: Vec<u64> },
        Ready { request: u64, positions: Vec<u32> },
        Shutdown,
        ActorFound { request: u64, found: Result<(u64, String), shoal::Error> },
        Cancelled { request: u64, result: Result<(), shoal::Error> },
        Cancel { task: u64 },
        StreamItem { request: u64, item: Result<Option<u64>, shoal::Error> },
        Resume { request: u64, consumed: u64 },
        Status { request: u64, report: shoal::NodeStatus },
        Memory { request: u64, report: shoal::MemoryReport },
        Output { stderr: bool, bytes: Vec<u8> },
        Timeline { request: u64, events: Vec<shoal::TaskEvent> },
    }
}

#[shoal::remote]
fn increment(n: i64) -> i64 {
    n + 1
}

#[shoal::remote]
fn forty_two() -> u64 {
    42
}

#[shoal::remote]
fn plus_one(n: u64) -> u64 {
    n + 1
}

#[shoal::remote]
fn sum(a: Array1<f64>) -> f64 {
    a.sum()
}

/// Blocks until the test writes a byte to the socket at `path`, and returns
/// it: a task that stays pending exactly as long as the test wants.
#[shoal::remote]
fn gate(path: String) -> u64 {
    let mut stream = UnixStream::connect(path).expect("connect to the test's gate");
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).expect("read the gate byte");
    u64::from(byte[0])
}

/// Yields 1, then blocks until the test writes a byte to the socket at
/// `path` (as [`gate`]), then yields 2.
#[shoal::remote(streaming)]
fn gated_stream(path: String) -> impl Iterator<Item = u64> {
    (1..=2).inspect(move |&i| {
        if i == 2 {
            gate(path.clone());
        }
    })
}

/// An actor a hostile client creates and calls.
struct Echo {
    calls: u64,
}

#[shoal::actor]
impl Echo {
    pub fn new() -> Self {
        Echo { calls: 0 }
    }

    pub fn echo(&mut self, n: u64) -> u64 {
        self.calls += 1;
        n + self.calls
    }
}

const WORKERS: usize = 2;
/// How long a misbehaving client may stay connected, and how long any
/// answer or clean-up may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn node() -> &'static shoal::Shoal {
    static NODE: OnceLock<shoal::Shoal> = OnceLock::new();
    NODE.get_or_init(|| {
        shoal::init(shoal::Config::default().workers(WORKERS).store_bytes(64 << 20)).expect("start the test node")
    })
}

/// The scenarios compare object counts and store use: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `registry::build_hash` as the engine computes it (its inputs are public
/// through `shoal::__private`): the node welcomes only this binary's hash.
fn build_hash() -> u64 {
    let mut functions: Vec<(&str, u64)> =
        shoal::__private::REMOTE_FUNCTIONS.iter().map(|f| (f.name, f.source_hash)).collect();
    functions.sort_unstable();
    let mut h = std::hash::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    PROTOCOL_VERSION.hash(&mut h);
    functions.hash(&mut h);
    h.finish()
}

fn function_name(short: &str) -> String {
    let suffix = format!("::{short}");
    shoal::__private::REMOTE_FUNCTIONS
        .iter()
        .map(|f| f.name)
        .find(|n| n.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no remote function {short}"))
        .to_string()
}

/// A client that completed a real handshake and speaks frames by hand.
struct Hostile {
    stream: UnixStream,
    reader: FrameReader<UnixStream>,
    /// The arena, as the node passed it at the handshake.
    arena: File,
    id_base: u64,
    next_id: u64,
    next_request: u64,
}

impl Hostile {
    fn connect() -> Hostile {
        assert_eq!(PROTOCOL_VERSION, 6, "the protocol changed: bring `wire` in step with engine/src/protocol.rs");
        let stream = UnixStream::connect(node().socket_path()).expect("connect to the node socket");
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("write timeout");
        let mut table: Vec<(String, u64)> =
            shoal::__private::REMOTE_FUNCTIONS.iter().map(|f| (f.name.to_string(), f.source_hash)).collect();
        table.sort();
        table.dedup();
        let hello = Hello {
            magic: HELLO_MAGIC,
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            build: build_hash(),
            token: 0,
            table,
        };
        let mut bytes = Vec::new();
        encode_frame(&hello, &mut bytes).expect("encode Hello");
        (&stream).write_all(&bytes).expect("write Hello");
        let reply: HandshakeReply = FrameReader::with_cap(&stream, 1 << 20).read().expect("handshake reply");
        let HandshakeReply::Welcome(welcome) = reply else { panic!("the node refused a correct Hello: {reply:?}") };
        let arena = File::from(shoal_ipc::fdpass::recv_fd(&stream).expect("the arena fd"));
        let id_base = (1 << 63) | (u64::from(welcome.client_id & 0x7f_ffff) << 40);
        let reader = FrameReader::new(stream.try_clone().expect("clone the stream"));
        Hostile { stream, reader, arena, id_base, next_id: 1, next_request: 1 }
    }

    /// A fresh object id in this client's range.
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.id_base + self.next_id
    }

    fn send(&mut self, msgs: &[ToNode]) {
        let mut bytes = Vec::new();
        for msg in msgs {
            encode_frame(msg, &mut bytes).expect("encode a message");
        }
        self.send_raw(&bytes);
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // The node may close before it has read everything.
        let _ = self.stream.write_all(bytes);
    }

    /// The next reply, skipping tasks and shutdown notices (the node counts
    /// this client among its workers); `None` if the node closed the
    /// connection instead.
    fn reply(&mut self) -> Option<ToClient> {
        loop {
            match self.reader.read::<ToClient>() {
                Ok(ToClient::Execute(_) | ToClient::Shutdown | ToClient::Output { .. }) => continue,
                Ok(reply) => return Some(reply),
                Err(shoal_ipc::FrameError::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    panic!("no reply from the node within {PATIENCE:?}")
                }
                Err(_) => return None,
            }
        }
    }

    /// Allocate `size` bytes of arena; panics unless the node answers.
    fn allocate(&mut self, size: u64) -> u64 {
        let request = self.request();
        self.send(&[ToNode::Allocate { request, size }]);
        match self.reply() {
            Some(ToClient::Allocated { request: r, result: Ok(offset) }) if r == request => offset,
            other => panic!("allocation of {size} bytes: {other:?}"),
        }
    }

    /// The node's answer to a `Get` of `id`.
    fn get(&mut self, id: u64) -> ObjectData {
        let request = self.request();
        self.send(&[ToNode::Get { request, id, task: None }]);
        match self.reply() {
            Some(ToClient::Object { request: r, data, .. }) if r == request => data,
            other => panic!("get of {id}: {other:?}"),
        }
    }

    /// A round trip: everything sent before it has been handled, and the
    /// connection is still open.
    fn sync(&mut self) {
        let request = self.request();
        // An id of its own range it never used: answered at once (not found).
        let id = self.id_base;
        self.send(&[ToNode::Get { request, id, task: None }]);
        match self.reply() {
            Some(ToClient::Object { request: r, .. }) if r == request => {}
            other => panic!("the connection should be open and in step: {other:?}"),
        }
    }

    fn request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Expect the node to close the connection within [`PATIENCE`],
    /// whatever it sends first.
    fn expect_closed(self, what: &str) {
        let Hostile { mut stream, .. } = self;
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("{what}: connection still open after {:?}", started.elapsed())
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Reset by the node: closed too.
                Err(_) => return,
            }
            assert!(started.elapsed() < PATIENCE, "{what}: connection still open after {:?}", started.elapsed());
        }
    }
}

/// What the node holds before a scenario.
struct Baseline {
    objects: usize,
    used: u64,
}

impl Baseline {
    fn take() -> Baseline {
        let node = node();
        Baseline { objects: node.object_count(), used: node.store_used_bytes() }
    }

    /// After the hostile connection ended: the node reclaimed everything it
    /// held (which happens just after the socket closes), still has its
    /// workers, and still runs tasks and puts.
    fn check_restored(&self, after: &str) {
        let node = node();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = (node.object_count(), node.store_used_bytes(), node.live_workers());
            if now == (self.objects, self.used, WORKERS) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after {after}: (objects, store bytes, workers) = {now:?}, expected {:?}",
                (self.objects, self.used, WORKERS)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = increment::remote(41);
        assert_eq!(shoal::get_timeout(&r, PATIENCE).expect("a task after a bad client"), 42, "after {after}");
        let big = shoal::put(Array1::from_elem(50_000, 1.5f64)).expect("a put after a bad client");
        assert_eq!(shoal::get_timeout(&sum::remote(&big), PATIENCE).expect("a task on it"), 75_000.0, "after {after}");
        drop((r, big));
        let deadline = Instant::now() + PATIENCE;
        while (node.object_count(), node.store_used_bytes()) != (self.objects, self.used) {
            assert!(Instant::now() < deadline, "after {after}: the checks' own objects were not freed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A ref the driver makes from a raw id it was told (ids are not secret).
fn forge<T>(id: u64) -> ObjectRef<T> {
    postcard::from_bytes(&postcard::to_stdvec(&id).expect("encode an id")).expect("a ref from an id")
}

fn frame(len: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn a_client_that_follows_the_protocol_is_served() {
    let _serial = serial();
    let base = Baseline::take();
    let mut client = Hostile::connect();
    // A submitted task runs, and the driver reads its output by id.
    let out = client.fresh_id();
    let submit = Submit {
        function: function_name("forty_two"),
        options: shoal::TaskOptions::default(),
        args: Vec::new(),
        outputs: vec![out],
        parent: None,
        failed: None,
    };
    client.send(&[ToNode::Submit(submit)]);
    client.sync();
    let seen: ObjectRef<u64> = forge(out);
    assert_eq!(shoal::get_timeout(&seen, PATIENCE).expect("the client's task"), 42);
    // An allocation it gives back.
    let offset = client.allocate(4096);
    client.send(&[ToNode::Abandon(vec![offset])]);
    client.sync();
    drop(seen);
    client.send(&[ToNode::Refs(vec![RefOp::Release(out)])]);
    client.sync();
    drop(client);
    base.check_restored("a well-behaved client");
}

#[test]
fn malformed_truncated_and_oversized_frames_drop_only_that_client() {
    let _serial = serial();
    let base = Baseline::take();

    // A valid length, then a body that is no message (variant 0xFF...).
    let mut c = Hostile::connect();
    c.sync();
    c.send_raw(&frame(8, &[0xFF; 8]));
    c.expect_closed("a malformed body");
    base.check_restored("a malformed body");

    // A valid message with bytes after it inside its frame.
    let mut c = Hostile::connect();
    let mut bytes = Vec::new();
    encode_frame(&ToNode::Forget { request: 5 }, &mut bytes).unwrap();
    bytes[0] += 3;
    bytes.extend_from_slice(&[0, 0, 0]);
    c.send_raw(&bytes);
    c.expect_closed("trailing bytes in a frame");
    base.check_restored("trailing bytes in a frame");

    // Valid frames, then junk in the same write: the valid ones are handled
    // (the allocation is made and reclaimed), then the connection drops.
    let mut c = Hostile::connect();
    let mut bytes = Vec::new();
    encode_frame(&ToNode::Allocate { request: 9, size: 1 << 20 }, &mut bytes).unwrap();
    bytes.extend_from_slice(&frame(3, &[0xEE, 0xEE, 0xEE]));
    c.send_raw(&bytes);
    c.expect_closed("junk after a valid frame");
    base.check_restored("junk after a valid frame");

    // Half a frame, then end of stream.
    let mut c = Hostile::connect();
    c.sync();
    let mut bytes = Vec::new();
    encode_frame(&ToNode::Requeue(vec![1, 2, 3, 4, 5, 6, 7, 8]), &mut bytes).unwrap();
    c.send_raw(&bytes[..bytes.len() / 2]);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    c.expect_closed("a frame cut short by end of stream");
    base.check_restored("a truncated frame");

    // Lengths over the 64 MiB cap: refused at the prefix, not waited for.
    for len in [(64 << 20) + 1, u32::MAX] {
        let mut c = Hostile::connect();
        c.sync();
        c.send_raw(&frame(len, b"shoal"));
        c.expect_closed(&format!("a {len}-byte frame"));
        base.check_restored("an oversized frame");
    }
}

#[test]
fn protocol_violations_drop_only_that_client() {
    let _serial = serial();
    let base = Baseline::take();
    let increment_name = function_name("increment");
    let kept = shoal::put(7u64).unwrap();
    let base_with_kept = Baseline::take();

    // A finished task it was never sent.
    let mut c = Hostile::connect();
    c.sync();
    let outputs = vec![Placed::Inline { bytes: vec![1, 2, 3], refs: Vec::new() }];
    c.send(&[ToNode::TaskDone { task: 1 << 40, outputs, elapsed_ns: 1 }]);
    c.expect_closed("TaskDone of a task never sent");
    base_with_kept.check_restored("TaskDone of a task never sent");

    // A seal of an offset it was never given, then of one beyond its allocation.
    let mut c = Hostile::connect();
    let offset = c.allocate(4096);
    let id = c.fresh_id();
    c.send(&[ToNode::Put { id, placed: Placed::Arena { offset: offset + 64, len: 64, refs: Vec::new() } }]);
    c.expect_closed("Put at an offset never allocated");
    base_with_kept.check_restored("Put at an offset never allocated");
    let mut c = Hostile::connect();
    let offset = c.allocate(4096);
    let id = c.fresh_id();
    c.send(&[ToNode::Put { id, placed: Placed::Arena { offset, len: 1 << 20, refs: Vec::new() } }]);
    c.expect_closed("Put overrunning its allocation");
    base_with_kept.check_restored("Put overrunning its allocation");

    // The same id sealed twice: the first object stays the client's until
    // its connection drops, and is then freed.
    let mut c = Hostile::connect();
    let id = c.fresh_id();
    let put = |bytes: Vec<u8>| ToNode::Put { id, placed: Placed::Inline { bytes, refs: Vec::new() } };
    c.send(&[put(vec![1])]);
    c.sync();
    assert_eq!(node().object_count(), base_with_kept.objects + 1);
    c.send(&[put(vec![2])]);
    c.expect_closed("a second Put of one id");
    base_with_kept.check_restored("a second Put of one id");

    // Ids outside its own range: another client's, the node's, a reused one.
    let submit = |outputs: Vec<u64>| {
        ToNode::Submit(Submit {
            function: increment_name.clone(),
            options: shoal::TaskOptions::default(),
            args: Vec::new(),
            outputs,
            parent: None,
            failed: None,
        })
    };
    for (what, outputs) in [
        ("a node id", vec![kept.id()]),
        ("a fresh node-range id", vec![kept.id() + (1 << 30)]),
        ("another client's id", vec![(1 << 63) | (0x7f_0000 << 40) | 5]),
        ("no outputs", vec![]),
    ] {
        let mut c = Hostile::connect();
        c.sync();
        c.send(&[submit(outputs)]);
        c.expect_closed(&format!("Submit with {what}"));
        base_with_kept.check_restored(&format!("Submit with {what}"));
    }
    // A resource amount the builder never makes (negative, NaN) would let
    // other tasks oversubscribe it, or never run: the encoding of 1.5 is
    // patched in the frame.
    for (what, patched) in [("a negative resource amount", -1.5f64), ("a NaN resource amount", f64::NAN)] {
        let mut c = Hostile::connect();
        c.sync();
        let mut msg = submit(vec![c.fresh_id()]);
        if let ToNode::Submit(s) = &mut msg {
            s.options = shoal::TaskOptions::default().resource("gpu", 1.5);
        }
        let mut bytes = Vec::new();
        encode_frame(&msg, &mut bytes).expect("encode a message");
        let at = bytes.windows(8).position(|w| w == 1.5f64.to_le_bytes()).expect("the amount is in the frame");
        bytes[at..at + 8].copy_from_slice(&patched.to_le_bytes());
        c.send_raw(&bytes);
        c.expect_closed(&format!("Submit with {what}"));
        base_with_kept.check_restored(&format!("Submit with {what}"));
    }
    let mut c = Hostile::connect();
    let id = c.fresh_id();
    c.send(&[ToNode::Put { id, placed: Placed::Inline { bytes: vec![0], refs: Vec::new() } }]);
    c.sync();
    c.send(&[ToNode::Put { id: kept.id(), placed: Placed::Inline { bytes: vec![0], refs: Vec::new() } }]);
    c.expect_closed("Put of a node id");
    base_with_kept.check_restored("Put of a node id");
    assert_eq!(shoal::get(&kept).unwrap(), 7, "the node's object is untouched");

    // Requeue of tasks never sent, a wait for more objects than named, an error put.
    type Violation = fn(&mut Hostile, u64) -> ToNode;
    let violations: [(&str, Violation); 4] = [
        ("Requeue of a task never sent", |_, _| ToNode::Requeue(vec![1 << 40])),
        ("Wait for more than it names", |_, kept| ToNode::Wait {
            request: 3,
            ids: vec![kept],
            num: 2,
            limit: 2,
            task: None,
        }),
        ("Wait with a limit below its count", |_, kept| ToNode::Wait {
            request: 3,
            ids: vec![kept],
            num: 1,
            limit: 0,
            task: None,
        }),
        ("a Put that is an error", |c, _| ToNode::Put { id: c.fresh_id(), placed: Placed::Failed(Error::NodeStopped) }),
    ];
    for (what, violation) in violations {
        let mut c = Hostile::connect();
        c.sync();
        let msg = violation(&mut c, kept.id());
        c.send(&[msg]);
        c.expect_closed(what);
        base_with_kept.check_restored(what);
    }
    drop(kept);
    base.check_restored("dropping the kept object");
}

#[test]
fn releases_of_refs_never_acquired_count_nothing() {
    let _serial = serial();
    let kept = shoal::put(String::from("kept")).unwrap();
    let base = Baseline::take();
    let mut c = Hostile::connect();
    // Not a violation: a client may release a ref whose acquisition found
    // the object gone. It must not touch the driver's count.
    c.send(&[ToNode::Refs(vec![RefOp::Release(kept.id()); 5])]);
    c.send(&[ToNode::Refs(vec![RefOp::Release(1 << 62), RefOp::Acquire(1 << 62), RefOp::Release(1 << 62)])]);
    c.sync();
    assert_eq!(node().object_count(), base.objects);
    assert_eq!(shoal::get(&kept).unwrap(), "kept");
    // Acquired once, released twice: only the one it holds is released.
    c.send(&[ToNode::Refs(vec![RefOp::Acquire(kept.id()), RefOp::Release(kept.id()), RefOp::Release(kept.id())])]);
    c.sync();
    assert_eq!(shoal::get(&kept).unwrap(), "kept");
    drop(c);
    base.check_restored("releases of refs never acquired");
    assert_eq!(shoal::get(&kept).unwrap(), "kept");
}

/// A second request under a number still waiting replaced the first in the
/// node's table of parked requests, while the first object still listed it
/// as a watcher: when that object sealed, the node answered the replacement
/// for an object still pending and panicked (`unreachable!`) in whichever
/// connection's reader sealed it — an innocent worker, which was dropped
/// with the object's dependents never woken.
#[test]
fn a_request_number_already_waiting_is_a_violation() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("shoal-hostile-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gate.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let base = Baseline::take();

    // `a` runs on a real worker and stays pending until the gate opens;
    // `b` waits for `a`.
    let a = gate::remote(path.display().to_string());
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut gate_stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("the gate task did not start: {e}"),
        }
    };
    let b = plus_one::remote(&a);

    let mut c = Hostile::connect();
    c.send(&[ToNode::Get { request: 7, id: a.id(), task: None }, ToNode::Get { request: 7, id: b.id(), task: None }]);
    // Answered only if the node took the second Get.
    let request = c.request();
    c.send(&[ToNode::Allocate { request, size: 64 }]);
    let answered = c.reply();

    gate_stream.write_all(&[41]).unwrap();
    assert_eq!(shoal::get_timeout(&a, PATIENCE).unwrap(), 41);
    assert_eq!(shoal::get_timeout(&b, PATIENCE).expect("a's dependent runs"), 42);
    assert!(answered.is_none(), "the node took a second Get under a request number still waiting: {answered:?}");
    c.expect_closed("a second Get under a request number still waiting");
    drop((a, b));
    base.check_restored("a reused request number");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gate task (see [`gate`]) and the socket that opens it.
struct Gate {
    listener: UnixListener,
    path: std::path::PathBuf,
}

impl Gate {
    fn new(dir: &std::path::Path, name: &str) -> Gate {
        let path = dir.join(name);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Gate { listener, path }
    }

    /// Start the task; returns its ref and the stream that opens it.
    fn start(&self) -> (ObjectRef<u64>, UnixStream) {
        let r = gate::remote(self.path.display().to_string());
        (r, self.accept())
    }

    /// The stream of the task that connected to the gate.
    fn accept(&self) -> UnixStream {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::yield_now(),
                Err(e) => panic!("the gate task did not start: {e}"),
            }
        }
    }
}

/// A wait answered before all its objects sealed leaves no watcher on the
/// others: the request number, used again, is answered for what it waits
/// for now, not when an object of its old use seals.
#[test]
fn a_request_number_used_again_after_its_wait_was_answered_waits_for_its_new_objects() {
    let _serial = serial();
    let base = Baseline::take();
    let dir = std::env::temp_dir().join(format!("shoal-hostile-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (one, two, three) = (Gate::new(&dir, "1.sock"), Gate::new(&dir, "2.sock"), Gate::new(&dir, "3.sock"));
    let (a, mut open_a) = one.start();
    let (b, mut open_b) = two.start();

    let mut c = Hostile::connect();
    c.send(&[ToNode::Wait { request: 9, ids: vec![a.id(), b.id()], num: 1, limit: 2, task: None }]);
    open_a.write_all(&[1]).unwrap();
    assert!(matches!(c.reply(), Some(ToClient::Ready { request: 9, positions }) if positions == [0]));

    let (x, mut open_x) = three.start();
    c.send(&[ToNode::Wait { request: 9, ids: vec![x.id()], num: 1, limit: 1, task: None }]);
    open_b.write_all(&[2]).unwrap();
    assert_eq!(shoal::get_timeout(&b, PATIENCE).unwrap(), 2, "b sealed (and its watchers were told)");
    let request = c.request();
    c.send(&[ToNode::Allocate { request, size: 64 }]);
    match c.reply() {
        Some(ToClient::Allocated { request: r, .. }) if r == request => {}
        other => panic!("request 9 was answered when its old object sealed: {other:?}"),
    }
    open_x.write_all(&[3]).unwrap();
    assert!(matches!(c.reply(), Some(ToClient::Ready { request: 9, positions }) if positions == [0]));
    c.sync();
    drop((a, b, x, c));
    base.check_restored("a request number used again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The header and buffer table of an object the client seals into the arena
/// are checked by every reader: the driver's `get` and `get_shared`, and a
/// task given it as an argument, all fail with a typed error; a faithful
/// copy of the same object reads back (so the route itself works).
#[test]
fn corrupt_objects_sealed_by_a_client_are_errors_for_every_reader() {
    let _serial = serial();
    let original = Array1::from_iter((0..1000).map(f64::from));
    let real = shoal::put(original.clone()).unwrap();
    let base = Baseline::take();
    let mut c = Hostile::connect();
    let ObjectData::Arena { offset, len } = c.get(real.id()) else { panic!("an array object lives in the arena") };
    let mut bytes = vec![0u8; len as usize];
    c.arena.read_exact_at(&mut bytes, offset).unwrap();

    // Header: magic 0..4, version 4..6, total length 32..40; the one
    // buffer's descriptor at 40: dtype, ndim, offset 48..56, length 56..64,
    // shape 64..72.
    type Edit = fn(&mut Vec<u8>);
    let corruptions: [(&str, Edit); 9] = [
        ("bad magic", |b| b[0] = b'X'),
        ("another version", |b| b[4] = 9),
        ("a total length too short", |b| b[32..40].copy_from_slice(&64u64.to_le_bytes())),
        ("a total length past the allocation", |b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
        ("an unknown dtype", |b| b[40] = 200),
        ("a buffer past the end", |b| b[48..56].copy_from_slice(&(1u64 << 40).to_le_bytes())),
        ("a buffer over the header", |b| b[48..56].copy_from_slice(&0u64.to_le_bytes())),
        ("a shape that disagrees with the length", |b| b[64..72].copy_from_slice(&999u64.to_le_bytes())),
        ("a buffer count past the table", |b| b[16..20].copy_from_slice(&1000u32.to_le_bytes())),
    ];
    fn seal(c: &mut Hostile, bytes: &[u8]) -> u64 {
        let at = c.allocate(bytes.len() as u64);
        c.arena.write_all_at(bytes, at).unwrap();
        let id = c.fresh_id();
        c.send(&[ToNode::Put { id, placed: Placed::Arena { offset: at, len: bytes.len() as u64, refs: Vec::new() } }]);
        c.sync();
        id
    }
    let copy: ObjectRef<Array1<f64>> = forge(seal(&mut c, &bytes));
    assert_eq!(shoal::get(&copy).unwrap(), original, "a faithful copy reads back");
    assert_eq!(shoal::get_timeout(&sum::remote(&copy), PATIENCE).unwrap(), original.sum());
    drop(copy);
    for (what, edit) in corruptions {
        let mut corrupt = bytes.clone();
        edit(&mut corrupt);
        let r: ObjectRef<Array1<f64>> = forge(seal(&mut c, &corrupt));
        let is_corrupt = |e: &Error| matches!(e, Error::Serialization(m) if m.contains("corrupt"));
        match shoal::get(&r) {
            Err(e) if is_corrupt(&e) => {}
            other => panic!("{what}: get gave {other:?}"),
        }
        match shoal::get_shared(&r) {
            Err(e) if is_corrupt(&e) => {}
            other => panic!("{what}: get_shared gave {:?}", other.map(|a| a.len())),
        }
        match shoal::get_timeout(&sum::remote(&r), PATIENCE) {
            Err(e) if is_corrupt(&e) => {}
            other => panic!("{what}: a task given it gave {other:?}"),
        }
    }
    // Inline objects are checked the same way.
    let id = c.fresh_id();
    c.send(&[ToNode::Put { id, placed: Placed::Inline { bytes: b"not an object".to_vec(), refs: Vec::new() } }]);
    c.sync();
    let inline: ObjectRef<u64> = forge(id);
    assert!(matches!(shoal::get(&inline), Err(Error::Serialization(m)) if m.contains("corrupt")));
    drop(inline);
    drop(c);
    base.check_restored("corrupt objects");
    assert_eq!(shoal::get(&real).unwrap(), original);
}

/// A plain submission of no arguments and one output, by name.
fn call_of(function: String, out: u64) -> Submit {
    Submit {
        function,
        options: shoal::TaskOptions::default(),
        args: Vec::new(),
        outputs: vec![out],
        parent: None,
        failed: None,
    }
}

#[test]
fn actor_messages_are_served_checked_and_cleaned_up() {
    let _serial = serial();
    let base = Baseline::take();
    let class = <Echo as shoal::Actor>::CLASS.to_string();
    let echo = format!("{class}::echo");
    // A real actor, created and called by hand; it ends with the connection.
    let mut c = Hostile::connect();
    let encoded_7 = {
        let seven = shoal::put(7u64).unwrap();
        match c.get(seven.id()) {
            ObjectData::Inline(bytes) => bytes,
            other => panic!("a small object is inline: {other:?}"),
        }
    };
    let actor = c.fresh_id();
    let create =
        CreateActor { id: actor, class: class.clone(), options: Default::default(), args: Vec::new(), failed: None };
    c.send(&[ToNode::CreateActor(create)]);
    let out = c.fresh_id();
    let mut submit = call_of(echo.clone(), out);
    submit.args =
        vec![wire::SubmitArg::Inline { bytes: encoded_7.clone(), fingerprint: fingerprint_of_u64(), refs: Vec::new() }];
    c.send(&[ToNode::Call { actor, submit }]);
    c.sync();
    let seen: ObjectRef<u64> = forge(out);
    assert_eq!(shoal::get_timeout(&seen, PATIENCE).expect("the hand-made call"), 8);
    drop(seen);
    assert_eq!(node().actors().len(), 1, "its actor lives");
    // Named lookups: an unknown name is an answer, not a violation.
    let request = c.request();
    c.send(&[ToNode::GetActor { request, name: "nobody".into() }]);
    match c.reply() {
        Some(ToClient::ActorFound { request: r, found: Err(Error::ActorNotFound(name)) }) if r == request => {
            assert_eq!(name, "nobody")
        }
        other => panic!("GetActor of an unknown name: {other:?}"),
    }
    // Calls that cannot run fail, and the connection stays.
    let failing = [
        ("an unknown actor", 987_654_321, echo.clone()),
        ("a method of no actor type", actor, function_name("forty_two")),
        ("a name no one registered", actor, "no::such::Type::method".to_string()),
    ];
    for (what, target, function) in failing {
        let out = c.fresh_id();
        c.send(&[ToNode::Call { actor: target, submit: call_of(function, out) }]);
        match c.get(out) {
            ObjectData::Failed(Error::ActorDied { .. } | Error::FunctionNotFound { .. }) => {}
            other => panic!("a call of {what}: {other:?}"),
        }
        c.send(&[ToNode::Refs(vec![RefOp::Release(out)])]);
    }
    // A method submitted as a plain task is not a remote function.
    let out = c.fresh_id();
    c.send(&[ToNode::Submit(call_of(echo.clone(), out))]);
    assert!(matches!(c.get(out), ObjectData::Failed(Error::FunctionNotFound { .. })), "a method as a task");
    c.send(&[ToNode::Refs(vec![RefOp::Release(out)])]);
    // An unknown type: the actor is dead on arrival, its calls say why.
    let ghost = c.fresh_id();
    let create = CreateActor {
        id: ghost,
        class: "no::such::Type".into(),
        options: Default::default(),
        args: Vec::new(),
        failed: None,
    };
    c.send(&[ToNode::CreateActor(create)]);
    let out = c.fresh_id();
    c.send(&[ToNode::Call { actor: ghost, submit: call_of(echo.clone(), out) }]);
    match c.get(out) {
        ObjectData::Failed(Error::ActorDied { cause, .. }) => assert!(cause.contains("no::such::Type"), "{cause}"),
        other => panic!("a call of an actor of an unknown type: {other:?}"),
    }
    // Cancelling what is no task's output is no violation either.
    let request = c.request();
    c.send(&[ToNode::Cancel { request, id: 424_242, force: true }]);
    match c.reply() {
        Some(ToClient::Cancelled { request: r, result: Ok(()) }) if r == request => {}
        other => panic!("Cancel of an unknown object: {other:?}"),
    }
    // Killing what does not exist is no violation either.
    c.send(&[ToNode::KillActor(123_456_789), ToNode::Refs(vec![RefOp::Release(out), RefOp::Release(ghost)])]);
    c.sync();
    drop(c);
    base.check_restored("a client's actor messages");
    assert!(shoal_tests::wait_until(PATIENCE, || node().actors().is_empty()), "its actor ended with it");

    // Ids that are not fresh ids of its own: a violation.
    for (what, id) in [("a node id", 1), ("another client's id", (1u64 << 63) | (0x7f_0000 << 40) | 5)] {
        let mut c = Hostile::connect();
        c.sync();
        let create =
            CreateActor { id, class: class.clone(), options: Default::default(), args: Vec::new(), failed: None };
        c.send(&[ToNode::CreateActor(create)]);
        c.expect_closed(&format!("CreateActor with {what}"));
        base.check_restored(&format!("CreateActor with {what}"));
    }
}

#[test]
fn stream_messages_are_served_checked_and_cleaned_up() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("shoal-hostile-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let gate = Gate::new(&dir, "gate.sock");
    let base = Baseline::take();

    // A driver's stream, its first item taken, its task held at the gate.
    let mut stream = gated_stream::remote(gate.path.display().to_string());
    let first = stream.next().expect("an item").unwrap();
    assert_eq!(shoal::get(&first).unwrap(), 1);
    let mut gate_stream = gate.accept();
    let end = stream.completed().id();

    let mut c = Hostile::connect();
    // Positions the stream does not hold, and streams that are none: answers.
    for (what, stream, index) in [("a position past its items", end, 5), ("an unknown stream", 1 << 62, 0)] {
        let request = c.request();
        c.send(&[ToNode::StreamNext { request, stream, index, task: None }]);
        match c.reply() {
            Some(ToClient::StreamItem {
                request: r,
                item: Err(Error::InvalidArgument(_) | Error::ObjectNotFound(_)),
            }) if r == request => {}
            other => panic!("StreamNext of {what}: {other:?}"),
        }
    }
    // A wait for the next item, answered when the task yields it.
    let request = c.request();
    c.send(&[ToNode::StreamNext { request, stream: end, index: 1, task: None }]);
    gate_stream.write_all(&[0]).unwrap();
    let item = match c.reply() {
        Some(ToClient::StreamItem { request: r, item: Ok(Some(item)) }) if r == request => item,
        other => panic!("StreamNext of the next item: {other:?}"),
    };
    // What the node reports, to any client.
    let request = c.request();
    c.send(&[ToNode::Status { request }]);
    match c.reply() {
        Some(ToClient::Status { request: r, report }) if r == request => {
            assert_eq!(report.workers.iter().filter(|w| w.state != shoal::WorkerState::Actor).count(), WORKERS);
            assert_eq!(report.socket, node().socket_path());
            assert!(report.store.capacity >= 64 << 20);
        }
        other => panic!("Status: {other:?}"),
    }
    // Closing no stream is no violation; the client's ref to the item ends with it.
    c.send(&[ToNode::StreamClose(1 << 62)]);
    c.sync();
    let second = stream.next().expect("the second item").unwrap();
    assert_eq!(second.id(), item, "the same item for both");
    assert_eq!(shoal::get(&second).unwrap(), 2);
    assert!(stream.next().is_none());
    drop(c);
    drop((stream, first, second));
    base.check_restored("a client's stream messages");

    // Items and pauses of tasks it does not run: violations.
    type Violation = fn(u64) -> ToNode;
    let violations: [(&str, Violation); 2] = [
        ("StreamItem of a task it does not run", |_| ToNode::StreamItem {
            task: 1 << 40,
            index: 0,
            placed: Placed::Inline { bytes: vec![0], refs: Vec::new() },
        }),
        ("Backpressure of a task it does not run", |request| ToNode::Backpressure {
            request,
            task: 1 << 40,
            consumed: 1,
        }),
    ];
    for (what, violation) in violations {
        let mut c = Hostile::connect();
        c.sync();
        let request = c.request();
        c.send(&[violation(request)]);
        c.expect_closed(what);
        base.check_restored(what);
    }

    let _ = std::fs::remove_dir_all(&dir);
}

/// The fingerprint of `u64`, as the engine stamps it (`object_ref::fingerprint`:
/// its `TypeId` through the std hasher with fixed keys, equal in every process
/// of one build).
fn fingerprint_of_u64() -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::any::TypeId::of::<u64>().hash(&mut h);
    h.finish()
}

/// A monitor's handshake: `build` need not match; no arena is passed.
fn monitor_hello(protocol: u32) -> UnixStream {
    let stream = UnixStream::connect(node().socket_path()).expect("connect to the node socket");
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    let hello =
        Hello { magic: HELLO_MAGIC, protocol, pid: std::process::id(), build: 7, token: u64::MAX, table: vec![] };
    let mut bytes = Vec::new();
    encode_frame(&hello, &mut bytes).expect("encode Hello");
    (&stream).write_all(&bytes).expect("write Hello");
    stream
}

#[test]
fn a_monitor_may_only_ask_what_the_node_reports() {
    let _serial = serial();
    let before = node().worker_pids();
    // Another build is welcome to look, and gets answers in order.
    let stream = monitor_hello(PROTOCOL_VERSION);
    let mut reader = FrameReader::with_cap(&stream, 64 << 20);
    assert!(matches!(reader.read::<HandshakeReply>(), Ok(HandshakeReply::Welcome(_))));
    shoal::get(&forty_two::remote()).unwrap();
    let ask = |msg: ToNode| {
        let mut bytes = Vec::new();
        encode_frame(&msg, &mut bytes).unwrap();
        (&stream).write_all(&bytes).unwrap();
    };
    ask(ToNode::Status { request: 1 });
    ask(ToNode::Memory { request: 2, limit: 3 });
    ask(ToNode::Timeline { request: 3 });
    match reader.read::<ToClient>() {
        Ok(ToClient::Status { request: 1, report }) => assert_eq!(report.pid, std::process::id()),
        other => panic!("Status: {other:?}"),
    }
    match reader.read::<ToClient>() {
        Ok(ToClient::Memory { request: 2, report }) => assert!(report.objects.len() <= 3),
        other => panic!("Memory: {other:?}"),
    }
    match reader.read::<ToClient>() {
        Ok(ToClient::Timeline { request: 3, events }) => {
            assert!(events.iter().any(|e| e.function.ends_with("::forty_two")), "{events:?}")
        }
        other => panic!("Timeline: {other:?}"),
    }
    // Anything else, even a well-formed request, ends the monitor alone.
    ask(ToNode::Get { request: 4, id: 1, task: None });
    assert!(reader.read::<ToClient>().is_err(), "the node closed the monitor");
    // Garbage too.
    let stream = monitor_hello(PROTOCOL_VERSION);
    let mut reader = FrameReader::with_cap(&stream, 64 << 20);
    assert!(matches!(reader.read::<HandshakeReply>(), Ok(HandshakeReply::Welcome(_))));
    (&stream).write_all(&frame(3, &[0xff, 0xff, 0xff])).unwrap();
    assert!(reader.read::<ToClient>().is_err(), "the node closed the monitor");
    // Another protocol is refused at the handshake.
    let stream = monitor_hello(PROTOCOL_VERSION + 1);
    let reply = FrameReader::with_cap(&stream, 1 << 20).read::<HandshakeReply>();
    assert!(matches!(reply, Ok(HandshakeReply::Refused(ref why)) if why.contains("protocol")), "{reply:?}");
    // Nothing else noticed.
    assert_eq!(shoal::get(&plus_one::remote(1)).unwrap(), 2);
    assert_eq!(node().worker_pids(), before);
}
