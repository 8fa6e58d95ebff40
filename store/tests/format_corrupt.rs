//! Corrupt objects: every header, descriptor and buffer inconsistency is a
//! `DecodeError::Corrupt`, payload garbage is a `DecodeError::Invalid`, and
//! nothing a reader is handed makes it panic or allocate wildly.

mod common;

use std::collections::HashMap;

use common::{
    AlignedBytes, Descriptor, FP, TestResult, descriptors, field, header, keepalive, object_without_arrays, payload,
    put_u16, put_u32, put_u64, varint,
};
use ndarray::{Array, Array1, Array2, Ix1, Ix2, arr1};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_store::format::HEADER_LEN;
use shoal_store::{DecodeError, SharedArray, decode, decode_in_place, encode, read_type_fingerprint};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    label: String,
    values: Array2<f64>,
    mask: Array1<bool>,
    counts: Array1<i32>,
    n: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SampleView {
    label: String,
    values: SharedArray<f64, Ix2>,
    mask: SharedArray<bool, Ix1>,
    counts: SharedArray<i32, Ix1>,
    n: u64,
}

fn sample() -> Sample {
    Sample {
        label: "sample".into(),
        // 16 f64 = 128 bytes: two 64-byte blocks.
        values: Array::from_shape_fn((4, 4), |(i, j)| (i * 4 + j) as f64),
        mask: arr1(&[true, false, true, true, false]),
        counts: arr1(&[-1, 0, 1]),
        n: 99,
    }
}

fn sample_bytes() -> Vec<u8> {
    encode(&sample(), FP).unwrap().into_vec()
}

/// Decode `bytes` every way a reader can; never panics (a panic fails the
/// test that calls it). Touches every view that comes back.
fn decode_all_ways(bytes: &[u8]) -> [Result<(), DecodeError>; 4] {
    let owned = decode::<Sample>(bytes, FP).map(|_| ());
    let other = decode::<(String, u64, Vec<u8>)>(bytes, FP).map(|_| ());
    let fp = read_type_fingerprint(bytes).map(|_| ());
    let aligned = AlignedBytes::new(bytes);
    // SAFETY: `aligned` is not written and outlives the view, which is
    // dropped at the end of this function.
    let view = unsafe { decode_in_place::<SampleView>(aligned.as_slice(), FP, keepalive()) }.map(|v| {
        std::hint::black_box(v.values.as_slice().iter().sum::<f64>());
        std::hint::black_box(v.mask.as_slice().iter().filter(|&&b| b).count());
        std::hint::black_box(v.counts.as_slice().iter().map(|&x| i64::from(x)).sum::<i64>());
        // `view()` is left out when an axis exceeds isize::MAX: see
        // `empty_array_with_a_huge_axis_is_refused`.
        let fits = |shape: &[usize]| shape.iter().all(|&d| d <= isize::MAX as usize);
        if fits(v.values.shape()) {
            std::hint::black_box(v.values.view().sum());
        }
        std::hint::black_box(v.mask.view().iter().filter(|&&b| b).count());
        // Elements are data, not structure: any i32 is valid, so a corrupt
        // element may be i32::MIN or i32::MAX. Sum them wrapping (ndarray's
        // `sum()` would overflow-panic in a debug build: the harness must not
        // be what panics).
        std::hint::black_box(v.counts.view().iter().fold(0i32, |acc, &x| acc.wrapping_add(x)));
        std::hint::black_box((v.label.len(), v.n));
    });
    [owned, other, fp, view]
}

#[track_caller]
fn assert_corrupt(bytes: &[u8], what: &str) {
    let results = decode_all_ways(bytes);
    for (i, r) in results.iter().enumerate() {
        assert!(matches!(r, Err(DecodeError::Corrupt(_))), "{what}: reader {i} gave {r:?}, expected Corrupt");
    }
}

fn with(f: impl FnOnce(&mut Vec<u8>, &[Descriptor])) -> Vec<u8> {
    let mut bytes = sample_bytes();
    let descs = descriptors(&bytes);
    f(&mut bytes, &descs);
    bytes
}

