//! The shared-memory object store of shoal.
//!
//! This crate owns everything about *bytes at rest*:
//!
//! * [`Arena`]: one `memfd` per node, sealed against resizing and pre-faulted,
//!   mapped once by every process of the node ([`arena`]).
//! * [`Allocator`]: the offset allocator that only the store owner runs
//!   ([`alloc`]); offsets, never pointers, cross processes.
//! * The object format ([`format`]): a small header, the postcard encoding of
//!   the value with every ndarray array replaced by a buffer index, then each
//!   array buffer 64-byte aligned. [`encode`] writes it, [`decode`] checks
//!   every length and offset before any view is made.
//! * [`SharedArray`]: a read-only, zero-copy ndarray view into an object that
//!   keeps the object alive while it exists.
//!
//! It does **not** know about tasks, workers, sockets or reference counts: the
//! engine (`shoal`) decides which object lives where and for how long, and hands
//! this crate a *keepalive* to attach to the views it makes.

pub mod alloc;
pub mod arena;
mod copy;
mod de;
mod decode_context;
mod element;
mod error;
pub mod format;
mod known_arrays;
mod ser;
mod shared_array;

pub use alloc::Allocator;
pub use arena::Arena;
pub use element::{DType, Element};
pub use error::{DecodeError, EncodeError, StoreError};
pub use format::{
    Encoded, Keepalive, Layout, decode, decode_in_place, decode_owned_array, encode, measure, read_type_fingerprint,
};
pub use shared_array::SharedArray;

/// The serde newtype-struct name under which an object reference is serialized.
///
/// The engine's `ObjectRef` serializes as `newtype_struct(REF_MARKER, id: u64)`;
/// the object encoder records every such id so that the store owner knows which
/// objects an object keeps alive.
pub const REF_MARKER: &str = "$shoal::ObjectRef";

/// Every object's data, and every array buffer inside it, starts at a multiple
/// of this many bytes.
pub const ALIGN: usize = 64;
