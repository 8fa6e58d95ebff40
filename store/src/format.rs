//! The object format: what one object's bytes look like, in the arena or inline
//! in a message.
//!
//! ```text
//! offset 0   header (40 bytes, little-endian)
//!            magic "SHOL" | version u16 | flags u16 | type fingerprint u64
//!            | buffer count u32 | descriptor bytes u32 | payload bytes u64
//!            | total bytes u64
//! 40         buffer descriptors, one per array:
//!            dtype u8 | ndim u8 | 6 zero bytes | offset u64 | length u64
//!            | shape: ndim × u64
//! …          payload: the postcard encoding of the value, where each ndarray
//!            array is replaced by the varint index of its buffer
//! 64·k       buffer 0 (C order, elements little-endian), zero padding to 64
//! 64·m       buffer 1 …
//! ```
//!
//! Buffers always hold their array in standard (C) layout, so strides are
//! implied by the shape. Readers trust nothing: [`decode`] checks the magic, the
//! version, every length, every offset (in bounds, 64-byte aligned, ascending,
//! non-overlapping), that each buffer's length is its shape's element count
//! times the dtype's size, and that `bool` buffers hold only 0 and 1 — before
//! any view is made.

use std::any::Any;
use std::marker::PhantomData;

use ndarray::{Array, ArrayBase, ArrayViewMut, Data, Dimension};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ALIGN;
use crate::de::PayloadReader;
use crate::decode_context::{self, BufferView, DecodeContext, owned_array};
use crate::element::{DType, Element};
use crate::error::{DecodeError, EncodeError};
use crate::known_arrays::{self, BuildArray};
use crate::ser::{ArraySink, CHANGED, CapturedArray, ObjectSerializer, SerError};

#[cfg(target_endian = "big")]
compile_error!("shoal's object format stores array elements little-endian and maps them in place");

/// The four bytes every object starts with.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// The object format version this build reads and writes.
pub const VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 40;
const DESC_FIXED_LEN: usize = 24;
const MAX_NDIM: usize = 32;

pub use crate::decode_context::Keepalive;

/// Round `n` up to the next multiple of [`ALIGN`].
pub const fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The measured layout of a value in the object format: header, descriptors
/// and payload, and where each array's elements go. Made by [`measure`];
/// [`Layout::write_to`] then writes the object, copying every array element
/// exactly once, straight to its final place.
#[derive(Debug)]
pub struct Layout {
    head: Vec<u8>,
    payload_start: usize,
    slots: Vec<(usize, usize, DType)>,
    total_len: usize,
    refs: Vec<u64>,
    type_fingerprint: u64,
}

impl Layout {
    /// Bytes the object occupies once written.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// Whether the value holds ndarray arrays (such objects must live in the
    /// arena, where their buffers are 64-byte aligned and viewable in place).
    pub fn has_buffers(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Whether the object travels whole inside a message rather than through
    /// a store: it holds no arrays and takes at most `max` bytes.
    pub fn fits_inline(&self, max: usize) -> bool {
        !self.has_buffers() && self.total_len <= max
    }

    /// Ids of the object references serialized inside the value.
    pub fn contained_refs(&self) -> &[u64] {
        &self.refs
    }

    /// The fingerprint the value is stamped with.
    pub fn type_fingerprint(&self) -> u64 {
        self.type_fingerprint
    }

    /// The whole object, if it holds no arrays (header, descriptors and
    /// payload are all there is); `None` otherwise.
    pub fn into_inline(self) -> Option<Vec<u8>> {
        self.slots.is_empty().then_some(self.head)
    }

    /// Write the object for `value` — the value this layout was measured from
    /// — into `dst`, exactly [`total_len`](Self::total_len) bytes. Padding is
    /// zeroed. Fails if `value` now serializes differently.
    ///
    /// # Panics
    /// If `dst` has the wrong length.
    pub fn write_to<T: Serialize + ?Sized>(&self, value: &T, dst: &mut [u8]) -> Result<(), EncodeError> {
        self.write_with(value, dst, false)
    }

    fn write_with<T: Serialize + ?Sized>(
        &self,
        value: &T,
        dst: &mut [u8],
        serde_only: bool,
    ) -> Result<(), EncodeError> {
        self.write_head(dst);
        if self.slots.is_empty() {
            return Ok(());
        }
        let mut ser = ObjectSerializer {
            sink: Some(ArraySink { dst, slots: &self.slots, next: 0 }),
            serde_only,
            ..ObjectSerializer::default()
        };
        ser.value(value).map_err(ser_error)?;
        let written = ser.sink.as_ref().map_or(0, |s| s.next);
        if written != self.slots.len() || ser.payload[..] != self.head[self.payload_start..] {
            return Err(EncodeError::Unsupported(CHANGED.into()));
        }
        Ok(())
    }

    /// Write header, descriptors and payload, and zero the padding around the
    /// array slots.
    fn write_head(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.total_len, "destination must match the object size");
        dst[..self.head.len()].copy_from_slice(&self.head);
        let mut cursor = self.head.len();
        for &(offset, len, _) in &self.slots {
            dst[cursor..offset].fill(0);
            cursor = offset + len;
        }
        dst[cursor..].fill(0);
    }

