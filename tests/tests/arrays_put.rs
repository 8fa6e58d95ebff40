//! Every way an array enters the store: `put_array` of any `ArrayBase`,
//! `put_with` filling the store in place (in the driver and in tasks, and a
//! panicking fill: `arrays_put_panic.rs`), owned `put` of large values, and arrays nested in other
//! values, each read back by `get`, `get_shared` and tasks.

use ndarray::{Array, Array1, Array2, Array3, ArrayD, Ix2, IxDyn, ShapeBuilder, s};
use serde::{Deserialize, Serialize};
use shoal::{ObjectRef, SharedArray};
use shoal_tests::shared_node;

/// A task reading a 2-D array in place: its sum and its element at (1, 2).
#[shoal::remote]
fn sum_and_probe(a: SharedArray<f64, Ix2>) -> (f64, f64) {
    (a.view().sum(), a.view()[(1, 2)])
}

/// A task that builds an array with `put_with` and returns its ref.
#[shoal::remote]
fn fill_in_task(rows: usize, cols: usize) -> ObjectRef<Array2<u32>> {
    shoal::put_with((rows, cols), |mut v| v.indexed_iter_mut().for_each(|((i, j), x)| *x = (i * 1000 + j) as u32))
        .expect("put_with inside a task")
}

/// A task that `put_array`s a strided slice of its own array.
#[shoal::remote]
fn put_slice_in_task(n: usize) -> ObjectRef<Array1<i64>> {
    let a = Array1::from_shape_fn(n, |i| i as i64);
    shoal::put_array(&a.slice(s![..;3])).expect("put_array inside a task")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    label: String,
    images: Vec<Array2<f32>>,
    mask: Option<Array1<bool>>,
    transposed: Array2<i16>,
}

/// Echo a value with nested arrays through a worker (decode and encode there).
#[shoal::remote]
fn echo_batch(b: Batch) -> Batch {
    b
}

/// Sum every image of a `Vec` of arrays, decoded as owned arrays in the worker.
#[shoal::remote]
fn sum_images(images: Vec<Array2<f32>>) -> Vec<f32> {
    images.iter().map(|a| a.sum()).collect()
}

fn sample_batch() -> Batch {
    Batch {
        label: "b-7".into(),
        images: (0..3).map(|k| Array2::from_shape_fn((40, 30), |(i, j)| (k * 10_000 + i * 30 + j) as f32)).collect(),
        mask: Some(Array1::from_iter((0..77).map(|i| i % 7 == 0))),
        // Not standard layout: written through serde, element by element.
        transposed: Array2::from_shape_fn((5, 9), |(i, j)| (i * 9 + j) as i16).reversed_axes(),
    }
}

#[test]
fn put_array_takes_any_array_base_and_the_caller_keeps_it() -> anyhow::Result<()> {
    shared_node();
    let m = Array2::from_shape_fn((6, 8), |(i, j)| (i * 8 + j) as f64);
    let owned = shoal::put_array(&m)?;
    assert_eq!(shoal::get(&owned)?, m);
    let strided = m.slice(s![1..;2, ..;3]);
    let r = shoal::put_array(&strided)?;
    assert_eq!(shoal::get(&r)?, strided);
    let shared = shoal::get_shared(&r)?;
    assert_eq!(shared.view(), strided);
    assert_eq!(shoal::get(&sum_and_probe::remote(&r))?, (strided.sum(), strided[(1, 2)]));
    let transposed = shoal::put_array(&m.t())?;
    assert_eq!(shoal::get(&transposed)?, m.t());
    let f_order = Array2::from_shape_vec((3, 4).f(), (0..12).collect::<Vec<u8>>())?;
    assert_eq!(shoal::get(&shoal::put_array(&f_order)?)?, f_order);
    let dynamic = ArrayD::<i32>::from_shape_fn(IxDyn(&[2, 3, 4]), |d| (d[0] * 100 + d[1] * 10 + d[2]) as i32);
    assert_eq!(shoal::get(&shoal::put_array(&dynamic.view())?)?, dynamic);
    let flags = Array1::from_iter((0..50).map(|i| i % 3 == 0));
    assert_eq!(shoal::get(&shoal::put_array(&flags.slice(s![..;-2]))?)?, flags.slice(s![..;-2]));
    let empty = Array3::<u16>::zeros((2, 0, 5));
    assert_eq!(shoal::get(&shoal::put_array(&empty)?)?, empty);
    // The array is still the caller's, unchanged.
    assert_eq!(m[(5, 7)], 47.0);
    Ok(())
}

#[test]
fn put_array_writes_the_same_object_as_put() -> anyhow::Result<()> {
    shared_node();
    let m = Array2::from_shape_fn((300, 200), |(i, j)| ((i * 7) ^ j) as f64);
    let by_put = shoal::put(m.clone())?;
    let by_put_array = shoal::put_array(&m.view())?;
    // Same fingerprint and format: each reads as the other's type would.
    assert_eq!(shoal::get(&by_put_array)?, shoal::get(&by_put)?);
    assert_eq!(shoal::get_shared(&by_put_array)?.view(), shoal::get_shared(&by_put)?.view());
    // A task taking `SharedArray<f64, Ix2>` takes either ref.
    assert_eq!(shoal::get(&sum_and_probe::remote(by_put_array))?, shoal::get(&sum_and_probe::remote(by_put))?);
    Ok(())
}