#[test]
fn the_sample_is_valid() {
    let bytes = sample_bytes();
    let [owned, other, fp, view] = decode_all_ways(&bytes);
    assert_eq!((owned, fp, view), (Ok(()), Ok(()), Ok(())));
    // The wrong type reads the label, then fails on what follows.
    assert!(matches!(other, Err(DecodeError::Invalid { .. })), "{other:?}");
    assert_eq!(decode::<Sample>(&bytes, FP).unwrap(), sample());
    let descs = descriptors(&bytes);
    assert_eq!(descs.len(), 3);
    assert_eq!(descs[0].len, 128);
    assert_eq!(descs[1].dtype, shoal_store::DType::Bool as u8);
}

/// The corrupt case `random_byte_overwrites_never_panic` once hit: a single
/// byte edit inside the `counts` buffer (i32 `[-1, 0, 1]` at object offset
/// 384). The object stays structurally valid — element bytes are data — and
/// decodes to other values; what panicked ("attempt to add with overflow") was
/// `decode_all_ways` summing the view with ndarray's overflow-checked `sum()`,
/// not the decoder.
#[test]
fn element_values_that_overflow_a_sum_decode_and_do_not_panic() {
    let counts = descriptors(&sample_bytes())[2].offset as usize;
    assert_eq!(counts, 384, "the sample's layout changed; the edits below assume it");
    // byte 387 = 0x7f: counts[0] = 0x7fff_ffff, and i32::MAX + 0 + 1 overflows.
    // byte 391 = 0x80: counts[1] = i32::MIN, and -1 + i32::MIN overflows.
    for (at, v, expected) in [(counts + 3, 0x7f, [i32::MAX, 0, 1]), (counts + 7, 0x80, [-1, i32::MIN, 1])] {
        let bytes = with(|b, _| b[at] = v);
        let [owned, other, fp, view] = decode_all_ways(&bytes);
        assert_eq!((owned, fp, view), (Ok(()), Ok(()), Ok(())), "byte {at} = {v:#04x}");
        assert!(matches!(other, Err(DecodeError::Invalid { .. })), "byte {at} = {v:#04x}: {other:?}");
        let decoded = decode::<Sample>(&bytes, FP).unwrap();
        assert_eq!(decoded.counts, arr1(&expected), "byte {at} = {v:#04x}");
        let aligned = AlignedBytes::new(&bytes);
        // SAFETY: `aligned` is not written and outlives the view.
        let view = unsafe { decode_in_place::<SampleView>(aligned.as_slice(), FP, keepalive()) }.unwrap();
        assert_eq!(view.counts.as_slice(), &expected);
    }
}

/// Every single-byte overwrite of the sample, every value: no reader panics.
/// (Exhaustive over one edit, so the one-edit cases of
/// `random_byte_overwrites_never_panic` cannot hide behind luck.)
#[test]
fn every_single_byte_overwrite_never_panics() {
    let base = sample_bytes();
    let mut bytes = base.clone();
    for i in 0..base.len() {
        for v in 0..=u8::MAX {
            bytes[i] = v;
            let _ = decode_all_ways(&bytes);
        }
        bytes[i] = base[i];
    }
}

#[test]
fn truncated_objects_are_corrupt() {
    let bytes = sample_bytes();
    for n in 0..bytes.len() {
        assert_corrupt(&bytes[..n], &format!("truncated to {n}"));
    }
    // Also when the total length is patched to match: corrupt until the last
    // buffer is whole again (only padding is missing after that).
    let last = descriptors(&bytes).last().cloned().unwrap();
    let end = (last.offset + last.len) as usize;
    for n in HEADER_LEN..bytes.len() {
        let mut t = bytes[..n].to_vec();
        put_u64(&mut t, field::TOTAL_LEN, n as u64);
        if n < end {
            assert_corrupt(&t, &format!("truncated to {n} with a matching total"));
        } else {
            assert_eq!(decode::<Sample>(&t, FP).unwrap(), sample(), "only padding cut at {n}");
        }
    }
}

