//! How shoal's objects travel as Ray objects: a frame is the bytes of a
//! value in shoal's store format, of a failure, or of several outputs (a
//! `num_returns` task's), then a trailer: a magic and one tag byte (at the
//! end so a value's bytes can be written in place at the start of a 64-byte
//! aligned buffer). A failure is a value like any other for Ray: a task's
//! panic reaches `get`, and flows into the tasks depending on it,
//! unchanged. Bytes without the trailer are none of shoal's: Ray's own
//! error (ray-cpp hands a task a failed argument's error bytes as its
//! value, and `get` some errors' bytes).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_store::ALIGN;

use crate::error::{Error, Result};

const VALUE: u8 = 0;
const FAILED: u8 = 1;
const OUTPUTS: u8 = 2;
/// Before the tag: what marks a frame as shoal's (and its version).
const MAGIC: [u8; 4] = *b"shl\x01";
const TRAILER: usize = MAGIC.len() + 1;

fn trailer(tag: u8) -> [u8; TRAILER] {
    let mut t = [tag; TRAILER];
    t[..MAGIC.len()].copy_from_slice(&MAGIC);
    t
}

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
    let mut frame = Aligned::zeroed(len + TRAILER);
    write(&mut frame.bytes_mut()[..len])?;
    frame.bytes_mut()[len..].copy_from_slice(&trailer(VALUE));
    Ok(frame)
}

/// The frame of a value already in store format.
pub(super) fn value(encoded: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(encoded.len() + TRAILER);
    frame.extend_from_slice(encoded);
    frame.extend_from_slice(&trailer(VALUE));
    frame
}

/// The frame of a failure.
pub(super) fn failed(e: &Error) -> Vec<u8> {
    let mut frame = postcard::to_stdvec(e).unwrap_or_default();
    frame.extend_from_slice(&trailer(FAILED));
    frame
}

