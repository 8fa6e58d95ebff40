//! `SharedArray`: zero-copy views into objects placed in the arena, their
//! checks (keepalive, dtype, dimensions, alignment) and their keepalive.

mod common;

use std::sync::{Arc, Weak};

use common::{AlignedBytes, FP, TestResult, descriptors, keepalive, place};
use ndarray::{Array, Array1, Array2, Array3, ArrayD, Dimension, Ix0, Ix1, Ix2, Ix3, IxDyn, arr1, arr2, s};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_store::{
    ALIGN, Allocator, Arena, DecodeError, Element, Encoded, Keepalive, SharedArray, decode, decode_in_place, encode,
};

/// Decodes the object that `place` put at offset 0 of `arena`, in place, with
/// the arena itself as keepalive (as the engine does with its mapping).
fn read<T: DeserializeOwned>(arena: &Arc<Arena>, len: usize) -> Result<T, DecodeError> {
    // SAFETY: `place` wrote a complete object at 0..len and nothing writes the
    // arena afterwards; the keepalive is the arena, so the mapping outlives
    // every view made from it.
    unsafe {
        let bytes = arena.bytes(0, len as u64).expect("in range");
        decode_in_place(bytes, FP, arena.clone() as Keepalive)
    }
}

fn placed(value: &impl Serialize) -> (Arc<Arena>, usize) {
    let encoded = encode(value, FP).expect("encode");
    let len = encoded.total_len();
    (place(&encoded, 0), len)
}

fn arena_bytes(arena: &Arena, len: usize) -> &[u8] {
    // SAFETY: the tests only read objects that `place` wrote and nothing
    // writes them afterwards.
    unsafe { arena.bytes(0, len as u64) }.expect("in range")
}

