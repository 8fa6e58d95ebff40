//! Connection probe for `ipc_hygiene.rs`: connects to the node socket given as
//! the first argument, sends a well-formed `Hello` and prints what happened,
//! one line starting with `connect-failed`, `refused-or-closed` or `welcomed`.
//! The test runs it as another user.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use shoal_ipc::handshake::HELLO_MAGIC;
use shoal_ipc::{FrameError, FrameReader, HandshakeReply, Hello, PROTOCOL_VERSION, encode_frame};

fn main() {
    let Some(socket) = std::env::args_os().nth(1) else {
        eprintln!("usage: probe_connect <socket path>");
        std::process::exit(2);
    };
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(e) => {
            println!("connect-failed: {e}");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let hello = Hello {
        magic: HELLO_MAGIC,
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        build: 0,
        token: 0,
        table: Vec::new(),
    };
    let mut buf = Vec::new();
    encode_frame(&hello, &mut buf).expect("encode Hello");
    if let Err(e) = (&stream).write_all(&buf) {
        // The node may close a connection it refuses before the Hello is in.
        match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                println!("refused-or-closed: closed (before the Hello was written: {e})")
            }
            _ => println!("refused-or-closed: write failed: {e}"),
        }
        return;
    }
    match FrameReader::with_cap(&stream, 1 << 20).read::<HandshakeReply>() {
        Ok(HandshakeReply::Welcome(_)) => println!("welcomed"),
        Ok(HandshakeReply::Refused(reason)) => println!("refused-or-closed: refused: {reason}"),
        Err(FrameError::Closed) => println!("refused-or-closed: closed"),
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            println!("refused-or-closed: closed (reset)")
        }
        Err(e) => println!("refused-or-closed: error: {e}"),
    }
}