#[test]
fn extended_objects_are_corrupt() {
    let mut bytes = sample_bytes();
    bytes.push(0);
    assert_corrupt(&bytes, "one byte appended");
    bytes.extend_from_slice(&[0; 63]);
    assert_corrupt(&bytes, "64 bytes appended");
}

#[test]
fn bad_magic_and_version() {
    for i in 0..4 {
        assert_corrupt(&with(|b, _| b[i] ^= 0x20), &format!("magic byte {i}"));
    }
    assert_corrupt(&with(|b, _| b[..4].copy_from_slice(b"\0\0\0\0")), "zero magic");
    for v in [0u16, 2, 0x100, u16::MAX] {
        assert_corrupt(&with(|b, _| put_u16(b, field::VERSION, v)), &format!("version {v}"));
    }
}

#[test]
fn header_lengths() {
    let len = sample_bytes().len() as u64;
    for total in [0, len - 1, len + 1, len + 64, u64::MAX, 1 << 63] {
        assert_corrupt(&with(|b, _| put_u64(b, field::TOTAL_LEN, total)), &format!("total {total}"));
    }
    for p in [len, len - HEADER_LEN as u64 + 1, u64::MAX, u64::MAX - 39, 1 << 63] {
        assert_corrupt(&with(|b, _| put_u64(b, field::PAYLOAD_LEN, p)), &format!("payload length {p}"));
    }
    let desc_len = header(&sample_bytes()).desc_len;
    for d in [0, 1, desc_len - 1, desc_len + 1, desc_len - 8, desc_len + 8, desc_len + 24, u32::MAX, len as u32] {
        assert_corrupt(&with(|b, _| put_u32(b, field::DESC_LEN, d)), &format!("descriptor length {d}"));
    }
    for c in [0u32, 1, 2, 4, 5, 1000, u32::MAX] {
        assert_corrupt(&with(|b, _| put_u32(b, field::COUNT, c)), &format!("count {c}"));
    }
}

#[test]
fn payload_length_off_by_one_is_an_error() {
    // Not always detectable as corrupt (the neighbouring byte may be padding),
    // but the payload then fails to decode.
    let p = header(&sample_bytes()).payload_len;
    for q in [p - 1, p + 1] {
        let bytes = with(|b, _| put_u64(b, field::PAYLOAD_LEN, q));
        assert!(decode::<Sample>(&bytes, FP).is_err(), "payload length {q}");
    }
}

#[test]
fn descriptor_dtype_and_ndim() {
    for dtype in [14u8, 15, 100, 255] {
        assert_corrupt(&with(|b, d| b[d[0].at] = dtype), &format!("dtype {dtype}"));
    }
    assert_corrupt(&with(|b, d| b[d[0].at] = 0), "f64 buffer marked empty");
    assert_corrupt(&with(|b, d| b[d[0].at] = shoal_store::DType::Bool as u8), "f64 buffer marked bool");
    assert_corrupt(&with(|b, d| b[d[2].at] = shoal_store::DType::I16 as u8), "i32 buffer marked i16");
    assert_corrupt(&with(|b, d| b[d[2].at] = shoal_store::DType::I128 as u8), "i32 buffer marked i128");
    for ndim in [0u8, 1, 3, 7, 33, 255] {
        assert_corrupt(&with(|b, d| b[d[0].at + 1] = ndim), &format!("ndim {ndim} for a 2-d buffer"));
    }
    assert_corrupt(&with(|b, d| b[d[2].at + 1] = 2), "ndim 2 for the last 1-d buffer");
}

