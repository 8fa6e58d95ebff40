//! Helpers shared by the integration tests of `shoal-store`: a reader for the
//! object header and descriptor table (written from the layout documented in
//! `format.rs`, independently of the crate's own parser), a 64-byte aligned
//! byte buffer, and a hand-built object writer for payload-level tests.

#![allow(dead_code)]

use std::sync::Arc;

use shoal_store::format::HEADER_LEN;
use shoal_store::{Arena, Encoded, Keepalive};

/// What a test returns.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A type fingerprint used by most tests.
pub const FP: u64 = 0x5eed_f00d_dead_beef;

/// Byte offsets of the header fields.
pub mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const FLAGS: usize = 6;
    pub const FINGERPRINT: usize = 8;
    pub const COUNT: usize = 16;
    pub const DESC_LEN: usize = 20;
    pub const PAYLOAD_LEN: usize = 24;
    pub const TOTAL_LEN: usize = 32;
}

/// The fixed header, decoded by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u16,
    pub flags: u16,
    pub fingerprint: u64,
    pub count: u32,
    pub desc_len: u32,
    pub payload_len: u64,
    pub total_len: u64,
}

pub fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

pub fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

pub fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

pub fn put_u16(bytes: &mut [u8], at: usize, v: u16) {
    bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn header(bytes: &[u8]) -> Header {
    assert!(bytes.len() >= HEADER_LEN, "object shorter than its header");
    Header {
        magic: bytes[0..4].try_into().unwrap(),
        version: get_u16(bytes, field::VERSION),
        flags: get_u16(bytes, field::FLAGS),
        fingerprint: get_u64(bytes, field::FINGERPRINT),
        count: get_u32(bytes, field::COUNT),
        desc_len: get_u32(bytes, field::DESC_LEN),
        payload_len: get_u64(bytes, field::PAYLOAD_LEN),
        total_len: get_u64(bytes, field::TOTAL_LEN),
    }
}

/// One buffer descriptor, decoded by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Where this descriptor starts inside the object.
    pub at: usize,
    pub dtype: u8,
    pub ndim: u8,
    pub reserved: [u8; 6],
    pub offset: u64,
    pub len: u64,
    pub shape: Vec<u64>,
}

impl Descriptor {
    pub const DTYPE: usize = 0;
    pub const NDIM: usize = 1;
    pub const OFFSET: usize = 8;
    pub const LEN: usize = 16;
    pub const SHAPE: usize = 24;

    /// Position of the `d`-th shape entry inside the object.
    pub fn shape_at(&self, d: usize) -> usize {
        self.at + Self::SHAPE + 8 * d
    }
}

pub fn descriptors(bytes: &[u8]) -> Vec<Descriptor> {
    let h = header(bytes);
    let mut at = HEADER_LEN;
    let mut out = Vec::new();
    for _ in 0..h.count {
        let ndim = bytes[at + 1];
        let shape = (0..ndim as usize).map(|d| get_u64(bytes, at + 24 + 8 * d)).collect();
        out.push(Descriptor {
            at,
            dtype: bytes[at],
            ndim,
            reserved: bytes[at + 2..at + 8].try_into().unwrap(),
            offset: get_u64(bytes, at + 8),
            len: get_u64(bytes, at + 16),
            shape,
        });
        at += 24 + 8 * ndim as usize;
    }
    assert_eq!(at, HEADER_LEN + h.desc_len as usize, "descriptor table length");
    out
}

/// The payload of a well-formed object.
pub fn payload(bytes: &[u8]) -> &[u8] {
    let h = header(bytes);
    let start = HEADER_LEN + h.desc_len as usize;
    &bytes[start..start + h.payload_len as usize]
}

/// A hand-built object without arrays: header then `payload`.
pub fn object_without_arrays(fingerprint: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(b"SHOL");
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&((HEADER_LEN + payload.len()) as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Postcard's unsigned varint.
pub fn varint(mut v: u128) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// A heap byte buffer whose first byte is 64-byte aligned, like an object in
/// the arena.
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBytes {
    pub fn new(bytes: &[u8]) -> Self {
        let mut out = AlignedBytes { blocks: vec![Block([0; 64]); bytes.len().div_ceil(64)], len: bytes.len() };
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `blocks` owns at least `len` contiguous, initialised bytes
        // (`Block` is `repr(C)` plain bytes without padding), and the returned
        // slice borrows `self`, so the storage outlives it.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the slice borrows `self` mutably, so it is
        // the only reference to those bytes.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A keepalive that holds nothing.
pub fn keepalive() -> Keepalive {
    Arc::new(())
}

/// An arena holding `encoded` at `offset` (which must be 64-byte aligned), as
/// the store owner would place it.
pub fn place(encoded: &Encoded, offset: u64) -> Arc<Arena> {
    let len = encoded.total_len() as u64;
    let arena = Arena::create((offset + len).max(1).next_multiple_of(4096), true).expect("create arena");
    // SAFETY: the arena was just created by this function and nothing else
    // references it; the range is written here and never again.
    let dst = unsafe { arena.bytes_mut(offset, len) }.expect("range inside the arena");
    encoded.write_to(dst);
    Arc::new(arena)
}

/// Cases per property test: `default` (short, as `cargo test` runs them in
/// CI), or `PROPTEST_CASES` for a longer run (see ARCHITECTURE.md).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}