/// The frame of a task's several outputs, each a frame of its own.
pub(super) fn outputs(parts: Vec<serde_bytes::ByteBuf>) -> Vec<u8> {
    let mut frame = postcard::to_stdvec(&parts).unwrap_or_default();
    frame.extend_from_slice(&trailer(OUTPUTS));
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
    let corrupt = |what: &str| Error::Serialization(format!("a corrupt shoal object: {what}"));
    let Some(split) = frame.len().checked_sub(TRAILER) else { return Err(not_ours(frame)) };
    let (body, end) = frame.split_at(split);
    if end[..MAGIC.len()] != MAGIC {
        return Err(not_ours(frame));
    }
    let tag = end[MAGIC.len()];
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

/// Bytes that are none of shoal's: Ray's own error, as readable as it is.
fn not_ours(bytes: &[u8]) -> Error {
    let text: String = String::from_utf8_lossy(bytes).chars().filter(|c| !c.is_control()).take(400).collect();
    Error::Ray(format!("a Ray error where a shoal object was expected: {text}"))
}

/// A call's first argument: the driver's build, checked by the worker
/// library on every call (a node may hold another copy of the library),
/// and how to read each argument.
#[derive(Serialize, Deserialize)]
pub(super) struct Plan {
    pub(super) build: u64,
    pub(super) args: Vec<Planned>,
}

/// One argument of a call, as the first (plan) argument describes it: the
/// type it must have been written as, and which output of its object.
#[derive(Serialize, Deserialize)]
pub(super) struct Planned {
    pub(super) fingerprint: u64,
    pub(super) element: Option<u32>,
}

/// Decode a value's store-format bytes as a `V`: owned arrays are copied
/// out; `SharedArray`s view a private aligned copy the views keep alive
/// (made only for a value that holds one: a plain decode refuses those).
pub(crate) fn decode<V: crate::Value>(bytes: &[u8], fingerprint: u64) -> Result<V> {
    if let Some(owned) = shoal_store::decode_owned_array::<V>(bytes, fingerprint) {
        return Ok(owned?);
    }
    if let Ok(value) = shoal_store::decode::<V>(bytes, fingerprint) {
        return Ok(value);
    }
    let copy = Arc::new(Aligned::copy_of(bytes));
    let keepalive: shoal_store::Keepalive = copy.clone();
    // SAFETY: `copy`'s bytes are never written again (no one holds it
    // mutably: it is shared behind an `Arc` from here on), and every view
    // decoded holds `keepalive`, a clone of that `Arc`, so the bytes stay
    // allocated while any view lives: `decode_in_place`'s contract.
    Ok(unsafe { shoal_store::decode_in_place(copy.bytes(), fingerprint, keepalive)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded<T: serde::Serialize + 'static>(v: &T) -> Vec<u8> {
        shoal_store::encode(v, crate::object_ref::fingerprint::<T>()).expect("encodes").into_vec()
    }

    #[test]
    fn a_value_round_trips_and_is_read_as_its_type_only() {
        let frame = value(&encoded(&"text".to_string()));
        let Opened::Value(bytes) = open(&frame, None).expect("opens") else { panic!("not a value") };
        let fp = crate::object_ref::fingerprint::<String>();
        assert_eq!(decode::<String>(bytes, fp).expect("decodes"), "text");
        let wrong = decode::<u64>(bytes, crate::object_ref::fingerprint::<u64>());
        assert!(matches!(wrong, Err(Error::TypeMismatch { .. })), "{wrong:?}");
    }

    #[test]
    fn a_failure_travels_unchanged() {
        let e = Error::TaskPanicked { function: "f".into(), message: "boom".into(), pid: 7 };
        let Opened::Failed(back) = open(&failed(&e), None).expect("opens") else { panic!("not a failure") };
        assert_eq!(back, e);
        // Asked for one output of it, a failure is still the failure.
        assert!(matches!(open(&failed(&e), Some(1)), Ok(Opened::Failed(_))));
    }

    #[test]
    fn several_outputs_are_read_one_by_one() {
        let parts = vec![
            serde_bytes::ByteBuf::from(value(&encoded(&1u64))),
            serde_bytes::ByteBuf::from(failed(&Error::Timeout(std::time::Duration::ZERO))),
        ];
        let frame = outputs(parts);
        let Opened::Value(first) = open(&frame, Some(0)).expect("opens") else { panic!("not a value") };
        assert_eq!(decode::<u64>(first, crate::object_ref::fingerprint::<u64>()).expect("decodes"), 1);
        assert!(matches!(open(&frame, Some(1)), Ok(Opened::Failed(Error::Timeout(_)))));
        assert!(matches!(open(&frame, Some(2)), Err(Error::Serialization(_))), "past the end");
        assert!(matches!(open(&frame, None), Err(Error::Serialization(_))), "one of several, unnamed");
    }

    #[test]
    fn bytes_that_are_no_frame_are_a_clear_error() {
        // Ray's own bytes (an error's), or nothing: not shoal's.
        for bytes in [&b""[..], b"\x01", b"WORKER_DIED: the worker died\x00"] {
            match open(bytes, None) {
                Err(Error::Ray(m)) => assert!(m.contains("a Ray error"), "{m}"),
                other => panic!("{bytes:?}: {:?}", other.err()),
            }
        }
        // Shoal's trailer over a body that is not what the tag says.
        let with = |body: &[u8], tag| [body, &trailer(tag)[..]].concat();
        let corrupt = [
            (with(&[0xff, 0xff], FAILED), None),
            (with(&[0xff], OUTPUTS), Some(0)),
            (with(&[0], VALUE), Some(0)),
            (with(&[0], OUTPUTS), None),
            (with(&[], 7), None),
        ];
        for (bytes, element) in corrupt {
            match open(&bytes, element) {
                Err(Error::Serialization(m)) => assert!(m.contains("corrupt"), "{m}"),
                other => panic!("{bytes:?}: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn arrays_are_written_aligned_and_viewed_in_a_copy() {
        let a = ndarray::Array1::from_iter((0..100).map(f64::from));
        let fp = crate::object_ref::fingerprint::<ndarray::Array1<f64>>();
        let layout = shoal_store::measure(&a, fp).expect("measures");
        let frame = value_with(layout.total_len(), |dst| Ok(layout.write_to(&a, dst)?)).expect("writes");
        assert_eq!(frame.bytes().as_ptr() as usize % ALIGN, 0);
        let Opened::Value(bytes) = open(frame.bytes(), None).expect("opens") else { panic!("not a value") };
        let owned: ndarray::Array1<f64> = decode(bytes, fp).expect("an owned copy");
        assert_eq!(owned, a);
        // A frame received from Ray is not aligned: the view reads a copy.
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(bytes);
        let view: shoal_store::SharedArray<f64, ndarray::Ix1> = decode(&shifted[1..], fp).expect("a view");
        assert_eq!(view.view()[99], 99.0);
    }
}