#[test]
fn plain_decode_refuses_shared_arrays() -> TestResult {
    let a: Array2<f64> = Array::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f64);
    let bytes = encode(&a, FP)?.into_vec();
    match decode::<SharedArray<f64, Ix2>>(&bytes, FP) {
        Err(DecodeError::Invalid { message, .. }) => {
            assert!(message.contains("store"), "{message}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // The owned type reads the same object fine.
    assert_eq!(decode::<Array2<f64>>(&bytes, FP)?, a);
    Ok(())
}

#[test]
fn view_is_zero_copy_aligned_and_stable() -> TestResult {
    let a: Array2<f64> = Array::from_shape_fn((5, 7), |(i, j)| i as f64 * 10.0 - j as f64 / 4.0);
    let (arena, len) = placed(&(String::from("prefix that moves the buffer"), &a));
    let bytes = arena_bytes(&arena, len);
    let desc = &descriptors(bytes)[0];

    let (name, shared): (String, SharedArray<f64, Ix2>) = read(&arena, len)?;
    assert_eq!(name, "prefix that moves the buffer");
    assert_eq!(shared.view(), a.view());
    assert_eq!(shared.to_owned(), a);
    assert_eq!(shared.as_slice(), a.as_slice().unwrap());
    assert_eq!(shared.shape(), &[5, 7]);
    assert_eq!(shared.raw_dim(), a.raw_dim());
    assert_eq!(shared.len(), 35);
    assert!(!shared.is_empty());

    let ptr = shared.as_ptr() as *const u8;
    assert_eq!(ptr as usize % ALIGN, 0, "64-byte aligned");
    assert!(bytes.as_ptr_range().contains(&ptr), "points into the arena bytes");
    assert_eq!(ptr as usize - bytes.as_ptr() as usize, desc.offset as usize, "at the buffer's offset");
    assert_eq!(shared.view().as_ptr(), shared.as_ptr());

    let (_, again): (String, SharedArray<f64, Ix2>) = read(&arena, len)?;
    assert_eq!(again.as_ptr(), shared.as_ptr(), "two reads view the same address");
    assert_eq!(again, shared);
    let clone = shared.clone();
    assert_eq!(clone.as_ptr(), shared.as_ptr());
    assert!(format!("{shared:?}").contains("SharedArray"));
    Ok(())
}

#[test]
fn views_see_the_arena_bytes_not_a_copy() -> TestResult {
    // Write through a second mapping of the same memfd after reading: the
    // view must observe it (it is the memory, not a snapshot).
    let a = arr1(&[1u32, 2, 3, 4]);
    let (arena, len) = placed(&a);
    let offset = descriptors(arena_bytes(&arena, len))[0].offset;
    let shared: SharedArray<u32, Ix1> = read(&arena, len)?;
    assert_eq!(shared.as_slice(), &[1, 2, 3, 4]);
    let writer = Arena::open(arena.fd().try_clone_to_owned()?, false)?;
    // SAFETY: a test-only write through a second mapping while no reference
    // into the object is alive (the view only holds a raw pointer and is read
    // after this statement); the store forbids this for sealed objects, here
    // it only proves the view is the shared memory itself.
    unsafe { writer.bytes_mut(offset, 4)? }.copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(shared.as_slice()[0], 99);
    Ok(())
}

#[test]
fn placed_with_the_allocator_at_a_nonzero_offset() -> TestResult {
    let arena = Arc::new(Arena::create(1 << 20, true)?);
    let mut alloc = Allocator::new(arena.len());
    let filler = alloc.allocate(1000)?;
    assert_eq!(filler, 0);
    let value = (arr2(&[[1i16, 2], [3, 4]]), vec![arr1(&[true, false]), arr1(&[])], 7u8);
    let encoded: Encoded = encode(&value, FP)?;
    let offset = alloc.allocate(encoded.total_len() as u64)?;
    assert_ne!(offset, 0);
    assert_eq!(offset % ALIGN as u64, 0);
    // SAFETY: the allocator handed this range to this test alone.
    encoded.write_to(unsafe { arena.bytes_mut(offset, encoded.total_len() as u64)? });
    // SAFETY: the object is complete and not written again.
    let bytes = unsafe { arena.bytes(offset, encoded.total_len() as u64)? };
    // SAFETY: as above; the keepalive holds the mapping.
    let (m, masks, n): (SharedArray<i16, Ix2>, Vec<SharedArray<bool, Ix1>>, u8) =
        unsafe { decode_in_place(bytes, FP, arena.clone() as Keepalive)? };
    assert_eq!(m.view(), value.0.view());
    assert_eq!(masks.len(), 2);
    assert_eq!(masks[0].view(), value.1[0].view());
    assert!(masks[1].is_empty());
    assert_eq!(n, 7);
    assert_eq!(m.as_ptr() as usize % ALIGN, 0);
    assert_eq!(masks[0].as_ptr() as usize % ALIGN, 0);
    assert!(bytes.as_ptr_range().contains(&(m.as_ptr() as *const u8)));
    Ok(())
}

#[test]
fn a_second_mapping_sees_the_same_object() -> TestResult {
    let a: Array3<i64> = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as i64 - 5);
    let (arena, len) = placed(&a);
    let second = Arc::new(Arena::open(arena.fd().try_clone_to_owned()?, true)?);
    let from_first: SharedArray<i64, Ix3> = read(&arena, len)?;
    let from_second: SharedArray<i64, Ix3> = read(&second, len)?;
    assert_eq!(from_first.view(), a.view());
    assert_eq!(from_second.view(), a.view());
    assert_ne!(from_first.as_ptr(), from_second.as_ptr(), "two mappings, two addresses");
    Ok(())
}

#[test]
fn dtype_mismatch_is_an_error() -> TestResult {
    let (arena, len) = placed(&arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
    assert!(matches!(read::<SharedArray<f64, Ix2>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<i32, Ix2>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<u32, Ix2>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(read::<SharedArray<f32, Ix2>>(&arena, len).is_ok());

    let (arena, len) = placed(&arr1(&[-1i64, 2]));
    assert!(matches!(read::<SharedArray<u64, Ix1>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<f64, Ix1>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert_eq!(read::<SharedArray<isize, Ix1>>(&arena, len)?.as_slice(), &[-1, 2]);

    let (arena, len) = placed(&arr1(&[0u8, 1]));
    assert!(matches!(read::<SharedArray<bool, Ix1>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<i8, Ix1>>(&arena, len), Err(DecodeError::Invalid { .. })));

    // usize and isize are stored as u64 and i64.
    let (arena, len) = placed(&arr1(&[usize::MAX, 3]));
    assert_eq!(read::<SharedArray<u64, Ix1>>(&arena, len)?.as_slice(), &[u64::MAX, 3]);
    assert_eq!(read::<SharedArray<usize, Ix1>>(&arena, len)?.as_slice(), &[usize::MAX, 3]);
    Ok(())
}

#[test]
fn dimension_mismatch_is_an_error() -> TestResult {
    let a: Array2<f64> = Array::from_shape_fn((2, 3), |(i, j)| (i + j) as f64);
    let (arena, len) = placed(&a);
    assert!(matches!(read::<SharedArray<f64, Ix1>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<f64, Ix3>>(&arena, len), Err(DecodeError::Invalid { .. })));
    assert!(matches!(read::<SharedArray<f64, Ix0>>(&arena, len), Err(DecodeError::Invalid { .. })));
    let dynamic: SharedArray<f64, IxDyn> = read(&arena, len)?;
    assert_eq!(dynamic.shape(), &[2, 3]);
    assert_eq!(dynamic.view(), a.view().into_dyn());

    // Trailing lengths of 1 do not make a 3-d array 2-d.
    let (arena, len) = placed(&Array3::<f64>::zeros((2, 3, 1)));
    assert!(matches!(read::<SharedArray<f64, Ix2>>(&arena, len), Err(DecodeError::Invalid { .. })));
    let (arena, len) = placed(&Array1::<f64>::zeros(1));
    assert!(matches!(read::<SharedArray<f64, Ix0>>(&arena, len), Err(DecodeError::Invalid { .. })));
    Ok(())
}

#[test]
fn empty_arrays_and_zero_dimensions() -> TestResult {
    let (arena, len) = placed(&Array2::<f64>::zeros((0, 3)));
    let e: SharedArray<f64, Ix2> = read(&arena, len)?;
    assert!(e.is_empty());
    assert_eq!(e.shape(), &[0, 3]);
    assert_eq!(e.as_slice(), &[] as &[f64]);
    assert_eq!(e.view().len(), 0);
    assert!(!e.as_ptr().is_null());
    // An empty array never recorded its element type: any type reads it.
    let e: SharedArray<bool, Ix2> = read(&arena, len)?;
    assert!(e.is_empty());
    let e: SharedArray<u128, IxDyn> = read(&arena, len)?;
    assert_eq!(e.shape(), &[0, 3]);

    let (arena, len) = placed(&ndarray::arr0(2.5f32));
    let z: SharedArray<f32, Ix0> = read(&arena, len)?;
    assert_eq!(z.shape(), &[] as &[usize]);
    assert_eq!(z.as_slice(), &[2.5]);
    assert_eq!(z.view().into_scalar(), &2.5);
    Ok(())
}

macro_rules! every_element {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        #[test]
        fn $name() -> TestResult {
            let a: Array2<$t> = Array::from_shape_fn((3, 5), |(i, j)| ((i * 5 + j) as u8 * 3) as $t);
            let t = a.t();
            let (arena, len) = placed(&(a.view(), t, Array1::<$t>::from(vec![<$t>::MAX, <$t>::MIN])));
            let (x, y, z): (SharedArray<$t, Ix2>, SharedArray<$t, IxDyn>, SharedArray<$t, Ix1>) = read(&arena, len)?;
            assert_eq!(x.view(), a.view());
            assert_eq!(y.view(), t.into_dyn());
            assert_eq!(z.as_slice(), &[<$t>::MAX, <$t>::MIN]);
            for p in [x.as_ptr() as usize, y.as_ptr() as usize, z.as_ptr() as usize] {
                assert_eq!(p % ALIGN, 0);
            }
            assert_eq!(<$t as Element>::DTYPE as u8, descriptors(arena_bytes(&arena, len))[0].dtype);
            Ok(())
        }
    )*};
}

every_element! {
    shared_i8: i8, shared_i16: i16, shared_i32: i32, shared_i64: i64, shared_i128: i128,
    shared_u8: u8, shared_u16: u16, shared_u32: u32, shared_u64: u64, shared_u128: u128,
    shared_f32: f32, shared_f64: f64, shared_usize: usize, shared_isize: isize,
}

#[test]
fn shared_bool() -> TestResult {
    let a = arr2(&[[true, false, true], [false, false, true]]);
    let (arena, len) = placed(&a);
    let x: SharedArray<bool, Ix2> = read(&arena, len)?;
    assert_eq!(x.view(), a.view());
    Ok(())
}

#[test]
fn nan_bits_survive_in_place() -> TestResult {
    let a = arr1(&[f64::NAN, -f64::NAN, f64::from_bits(0x7ff8_0000_0000_beef), -0.0]);
    let (arena, len) = placed(&a);
    let x: SharedArray<f64, Ix1> = read(&arena, len)?;
    let bits = |s: &[f64]| s.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(x.as_slice()), bits(a.as_slice().unwrap()));
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Model {
    name: String,
    weights: Array2<f64>,
    bias: Array1<f32>,
    layers: Vec<Array1<i32>>,
    mask: Option<Array1<bool>>,
    grid: ArrayD<u16>,
    step: u32,
}

/// The "view twin" of [`Model`].
#[derive(Debug, Serialize, Deserialize)]
struct ModelView {
    name: String,
    weights: SharedArray<f64, Ix2>,
    bias: SharedArray<f32, Ix1>,
    layers: Vec<SharedArray<i32, Ix1>>,
    mask: Option<SharedArray<bool, Ix1>>,
    grid: SharedArray<u16, IxDyn>,
    step: u32,
}

fn model() -> Model {
    Model {
        name: "m".into(),
        weights: Array::from_shape_fn((4, 6), |(i, j)| (i * 6 + j) as f64 / 7.0),
        bias: Array1::linspace(-1.0, 1.0, 6),
        layers: vec![arr1(&[1, 2, 3]), arr1(&[]), arr1(&[i32::MIN])],
        mask: Some(arr1(&[true, false])),
        grid: ArrayD::from_shape_fn(IxDyn(&[2, 1, 3]), |i| (i[0] * 3 + i[2]) as u16),
        step: 12,
    }
}

#[test]
fn struct_with_arrays_reads_as_its_view_twin() -> TestResult {
    let m = model();
    let (arena, len) = placed(&m);
    let v: ModelView = read(&arena, len)?;
    assert_eq!(v.name, m.name);
    assert_eq!(v.weights.view(), m.weights.view());
    assert_eq!(v.bias.view(), m.bias.view());
    assert_eq!(v.layers.len(), 3);
    for (shared, owned) in v.layers.iter().zip(&m.layers) {
        assert_eq!(shared.view(), owned.view());
    }
    assert_eq!(v.mask.as_ref().map(|s| s.to_owned()), m.mask);
    assert_eq!(v.grid.view(), m.grid.view());
    assert_eq!(v.step, 12);

    // The twin writes exactly what the owned struct writes.
    let from_view = encode(&v, FP)?.into_vec();
    assert_eq!(from_view, encode(&m, FP)?.into_vec());
    assert_eq!(decode::<Model>(&from_view, FP)?, m);

    // The owned struct also reads in place (copying), and ignores the keepalive.
    let before = Arc::strong_count(&arena);
    let owned: Model = read(&arena, len)?;
    assert_eq!(owned, m);
    assert_eq!(Arc::strong_count(&arena), before);
    Ok(())
}

#[test]
fn keepalive_is_held_by_each_view() -> TestResult {
    let (arena, len) = placed(&model());
    assert_eq!(Arc::strong_count(&arena), 1);
    let v: ModelView = read(&arena, len)?;
    // weights, bias, 3 layers, mask, grid
    assert_eq!(Arc::strong_count(&arena), 1 + 7);
    let weights = v.weights.clone();
    assert_eq!(Arc::strong_count(&arena), 1 + 8);
    drop(v);
    assert_eq!(Arc::strong_count(&arena), 2);

    // The mapping outlives its last owner other than the view.
    let weak: Weak<Arena> = Arc::downgrade(&arena);
    drop(arena);
    let still = weak.upgrade().expect("the view keeps the arena alive");
    drop(still);
    assert_eq!(weights.view(), model().weights.view(), "still readable");
    let sum: f64 = weights.view().sum();
    assert!(sum > 0.0);
    drop(weights);
    assert!(weak.upgrade().is_none(), "dropping the last view releases the arena");
    Ok(())
}

#[test]
fn keepalive_is_released_when_decode_fails_midway() -> TestResult {
    // The first field reads as a view, the second fails on its dtype.
    let (arena, len) = placed(&(arr1(&[1.0f64]), arr1(&[1.0f32]), 3u8));
    let r = read::<(SharedArray<f64, Ix1>, SharedArray<f64, Ix1>, u8)>(&arena, len);
    assert!(matches!(r, Err(DecodeError::Invalid { .. })));
    assert_eq!(Arc::strong_count(&arena), 1);
    // Trailing bytes after a complete value also release what was made.
    let r = read::<(SharedArray<f64, Ix1>, SharedArray<f32, Ix1>)>(&arena, len);
    assert!(matches!(r, Err(DecodeError::Invalid { .. })));
    assert_eq!(Arc::strong_count(&arena), 1);
    let ok = read::<(SharedArray<f64, Ix1>, SharedArray<f32, Ix1>, u8)>(&arena, len)?;
    assert_eq!(Arc::strong_count(&arena), 3);
    drop(ok);
    assert_eq!(Arc::strong_count(&arena), 1);
    Ok(())
}

#[test]
fn any_keepalive_works_and_is_counted() -> TestResult {
    let a = arr1(&[5u16, 6, 7]);
    let bytes = AlignedBytes::new(&encode(&a, FP)?.into_vec());
    let ka = keepalive();
    // SAFETY: `bytes` is neither written nor dropped while the view lives
    // (the view is dropped at the end of this block, before `bytes`).
    let view: SharedArray<u16, Ix1> = unsafe { decode_in_place(bytes.as_slice(), FP, ka.clone())? };
    assert_eq!(Arc::strong_count(&ka), 2);
    assert_eq!(view.as_slice(), &[5, 6, 7]);
    assert!(bytes.as_slice().as_ptr_range().contains(&(view.as_ptr() as *const u8)));
    drop(view);
    assert_eq!(Arc::strong_count(&ka), 1);
    Ok(())
}

#[test]
fn misaligned_object_refuses_wider_elements_but_copies_fine() -> TestResult {
    let a: Array2<f64> = Array::from_shape_fn((2, 2), |(i, j)| (i * 2 + j) as f64);
    let encoded = encode(&(a.clone(), arr1(&[1u8, 2])), FP)?.into_vec();
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&encoded);
    let buf = AlignedBytes::new(&shifted);
    let bytes = &buf.as_slice()[1..];
    assert_eq!(bytes.as_ptr() as usize % 8, 1);
    let (owned, small): (Array2<f64>, Array1<u8>) = decode(bytes, FP)?;
    assert_eq!(owned, a);
    assert_eq!(small, arr1(&[1, 2]));
    // SAFETY: `buf` outlives every view made here and is not written.
    let r = unsafe { decode_in_place::<(SharedArray<f64, Ix2>, SharedArray<u8, Ix1>)>(bytes, FP, keepalive()) };
    assert!(matches!(r, Err(DecodeError::Invalid { .. })), "{r:?}");
    // SAFETY: as above.
    let (_, bytes_view): (Array2<f64>, SharedArray<u8, Ix1>) = unsafe { decode_in_place(bytes, FP, keepalive())? };
    assert_eq!(bytes_view.as_slice(), &[1, 2]);
    Ok(())
}

#[test]
fn views_cross_threads() -> TestResult {
    let a: Array2<i32> = Array::from_shape_fn((64, 64), |(i, j)| (i * 64 + j) as i32);
    let (arena, len) = placed(&a);
    let shared: SharedArray<i32, Ix2> = read(&arena, len)?;
    drop(arena);
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let view = shared.clone();
            std::thread::spawn(move || {
                view.view().slice(s![k * 16..(k + 1) * 16, ..]).iter().map(|&x| i64::from(x)).sum::<i64>()
            })
        })
        .collect();
    let total: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, (0..64 * 64).sum::<i64>());
    Ok(())
}

#[test]
fn shared_array_reencodes_like_its_array() -> TestResult {
    fn check<D: Dimension + Serialize + DeserializeOwned>(a: Array<u32, D>) -> TestResult {
        let (arena, len) = placed(&a);
        let shared: SharedArray<u32, D> = read(&arena, len)?;
        let again = encode(&shared, FP)?.into_vec();
        assert_eq!(again, encode(&a, FP)?.into_vec());
        assert_eq!(decode::<Array<u32, D>>(&again, FP)?, a);
        Ok(())
    }
    check(Array::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as u32))?;
    check(Array::from_shape_fn((2, 2, 2), |(i, j, k)| (i + j + k) as u32))?;
    check(Array1::<u32>::zeros(0))?;
    check(ArrayD::<u32>::zeros(IxDyn(&[1, 2, 1])))?;
    Ok(())
}
