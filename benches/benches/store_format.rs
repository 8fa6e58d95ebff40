//! The object format (`shoal_store::format`): the work around every `put`
//! and `get` that is not copying array elements.
//!
//! * `small/*`: a small struct without arrays (an inline object) — `measure`,
//!   `measure` + `Layout::write_to`, `encode`, `read_type_fingerprint`,
//!   `decode`;
//! * `array_view/*`: an 8 MiB `f64` matrix — `read_type_fingerprint` and
//!   `decode_in_place` to a `SharedArray`: header and descriptor checks and
//!   view construction only, no element is read or copied, so the figure
//!   does not depend on the array's size;
//! * `array_copy/*`: a 1 MiB `f64` vector read as an owned `Array` —
//!   `decode_owned_array` (one tight copy) beside `decode` (serde, one call
//!   per element).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use ndarray::{Array1, Array2, Ix2};
use serde::{Deserialize, Serialize};
use shoal_store::{Keepalive, SharedArray, decode, decode_in_place, decode_owned_array, encode, measure};

/// The fingerprint every object here is stamped with (the engine uses a hash
/// of the type; any agreed value will do for the format).
const FP: u64 = 0x5EED_CAFE_F00D_0001;

/// A typical small task argument or result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Small {
    id: u64,
    name: String,
    weights: Vec<f32>,
    done: bool,
}

fn small() -> Small {
    Small {
        id: 42,
        name: "partition-0017".into(),
        weights: vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        done: true,
    }
}

/// `bytes` copied to a 64-byte-aligned place inside `storage` (as an object
/// in the arena is), so that in-place views are aligned for their elements.
fn aligned(bytes: &[u8], storage: &mut Vec<u8>) -> std::ops::Range<usize> {
    *storage = vec![0; bytes.len() + shoal_store::ALIGN];
    let start = storage.as_ptr().align_offset(shoal_store::ALIGN);
    storage[start..start + bytes.len()].copy_from_slice(bytes);
    start..start + bytes.len()
}

fn small_value(c: &mut Criterion) {
    let value = small();
    let bytes = encode(&value, FP).expect("encode").into_vec();
    let mut group = c.benchmark_group("store_format/small");
    group.throughput(Throughput::Bytes(bytes.len() as u64));

    group.bench_function("measure", |b| b.iter(|| measure(black_box(&value), FP).expect("measure")));
    // Into a reused buffer, as the engine writes into the arena.
    let measure_write_to = |value: &Small, dst: &mut Vec<u8>| {
        let layout = measure(value, FP).expect("measure");
        dst.resize(layout.total_len(), 0);
        layout.write_to(value, dst).expect("write");
    };
    let mut dst = Vec::new();
    measure_write_to(&value, &mut dst);
    assert_eq!(dst, bytes);
    group.bench_function("measure_write_to", |b| b.iter(|| measure_write_to(black_box(&value), &mut dst)));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&value), FP).expect("encode")));
    group.bench_function("read_type_fingerprint", |b| {
        b.iter(|| shoal_store::read_type_fingerprint(black_box(&bytes)).expect("header"))
    });
    assert_eq!(decode::<Small>(&bytes, FP).expect("decode"), value);
    group.bench_function("decode", |b| b.iter(|| decode::<Small>(black_box(&bytes), FP).expect("decode")));
    group.finish();
}

fn array_view(c: &mut Criterion) {
    let matrix = Array2::from_shape_fn((1024, 1024), |(i, j)| (i * 1024 + j) as f64);
    let mut storage = Vec::new();
    let range = aligned(&encode(&matrix, FP).expect("encode").into_vec(), &mut storage);
    let bytes = &storage[range];
    // Declared after `storage`, so dropped before it: no view outlives the bytes.
    let keepalive: Keepalive = Arc::new(());
    let mut group = c.benchmark_group("store_format/array_view");

    group.bench_function("read_type_fingerprint/8MiB", |b| {
        b.iter(|| shoal_store::read_type_fingerprint(black_box(bytes)).expect("header"))
    });
    let view = |bytes: &[u8]| {
        // SAFETY: `bytes` borrows `storage`, which stays allocated and is not
        // written again until this function returns; every clone of
        // `keepalive` (held by the views made here) is dropped before then:
        // each view is dropped by the benchmark loop, and `keepalive` itself
        // is declared after `storage`.
        unsafe { decode_in_place::<SharedArray<f64, Ix2>>(bytes, FP, keepalive.clone()) }.expect("view")
    };
    assert_eq!(view(bytes).view(), matrix.view());
    group.bench_function("decode_in_place/8MiB", |b| b.iter(|| view(black_box(bytes))));
    group.finish();
}

fn array_copy(c: &mut Criterion) {
    let vector = Array1::from_iter((0..(1 << 17)).map(f64::from));
    let bytes = encode(&vector, FP).expect("encode").into_vec();
    let mut group = c.benchmark_group("store_format/array_copy");
    group.throughput(Throughput::Bytes(vector.len() as u64 * 8));

    let owned = |bytes: &[u8]| decode_owned_array::<Array1<f64>>(bytes, FP).expect("an array type").expect("decode");
    assert_eq!(owned(&bytes), vector);
    group.bench_function("decode_owned_array/1MiB", |b| b.iter(|| owned(black_box(&bytes))));
    group.bench_function("decode_serde/1MiB", |b| {
        b.iter(|| decode::<Array1<f64>>(black_box(&bytes), FP).expect("decode"))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    small_value(&mut c);
    array_view(&mut c);
    array_copy(&mut c);
    c.final_summary();
}
