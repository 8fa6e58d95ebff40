//! Fuzzing the object decoder over generated values: every value of a rich
//! type (strings, options, maps, nested owned and shared arrays of several
//! element types and shapes) round-trips through `encode` and every reader;
//! its encoding damaged anywhere, and bytes that are no object at all, are
//! an error or a value, never a panic. (`format_corrupt.rs` edits one fixed
//! object field by field; this varies the object.)
//!
//! Short by default; `PROPTEST_CASES` sets the cases for a longer run.

mod common;

use std::collections::BTreeMap;

use common::{AlignedBytes, FP, keepalive};
use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2, IxDyn};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shoal_store::format::HEADER_LEN;
use shoal_store::{
    DecodeError, SharedArray, decode, decode_in_place, decode_owned_array, encode, read_type_fingerprint,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    name: String,
    weights: Array2<f32>,
    flags: Option<Array1<bool>>,
    tensor: ArrayD<i64>,
    extra: BTreeMap<u16, Vec<Array1<u8>>>,
    tail: (i128, Option<char>),
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordView {
    name: String,
    weights: SharedArray<f32, Ix2>,
    flags: Option<SharedArray<bool, Ix1>>,
    tensor: SharedArray<i64, IxDyn>,
    extra: BTreeMap<u16, Vec<SharedArray<u8, Ix1>>>,
    tail: (i128, Option<char>),
}

fn shape2() -> impl Strategy<Value = (usize, usize)> {
    (0usize..6, 0usize..6)
}

fn record() -> impl Strategy<Value = Record> {
    let weights = shape2()
        .prop_flat_map(|(r, c)| prop::collection::vec(any::<f32>(), r * c).prop_map(move |v| (r, c, v)))
        .prop_map(|(r, c, v)| Array2::from_shape_vec((r, c), v).unwrap());
    let flags = prop::option::of(prop::collection::vec(any::<bool>(), 0..70).prop_map(Array1::from));
    let tensor = prop::collection::vec(0usize..4, 0..4)
        .prop_flat_map(|shape| {
            let n: usize = shape.iter().product();
            prop::collection::vec(any::<i64>(), n).prop_map(move |v| (shape.clone(), v))
        })
        .prop_map(|(shape, v)| ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap());
    let extra = prop::collection::btree_map(
        any::<u16>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100).prop_map(Array1::from), 0..3),
        0..3,
    );
    (".{0,24}", weights, flags, tensor, extra, (any::<i128>(), any::<Option<char>>()))
        .prop_map(|(name, weights, flags, tensor, extra, tail)| Record { name, weights, flags, tensor, extra, tail })
}

/// `f32` NaNs compare unequal: compare the bits.
fn same(a: &Record, b: &Record) -> bool {
    let bits = |w: &Array2<f32>| w.mapv(f32::to_bits);
    bits(&a.weights) == bits(&b.weights)
        && (&a.name, &a.flags, &a.tensor, &a.extra, &a.tail) == (&b.name, &b.flags, &b.tensor, &b.extra, &b.tail)
}

/// Every reader of `bytes`; none may panic. Touches every view it gets.
fn read_every_way(bytes: &[u8]) -> Vec<Result<(), DecodeError>> {
    let aligned = AlignedBytes::new(bytes);
    // SAFETY: `aligned` is not written and outlives the view, dropped here.
    let view = unsafe { decode_in_place::<RecordView>(aligned.as_slice(), FP, keepalive()) }.map(|v| {
        std::hint::black_box(v.weights.as_slice().iter().map(|x| x.to_bits()).fold(0u32, u32::wrapping_add));
        std::hint::black_box(v.flags.map(|f| f.as_slice().iter().filter(|&&b| b).count()));
        std::hint::black_box(v.tensor.as_slice().iter().fold(0i64, |a, &x| a.wrapping_add(x)));
        for arrays in v.extra.values() {
            for a in arrays {
                std::hint::black_box(a.as_slice().iter().map(|&x| u64::from(x)).sum::<u64>());
            }
        }
    });
    vec![
        decode::<Record>(bytes, FP).map(|_| ()),
        view,
        decode::<(String, Vec<u64>, Option<String>)>(bytes, FP).map(|_| ()),
        decode::<Vec<Array1<f64>>>(bytes, FP).map(|_| ()),
        decode_owned_array::<Array2<f32>>(bytes, FP).expect("an array type").map(|_| ()),
        read_type_fingerprint(bytes).map(|_| ()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_values_round_trip_through_every_reader(value in record()) {
        let bytes = encode(&value, FP).unwrap().into_vec();
        prop_assert!(same(&decode::<Record>(&bytes, FP).unwrap(), &value));
        prop_assert_eq!(read_type_fingerprint(&bytes).unwrap(), FP);
        let mismatch = matches!(decode::<Record>(&bytes, FP ^ 1), Err(DecodeError::TypeMismatch { .. }));
        prop_assert!(mismatch, "another fingerprint is a type mismatch");
        let aligned = AlignedBytes::new(&bytes);
        // SAFETY: `aligned` is not written and outlives the view.
        let view = unsafe { decode_in_place::<RecordView>(aligned.as_slice(), FP, keepalive()) }.unwrap();
        prop_assert_eq!(view.weights.view().mapv(f32::to_bits), value.weights.mapv(f32::to_bits));
        prop_assert_eq!(view.flags.as_ref().map(|f| f.view().to_owned()), value.flags.clone());
        prop_assert_eq!(view.tensor.view().to_owned(), value.tensor.clone());
        prop_assert_eq!(&view.name, &value.name);
        for (k, arrays) in &value.extra {
            let seen: Vec<Array1<u8>> = view.extra[k].iter().map(|a| a.view().to_owned()).collect();
            prop_assert_eq!(&seen, arrays);
        }
        let bare = encode(&value.weights, FP).unwrap().into_vec();
        let fast = decode_owned_array::<Array2<f32>>(&bare, FP).unwrap().unwrap();
        prop_assert_eq!(fast.mapv(f32::to_bits), value.weights.mapv(f32::to_bits));
    }

    #[test]
    fn fuzz_damaged_encodings_never_panic(
        value in record(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        head_only in any::<bool>(),
    ) {
        let mut bytes = encode(&value, FP).unwrap().into_vec();
        // Half the cases edit only the header, descriptor table and payload,
        // where a byte changes structure rather than an element.
        let head = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize
            + u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize
            + HEADER_LEN;
        let span = if head_only { head.min(bytes.len()) } else { bytes.len() };
        for (i, v) in &edits {
            let i = i.index(span);
            bytes[i] = *v;
        }
        let _ = read_every_way(&bytes);
    }

    #[test]
    fn fuzz_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= HEADER_LEN {
            // Past the first checks, so the rest of the parser sees them.
            bytes[..6].copy_from_slice(b"SHOL\x01\x00");
            let n = bytes.len() as u64;
            bytes[32..40].copy_from_slice(&n.to_le_bytes());
        }
        for r in read_every_way(&bytes) {
            prop_assert!(r.is_err() || magic, "arbitrary bytes without the magic decoded");
        }
    }
}
