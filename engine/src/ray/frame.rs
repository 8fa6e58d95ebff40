//! How shoal's objects travel as Ray objects: a frame is the bytes of a
//! value in shoal's store format, of a failure, or of several outputs (a
//! `num_returns` task's), with one tag byte at the end (at the end so a
//! value's bytes can be written in place at the start of a 64-byte aligned
//! buffer). A failure is a value like any other for Ray: a task's panic
//! reaches `get`, and flows into the tasks depending on it, unchanged.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_store::ALIGN;

use crate::error::{Error, Result};

const VALUE: u8 = 0;
const FAILED: u8 = 1;
const OUTPUTS: u8 = 2;

/// Bytes in 64-byte aligned memory, as shoal's store format needs for its
/// arrays to be viewed in place.
pub(super) struct Aligned {
    blocks: Vec<Block>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; ALIGN]);

impl Aligned {
    /// `len` zero bytes.
    pub(super) fn zeroed(len: usize) -> Aligned {
        Aligned { blocks: vec![Block([0; ALIGN]); len.div_ceil(ALIGN)], len }
    }

    /// A copy of `bytes`.
    pub(super) fn copy_of(bytes: &[u8]) -> Aligned {
        let mut out = Aligned::zeroed(bytes.len());
        out.bytes_mut().copy_from_slice(bytes);
        out
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `blocks` holds at least `len` initialized bytes (whole
        // blocks of `u8`s, `repr(C)` without padding), borrowed with `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// The frame of a value whose store-format bytes `write` puts in the
/// `len` bytes it is given (64-byte aligned).
pub(super) fn value_with(len: usize, write: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Aligned> {
    let mut frame = Aligned::zeroed(len + 1);
    write(&mut frame.bytes_mut()[..len])?;
    frame.bytes_mut()[len] = VALUE;
    Ok(frame)
}

/// The frame of a value already in store format.
pub(super) fn value(encoded: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(encoded.len() + 1);
    frame.extend_from_slice(encoded);
    frame.push(VALUE);
    frame
}

/// The frame of a failure.
pub(super) fn failed(e: &Error) -> Vec<u8> {
    let mut frame = postcard::to_stdvec(e).unwrap_or_default();
    frame.push(FAILED);
    frame
}

/// The frame of a task's several outputs, each a frame of its own.
pub(super) fn outputs(parts: Vec<serde_bytes::ByteBuf>) -> Vec<u8> {
    let mut frame = postcard::to_stdvec(&parts).unwrap_or_default();
    frame.push(OUTPUTS);
    frame
}

/// What a frame holds.
pub(super) enum Opened<'a> {
    /// A value's store-format bytes.
    Value(&'a [u8]),
    /// A failure.
    Failed(Error),
}

/// Open `frame`; `element`: the output of that index of a several-outputs frame.
pub(super) fn open(frame: &[u8], element: Option<u32>) -> Result<Opened<'_>> {
    let corrupt = |what: &str| Error::Serialization(format!("a Ray object is not a shoal object: {what}"));
    let Some((&tag, body)) = frame.split_last() else { return Err(corrupt("empty")) };
    match (tag, element) {
        (FAILED, _) => Ok(Opened::Failed(postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))?)),
        (VALUE, None) => Ok(Opened::Value(body)),
        (OUTPUTS, Some(i)) => {
            let parts: Vec<&serde_bytes::Bytes> = postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))?;
            let part = parts.get(i as usize).ok_or_else(|| corrupt("too few outputs"))?;
            open(part, None)
        }
        (VALUE, Some(_)) => Err(corrupt("one output where several were expected")),
        (OUTPUTS, None) => Err(corrupt("several outputs where one was expected")),
        _ => Err(corrupt("unknown tag")),
    }
}

/// One argument of a call, as the first (plan) argument describes it: the
/// type it must have been written as, and which output of its object.
#[derive(Serialize, Deserialize)]
pub(super) struct Planned {
    pub(super) fingerprint: u64,
    pub(super) element: Option<u32>,
}

/// Decode a value's store-format bytes as a `V`: owned arrays are copied
/// out; `SharedArray`s view a private aligned copy the views keep alive.
pub(crate) fn decode<V: crate::Value>(bytes: &[u8], fingerprint: u64) -> Result<V> {
    if let Some(owned) = shoal_store::decode_owned_array::<V>(bytes, fingerprint) {
        return Ok(owned?);
    }
    let copy = Arc::new(Aligned::copy_of(bytes));
    let keepalive: shoal_store::Keepalive = copy.clone();
    // SAFETY: `copy`'s bytes are never written again (no one holds it
    // mutably: it is shared behind an `Arc` from here on), and every view
    // decoded holds `keepalive`, a clone of that `Arc`, so the bytes stay
    // allocated while any view lives: `decode_in_place`'s contract.
    Ok(unsafe { shoal_store::decode_in_place(copy.bytes(), fingerprint, keepalive)? })
}