    /// The layout of a bare `Array<A, _>` of `shape` (what [`measure`] gives
    /// for such an array, without looking at its elements).
    pub fn of_array<A: Element>(shape: &[usize], type_fingerprint: u64) -> Result<Layout, EncodeError> {
        // ndarray's (and the decoder's) rule: the non-zero axes' product, in
        // bytes, fits in an isize, even when another axis is zero.
        let too_large = || EncodeError::Unsupported(format!("an array of shape {shape:?} is too large"));
        let nonzero = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d.max(1))).ok_or_else(too_large)?;
        nonzero.checked_mul(size_of::<A>()).filter(|&bytes| bytes <= isize::MAX as usize).ok_or_else(too_large)?;
        let len = if shape.contains(&0) { 0 } else { nonzero * size_of::<A>() };
        let dtype = if len == 0 { DType::Empty } else { A::DTYPE };
        let array = CapturedArray { dtype, shape: shape.iter().map(|&d| d as u64).collect(), len };
        layout(vec![0], vec![array], Vec::new(), type_fingerprint)
    }

    /// Write the header of a layout made by [`of_array`](Self::of_array) into
    /// `dst` (the whole object) and return its array buffer as a mutable
    /// view of `dim`, to fill in place. `bool` buffers are zeroed first; a
    /// buffer of numbers holds whatever bytes were there (any bytes are
    /// valid numbers).
    ///
    /// # Panics
    /// If `dst` has the wrong length, the layout is not a bare array of
    /// `A`s, or `dim` is not the layout's shape.
    pub fn array_view_mut<'d, A: Element, D: Dimension>(&self, dst: &'d mut [u8], dim: D) -> ArrayViewMut<'d, A, D> {
        self.write_head(dst);
        let &[(offset, len, dtype)] = &self.slots[..] else { panic!("array_view_mut: not a bare array's layout") };
        assert!(self.is_bare_array_of(dim.slice()), "array_view_mut: {:?} is not the layout's shape", dim.slice());
        assert!(dtype == A::DTYPE || (dtype == DType::Empty && len == 0), "array_view_mut: another element type");
        let slot = &mut dst[offset..offset + len];
        if A::DTYPE == DType::Bool {
            slot.fill(0);
        }
        let elements = len / size_of::<A>();
        if elements == 0 {
            return ArrayViewMut::from_shape(dim, &mut []).expect("array_view_mut: the shape is the layout's");
        }
        let ptr = slot.as_mut_ptr().cast::<A>();
        assert!(ptr.is_aligned(), "array_view_mut: a misaligned buffer");
        // SAFETY: (1) `ptr..ptr+len` is `slot`, borrowed mutably for 'd, so
        // nothing else reads or writes it meanwhile; (2) it is aligned for
        // `A` (asserted); (3) its bytes are valid `A`s: any bytes are valid
        // for the numeric `Element`s and a `bool` buffer was just zeroed;
        // (4) `len` is a whole number of `A`s (the layout sized it so).
        let elements = unsafe { std::slice::from_raw_parts_mut(ptr, elements) };
        ArrayViewMut::from_shape(dim, elements).expect("array_view_mut: the shape is the layout's")
    }

    /// Whether this is a bare array's layout of `shape`: its one descriptor
    /// (right after the header) records exactly these axis lengths.
    fn is_bare_array_of(&self, shape: &[usize]) -> bool {
        let at = HEADER_LEN;
        let recorded = self.head.get(at + 1).map(|&ndim| ndim as usize);
        recorded == Some(shape.len())
            && shape.iter().enumerate().all(|(i, &d)| {
                let field = at + DESC_FIXED_LEN + 8 * i;
                self.head
                    .get(field..field + 8)
                    .is_some_and(|b| u64::from_le_bytes(b.try_into().expect("8")) == d as u64)
            })
    }

    /// Write `array` (any memory order) as the object of a layout made by
    /// [`of_array`](Self::of_array) from its shape: one copy, in parallel
    /// when large.
    ///
    /// # Panics
    /// As [`array_view_mut`](Self::array_view_mut).
    pub fn write_array<A: Element, S: Data<Elem = A>, D: Dimension>(&self, array: &ArrayBase<S, D>, dst: &mut [u8]) {
        let mut out = self.array_view_mut::<A, D>(dst, array.raw_dim());
        if let (Some(src), Some(dst)) = (array.as_slice(), out.as_slice_mut()) {
            // SAFETY: what is written is `src`'s bytes, valid `A`s.
            let dst = unsafe { crate::element::as_bytes_mut(dst) };
            crate::copy::copy_bytes(dst, crate::element::as_bytes(src));
            return;
        }
        crate::copy::assign(out, array.view());
    }
}

