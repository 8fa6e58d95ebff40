//! Round trips of values without ndarray arrays through the object format,
//! byte-for-byte postcard compatibility of the payload, the header, type
//! fingerprints, object references and encoder errors.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::time::Duration;

use common::{FP, TestResult, header, object_without_arrays, payload};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use shoal_store::format::{HEADER_LEN, MAGIC, VERSION};
use shoal_store::{DecodeError, EncodeError, REF_MARKER, decode, encode, read_type_fingerprint};

/// Encode, check the header and postcard compatibility, decode, compare.
fn roundtrip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let decoded = roundtrip_unchecked(value);
    assert_eq!(&decoded, value, "round trip changed the value");
}

/// As [`roundtrip`], leaving the comparison to the caller (for NaN).
fn roundtrip_unchecked<T>(value: &T) -> T
where
    T: Serialize + DeserializeOwned + Debug,
{
    let encoded = encode(value, FP).expect("encode");
    assert!(!encoded.has_buffers(), "{value:?} holds no array");
    assert!(encoded.contained_refs().is_empty());
    let total = encoded.total_len();
    let bytes = encoded.into_vec();
    assert_eq!(bytes.len(), total);
    let expected_payload = postcard::to_stdvec(value).expect("postcard");
    assert_eq!(&bytes[HEADER_LEN..], &expected_payload[..], "payload of {value:?} differs from postcard");
    let h = header(&bytes);
    assert_eq!(h.magic, MAGIC);
    assert_eq!(h.version, VERSION);
    assert_eq!(h.flags, 0);
    assert_eq!(h.fingerprint, FP);
    assert_eq!(h.count, 0);
    assert_eq!(h.desc_len, 0);
    assert_eq!(h.payload_len, expected_payload.len() as u64);
    assert_eq!(h.total_len, bytes.len() as u64);
    assert_eq!(bytes, object_without_arrays(FP, &expected_payload));
    assert_eq!(read_type_fingerprint(&bytes), Ok(FP));
    decode::<T>(&bytes, FP).expect("decode")
}

#[test]
fn integers_of_every_width() {
    roundtrip(&[i8::MIN, -1, 0, 1, i8::MAX]);
    roundtrip(&[u8::MIN, 1, 127, 128, u8::MAX]);
    roundtrip(&[i16::MIN, -129, -1, 0, 63, 64, 8191, 8192, i16::MAX]);
    roundtrip(&[u16::MIN, 127, 128, 16383, 16384, u16::MAX]);
    roundtrip(&[i32::MIN, -65, -64, 0, 64, i32::MAX]);
    roundtrip(&[u32::MIN, 1 << 7, 1 << 14, 1 << 21, 1 << 28, u32::MAX]);
    roundtrip(&[i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX]);
    roundtrip(&[u64::MIN, 1 << 35, 1 << 63, u64::MAX - 1, u64::MAX]);
    roundtrip(&[i128::MIN, i128::MIN + 1, -1, 0, 1, i128::MAX - 1, i128::MAX]);
    roundtrip(&[u128::MIN, 1, 1 << 64, 1 << 126, 1 << 127, u128::MAX - 1, u128::MAX]);
    roundtrip(&[usize::MIN, 300, usize::MAX]);
    roundtrip(&[isize::MIN, -300, 0, isize::MAX]);
    // Single values, not only inside tuples.
    roundtrip(&i128::MIN);
    roundtrip(&u128::MAX);
    roundtrip(&-12345i64);
    roundtrip(&u8::MAX);
}

