//! ndarray arrays in the object format: every element type, every dimension
//! kind, empty arrays, non-standard layouts, arrays nested in other values,
//! and the buffer table (alignment, lengths, contents).

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;

use common::{FP, TestResult, descriptors, header, payload, varint};
use ndarray::{
    Array, Array0, Array1, Array2, Array3, ArrayBase, ArrayD, ArrayView, Axis, Data, Dimension, Ix0, Ix1, Ix2, Ix3,
    Ix4, Ix5, Ix6, IxDyn, ShapeBuilder, arr1, s,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_store::format::HEADER_LEN;
use shoal_store::{ALIGN, DType, DecodeError, Element, EncodeError, decode, encode};

/// An element type with sample values and a bitwise comparison.
trait Sample: Element + Debug {
    fn sample(i: usize) -> Self;
    fn same(&self, other: &Self) -> bool;
    fn le(&self, out: &mut Vec<u8>);
}

macro_rules! sample_int {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn sample(i: usize) -> Self {
                match i {
                    0 => <$t>::MIN,
                    1 => <$t>::MAX,
                    2 => 0,
                    3 => 1,
                    _ => (i as $t).wrapping_mul(37).wrapping_sub(<$t>::MAX / 3),
                }
            }
            fn same(&self, other: &Self) -> bool {
                self == other
            }
            fn le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
sample_int!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, isize, usize);

macro_rules! sample_float {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn sample(i: usize) -> Self {
                match i {
                    0 => <$t>::NAN,
                    1 => -0.0,
                    2 => <$t>::INFINITY,
                    3 => <$t>::MIN_POSITIVE / 2.0,
                    4 => <$t>::MIN,
                    5 => <$t>::from_bits(<$t>::NAN.to_bits() | 0x1234),
                    _ => i as $t * 0.25 - 3.0,
                }
            }
            fn same(&self, other: &Self) -> bool {
                self.to_bits() == other.to_bits()
            }
            fn le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
sample_float!(f32, f64);

impl Sample for bool {
    fn sample(i: usize) -> Self {
        i % 3 == 0
    }
    fn same(&self, other: &Self) -> bool {
        self == other
    }
    fn le(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

fn make<A: Sample, D: Dimension>(shape: impl ShapeBuilder<Dim = D>) -> Array<A, D> {
    let mut i = 0;
    Array::from_shape_simple_fn(shape, || {
        i += 1;
        A::sample(i - 1)
    })
}

fn same_array<A: Sample, S1, S2, D1, D2>(a: &ArrayBase<S1, D1>, b: &ArrayBase<S2, D2>) -> bool
where
    S1: Data<Elem = A>,
    S2: Data<Elem = A>,
    D1: Dimension,
    D2: Dimension,
{
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| x.same(y))
}

/// The little-endian bytes of the elements in logical (C) order.
fn c_order_bytes<A: Sample, S: Data<Elem = A>, D: Dimension>(a: &ArrayBase<S, D>) -> Vec<u8> {
    let mut out = Vec::new();
    for x in a.iter() {
        x.le(&mut out);
    }
    out
}

/// Checks the buffer table of a well-formed object: offsets 64-byte aligned
/// (non-empty buffers), after the payload, ascending, non-overlapping, inside
/// the object. Returns the descriptors.
fn check_table(bytes: &[u8]) -> Vec<common::Descriptor> {
    let h = header(bytes);
    let descs = descriptors(bytes);
    let payload_end = (HEADER_LEN + h.desc_len as usize + h.payload_len as usize) as u64;
    let mut prev_end = payload_end;
    for d in &descs {
        assert_eq!(d.reserved, [0; 6]);
        if d.len > 0 {
            assert_eq!(d.offset % ALIGN as u64, 0, "buffer offset {} not 64-byte aligned", d.offset);
        }
        assert!(d.offset >= prev_end, "buffer at {} overlaps what precedes it (ends {prev_end})", d.offset);
        prev_end = d.offset + d.len;
        assert!(prev_end <= bytes.len() as u64);
    }
    assert_eq!(bytes.len() as u64, h.total_len);
    assert_eq!(bytes.len() % ALIGN, 0, "an object with buffers is padded to 64 bytes");
    descs
}

/// Encodes one array, checks the whole object, decodes it back as `Array<A, D>`
/// and as `ArrayD<A>`.
fn check<A, S, D>(a: &ArrayBase<S, D>)
where
    A: Sample,
    S: Data<Elem = A>,
    D: Dimension + Serialize + DeserializeOwned,
{
    let encoded = encode(a, FP).expect("encode");
    assert!(encoded.has_buffers());
    assert!(encoded.contained_refs().is_empty());
    let total = encoded.total_len();
    let bytes = encoded.into_vec();
    assert_eq!(bytes.len(), total);

    let descs = check_table(&bytes);
    assert_eq!(descs.len(), 1);
    let d = &descs[0];
    assert_eq!(usize::from(d.ndim), a.ndim());
    assert_eq!(d.shape, a.shape().iter().map(|&n| n as u64).collect::<Vec<_>>());
    assert_eq!(d.len as usize, a.len() * std::mem::size_of::<A>());
    if a.is_empty() {
        assert!(d.dtype == DType::Empty as u8 || d.dtype == A::DTYPE as u8, "dtype {}", d.dtype);
    } else {
        assert_eq!(d.dtype, A::DTYPE as u8);
    }
    let buffer = &bytes[d.offset as usize..(d.offset + d.len) as usize];
    assert_eq!(buffer, &c_order_bytes(a)[..], "buffer holds the elements in C order, little-endian");
    assert_eq!(payload(&bytes), &[0], "the payload is the buffer index");

    let back: Array<A, D> = decode(&bytes, FP).expect("decode as Array");
    assert!(same_array(&back, a), "{back:?} != {a:?}");
    assert!(back.is_standard_layout());
    let dynamic: ArrayD<A> = decode(&bytes, FP).expect("decode as ArrayD");
    assert!(same_array(&dynamic, a));
}

fn every_dimension<A: Sample>() {
    check(&Array0::from_elem((), A::sample(0)));
    check(&Array0::from_elem((), A::sample(5)));
    check(&make::<A, Ix1>(7));
    check(&make::<A, Ix1>(0));
    check(&make::<A, Ix1>(1));
    check(&make::<A, Ix2>((3, 4)));
    check(&make::<A, Ix2>((0, 4)));
    check(&make::<A, Ix2>((4, 0)));
    check(&make::<A, Ix3>((2, 3, 4)));
    check(&make::<A, Ix3>((2, 0, 3)));
    check(&make::<A, Ix4>((2, 1, 3, 2)));
    check(&make::<A, Ix5>((1, 2, 1, 2, 3)));
    check(&make::<A, Ix6>((2, 1, 2, 1, 2, 2)));
    check(&make::<A, Ix6>((2, 1, 2, 0, 2, 2)));
    check(&make::<A, IxDyn>(IxDyn(&[])));
    check(&make::<A, IxDyn>(IxDyn(&[7])));
    check(&make::<A, IxDyn>(IxDyn(&[2, 3, 2])));
    check(&make::<A, IxDyn>(IxDyn(&[1, 1, 2, 1, 1, 1, 1, 2])));
    check(&make::<A, IxDyn>(IxDyn(&[0, 4])));
    // A size that is not a multiple of 64 bytes for any element type.
    check(&make::<A, Ix1>(67));
}

macro_rules! every_dimension_tests {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        #[test]
        fn $name() {
            every_dimension::<$t>();
        }
    )*};
}

every_dimension_tests! {
    array_bool: bool, array_i8: i8, array_i16: i16, array_i32: i32, array_i64: i64, array_i128: i128,
    array_u8: u8, array_u16: u16, array_u32: u32, array_u64: u64, array_u128: u128,
    array_f32: f32, array_f64: f64, array_usize: usize, array_isize: isize,
}

/// A view in any layout is written as its standard-layout copy would be.
fn check_view<D>(v: ArrayView<'_, f64, D>)
where
    D: Dimension + Serialize + DeserializeOwned,
{
    let from_view = encode(&v, FP).unwrap().into_vec();
    let from_owned = encode(&v.to_owned(), FP).unwrap().into_vec();
    assert_eq!(from_view, from_owned, "a view and its owned copy encode alike");
    check(&v);
    let back: Array<f64, D> = decode(&from_view, FP).unwrap();
    assert_eq!(back, v);
}

#[test]
fn non_standard_layouts() {
    let a: Array3<f64> = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (100 * i + 10 * j + k) as f64);
    check_view(a.t());
    check_view(a.slice(s![.., ..;2, 1..]));
    check_view(a.slice(s![..;-1, .., ..;-3]));
    check_view(a.view().permuted_axes([1, 2, 0]));
    check_view(a.slice(s![1, .., ..]));
    check_view(a.index_axis(Axis(2), 3));
    check_view(a.slice(s![.., 1, 2]));
    check_view(a.slice(s![.., 1..1, ..]));
    // `to_owned` of a transposed view keeps its (Fortran) memory order.
    let owned_t = a.t().to_owned();
    check_view(owned_t.view());
    check(&owned_t);
    let standard_t = a.t().as_standard_layout().into_owned();
    assert!(standard_t.is_standard_layout());
    check_view(standard_t.view());

    let f: Array2<f64> = Array::from_shape_vec((3, 4).f(), (0..12).map(f64::from).collect()).unwrap();
    assert!(!f.is_standard_layout());
    check_view(f.view());
    check(&f);

    let row = arr1(&[1.0, 2.0, 3.0]);
    let broadcast = row.broadcast((4, 3)).unwrap();
    check_view(broadcast);
    check_view(row.slice(s![..;-1]));

    let dynamic = a.clone().into_dyn();
    check_view(dynamic.view().reversed_axes());
}

#[test]
fn transposed_buffer_contents() -> TestResult {
    let a = ndarray::arr2(&[[1u32, 2, 3], [4, 5, 6]]);
    let bytes = encode(&a.t(), FP)?.into_vec();
    let d = &descriptors(&bytes)[0];
    assert_eq!(d.shape, vec![3, 2]);
    let words: Vec<u32> = bytes[d.offset as usize..(d.offset + d.len) as usize]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(words, vec![1, 4, 2, 5, 3, 6]);
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    WithArray(Array1<i8>),
    Struct { a: Array2<f64>, label: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Batch {
    name: String,
    weights: Array2<f32>,
    history: Vec<Array1<i64>>,
    mask: Option<Array1<bool>>,
    by_key: BTreeMap<String, ArrayD<u16>>,
    pair: (Array0<u128>, u8),
    kind: Vec<Kind>,
    empty: Array2<f64>,
    tail: u64,
}

fn batch() -> Batch {
    Batch {
        name: "batch".into(),
        weights: make((5, 7)),
        history: vec![make(3), make(0), make(17)],
        mask: Some(make(9)),
        by_key: [("a".to_string(), make(IxDyn(&[2, 2, 2]))), ("b".to_string(), make(IxDyn(&[1])))]
            .into_iter()
            .collect(),
        pair: (Array0::from_elem((), u128::MAX), 4),
        kind: vec![Kind::Plain, Kind::WithArray(make(65)), Kind::Struct { a: make((2, 2)), label: "s".into() }],
        empty: make((0, 3)),
        tail: u64::MAX,
    }
}

#[test]
fn arrays_nested_in_structs_vecs_maps_and_enums() -> TestResult {
    let value = batch();
    let encoded = encode(&value, FP)?;
    assert!(encoded.has_buffers());
    let bytes = encoded.into_vec();
    let descs = check_table(&bytes);
    // weights, 3 × history, mask, 2 × by_key, pair.0, WithArray, Struct.a, empty
    assert_eq!(descs.len(), 11);
    let dtypes: Vec<u8> = descs.iter().map(|d| d.dtype).collect();
    use DType::*;
    let expected = [F32, I64, Empty, I64, Bool, U16, U16, U128, I8, F64, Empty].map(|d| d as u8);
    assert_eq!(dtypes, expected);
    assert_eq!(descs[0].shape, vec![5, 7]);
    assert_eq!(descs[6].shape, vec![1]);
    assert_eq!(descs[10].shape, vec![0, 3]);
    let back: Batch = decode(&bytes, FP)?;
    // The sample floats include NaN: compare by re-encoding, and field by
    // field where `==` is meaningful.
    assert_eq!(encode(&back, FP)?.into_vec(), bytes);
    assert_eq!(back.history, value.history);
    assert_eq!(back.by_key, value.by_key);
    assert_eq!(back.kind[1], value.kind[1]);
    assert_eq!((back.pair, back.tail, back.mask), (value.pair, value.tail, value.mask));
    assert!(same_array(&back.weights, &value.weights));
    assert_eq!(back.empty.shape(), &[0, 3]);

    let just_vec: Vec<Array2<i32>> = (0..5).map(|n| make((n, 3))).collect();
    let bytes = encode(&just_vec, FP)?.into_vec();
    assert_eq!(check_table(&bytes).len(), 5);
    assert_eq!(decode::<Vec<Array2<i32>>>(&bytes, FP)?, just_vec);
    Ok(())
}

#[test]
fn payload_replaces_each_array_by_its_index() -> TestResult {
    let value = (String::from("xyz"), make::<u8, Ix1>(3), vec![make::<u8, Ix1>(100), make::<u8, Ix1>(1)], 500u16);
    let bytes = encode(&value, FP)?.into_vec();
    let mirror = (String::from("xyz"), 0u32, vec![1u32, 2], 500u16);
    assert_eq!(payload(&bytes), &postcard::to_stdvec(&mirror)?[..]);

    // More than 127 arrays: indices become multi-byte varints.
    let many: Vec<Array1<u8>> = (0..200).map(|i| make(i % 3)).collect();
    let bytes = encode(&many, FP)?.into_vec();
    let mut expected = varint(200);
    for i in 0..200 {
        expected.extend(varint(i));
    }
    assert_eq!(payload(&bytes), &expected[..]);
    assert_eq!(check_table(&bytes).len(), 200);
    assert_eq!(decode::<Vec<Array1<u8>>>(&bytes, FP)?, many);
    Ok(())
}

#[test]
fn has_buffers_only_with_arrays() -> TestResult {
    assert!(!encode(&Vec::<Array1<f64>>::new(), FP)?.has_buffers());
    assert!(!encode(&None::<Array1<f64>>, FP)?.has_buffers());
    assert!(!encode(&(1u8, vec![1.0f64, 2.0]), FP)?.has_buffers());
    assert!(encode(&Some(make::<f64, Ix1>(2)), FP)?.has_buffers());
    assert!(encode(&make::<f64, Ix1>(0), FP)?.has_buffers(), "an empty array still is an array");
    // Without buffers, the object is header + descriptors-free payload only.
    let e = encode(&None::<Array1<f64>>, FP)?;
    assert_eq!(e.total_len(), HEADER_LEN + 1);
    Ok(())
}

#[test]
fn elements_that_are_not_numbers_are_refused() {
    let strings = Array1::from(vec!["a".to_string(), "b".to_string()]);
    assert!(matches!(encode(&strings, FP), Err(EncodeError::Unsupported(_))));
    let chars = Array1::from(vec!['a']);
    assert!(matches!(encode(&chars, FP), Err(EncodeError::Unsupported(_))));
    let options = Array1::from(vec![Some(1.0f64), None]);
    assert!(matches!(encode(&options, FP), Err(EncodeError::Unsupported(_))));
    let tuples = Array1::from(vec![(1i32, 2i32)]);
    assert!(matches!(encode(&tuples, FP), Err(EncodeError::Unsupported(_))));
    let nested = Array1::from(vec![arr1(&[1.0f64])]);
    assert!(matches!(encode(&nested, FP), Err(EncodeError::Unsupported(_))));

    // With no elements there is nothing to refuse: it round-trips empty.
    let none: Array1<String> = Array1::from(Vec::<String>::new());
    let bytes = encode(&none, FP).unwrap().into_vec();
    assert_eq!(decode::<Array1<String>>(&bytes, FP).unwrap(), none);
}

#[test]
fn owned_array_of_fewer_dimensions_is_refused() {
    let bytes = encode(&make::<f64, Ix2>((2, 3)), FP).unwrap().into_vec();
    assert!(matches!(decode::<Array3<f64>>(&bytes, FP), Err(DecodeError::Invalid { .. })));
    let bytes = encode(&make::<f64, Ix0>(()), FP).unwrap().into_vec();
    assert!(matches!(decode::<Array1<f64>>(&bytes, FP), Err(DecodeError::Invalid { .. })));
}

#[test]
fn owned_array_of_more_dimensions_is_refused() {
    let bytes = encode(&make::<f64, Ix3>((2, 3, 1)), FP).unwrap().into_vec();
    let three_as_two = decode::<Array2<f64>>(&bytes, FP);
    let bytes = encode(&make::<f64, Ix1>(1), FP).unwrap().into_vec();
    let one_as_zero = decode::<Array0<f64>>(&bytes, FP);
    assert!(
        matches!(three_as_two, Err(DecodeError::Invalid { .. }))
            && matches!(one_as_zero, Err(DecodeError::Invalid { .. })),
        "Array3 (2,3,1) read as Array2: {three_as_two:?}; Array1 [1] read as Array0: {one_as_zero:?}"
    );
}

#[test]
fn large_array_roundtrip() -> TestResult {
    let a: Array2<f64> = Array::from_shape_fn((256, 300), |(i, j)| (i * 300 + j) as f64);
    let bytes = encode(&(a.view(), a.t()), FP)?.into_vec();
    let descs = check_table(&bytes);
    assert_eq!(descs[1].offset, descs[0].offset + 256 * 300 * 8);
    let (x, y): (Array2<f64>, Array2<f64>) = decode(&bytes, FP)?;
    assert_eq!(x, a);
    assert_eq!(y, a.t());
    Ok(())
}

#[test]
fn write_to_zeroes_every_padding_byte() -> TestResult {
    let value =
        (String::from("odd"), make::<u8, Ix1>(3), make::<f64, Ix2>((3, 3)), make::<i16, Ix1>(0), make::<bool, Ix1>(5));
    let encoded = encode(&value, FP)?;
    let mut dirty = vec![0xa5u8; encoded.total_len()];
    encoded.write_to(&mut dirty);
    let clean = encode(&value, FP)?.into_vec();
    assert_eq!(dirty, clean);
    // Every byte outside head and buffers is zero.
    let h = header(&dirty);
    let mut cursor = HEADER_LEN + h.desc_len as usize + h.payload_len as usize;
    for d in check_table(&dirty) {
        assert!(dirty[cursor..d.offset as usize].iter().all(|&b| b == 0), "padding before {}", d.offset);
        cursor = (d.offset + d.len) as usize;
    }
    assert!(dirty[cursor..].iter().all(|&b| b == 0), "trailing padding");
    assert!(cursor < dirty.len(), "the sample ends with padding");
    Ok(())
}