fn ser_error(e: SerError) -> EncodeError {
    match e {
        SerError::Fail(msg) => EncodeError::Unsupported(msg),
        SerError::Stop => EncodeError::Unsupported("internal: array measure signal escaped".into()),
    }
}

/// Measure `value` for the object format, stamping it with `type_fingerprint`
/// (the engine's fingerprint of the written type, checked again on every
/// read). Builds header and payload; array elements are not copied yet.
pub fn measure<T: Serialize + ?Sized>(value: &T, type_fingerprint: u64) -> Result<Layout, EncodeError> {
    measure_with(value, type_fingerprint, false)
}

fn measure_with<T: Serialize + ?Sized>(
    value: &T,
    type_fingerprint: u64,
    serde_only: bool,
) -> Result<Layout, EncodeError> {
    let mut ser = ObjectSerializer { serde_only, ..ObjectSerializer::default() };
    ser.value(value).map_err(ser_error)?;
    let ObjectSerializer { payload, arrays, refs, .. } = ser;
    layout(payload, arrays, refs, type_fingerprint)
}

/// Lay out an object: header, descriptors and payload, then the arrays.
#[inline]
fn layout(
    payload: Vec<u8>,
    arrays: Vec<CapturedArray>,
    refs: Vec<u64>,
    type_fingerprint: u64,
) -> Result<Layout, EncodeError> {
    let desc_len: usize = arrays.iter().map(|a| DESC_FIXED_LEN + 8 * a.shape.len()).sum();
    let payload_start = HEADER_LEN + desc_len;
    let head_len = payload_start + payload.len();
    let mut slots = Vec::with_capacity(arrays.len());
    let mut end = head_len;
    for array in &arrays {
        let offset = if array.len == 0 { end } else { align_up(end) };
        slots.push((offset, array.len, array.dtype));
        end = offset + array.len;
    }
    let total_len = if arrays.is_empty() { head_len } else { align_up(end) };

    let mut head = Vec::with_capacity(head_len);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&0u16.to_le_bytes());
    head.extend_from_slice(&type_fingerprint.to_le_bytes());
    let count = u32::try_from(arrays.len()).map_err(|_| EncodeError::Unsupported("too many arrays".into()))?;
    head.extend_from_slice(&count.to_le_bytes());
    let desc_len32 =
        u32::try_from(desc_len).map_err(|_| EncodeError::Unsupported("array descriptors too large".into()))?;
    head.extend_from_slice(&desc_len32.to_le_bytes());
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    head.extend_from_slice(&(total_len as u64).to_le_bytes());
    for (array, &(offset, len, _)) in arrays.iter().zip(&slots) {
        head.push(array.dtype as u8);
        head.push(array.shape.len() as u8);
        head.extend_from_slice(&[0u8; 6]);
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        head.extend_from_slice(&(len as u64).to_le_bytes());
        for d in &array.shape {
            head.extend_from_slice(&d.to_le_bytes());
        }
    }
    head.extend_from_slice(&payload);
    debug_assert_eq!(head.len(), head_len);
    Ok(Layout { head, payload_start, slots, total_len, refs, type_fingerprint })
}