#[test]
fn floats_keep_their_bits() {
    let f32s = [
        0.0f32,
        -0.0,
        1.5,
        -2.25,
        f32::MIN,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 4.0,
        f32::EPSILON,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fc0_1234),
    ];
    for x in f32s {
        let back = roundtrip_unchecked(&x);
        assert_eq!(back.to_bits(), x.to_bits(), "{x:?}");
    }
    let f64s = [
        0.0f64,
        -0.0,
        std::f64::consts::PI,
        -1e300,
        f64::MIN,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 1024.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_0000_dead_beef),
    ];
    for x in f64s {
        let back = roundtrip_unchecked(&x);
        assert_eq!(back.to_bits(), x.to_bits(), "{x:?}");
    }
    let v = vec![(f32::NAN, f64::NAN), (-0.0, -0.0)];
    let back = roundtrip_unchecked(&v);
    let bits = |v: &[(f32, f64)]| v.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&v));
}

#[test]
fn bool_char_and_strings() {
    roundtrip(&true);
    roundtrip(&false);
    roundtrip(&[true, false, true]);
    for c in ['\0', 'a', '\u{7f}', '\u{80}', 'é', '€', '\u{ffff}', '𝄞', char::MAX] {
        roundtrip(&c);
    }
    roundtrip(&String::new());
    roundtrip(&"hello".to_string());
    roundtrip(&"ünïcødé ✓ 𝄞".to_string());
    roundtrip(&"x".repeat(127));
    roundtrip(&"y".repeat(128));
    roundtrip(&"z".repeat(70_000));
    roundtrip(&"nul\0inside".to_string());
}

#[test]
fn sequences_tuples_and_maps() {
    roundtrip(&Vec::<u32>::new());
    roundtrip(&vec![1u32, 2, 3]);
    roundtrip(&(0..1000).map(|i| i * 7919 - 3_000_000).collect::<Vec<i64>>());
    roundtrip(&vec![0u8; 300]);
    roundtrip(&vec![vec![String::from("a")], vec![], vec![String::from("b"), String::from("c")]]);
    roundtrip(&());
    roundtrip(&(1u8,));
    roundtrip(&(1u8, -2i16, 3u32, -4i64, 5u128, 'c', String::from("six"), true));
    roundtrip(&((1u8, 2u8), ((3u8,), ()), [4u16, 5, 6]));
    roundtrip(&[0u64; 0]);
    roundtrip(&[[1i32, 2], [3, 4], [5, 6]]);

    let mut hm: HashMap<String, Vec<i32>> = HashMap::new();
    hm.insert("one".into(), vec![1]);
    hm.insert("empty".into(), vec![]);
    hm.insert("many".into(), (0..50).collect());
    roundtrip(&hm);
    roundtrip(&HashMap::<u8, u8>::new());
    let hm2: HashMap<(i8, bool), Option<char>> = [((1, true), Some('x')), ((-1, false), None)].into_iter().collect();
    roundtrip(&hm2);

    let bm: BTreeMap<i64, BTreeMap<String, f64>> =
        (0..10).map(|i| (i - 5, (0..i).map(|j| (format!("k{j}"), j as f64 / 3.0)).collect())).collect();
    roundtrip(&bm);
    roundtrip(&(0..20u16).collect::<BTreeSet<_>>());
    roundtrip(&["a", "b", "c"].iter().map(|s| s.to_string()).collect::<HashSet<_>>());
    roundtrip(&std::collections::VecDeque::from(vec![3u8, 2, 1]));
}