#[test]
fn put_array_of_a_large_strided_slice_copies_every_element() -> anyhow::Result<()> {
    shared_node();
    // 32 MB of source; the slice (every other column) is 16 MB, assigned in
    // parallel parts.
    let m = Array2::from_shape_fn((2048, 2048), |(i, j)| (i * 2048 + j) as f64);
    let slice = m.slice(s![.., ..;2]);
    let r = shoal::put_array(&slice)?;
    let back = shoal::get_shared(&r)?;
    assert!(back.view() == slice);
    Ok(())
}

#[test]
fn put_with_fills_the_store_in_place() -> anyhow::Result<()> {
    shared_node();
    let r: ObjectRef<Array2<f64>> = shoal::put_with((300, 400), |mut v| {
        assert_eq!(v.shape(), [300, 400]);
        assert!(v.is_standard_layout());
        v.indexed_iter_mut().for_each(|((i, j), x)| *x = (i * 400 + j) as f64);
    })?;
    let expected = Array2::from_shape_fn((300, 400), |(i, j)| (i * 400 + j) as f64);
    assert_eq!(shoal::get(&r)?, expected);
    assert_eq!(shoal::get(&sum_and_probe::remote(&r))?, (expected.sum(), expected[(1, 2)]));
    // Shapes of any dimension; bool starts all false.
    let flags: ObjectRef<ArrayD<bool>> = shoal::put_with(IxDyn(&[3, 2, 5]), |mut v| {
        assert!(v.iter().all(|&b: &bool| !b), "a bool array starts false");
        v[[2, 1, 4]] = true;
    })?;
    let flags = shoal::get(&flags)?;
    assert_eq!(flags.iter().filter(|&&b| b).count(), 1);
    assert!(flags[[2, 1, 4]]);
    let scalar: ObjectRef<Array<u8, ndarray::Ix0>> = shoal::put_with((), |mut v| v.fill(9))?;
    assert_eq!(shoal::get(&scalar)?.into_scalar(), 9);
    let none: ObjectRef<Array1<i64>> = shoal::put_with(0, |v| assert!(v.is_empty()))?;
    assert!(shoal::get(&none)?.is_empty());
    Ok(())
}

#[test]
fn put_with_works_inside_tasks() -> anyhow::Result<()> {
    shared_node();
    let inner = shoal::get(&fill_in_task::remote(70, 50))?;
    let a = shoal::get(&inner)?;
    assert_eq!(a.dim(), (70, 50));
    assert_eq!(a[(69, 49)], 69_049);
    let r = shoal::get(&put_slice_in_task::remote(100))?;
    assert_eq!(shoal::get(&r)?.to_vec(), (0..100).step_by(3).map(|i| i as i64).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn large_owned_puts_are_stored_whole() -> anyhow::Result<()> {
    shared_node();
    // Over the off-thread drop threshold; put again at once, so the store
    // reuses nothing the first value still holds.
    for round in 0..3 {
        let a = Array1::from_shape_fn(2 << 20, |i| (i * 3 + round) as u32);
        let expected_sum: u64 = a.iter().map(|&x| x as u64).sum();
        let r = shoal::put(a)?;
        let back = shoal::get_shared(&r)?;
        assert_eq!(back.view().iter().map(|&x| x as u64).sum::<u64>(), expected_sum);
        assert_eq!(back.view()[5], (15 + round) as u32);
    }
    Ok(())
}

#[test]
fn arrays_nested_in_values_round_trip_through_tasks() -> anyhow::Result<()> {
    shared_node();
    let batch = sample_batch();
    let r = shoal::put(batch.clone())?;
    assert_eq!(shoal::get(&r)?, batch);
    assert_eq!(shoal::get(&echo_batch::remote(&r))?, batch);
    assert_eq!(shoal::get(&echo_batch::remote(batch.clone()))?, batch);
    let sums = shoal::get(&sum_images::remote(batch.images.clone()))?;
    assert_eq!(sums, batch.images.iter().map(|a| a.sum()).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn large_nested_arrays_round_trip() -> anyhow::Result<()> {
    shared_node();
    // Two arrays over the parallel-copy threshold inside a Vec.
    let images: Vec<Array2<f32>> =
        (0..2).map(|k| Array2::from_shape_fn((2048, 4096 + k), |(i, j)| (i + j + k) as f32)).collect();
    let r = shoal::put(images.clone())?;
    let back = shoal::get(&r)?;
    assert!(back == images);
    let sums = shoal::get(&sum_images::remote(&r))?;
    assert_eq!(sums, images.iter().map(|a| a.sum()).collect::<Vec<_>>());
    Ok(())
}