/// A value encoded in the object format into bytes of its own: both passes
/// of [`measure`] and [`Layout::write_to`], into a `Vec`.
#[derive(Debug)]
pub struct Encoded {
    bytes: Vec<u8>,
    has_buffers: bool,
    refs: Vec<u64>,
    type_fingerprint: u64,
}

impl Encoded {
    /// Bytes of the object.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the value held ndarray arrays.
    pub fn has_buffers(&self) -> bool {
        self.has_buffers
    }

    /// Ids of the object references serialized inside the value.
    pub fn contained_refs(&self) -> &[u64] {
        &self.refs
    }

    /// The fingerprint the value was stamped with.
    pub fn type_fingerprint(&self) -> u64 {
        self.type_fingerprint
    }

    /// Copy the object into `dst`, which must be exactly
    /// [`total_len`](Self::total_len) bytes long.
    ///
    /// # Panics
    /// If `dst` has the wrong length.
    pub fn write_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.bytes.len(), "destination must match the object size");
        dst.copy_from_slice(&self.bytes);
    }

    /// The object's bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes
    }
}

/// Encode `value` in the object format into a byte vector of its own.
pub fn encode<T: Serialize + ?Sized>(value: &T, type_fingerprint: u64) -> Result<Encoded, EncodeError> {
    let layout = measure(value, type_fingerprint)?;
    let has_buffers = layout.has_buffers();
    let mut bytes = vec![0u8; layout.total_len()];
    layout.write_to(value, &mut bytes)?;
    Ok(Encoded { bytes, has_buffers, refs: layout.refs, type_fingerprint })
}

