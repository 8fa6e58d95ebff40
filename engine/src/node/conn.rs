//! One worker connection's two halves: sending that never blocks a node
//! thread, and the receiving buffer that its reader thread (or a waiting
//! driver thread) reads under a lock. Knows frames and messages, not what
//! they mean.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};
use shoal_ipc::{FrameBuffer, FrameError, encode_frame};

use crate::protocol::ToClient;

/// Messages to send once the node's lock is released.
pub(crate) type Outbox = Vec<(Arc<WorkerConn>, ToClient)>;

/// The sending half of a worker connection.
///
/// Sending never blocks: bytes go straight into the socket with a
/// non-blocking send when nothing is queued ahead of them (the common case,
/// with no thread hop), and otherwise join a backlog that the connection's
/// sender thread drains. So no node thread ever waits on a worker's socket
/// buffer, and a worker busy writing to the node cannot deadlock with it.
pub(crate) struct WorkerConn {
    pub id: usize,
    pub pid: u32,
    pub(super) stream: UnixStream,
    out: Mutex<Outgoing>,
    more: Condvar,
    /// The receiving side, read by whoever holds this lock: the
    /// connection's reader thread, or a driver thread waiting for a result
    /// (see [`WorkerConn::help_read`]).
    pub(super) incoming: Mutex<Incoming>,
    /// Set while a waiting driver thread reads this connection: its reader
    /// thread stands aside meanwhile.
    pub(crate) helped: AtomicBool,
    /// Set once the worker makes nested calls (submits, gets, waits): only
    /// then may its reader watch the socket between messages.
    pub(crate) nests: AtomicBool,
    /// For a driver built from other code than the node's: the functions
    /// it registers that the node lacks or builds from other source, which
    /// it may not call (set at the handshake).
    pub(crate) foreign: std::sync::OnceLock<std::collections::HashSet<String>>,
    /// The program it runs (a worker) or whose workers run its tasks (a
    /// driver): 0 for the node's own, else `programs.rs`'s index.
    pub(crate) program: u32,
}

/// Bytes from the worker not yet handled, and what reading them left to do.
#[derive(Default)]
pub(super) struct Incoming {
    pub(super) frames: FrameBuffer,
    /// Tasks finished since the last dispatch.
    pub(super) finished: bool,
    /// Why the connection must end, found by a thread other than its reader.
    pub(super) failed: Option<FrameError>,
    /// The connection is ending: nothing more is read from it.
    pub(super) ended: bool,
}

#[derive(Default)]
struct Outgoing {
    backlog: Vec<u8>,
    draining: bool,
    closed: bool,
}

impl WorkerConn {
    /// A connection and its sender thread.
    pub(crate) fn start(id: usize, pid: u32, program: u32, stream: UnixStream) -> std::io::Result<Arc<WorkerConn>> {
        let conn = Arc::new(WorkerConn {
            id,
            pid,
            stream,
            out: Mutex::default(),
            more: Condvar::new(),
            incoming: Mutex::default(),
            helped: AtomicBool::new(false),
            nests: AtomicBool::new(false),
            foreign: std::sync::OnceLock::new(),
            program,
        });
        let draining = conn.clone();
        std::thread::Builder::new().name("shoal-send".into()).spawn(move || draining.drain())?;
        Ok(conn)
    }

    /// Whether this client may not call `name` (see `foreign`).
    pub(crate) fn foreign(&self, name: &str) -> bool {
        self.foreign.get().is_some_and(|f| f.contains(name))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send what the socket takes now; returns how much it took.
    fn send_now(&self, bytes: &[u8], out: &mut Outgoing) -> usize {
        let mut sent = 0;
        while sent < bytes.len() {
            match send(self.stream.as_raw_fd(), &bytes[sent..], MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => {
                    // End the connection, so the reader sees it and the
                    // worker's tasks are retried elsewhere.
                    tracing::debug!(worker = self.id, "send failed: {e}");
                    out.closed = true;
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    break;
                }
            }
        }
        sent
    }

    /// Queue bytes behind everything queued before (cheap: no syscall).
    fn queue(&self, bytes: &[u8]) {
        let mut out = self.lock();
        if !out.closed {
            out.backlog.extend_from_slice(bytes);
        }
    }

    /// Send what is queued, as far as the socket takes it now; the sender
    /// thread takes the rest.
    fn push(&self) {
        let mut out = self.lock();
        if out.closed || out.draining || out.backlog.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut out.backlog);
        let sent = self.send_now(&pending, &mut out);
        if sent < pending.len() && !out.closed {
            pending.drain(..sent);
            out.backlog = pending;
            self.more.notify_one();
        }
    }

    fn send_bytes(&self, bytes: &[u8]) {
        self.queue(bytes);
        self.push();
    }

    /// The sender thread: writes the backlog, blocking, in order.
    fn drain(&self) {
        loop {
            let chunk = {
                let mut out = self.lock();
                while out.backlog.is_empty() && !out.closed {
                    out = self.more.wait(out).unwrap_or_else(|e| e.into_inner());
                }
                if out.closed {
                    return;
                }
                out.draining = true;
                std::mem::take(&mut out.backlog)
            };
            let written = (&self.stream).write_all(&chunk);
            let mut out = self.lock();
            out.draining = false;
            if let Err(e) = written {
                tracing::debug!(worker = self.id, "send failed: {e}");
                out.closed = true;
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }

    /// Send one message.
    pub fn send(&self, msg: &ToClient) {
        let mut buf = Vec::new();
        if encode_frame(msg, &mut buf).is_ok() {
            self.send_bytes(&buf);
        }
    }

    /// Close the connection in both directions (and stop its sender thread).
    pub fn close(&self) {
        self.lock().closed = true;
        self.more.notify_all();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Queue an outbox's messages on their connections. Called under the node
/// lock, so each worker's messages are queued in the order its `in_flight`
/// records them; returns the connections to [`push`] once the lock is
/// released.
pub(crate) fn queue(outbox: Outbox) -> Vec<Arc<WorkerConn>> {
    let mut batches: HashMap<usize, (Arc<WorkerConn>, Vec<u8>)> = HashMap::new();
    for (conn, msg) in outbox {
        let entry = batches.entry(conn.id).or_insert_with(|| (conn.clone(), Vec::new()));
        if let Err(e) = encode_frame(&msg, &mut entry.1) {
            tracing::error!("cannot encode a message for worker {}: {e}", conn.id);
        }
    }
    batches
        .into_values()
        .map(|(conn, bytes)| {
            conn.queue(&bytes);
            conn
        })
        .collect()
}

/// Send what [`queue`] queued (no node lock held: these are syscalls).
pub(crate) fn push(conns: Vec<Arc<WorkerConn>>) {
    for conn in conns {
        conn.push();
    }
}