#[test]
fn descriptor_offsets() {
    let off = |b: &mut Vec<u8>, d: &Descriptor, v: u64| put_u64(b, d.at + Descriptor::OFFSET, v);
    for delta in [1u64, 8, 32, 63] {
        assert_corrupt(&with(|b, d| off(b, &d[0], d[0].offset + delta)), &format!("offset +{delta}"));
        assert_corrupt(&with(|b, d| off(b, &d[0], d[0].offset - delta)), &format!("offset -{delta}"));
    }
    assert_corrupt(&with(|b, d| off(b, &d[0], 0)), "buffer over the header");
    assert_corrupt(&with(|b, d| off(b, &d[1], d[0].offset)), "two buffers at one offset");
    assert_corrupt(&with(|b, d| off(b, &d[1], d[0].offset + 64)), "buffer inside the previous one");
    assert_corrupt(
        &with(|b, d| {
            off(b, &d[1], d[2].offset);
            off(b, &d[2], d[1].offset);
        }),
        "buffers out of order",
    );
    let total = sample_bytes().len() as u64;
    assert_corrupt(&with(|b, d| off(b, &d[2], total)), "buffer at the end of the object");
    assert_corrupt(&with(|b, d| off(b, &d[2], total + 64)), "buffer past the end");
    assert_corrupt(&with(|b, d| off(b, &d[2], u64::MAX - 63)), "offset near u64::MAX");
    assert_corrupt(&with(|b, d| off(b, &d[2], 1 << 63)), "offset 2^63");
    assert_corrupt(&with(|b, d| off(b, &d[2], u64::MAX)), "offset u64::MAX");
}

#[test]
fn descriptor_lengths_and_shapes() {
    let len = |b: &mut Vec<u8>, d: &Descriptor, v: u64| put_u64(b, d.at + Descriptor::LEN, v);
    for v in [0, 120, 127, 129, 136, 256, u64::MAX, u64::MAX - 63, 1 << 63] {
        assert_corrupt(&with(|b, d| len(b, &d[0], v)), &format!("length {v} for 128 bytes of data"));
    }
    assert_corrupt(&with(|b, d| len(b, &d[1], 6)), "bool length 6 for shape [5]");
    let dim = |b: &mut Vec<u8>, d: &Descriptor, i: usize, v: u64| put_u64(b, d.shape_at(i), v);
    for v in [0, 3, 5, 8, u64::MAX, 1 << 61, 1 << 32] {
        assert_corrupt(&with(|b, d| dim(b, &d[0], 0, v)), &format!("dimension {v}"));
    }
    assert_corrupt(
        &with(|b, d| {
            dim(b, &d[0], 0, 1 << 32);
            dim(b, &d[0], 1, 1 << 32);
        }),
        "element count overflows",
    );
    assert_corrupt(
        &with(|b, d| {
            dim(b, &d[0], 0, 1 << 61);
            dim(b, &d[0], 1, 2);
        }),
        "byte count overflows",
    );
    assert_corrupt(
        &with(|b, d| {
            dim(b, &d[0], 0, u64::MAX);
            len(b, &d[0], u64::MAX);
        }),
        "huge shape and length",
    );
    // Consistent, but the buffer then runs past the object.
    assert_corrupt(
        &with(|b, d| {
            dim(b, &d[0], 0, 1 << 20);
            len(b, &d[0], (1 << 20) * 4 * 8);
        }),
        "consistent but too long",
    );
}

#[test]
fn bool_buffers_hold_only_zero_and_one() {
    for (i, v) in [(0usize, 2u8), (4, 2), (2, 255), (1, 0x10)] {
        assert_corrupt(&with(|b, d| b[d[1].offset as usize + i] = v), &format!("bool byte {i} = {v}"));
    }
    // Bytes past the bool buffer (padding) are not elements.
    let bytes = with(|b, d| b[d[1].offset as usize + 5] = 2);
    assert_eq!(decode::<Sample>(&bytes, FP).unwrap(), sample());
}

#[test]
fn bool_check_also_for_a_lone_bool_array() {
    let mut bytes = encode(&arr1(&[false; 70]), FP).unwrap().into_vec();
    let d = descriptors(&bytes)[0].clone();
    bytes[d.offset as usize + 69] = 3;
    assert!(matches!(decode::<Array1<bool>>(&bytes, FP), Err(DecodeError::Corrupt(_))));
}

