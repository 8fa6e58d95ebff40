//! A monitor: a connection to a node, standalone or embedded, that only
//! asks what the node reports — what the `shoal status`, `memory`,
//! `timeline` and `metrics` commands use. It needs neither the node's build
//! (any program may look) nor its arena, holds nothing, and may be kept
//! open to ask again. It owns no node machinery; `node/pool.rs` answers it.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use shoal_ipc::{FrameReader, HandshakeReply, encode_frame};

use crate::error::{Error, Result};
use crate::protocol::{MONITOR_TOKEN, ToClient, ToNode};
use crate::registry;
use crate::status::{MemoryReport, NodeStatus, TaskEvent};

/// How long a monitor waits for the node's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A read-only connection to a node.
///
/// ```no_run
/// # fn main() -> shoal::Result<()> {
/// let node = shoal::init(shoal::Config::default())?;
/// // Any process of this user may look, by the node's address.
/// let monitor = shoal::Monitor::connect(node.socket_path())?;
/// let status = monitor.status()?;
/// assert_eq!(status.pid, std::process::id()); // an embedded node
/// println!("{} of {} CPUs in use", status.cpus_in_use, status.cpus);
/// # Ok(()) }
/// ```
pub struct Monitor {
    address: PathBuf,
    /// The socket and the next request's number; `None` once an exchange
    /// failed (a late answer would be taken for the next one's).
    conn: Mutex<Option<(UnixStream, u64)>>,
}

impl Monitor {
    /// Connect to the node whose socket is `address`.
    pub fn connect(address: impl AsRef<Path>) -> Result<Monitor> {
        let address = address.as_ref().to_path_buf();
        let failed = |reason: String| Error::Connect { address: address.display().to_string(), reason };
        let stream = UnixStream::connect(&address).map_err(|e| failed(e.to_string()))?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| failed(e.to_string()))?;
        let mut buf = Vec::new();
        encode_frame(&registry::hello(MONITOR_TOKEN), &mut buf).map_err(|e| failed(e.to_string()))?;
        std::io::Write::write_all(&mut &stream, &buf).map_err(|e| failed(e.to_string()))?;
        match FrameReader::with_cap(&stream, 1 << 20).read::<HandshakeReply>() {
            Ok(HandshakeReply::Welcome(_)) => {}
            Ok(HandshakeReply::Refused(reason)) => return Err(failed(format!("refused by the node: {reason}"))),
            Err(e) => return Err(failed(format!("no handshake: {e}"))),
        }
        Ok(Monitor { address, conn: Mutex::new(Some((stream, 1))) })
    }

    /// The node's address.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The node's status: its process, CPUs, workers, tasks, store, drivers
    /// and actors.
    pub fn status(&self) -> Result<NodeStatus> {
        match self.ask(|request| ToNode::Status { request })? {
            ToClient::Status { report, .. } => Ok(report),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The node's `limit` largest objects, and totals over all of them.
    pub fn memory(&self, limit: usize) -> Result<MemoryReport> {
        let limit = limit as u64;
        match self.ask(|request| ToNode::Memory { request, limit })? {
            ToClient::Memory { report, .. } => Ok(report),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The tasks the node finished lately, oldest first (the last
    /// [`TIMELINE_LEN`](crate::TIMELINE_LEN)).
    pub fn timeline(&self) -> Result<Vec<TaskEvent>> {
        match self.ask(|request| ToNode::Timeline { request })? {
            ToClient::Timeline { events, .. } => Ok(events),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Send one request and read its answer (a monitor has one at a time).
    /// After a failed exchange the monitor is closed: connect again.
    fn ask(&self, make: impl FnOnce(u64) -> ToNode) -> Result<ToClient> {
        let lost = |reason: String| Error::Connect { address: self.address.display().to_string(), reason };
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (stream, next) = guard.as_mut().ok_or_else(|| lost("an earlier request failed; connect again".into()))?;
        let request = *next;
        *next += 1;
        let mut buf = Vec::new();
        let exchange = encode_frame(&make(request), &mut buf)
            .map_err(|e| e.to_string())
            .and_then(|()| std::io::Write::write_all(&mut &*stream, &buf).map_err(|e| e.to_string()))
            // Answers are as large as the node's listing: no cap beyond the frame's.
            .and_then(|()| FrameReader::new(&*stream).read::<ToClient>().map_err(|e| format!("no answer: {e}")))
            .and_then(|reply| match reply.request() {
                Some(r) if r == request => Ok(reply),
                _ => Err(format!("an answer to another request: {reply:?}")),
            });
        exchange.map_err(|reason| {
            *guard = None;
            lost(reason)
        })
    }

    fn unexpected(&self, reply: &ToClient) -> Error {
        Error::Connect { address: self.address.display().to_string(), reason: format!("unexpected answer {reply:?}") }
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("address", &self.address).finish_non_exhaustive()
    }
}