#[test]
fn options_and_nesting() {
    roundtrip(&None::<u32>);
    roundtrip(&Some(7u32));
    roundtrip(&Some(None::<u8>));
    roundtrip(&Some(Some(0u8)));
    roundtrip(&None::<Option<u8>>);
    roundtrip(&vec![Some(1i16), None, Some(-1)]);
    roundtrip(&Some((String::from("x"), vec![Some(vec![None, Some(true)])])));
    roundtrip(&Ok::<u8, String>(3));
    roundtrip(&Err::<u8, String>("bad".into()));
    roundtrip(&Box::new(Some(Box::new(5u64))));
    roundtrip(&Duration::new(u64::MAX, 999_999_999));
    type Nested = Vec<HashMap<String, Vec<(u8, Option<BTreeMap<u32, String>>)>>>;
    let nested: Nested = vec![
        HashMap::new(),
        [("k".to_string(), vec![(1, None), (2, Some([(9, "nine".to_string())].into_iter().collect()))])]
            .into_iter()
            .collect(),
    ];
    roundtrip(&nested);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Poly { points: Vec<(i32, i32)>, closed: bool },
    Nested(Box<Shape>),
    Tagged(String, Option<Box<Shape>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair(i8, u128);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NoFields {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    shape: Shape,
    unit: Unit,
    meters: Meters,
    pair: Pair,
    empty: NoFields,
    #[serde(skip)]
    cache: Option<u32>,
    children: Vec<Record>,
    attrs: BTreeMap<String, Shape>,
    #[serde(rename = "renamed")]
    flag: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Generic<T, U> {
    a: T,
    b: Vec<U>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Big {
    V0,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    #[serde(rename = "late")]
    V10(u8),
}

fn record(depth: u32) -> Record {
    Record {
        id: u64::from(depth) * 1_000_003,
        name: format!("record-{depth}"),
        tags: (0..depth).map(|i| format!("t{i}")).collect(),
        shape: match depth % 4 {
            0 => Shape::Empty,
            1 => Shape::Circle(-1.25),
            2 => Shape::Rect(3, u32::MAX),
            _ => Shape::Poly { points: vec![(0, 0), (i32::MIN, i32::MAX)], closed: true },
        },
        unit: Unit,
        meters: Meters(depth as f64 * 0.5),
        pair: Pair(-(depth as i8), u128::MAX - u128::from(depth)),
        empty: NoFields {},
        cache: None,
        children: if depth == 0 { vec![] } else { vec![record(depth - 1), record(depth / 2)] },
        attrs: [("s".to_string(), Shape::Nested(Box::new(Shape::Tagged("t".into(), None))))].into_iter().collect(),
        flag: (depth % 2 == 0).then_some(depth % 3 == 0),
    }
}

#[test]
fn enums_of_every_variant_kind() {
    for s in [
        Shape::Empty,
        Shape::Circle(2.5),
        Shape::Rect(0, u32::MAX),
        Shape::Poly { points: vec![], closed: false },
        Shape::Poly { points: vec![(1, -1), (i32::MAX, i32::MIN)], closed: true },
        Shape::Nested(Box::new(Shape::Nested(Box::new(Shape::Circle(-0.5))))),
        Shape::Tagged("x".into(), Some(Box::new(Shape::Rect(1, 2)))),
    ] {
        roundtrip(&s);
    }
    roundtrip(&vec![Shape::Empty, Shape::Rect(9, 9), Shape::Empty]);
    roundtrip(&Big::V9);
    roundtrip(&Big::V10(200));
    roundtrip(&[Big::V0, Big::V1, Big::V5]);
}

#[test]
fn user_structs() {
    roundtrip(&Unit);
    roundtrip(&vec![Unit, Unit, Unit]);
    roundtrip(&Meters(-3.5));
    roundtrip(&Pair(i8::MIN, u128::MAX));
    roundtrip(&NoFields {});
    roundtrip(&Generic { a: 'q', b: vec![Some(Unit), None] });
    roundtrip(&Generic { a: Generic { a: 1u8, b: vec![2u8] }, b: vec![(); 5] });
    roundtrip(&record(0));
    roundtrip(&record(6));
}

#[test]
fn skipped_field_comes_back_as_default() {
    let mut r = record(1);
    r.cache = Some(42);
    let bytes = encode(&r, FP).unwrap().into_vec();
    let back: Record = decode(&bytes, FP).unwrap();
    assert_eq!(back.cache, None);
    r.cache = None;
    assert_eq!(back, r);
}

#[test]
fn fingerprint_mismatch_is_type_mismatch() -> TestResult {
    let bytes = encode(&String::from("hello"), 1)?.into_vec();
    assert_eq!(read_type_fingerprint(&bytes)?, 1);
    assert_eq!(
        decode::<String>(&bytes, 2),
        Err(DecodeError::TypeMismatch { expected: std::any::type_name::<String>() })
    );
    assert_eq!(decode::<u64>(&bytes, 0), Err(DecodeError::TypeMismatch { expected: "u64" }));
    assert_eq!(
        decode::<String>(&bytes, u64::MAX),
        Err(DecodeError::TypeMismatch { expected: "alloc::string::String" })
    );
    assert_eq!(decode::<String>(&bytes, 1)?, "hello");

    let bytes = encode(&record(2), 0)?.into_vec();
    assert!(matches!(decode::<Record>(&bytes, 1), Err(DecodeError::TypeMismatch { .. })));
    assert_eq!(decode::<Record>(&bytes, 0)?, record(2));
    Ok(())
}

fn invalid<T: DeserializeOwned + Debug>(bytes: &[u8]) -> String {
    match decode::<T>(bytes, FP) {
        Err(DecodeError::Invalid { expected, message }) => {
            assert_eq!(expected, std::any::type_name::<T>());
            message
        }
        other => panic!("expected Invalid decoding as {}, got {other:?}", std::any::type_name::<T>()),
    }
}

#[test]
fn wrong_type_with_same_fingerprint_is_invalid_not_garbage() {
    // "hello" is [5, h, e, l, l, o]: a u64 reads 5 and leaves 5 bytes.
    let s = encode(&String::from("hello"), FP).unwrap().into_vec();
    let msg = invalid::<u64>(&s);
    assert!(msg.contains("trailing"), "{msg}");
    invalid::<bool>(&s);
    invalid::<(u8, u8)>(&s);
    invalid::<Shape>(&s);

    // 300 is [0xac, 0x02]: as a string that is 44 bytes, but only 1 follows.
    let n = encode(&300u64, FP).unwrap().into_vec();
    invalid::<String>(&n);
    invalid::<u8>(&n);
    invalid::<Option<u8>>(&n);

    // u32::MAX does not fit a u16 or an i8.
    let big = encode(&u32::MAX, FP).unwrap().into_vec();
    invalid::<u16>(&big);
    invalid::<char>(&big);

    // A record read as a different struct.
    let r = encode(&record(3), FP).unwrap().into_vec();
    invalid::<Generic<u64, String>>(&r);
    invalid::<Shape>(&r);

    // A variant index past the enum.
    let v = encode(&Big::V10(1), FP).unwrap().into_vec();
    invalid::<Shape>(&v);

    // A two-char string is not a char.
    let two = encode(&"ab", FP).unwrap().into_vec();
    invalid::<char>(&two);

    // Too few bytes for a float.
    let short = encode(&(1u8, 2u8), FP).unwrap().into_vec();
    invalid::<f32>(&short);
}

#[test]
fn object_references_are_recorded() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename = "$shoal::ObjectRef")]
    struct FakeRef(u64);
    assert_eq!(REF_MARKER, "$shoal::ObjectRef");

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        first: FakeRef,
        many: Vec<FakeRef>,
        maybe: Option<FakeRef>,
        other: u64,
    }
    let value =
        Holder { first: FakeRef(7), many: vec![FakeRef(u64::MAX), FakeRef(0)], maybe: Some(FakeRef(300)), other: 9 };
    let encoded = encode(&value, FP).unwrap();
    assert_eq!(encoded.contained_refs(), &[7, u64::MAX, 0, 300]);
    assert!(!encoded.has_buffers());
    let bytes = encoded.into_vec();
    assert_eq!(payload(&bytes), &postcard::to_stdvec(&value).unwrap()[..]);
    assert_eq!(decode::<Holder>(&bytes, FP).unwrap(), value);

    // A plain newtype with another name is not a reference.
    assert!(encode(&Meters(1.0), FP).unwrap().contained_refs().is_empty());
}