#[test]
fn empty_dtype_with_elements_is_corrupt() {
    // An empty array's buffer has the "empty" dtype; giving it elements (with
    // the matching zero length) must not pass.
    let mut bytes = encode(&Array2::<f64>::zeros((0, 3)), FP).unwrap().into_vec();
    let d = descriptors(&bytes)[0].clone();
    assert_eq!(d.dtype, 0);
    put_u64(&mut bytes, d.shape_at(0), 2);
    assert!(matches!(decode::<Array2<f64>>(&bytes, FP), Err(DecodeError::Corrupt(_))));
}

#[test]
fn empty_array_with_a_huge_axis_is_refused() {
    let mut bytes = encode(&Array2::<f64>::zeros((0, 3)), FP).unwrap().into_vec();
    let d = descriptors(&bytes)[0].clone();
    put_u64(&mut bytes, d.shape_at(1), u64::MAX);
    // The owned path already refuses it (ndarray checks the shape).
    assert!(decode::<Array2<f64>>(&bytes, FP).is_err());
    let aligned = AlignedBytes::new(&bytes);
    // SAFETY: `aligned` is not written and outlives the view.
    let r = unsafe { decode_in_place::<SharedArray<f64, Ix2>>(aligned.as_slice(), FP, keepalive()) };
    match r {
        Err(_) => {}
        Ok(v) => {
            // Today this is reached; the next line panics in a debug build.
            let n = v.view().len();
            panic!("a {:?} view of {n} elements was made", v.shape());
        }
    }
}

#[test]
fn buffer_index_past_the_table_is_invalid() -> TestResult {
    let mut bytes = encode(&arr1(&[1.0f64, 2.0]), FP)?.into_vec();
    let h = header(&bytes);
    let at = HEADER_LEN + h.desc_len as usize;
    assert_eq!(payload(&bytes), &[0]);
    for index in [1u8, 2, 127] {
        bytes[at] = index;
        assert!(matches!(decode::<Array1<f64>>(&bytes, FP), Err(DecodeError::Invalid { .. })));
        let aligned = AlignedBytes::new(&bytes);
        // SAFETY: `aligned` is not written and outlives the view.
        let r = unsafe { decode_in_place::<SharedArray<f64, Ix1>>(aligned.as_slice(), FP, keepalive()) };
        assert!(matches!(r, Err(DecodeError::Invalid { .. })), "{r:?}");
    }
    Ok(())
}

#[track_caller]
fn assert_invalid<T: DeserializeOwned + std::fmt::Debug>(payload: &[u8]) {
    let bytes = object_without_arrays(FP, payload);
    let r = decode::<T>(&bytes, FP);
    assert!(matches!(r, Err(DecodeError::Invalid { .. })), "payload {payload:02x?}: {r:?}");
}

#[test]
fn hand_built_objects_match_the_encoder() {
    let v = (String::from("abc"), 7u64);
    assert_eq!(object_without_arrays(FP, &postcard::to_stdvec(&v).unwrap()), encode(&v, FP).unwrap().into_vec());
}

#[test]
fn huge_lengths_in_the_payload_are_invalid_not_allocations() {
    for len in [u64::MAX, 1 << 40, u64::from(u32::MAX), 1000] {
        let p = varint(len.into());
        assert_invalid::<Vec<u64>>(&p);
        assert_invalid::<Vec<u8>>(&p);
        assert_invalid::<Vec<u128>>(&p);
        assert_invalid::<Vec<Vec<u8>>>(&p);
        assert_invalid::<String>(&p);
        assert_invalid::<HashMap<u64, String>>(&p);
        assert_invalid::<std::collections::BTreeMap<u8, u8>>(&p);
        let mut with_tail = p.clone();
        with_tail.extend_from_slice(&[1; 16]);
        assert_invalid::<Vec<u64>>(&with_tail);
        assert_invalid::<HashMap<u8, u8>>(&with_tail);
    }
}