fn corrupt(msg: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(msg.into())
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

struct Parsed<'a> {
    type_fp: u64,
    buffers: Vec<BufferView>,
    payload: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", bytes.len())));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(corrupt(format!("format version {version}, this build reads {VERSION}")));
    }
    let type_fp = read_u64(bytes, 8);
    let count = read_u32(bytes, 16) as usize;
    let desc_len = read_u32(bytes, 20) as usize;
    let payload_len = usize::try_from(read_u64(bytes, 24)).map_err(|_| corrupt("payload length overflows"))?;
    let total_len = read_u64(bytes, 32);
    if total_len != bytes.len() as u64 {
        return Err(corrupt(format!("header says {total_len} bytes, object has {}", bytes.len())));
    }
    let payload_start = HEADER_LEN.checked_add(desc_len).ok_or_else(|| corrupt("descriptor length overflows"))?;
    let payload_end = payload_start.checked_add(payload_len).ok_or_else(|| corrupt("payload length overflows"))?;
    if payload_end > bytes.len() {
        return Err(corrupt("payload runs past the end of the object"));
    }
    if count > desc_len / DESC_FIXED_LEN {
        return Err(corrupt(format!("{count} buffers cannot fit {desc_len} descriptor bytes")));
    }
    let mut buffers = Vec::with_capacity(count);
    let mut at = HEADER_LEN;
    let mut prev_end = payload_end;
    for i in 0..count {
        if at + DESC_FIXED_LEN > payload_start {
            return Err(corrupt(format!("descriptor {i} runs past the descriptor table")));
        }
        let dtype =
            dtype_from_u8(bytes[at]).ok_or_else(|| corrupt(format!("buffer {i}: unknown dtype {}", bytes[at])))?;
        let ndim = bytes[at + 1] as usize;
        if ndim > MAX_NDIM {
            return Err(corrupt(format!("buffer {i}: {ndim} dimensions")));
        }
        let offset = usize::try_from(read_u64(bytes, at + 8)).map_err(|_| corrupt("offset overflows"))?;
        let len = usize::try_from(read_u64(bytes, at + 16)).map_err(|_| corrupt("length overflows"))?;
        at += DESC_FIXED_LEN;
        if at + 8 * ndim > payload_start {
            return Err(corrupt(format!("descriptor {i} shape runs past the descriptor table")));
        }
        let mut shape = Vec::with_capacity(ndim);
        // ndarray requires the product of the non-zero axis lengths to fit in
        // an isize, even when another axis is zero.
        let mut nonzero: usize = 1;
        for d in 0..ndim {
            let dim = usize::try_from(read_u64(bytes, at + 8 * d)).map_err(|_| corrupt("dimension overflows"))?;
            nonzero = nonzero
                .checked_mul(dim.max(1))
                .filter(|&n| n <= isize::MAX as usize)
                .ok_or_else(|| corrupt(format!("buffer {i}: element count overflows")))?;
            shape.push(dim);
        }
        let elements = if shape.contains(&0) { 0 } else { nonzero };
        at += 8 * ndim;
        let expected_len = elements.checked_mul(dtype.size()).ok_or_else(|| corrupt("buffer size overflows"))?;
        if (dtype == DType::Empty && elements != 0) || expected_len != len {
            return Err(corrupt(format!("buffer {i}: {len} bytes for shape {shape:?} of {dtype:?}")));
        }
        if len > 0 && offset % crate::ALIGN != 0 {
            return Err(corrupt(format!("buffer {i}: offset {offset} is not 64-byte aligned")));
        }
        let end = offset.checked_add(len).ok_or_else(|| corrupt("buffer end overflows"))?;
        if offset < prev_end || end > bytes.len() {
            return Err(corrupt(format!("buffer {i}: bytes {offset}..{end} overlap or run past the object")));
        }
        prev_end = end;
        let data = &bytes[offset..end];
        if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
            return Err(corrupt(format!("buffer {i}: bool buffer holds a byte other than 0 or 1")));
        }
        buffers.push(BufferView { dtype, shape, ptr: data.as_ptr(), len });
    }
    if at != payload_start {
        return Err(corrupt("descriptor table length does not match its descriptors"));
    }
    Ok(Parsed { type_fp, buffers, payload: &bytes[payload_start..payload_end] })
}

fn dtype_from_u8(b: u8) -> Option<DType> {
    use DType::*;
    Some(match b {
        0 => Empty,
        1 => Bool,
        2 => I8,
        3 => I16,
        4 => I32,
        5 => I64,
        6 => I128,
        7 => U8,
        8 => U16,
        9 => U32,
        10 => U64,
        11 => U128,
        12 => F32,
        13 => F64,
        _ => return None,
    })
}

/// Read only the type fingerprint of an object (checking its header).
pub fn read_type_fingerprint(bytes: &[u8]) -> Result<u64, DecodeError> {
    Ok(parse(bytes)?.type_fp)
}

