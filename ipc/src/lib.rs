//! Inter-process plumbing for shoal.
//!
//! This crate owns how bytes move between a node and its clients over
//! Unix-domain sockets: length-prefixed postcard [frames](frame) with a hard
//! size cap, the versioned [handshake] messages, passing a file descriptor
//! with `SCM_RIGHTS` ([fdpass]), and the [peer] checks (private socket
//! directory, `SO_PEERCRED`).
//!
//! It does **not** know what the messages mean: the engine defines its own
//! task protocol on top of [`frame`].

pub mod fdpass;
pub mod frame;
pub mod handshake;
pub mod peer;

pub use frame::{FrameBuffer, FrameError, FrameReader, MAX_FRAME_BYTES, encode_frame};
pub use handshake::{HandshakeReply, Hello, PROTOCOL_VERSION, Welcome};