#[test]
fn malformed_payload_values_are_invalid() {
    assert_invalid::<u8>(&[]);
    assert_invalid::<u64>(&[0x80]);
    assert_invalid::<u128>(&[0xff; 20]);
    assert_invalid::<u128>(&[0xff; 25]);
    assert_invalid::<u64>(&[0xff; 11]);
    assert_invalid::<u64>(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
    assert_invalid::<u32>(&varint(1 << 32));
    assert_invalid::<u16>(&varint(1 << 16));
    assert_invalid::<i16>(&varint(1 << 16));
    assert_invalid::<i64>(&[0xff; 10]);
    assert_invalid::<bool>(&[2]);
    assert_invalid::<Option<u8>>(&[2, 0]);
    assert_invalid::<String>(&[2, 0xc3, 0x28]);
    assert_invalid::<String>(&[3, 0xed, 0xa0, 0x80]);
    assert_invalid::<char>(&[0]);
    assert_invalid::<char>(&[2, b'a', b'b']);
    assert_invalid::<f64>(&[0; 7]);
    assert_invalid::<Result<u8, u8>>(&[2, 0]);
    assert_invalid::<Result<u8, u8>>(&varint(1 << 40));
    assert_invalid::<(u8, u8)>(&[1]);
    assert_invalid::<u8>(&[1, 2]);
    // Array indices go through the same varint reader.
    assert_invalid::<Array1<f64>>(&[0]);
    assert_invalid::<Array1<f64>>(&varint(u128::from(u64::MAX)));
}

fn field_positions(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut fields = vec![
        (field::VERSION, 2),
        (field::FLAGS, 2),
        (field::COUNT, 4),
        (field::DESC_LEN, 4),
        (field::PAYLOAD_LEN, 8),
        (field::TOTAL_LEN, 8),
    ];
    for d in descriptors(bytes) {
        fields.push((d.at, 1));
        fields.push((d.at + 1, 1));
        fields.push((d.at + Descriptor::OFFSET, 8));
        fields.push((d.at + Descriptor::LEN, 8));
        for i in 0..d.shape.len() {
            fields.push((d.shape_at(i), 8));
        }
    }
    fields
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 63),
        Just(1 << 63),
        Just(u64::from(u32::MAX)),
        (0u64..16).prop_map(|k| k * 64),
        0u64..1024,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_byte_overwrites_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = sample_bytes();
        for (i, v) in &edits {
            let i = i.index(bytes.len());
            bytes[i] = *v;
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn random_bit_flips_in_the_head_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4)) {
        let mut bytes = sample_bytes();
        let h = header(&bytes);
        let head = HEADER_LEN + h.desc_len as usize + h.payload_len as usize;
        for (i, bit) in &flips {
            bytes[i.index(head)] ^= 1 << bit;
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn random_header_fields_never_panic(picks in prop::collection::vec((any::<prop::sample::Index>(), interesting_u64()), 1..4)) {
        let mut bytes = sample_bytes();
        let fields = field_positions(&bytes);
        for (pick, value) in &picks {
            let (at, width) = fields[pick.index(fields.len())];
            bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn truncation_with_a_patched_total_never_panics(cut in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        let full = sample_bytes();
        let n = HEADER_LEN + cut.index(full.len() - HEADER_LEN + 1);
        let mut bytes = full[..n].to_vec();
        put_u64(&mut bytes, field::TOTAL_LEN, n as u64);
        for (i, v) in &edits {
            let i = i.index(n);
            bytes[i] = *v;
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_magic_never_panic(rest in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"SHOL\x01\x00".to_vec();
        bytes.extend_from_slice(&rest);
        if bytes.len() >= HEADER_LEN {
            let n = bytes.len() as u64;
            put_u64(&mut bytes, field::TOTAL_LEN, n);
        }
        let _ = decode_all_ways(&bytes);
    }

    #[test]
    fn random_payloads_never_panic(p in prop::collection::vec(any::<u8>(), 0..200)) {
        let bytes = object_without_arrays(FP, &p);
        let _ = decode::<Vec<(String, Option<HashMap<u16, Vec<char>>>, Result<i128, f32>)>>(&bytes, FP);
        let _ = decode::<(u128, i64, bool, Option<String>, Vec<Vec<u8>>)>(&bytes, FP);
        let _ = decode::<Vec<Array1<f64>>>(&bytes, FP);
    }
}
