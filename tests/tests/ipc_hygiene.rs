//! The node's socket is private and robust: a private directory, and a stray
//! or malicious client (garbage, oversized frames, a wrong handshake, another
//! user) loses its own connection while the node keeps serving everyone else.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_ipc::handshake::HELLO_MAGIC;
use shoal_ipc::{FrameReader, HandshakeReply, Hello, PROTOCOL_VERSION, encode_frame};
use shoal_tests::shared_node;

#[shoal::remote]
fn increment(n: i64) -> i64 {
    n + 1
}

const WORKERS: usize = 2;
/// How long a misbehaving client may stay connected. The node's own
/// handshake read timeout is 10 s, so a node that waits for more bytes instead
/// of closing fails this.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

fn connect(node: &shoal::Shoal) -> UnixStream {
    let stream = UnixStream::connect(node.socket_path()).expect("connect to the node socket");
    stream.set_read_timeout(Some(CLOSE_WITHIN)).expect("read timeout");
    stream.set_write_timeout(Some(CLOSE_WITHIN)).expect("write timeout");
    stream
}

/// Read until the node closes the connection; returns what it sent first.
/// Panics if the connection is still open after [`CLOSE_WITHIN`].
fn expect_closed(mut stream: UnixStream, what: &str) -> Vec<u8> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: connection still open after {:?}", started.elapsed())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset by the node: closed too.
            Err(_) => return received,
        }
        assert!(started.elapsed() < CLOSE_WITHIN, "{what}: connection still open after {:?}", started.elapsed());
    }
}