/// If `T` is an owned ndarray `Array` of an [`Element`] type, decode it from
/// its buffer in one copy (parallel when large) instead of one serde call per
/// element; `None` for any other `T` (use [`decode`]).
pub fn decode_owned_array<T: Any>(bytes: &[u8], expected_fingerprint: u64) -> Option<Result<T, DecodeError>> {
    struct Bare<'a> {
        bytes: &'a [u8],
        fingerprint: u64,
        expected: &'static str,
    }
    impl BuildArray for Bare<'_> {
        type Error = DecodeError;
        fn build<A: Element, D: Dimension>(self) -> Result<Array<A, D>, DecodeError> {
            let parsed = parse(self.bytes)?;
            if parsed.type_fp != self.fingerprint {
                return Err(DecodeError::TypeMismatch { expected: self.expected });
            }
            let invalid = |message: &str| DecodeError::Invalid { expected: self.expected, message: message.into() };
            let [buffer] = &parsed.buffers[..] else { return Err(invalid("expected exactly one array")) };
            if parsed.payload != [0] {
                return Err(invalid("expected a bare array"));
            }
            owned_array(buffer).map_err(|message| invalid(&message))
        }
    }
    let bare = Bare { bytes, fingerprint: expected_fingerprint, expected: std::any::type_name::<T>() };
    known_arrays::build_for_seed::<PhantomData<T>, T, _>(bare)
}

/// Decode an object written by [`encode`] as a `T`, copying what it needs.
///
/// `expected_fingerprint` must equal the fingerprint the object was written
/// with, or the result is [`DecodeError::TypeMismatch`]. Owned arrays are copied
/// out; a [`SharedArray`](crate::SharedArray) inside `T` fails to decode here,
/// because nothing would keep `bytes` alive for it: see [`decode_in_place`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8], expected_fingerprint: u64) -> Result<T, DecodeError> {
    decode_inner(bytes, expected_fingerprint, None)
}

/// Decode an object as a `T` whose [`SharedArray`](crate::SharedArray)s view
/// `bytes` in place, each holding a clone of `keepalive`.
///
/// # Safety
/// While any clone of `keepalive` is alive, the memory of `bytes` must stay
/// mapped and must not be written by anyone. (The engine passes arena bytes of a
/// sealed object and a keepalive that holds the object's reference and the
/// arena mapping.)
pub unsafe fn decode_in_place<T: DeserializeOwned>(
    bytes: &[u8],
    expected_fingerprint: u64,
    keepalive: Keepalive,
) -> Result<T, DecodeError> {
    decode_inner(bytes, expected_fingerprint, Some(keepalive))
}