#[test]
fn write_to_matches_into_vec_and_zeroes_padding() {
    let value = (String::from("abc"), vec![1u64, 2, 3], Shape::Rect(1, 2));
    let encoded = encode(&value, FP).unwrap();
    let mut dirty = vec![0xa5u8; encoded.total_len()];
    encoded.write_to(&mut dirty);
    assert_eq!(dirty, encode(&value, FP).unwrap().into_vec());
}

#[test]
#[should_panic(expected = "destination must match the object size")]
fn write_to_refuses_a_wrong_size() {
    let encoded = encode(&5u32, FP).unwrap();
    let mut dst = vec![0u8; encoded.total_len() + 1];
    encoded.write_to(&mut dst);
}

#[test]
fn sequence_of_unknown_length_is_an_encode_error() {
    struct Unknown;
    impl Serialize for Unknown {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(None)?;
            seq.serialize_element(&1u8)?;
            seq.end()
        }
    }
    assert!(matches!(encode(&Unknown, FP), Err(EncodeError::Unsupported(_))));
    assert!(matches!(encode(&(1u8, Unknown), FP), Err(EncodeError::Unsupported(_))));

    struct Failing;
    impl Serialize for Failing {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    assert_eq!(encode(&Failing, FP).unwrap_err(), EncodeError::Unsupported("nope".into()));
}