/// The node still runs tasks and still has all its workers.
fn assert_still_serving(node: &shoal::Shoal, after: &str) {
    let r = increment::remote(41);
    assert_eq!(
        shoal::get_timeout(&r, Duration::from_secs(30)).expect("a task after a bad client"),
        42,
        "after {after}"
    );
    assert_eq!(node.live_workers(), WORKERS, "workers after {after}");
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn frame(len: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn socket_directory_is_private() {
    let node = shared_node();
    let socket = node.socket_path();
    let meta = std::fs::symlink_metadata(socket).expect("socket exists");
    assert!(meta.file_type().is_socket(), "{} is a socket", socket.display());
    let euid = nix::unistd::geteuid().as_raw();
    let dir = socket.parent().expect("socket has a directory");
    for d in [dir, dir.parent().expect("node directory has a parent")] {
        let meta = std::fs::metadata(d).expect("socket directory exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{} must be mode 0700", d.display());
        assert_eq!(meta.uid(), euid, "{} must belong to this user", d.display());
    }
}

#[test]
fn garbage_closes_only_that_connection() {
    let node = shared_node();
    // A client that stops in the middle of a length prefix holds its own
    // connection, not the node: everything below runs while it waits.
    let mut stalled = connect(node);
    stalled.write_all(&[8, 0]).expect("write half a prefix");

    // A valid length prefix, then a body that is no `Hello`.
    let mut junk = connect(node);
    junk.write_all(&frame(8, &[0xFF; 8])).expect("write junk");
    let reply = expect_closed(junk, "junk body");
    assert!(reply.is_empty(), "no reply to a malformed frame, got {reply:?}");

    // A small frame of noise: it may decode as a `Hello` by luck, never as a
    // valid one, so the node answers at most a refusal, then closes.
    let mut small = connect(node);
    small.write_all(&frame(64, &noise(64, 7))).expect("write a noise frame");
    expect_closed(small, "a noise frame");

    // Plain noise, whatever its first four bytes announce, then the client
    // stops writing: a frame cut short.
    for seed in [1, 2, 3] {
        let mut random = connect(node);
        // The node may close before reading everything.
        let _ = random.write_all(&noise(4096, seed));
        let _ = random.shutdown(std::net::Shutdown::Write);
        expect_closed(random, "random bytes");
    }

    assert_still_serving(node, "garbage");
    drop(stalled);
    assert_still_serving(node, "a stalled client");
}

#[test]
fn oversized_frames_close_the_connection() {
    let node = shared_node();
    let mut huge = connect(node);
    huge.write_all(&frame(u32::MAX, b"shoal")).expect("write an oversized prefix");
    let reply = expect_closed(huge, "a 4 GiB frame");
    assert!(reply.is_empty(), "no reply to an oversized frame, got {reply:?}");

    // Just over the handshake's 1 MiB cap: the node must refuse at once rather
    // than wait for a body that never comes.
    let mut over_cap = connect(node);
    over_cap.write_all(&frame((1 << 20) + 1, b"")).expect("write a prefix over the cap");
    expect_closed(over_cap, "a frame over the handshake cap");

    assert_still_serving(node, "oversized frames");
}

fn hello(protocol: u32, pid: u32) -> Hello {
    Hello { magic: HELLO_MAGIC, protocol, pid, build: 0, token: 0, table: Vec::new() }
}

/// Send `hello`, expect a `Refused` reply and then the connection closed.
fn expect_refused(node: &shoal::Shoal, hello: &Hello, what: &str) -> String {
    let mut stream = connect(node);
    let mut bytes = Vec::new();
    encode_frame(hello, &mut bytes).expect("encode Hello");
    stream.write_all(&bytes).expect("write Hello");
    let reply: HandshakeReply =
        FrameReader::with_cap(&stream, 1 << 20).read().unwrap_or_else(|e| panic!("{what}: no handshake reply: {e}"));
    let HandshakeReply::Refused(reason) = reply else { panic!("{what}: a stray client was welcomed: {reply:?}") };
    let rest = expect_closed(stream, what);
    assert!(rest.is_empty(), "{what}: nothing follows a refusal (no arena fd), got {} bytes", rest.len());
    reason
}

#[test]
fn wrong_handshakes_are_refused_and_the_node_keeps_serving() {
    let node = shared_node();
    let me = std::process::id();

    let reason = expect_refused(node, &hello(PROTOCOL_VERSION + 1000, me), "wrong protocol version");
    assert!(reason.contains(&(PROTOCOL_VERSION + 1000).to_string()), "the refusal names the version: {reason}");

    let mut bad_magic = hello(PROTOCOL_VERSION, me);
    bad_magic.magic = *b"notshoal";
    expect_refused(node, &bad_magic, "wrong magic");

    let reason = expect_refused(node, &hello(PROTOCOL_VERSION, me.wrapping_add(1)), "a Hello lying about its pid");
    assert!(reason.contains("pid"), "the refusal names the pid: {reason}");

    // The right protocol from a driver claiming other code than its
    // executable has: its tasks would run on that executable's workers.
    let reason = expect_refused(node, &hello(PROTOCOL_VERSION, me), "a driver lying about its build");
    assert!(reason.contains("other code than the driver runs"), "the refusal says why: {reason}");

    // Each refusal above was recorded by the node; a running node must not
    // care: it still runs tasks and keeps its workers.
    assert_still_serving(node, "refused handshakes");
}

/// A fresh directory every user can enter, removed on drop.
struct OpenDir(PathBuf);

impl OpenDir {
    fn new(tag: &str) -> OpenDir {
        let dir = std::env::temp_dir().join(format!("shoal-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create a temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
        OpenDir(dir)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NOBODY: u32 = 65534;

/// Run `probe_connect` as uid/gid 65534 against `socket`; its one line.
fn probe_as_nobody(dir: &OpenDir, socket: &Path) -> String {
    // A copy the other user can surely execute, whatever the target dir's modes.
    let probe = dir.0.join("probe_connect");
    std::fs::copy(env!("CARGO_BIN_EXE_probe_connect"), &probe).expect("copy probe_connect");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).expect("chmod probe_connect");
    // Another test thread may fork while our copy's write descriptor is open;
    // until that child execs, exec of the copy fails with ETXTBSY.
    let mut tries = 0;
    let out = loop {
        match std::process::Command::new(&probe).uid(NOBODY).gid(NOBODY).arg(socket).output() {
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("run probe_connect as nobody"),
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "probe_connect failed: {} {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn other_users_cannot_connect() {
    let node = shared_node();
    let dir = node.socket_path().parent().expect("socket has a directory");
    assert_eq!(std::fs::metadata(dir).expect("socket directory").permissions().mode() & 0o777, 0o700);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: not root, cannot run a client as another user; only the 0700 directory was checked");
        return;
    }
    let open = OpenDir::new("probe");
    let said = probe_as_nobody(&open, node.socket_path());
    assert!(!said.starts_with("welcomed"), "another user was welcomed: {said}");
    assert!(said.starts_with("connect-failed"), "the 0700 directory must stop another user at connect: {said}");
    assert_still_serving(node, "another user's connection attempt");
}

/// Past the directory (through a hard link to the socket), the node itself
/// must still turn another user away by `SO_PEERCRED`, before any handshake.
#[test]
fn other_users_are_refused_by_peer_credentials() {
    let node = shared_node();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: not root, cannot run a client as another user");
        return;
    }
    let open = OpenDir::new("peercred");
    let link = open.0.join("node.sock");
    if let Err(e) = std::fs::hard_link(node.socket_path(), &link) {
        eprintln!("note: cannot hard-link the socket into {} ({e}); skipped", open.0.display());
        return;
    }
    // The link shares the socket's inode: opening it to everyone opens the
    // node's socket too, which stays unreachable inside its 0700 directory.
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o777)).expect("chmod the socket link");
    let said = probe_as_nobody(&open, &link);
    assert!(!said.starts_with("welcomed"), "another user was welcomed: {said}");
    assert!(
        said.starts_with("refused-or-closed: closed"),
        "another user's connection must be closed before the handshake: {said}"
    );
    assert_still_serving(node, "another user's connection");
}