fn decode_inner<T: DeserializeOwned>(
    bytes: &[u8],
    expected_fingerprint: u64,
    keepalive: Option<Keepalive>,
) -> Result<T, DecodeError> {
    let parsed = parse(bytes)?;
    let expected = std::any::type_name::<T>();
    if parsed.type_fp != expected_fingerprint {
        return Err(DecodeError::TypeMismatch { expected });
    }
    let _context = decode_context::enter(DecodeContext { buffers: parsed.buffers, keepalive });
    let mut reader = PayloadReader::new(parsed.payload);
    let value = T::deserialize(&mut reader).map_err(|e| DecodeError::Invalid { expected, message: e.0 })?;
    if !reader.is_empty() {
        return Err(DecodeError::Invalid {
            expected,
            message: format!("{} trailing payload bytes", reader.remaining()),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, ArrayD, IxDyn};

    /// The object serde alone writes, and the one the array fast path writes.
    fn both_ways<T: Serialize + Any>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let serde_layout = measure_with(value, 7, true).unwrap();
        let layout = measure(value, 7).unwrap();
        let mut slow = vec![0xAA; serde_layout.total_len()];
        let mut fast = vec![0x55; layout.total_len()];
        serde_layout.write_with(value, &mut slow, true).unwrap();
        layout.write_to(value, &mut fast).unwrap();
        (slow, fast)
    }

    #[test]
    fn memcpy_fast_path_writes_what_serde_writes() {
        let a = Array2::from_shape_fn((5, 7), |(i, j)| (i * 7 + j) as f64 - 3.5);
        let (slow, fast) = both_ways(&a);
        assert_eq!(slow, fast);
        let back: Array2<f64> = decode(&fast, 7).unwrap();
        assert_eq!(back, a);

        // Not in standard layout: the fast path declines, serde order is kept.
        let transposed = a.clone().reversed_axes();
        assert!(transposed.as_slice().is_none());
        let (slow, fast) = both_ways(&transposed);
        assert_eq!(slow, fast);
        assert_eq!(decode::<Array2<f64>>(&fast, 7).unwrap(), transposed);

        let flags = Array1::from_iter((0..130).map(|i| i % 3 == 0));
        assert_eq!(both_ways(&flags).0, both_ways(&flags).1);
        let dynamic = ArrayD::<i16>::from_shape_fn(IxDyn(&[2, 3, 4]), |d| (d[0] * 100 + d[1] * 10 + d[2]) as i16);
        assert_eq!(both_ways(&dynamic).0, both_ways(&dynamic).1);
        let empty = Array1::<u64>::zeros(0);
        assert_eq!(both_ways(&empty).0, both_ways(&empty).1);
        // Arrays inside other values, standard or not, and empty.
        let nested = (1u8, a.clone(), vec![transposed.clone(), a.clone()], Some(empty.clone()), flags.clone());
        let (slow, fast) = both_ways(&nested);
        assert_eq!(slow, fast);
        assert_eq!(
            decode::<(u8, Array2<f64>, Vec<Array2<f64>>, Option<Array1<u64>>, Array1<bool>)>(&fast, 7).unwrap(),
            nested
        );
        // A large nested array: copied in parts by several threads.
        let large = vec![Array1::from_shape_fn((40 << 20) / 8, |i| i as f64)];
        let (slow, fast) = both_ways(&large);
        assert!(slow == fast);
        assert!(decode::<Vec<Array1<f64>>>(&fast, 7).unwrap() == large);
    }

    #[test]
    fn arrays_under_option_and_newtypes_decode_as_serde_would() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Wrapped(Array2<f32>);
        let a = Array2::from_shape_fn((33, 17), |(i, j)| (i * 17 + j) as f32);
        let value = (Some(a.clone()), Wrapped(a.clone()), Some(Array1::<bool>::from_elem(9, true)), None::<Array1<u8>>);
        let bytes = encode(&value, 4).unwrap().into_vec();
        assert_eq!(
            decode::<(Option<Array2<f32>>, Wrapped, Option<Array1<bool>>, Option<Array1<u8>>)>(&bytes, 4).unwrap(),
            value
        );
        // Another element type than written: serde's conversions still apply.
        let widened: Option<Array2<f64>> = decode(&encode(&Some(a.clone()), 4).unwrap().into_vec(), 4).unwrap();
        assert_eq!(widened.unwrap(), a.mapv(f64::from));
    }

    #[test]
    fn bare_array_layouts_match_measured_ones() {
        fn check<A: Element + Serialize, D: Dimension + Serialize>(array: Array<A, D>) {
            let measured = measure(&array, 3).unwrap();
            let built = Layout::of_array::<A>(array.shape(), 3).unwrap();
            assert_eq!(
                (built.total_len(), &built.head, &built.slots),
                (measured.total_len(), &measured.head, &measured.slots)
            );
        }
        check(Array2::<f32>::zeros((3, 5)));
        check(Array1::<bool>::from_elem(70, true));
        check(ArrayD::<u128>::zeros(IxDyn(&[2, 0, 4])));
        check(ndarray::arr0(1usize));
        check(Array1::<i8>::zeros(0));
        assert!(Layout::of_array::<f64>(&[usize::MAX, 2], 3).is_err());
        assert!(Layout::of_array::<u8>(&[usize::MAX, 0], 3).is_err(), "the non-zero axes must fit");
        assert_eq!(Layout::of_array::<u8>(&[1 << 40, 0], 3).unwrap().total_len() % 64, 0);
    }

    #[test]
    fn arrays_written_from_any_view_are_the_owned_arrays_objects() {
        fn check<A: Element + Serialize, S: ndarray::Data<Elem = A>, D: Dimension + Serialize>(
            array: &ArrayBase<S, D>,
        ) {
            let owned = array.as_standard_layout().into_owned();
            let layout = Layout::of_array::<A>(array.shape(), 5).unwrap();
            let mut written = vec![0xEE; layout.total_len()];
            layout.write_array(array, &mut written);
            assert_eq!(written, encode(&owned, 5).unwrap().into_vec());
        }
        let m = Array2::from_shape_fn((300, 7), |(i, j)| (i * 7 + j) as i32);
        check(&m);
        check(&m.view());
        check(&m.slice(ndarray::s![.., 2..5]));
        check(&m.slice(ndarray::s![..;-3, ..;2]));
        check(&m.t());
        check(&Array1::from_iter((0..99).map(|i| i % 2 == 0)).slice(ndarray::s![..;5]));
        check(&ArrayD::<f32>::zeros(IxDyn(&[3, 0, 2])));
        check(&ndarray::arr0(7u8));
        // Large and strided: assigned in parallel parts.
        let large = Array2::from_shape_fn((4096, 2048), |(i, j)| (i ^ j) as f64);
        check(&large.slice(ndarray::s![.., ..;2]));
        check(&large.t());
    }

    #[test]
    #[should_panic(expected = "not the layout's shape")]
    fn array_views_must_have_the_layouts_shape() {
        let layout = Layout::of_array::<f32>(&[3, 4], 1).unwrap();
        let mut dst = vec![0; layout.total_len()];
        let _ = layout.array_view_mut::<f32, _>(&mut dst, ndarray::Ix2(4, 3));
    }

    #[test]
    fn array_views_into_a_buffer_start_zeroed_for_bool() {
        let layout = Layout::of_array::<bool>(&[3, 4], 1).unwrap();
        let mut dst = vec![0x7F; layout.total_len()];
        let mut view = layout.array_view_mut::<bool, _>(&mut dst, ndarray::Ix2(3, 4));
        assert!(view.iter().all(|&b| !b));
        view[(1, 2)] = true;
        let back: Array2<bool> = decode(&dst, 1).unwrap();
        assert_eq!(back.iter().filter(|&&b| b).count(), 1);
        assert!(back[(1, 2)]);
    }

    #[test]
    fn owned_arrays_decode_fast_exactly_as_serde_does() {
        fn check<T: Serialize + serde::de::DeserializeOwned + Any + PartialEq + std::fmt::Debug>(value: T) {
            let bytes = encode(&value, 9).unwrap().into_vec();
            let fast = decode_owned_array::<T>(&bytes, 9).expect("an array type").unwrap();
            assert_eq!(fast, decode::<T>(&bytes, 9).unwrap());
            assert_eq!(fast, value);
            assert!(matches!(decode_owned_array::<T>(&bytes, 8), Some(Err(DecodeError::TypeMismatch { .. }))));
        }
        check(Array2::from_shape_fn((4, 9), |(i, j)| i as f64 * 0.5 - j as f64));
        check(Array2::from_shape_fn((4, 9), |(i, j)| i as f64 * 0.5 - j as f64).reversed_axes());
        check(Array1::from_iter((0..77).map(|i| i % 5 == 0)));
        check(ArrayD::<i128>::from_shape_fn(IxDyn(&[2, 1, 3]), |d| d[2] as i128 - 7));
        check(Array1::<u16>::zeros(0));
        check(ndarray::arr0(3.5f32));
        // Not a bare array, or another type: not this path's business.
        assert!(decode_owned_array::<(u8, Array1<f64>)>(&[], 0).is_none());
        assert!(decode_owned_array::<String>(&[], 0).is_none());
        // The right array type but the wrong shape on disk is an error, not a panic.
        let bytes = encode(&Array1::<f64>::zeros(3), 9).unwrap().into_vec();
        assert!(matches!(decode_owned_array::<Array2<f64>>(&bytes, 9), Some(Err(_))));
    }
}
