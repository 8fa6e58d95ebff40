//! The versioned handshake every connection starts with.
//!
//! The client sends [`Hello`]; the node answers [`HandshakeReply`]. On
//! `Welcome`, the node then passes the arena's file descriptor with
//! [`crate::fdpass::send_fd`], and both sides switch to the engine's protocol.

use serde::{Deserialize, Serialize};

/// Bumped whenever any message of the handshake or of the engine's protocol
/// changes shape.
pub const PROTOCOL_VERSION: u32 = 6;

/// Eight bytes that open every `Hello`, so a stray client is told apart from a
/// shoal peer of another version.
pub const HELLO_MAGIC: [u8; 8] = *b"shoal\0hs";

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must be [`HELLO_MAGIC`].
    pub magic: [u8; 8],
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The sender's process id (checked against `SO_PEERCRED`).
    pub pid: u32,
    /// A hash of the sender's build: shoal and protocol versions and every
    /// function's name and source.
    pub build: u64,
    /// The secret the node passed to the processes it started (0 for any
    /// other client), so the node can tell its own workers from strangers.
    pub token: u64,
    /// The names the sender's binary registered, each with the hash of its
    /// source (sorted by name): a mismatch is reported by name, and a driver
    /// of other code may still call what both build from the same source.
    pub table: Vec<(String, u64)>,
}

/// The node's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeReply {
    /// Accepted; the arena fd follows.
    Welcome(Welcome),
    /// Refused, with the reason; the node closes the connection.
    Refused(String),
}

/// What an accepted client needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The node's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The id the node gave this connection.
    pub client_id: u32,
    /// Arena size in bytes.
    pub arena_len: u64,
    /// Largest value that travels inline in messages rather than in the arena.
    pub inline_max: u64,
}
