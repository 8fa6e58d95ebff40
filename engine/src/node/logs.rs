//! Worker output to the driver: each line a worker process writes to its
//! stdout or stderr goes to the driver its task works for, prefixed with
//! what the worker runs, as Ray's `(fn pid=123)`: to the node's own
//! stdout or stderr (the embedded driver's terminal, a standalone node's
//! log), or to a connected driver as `ToClient::Output` ([`Routes`]).
//!
//! - One relay thread per pipe reads it and writes whole lines only, each in
//!   one `write`, so lines of different workers never interleave mid-line.
//! - The label is what the worker says it runs: before a task of another
//!   function (or for another driver) than the last, it writes [`MARKER`],
//!   the task's owner (`Execute::owner`) and the name to its stdout and its
//!   stderr, in order with the task's own output on each, and each relay
//!   takes its note out. Until a worker has said, the node's view stands in
//!   ([`Routes::label`]).
//! - A line without its newline goes out once the pipe has been quiet for
//!   [`PARTIAL_AFTER`]: the worker flushes its stdout when a task ends, so
//!   what a task printed last appears then, not when the worker exits.
//!
//! It owns no bookkeeping: the label comes from the node (`Node::label_of`).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long a line without its newline waits for the rest.
pub(super) const PARTIAL_AFTER: Duration = Duration::from_millis(20);

/// The longest line kept whole; a longer one goes out in pieces this long.
const MAX_LINE: usize = 64 << 10;

/// What the node tells a worker's relays.
pub(super) trait Routes: Send + Sync {
    /// The prefix of worker `pid`'s lines, before it said what it runs.
    fn label(&self, pid: u32) -> String;
    /// Hand a prefixed line of a task for `owner` to whom it is for.
    fn deliver(&self, owner: u64, sink: Sink, line: &[u8]);
}

/// The relays' view of the node.
pub(super) type Label = Arc<dyn Routes>;

/// Opens a worker's note of what it runs now (the rest of the line).
pub(crate) const MARKER: &str = "\u{1e}shoal-runs ";

/// Set for a worker whose output is relayed: it writes [`MARKER`] lines.
pub(crate) const ENV_LABELS: &str = "SHOAL_LOG_LABELS";

/// What a worker said it runs, and for whom, as one of its pipes has read so far.
pub(super) type Said = Arc<std::sync::Mutex<Option<(String, u64)>>>;

/// Which of this process's streams a worker's pipe goes to.
#[derive(Clone, Copy)]
pub(super) enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    /// Write `bytes` to this process's stream.
    pub(super) fn write(self, bytes: &[u8]) {
        // One locked write per line: whole lines, never interleaved.
        let _ = match self {
            Sink::Stdout => std::io::stdout().lock().write_all(bytes),
            Sink::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    }
}

/// Copy worker `pid`'s `pipe` to `sink` until it closes, each line prefixed
/// with `label(pid)` (`None`: read, not copied); `seen` gets every byte.
pub(super) fn relay(
    mut pipe: impl Read + AsFd,
    pid: u32,
    sink: Sink,
    label: Option<Label>,
    said: Said,
    mut seen: impl FnMut(&[u8]),
) {
    let mut buf = [0u8; 8192];
    let mut partial: Vec<u8> = Vec::new();
    let marker = MARKER.as_bytes();
    let emit = |line: &[u8]| {
        // A note of what the worker runs: taken out, after the text before it.
        let (line, note) = match line.windows(marker.len()).position(|w| w == marker) {
            Some(at) => (&line[..at], Some(&line[at + marker.len()..])),
            None => (line, None),
        };
        if let Some(routes) = &label.as_ref().filter(|_| !line.is_empty()) {
            let said = said.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (mut out, owner) = match said {
                Some((name, owner)) => (prefix(Some(&name), pid).into_bytes(), owner),
                None => (routes.label(pid).into_bytes(), u64::MAX),
            };
            out.extend_from_slice(line);
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            routes.deliver(owner, sink, &out);
        }
        if let Some(note) = note {
            let note = String::from_utf8_lossy(note);
            let (owner, name) = note.trim_end().split_once(' ').unwrap_or(("", note.trim_end()));
            let owner = owner.parse().unwrap_or(u64::MAX);
            *said.lock().unwrap_or_else(|e| e.into_inner()) = Some((name.to_string(), owner));
        }
    };
    loop {
        if !partial.is_empty() {
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(PARTIAL_AFTER).unwrap_or(PollTimeout::ZERO);
            if matches!(poll(&mut fds, timeout), Ok(0)) {
                emit(&std::mem::take(&mut partial));
                continue;
            }
        }
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        seen(chunk);
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..=at]);
            emit(&std::mem::take(&mut partial));
            rest = &rest[at + 1..];
        }
        partial.extend_from_slice(rest);
        if partial.len() > MAX_LINE {
            // Output that never ends a line goes out in pieces.
            emit(&std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        emit(&partial);
    }
}

/// The prefix of a worker's lines: `(name pid=N) `, `name` the short name
/// of what it runs.
pub(super) fn prefix(name: Option<&str>, pid: u32) -> String {
    let short = name.map(|n| n.rsplit("::").next().unwrap_or(n)).unwrap_or("worker");
    format!("({short} pid={pid}) ")
}