/// A user struct that happens to be called `Array` and to have three fields
/// is an ordinary struct, not an ndarray array.
#[test]
fn user_struct_named_array_with_three_fields() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Array {
        x: f32,
        y: f32,
        z: f32,
    }
    roundtrip(&Array { x: 1.0, y: 2.0, z: 3.0 });
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Small {
    A,
    B(i64),
    C { s: String, v: Vec<u8> },
}

fn small() -> impl Strategy<Value = Small> {
    prop_oneof![
        Just(Small::A),
        any::<i64>().prop_map(Small::B),
        (".*", prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(s, v)| Small::C { s, v }),
    ]
}

/// The postcard encoding of `value`, checked against the object payload; and
/// the object decoded by both postcard (payload) and shoal (object).
fn check_postcard<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value, FP).map_err(|e| TestCaseError::fail(e.to_string()))?.into_vec();
    let pc = postcard::to_stdvec(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&bytes[..HEADER_LEN], &object_without_arrays(FP, &pc)[..HEADER_LEN]);
    prop_assert_eq!(&bytes[HEADER_LEN..], &pc[..]);
    prop_assert_eq!(&postcard::from_bytes::<T>(&bytes[HEADER_LEN..]).unwrap(), value);
    prop_assert_eq!(&decode::<T>(&bytes, FP).unwrap(), value);
    Ok(())
}

proptest! {
    #[test]
    fn payload_is_postcard_for_tuples(v in (any::<u64>(), any::<i32>(), ".*", prop::collection::vec(any::<i16>(), 0..64), any::<Option<bool>>())) {
        check_postcard(&v)?;
    }

    #[test]
    fn payload_is_postcard_for_wide_integers(v in (any::<i8>(), any::<u8>(), any::<i128>(), any::<u128>(), any::<u16>(), any::<isize>(), any::<usize>(), any::<char>())) {
        check_postcard(&v)?;
    }

    #[test]
    fn payload_is_postcard_for_floats(v in (any::<f32>(), any::<f64>())) {
        let bytes = encode(&v, FP).unwrap().into_vec();
        prop_assert_eq!(&bytes[HEADER_LEN..], &postcard::to_stdvec(&v).unwrap()[..]);
        let back: (f32, f64) = decode(&bytes, FP).unwrap();
        prop_assert_eq!((back.0.to_bits(), back.1.to_bits()), (v.0.to_bits(), v.1.to_bits()));
    }

    #[test]
    fn payload_is_postcard_for_maps_and_enums(
        m in prop::collection::btree_map(any::<u16>(), prop::collection::vec(small(), 0..4), 0..8),
        h in prop::collection::hash_map(".{0,8}", any::<Option<u32>>(), 0..8),
    ) {
        check_postcard(&m)?;
        check_postcard(&h)?;
        check_postcard(&(m, Some(h)))?;
    }
}
