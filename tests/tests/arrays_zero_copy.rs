//! ndarray arrays through the store and through tasks: every element type,
//! every dimension, empty and non-contiguous arrays, and the zero-copy reads
//! (`get_shared`, `SharedArray` arguments, view twins).

use std::fmt::Debug;
use std::time::Duration;

use ndarray::{
    Array, Array1, Array2, Array3, ArrayD, Axis, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn, arr0, s,
};
use serde::{Deserialize, Serialize};
use shoal::{Element, ObjectRef, SharedArray, Value};
use shoal_tests::shared_node;

/// Generous bound on any single `get` here, so a broken engine fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

// ---- every element type -------------------------------------------------

/// For each element type: an identity task on the owned array, and a task
/// that reads it as a `SharedArray` and copies it out.
macro_rules! element_fns {
    ($($echo:ident, $copy:ident: $t:ty),* $(,)?) => {$(
        #[shoal::remote]
        fn $echo(a: Array2<$t>) -> Array2<$t> {
            a
        }

        #[shoal::remote]
        fn $copy(a: SharedArray<$t, Ix2>) -> Array2<$t> {
            a.to_owned()
        }
    )*};
}

element_fns! {
    echo_bool, copy_bool: bool,
    echo_i8, copy_i8: i8,
    echo_i16, copy_i16: i16,
    echo_i32, copy_i32: i32,
    echo_i64, copy_i64: i64,
    echo_i128, copy_i128: i128,
    echo_u8, copy_u8: u8,
    echo_u16, copy_u16: u16,
    echo_u32, copy_u32: u32,
    echo_u64, copy_u64: u64,
    echo_u128, copy_u128: u128,
    echo_f32, copy_f32: f32,
    echo_f64, copy_f64: f64,
    echo_usize, copy_usize: usize,
    echo_isize, copy_isize: isize,
}

/// Everything an array written as `Array2<T>` must survive: put/get, a
/// zero-copy read, the identity task (by value and by ref), and a task
/// reading it as a `SharedArray`.
fn check_element<T: Element + PartialEq + Debug>(
    values: [T; 6],
    echo_value: impl Fn(Array2<T>) -> ObjectRef<Array2<T>>,
    echo_ref: impl Fn(&ObjectRef<Array2<T>>) -> ObjectRef<Array2<T>>,
    copy: impl Fn(&ObjectRef<Array2<T>>) -> ObjectRef<Array2<T>>,
) -> anyhow::Result<()> {
    let what = std::any::type_name::<T>();
    let a = Array2::from_shape_vec((2, 3), values.to_vec())?;
    let r = shoal::put(a.clone())?;
    assert_eq!(shoal::get(&r)?, a, "put/get of {what}");
    let shared = shoal::get_shared(&r)?;
    assert_eq!(shared.view(), a.view(), "get_shared of {what}");
    assert_eq!(shared.as_slice(), a.as_slice().expect("standard layout"), "get_shared of {what}");
    assert_eq!(shared.as_ptr() as usize % 64, 0, "{what} buffer alignment");
    assert_eq!(shoal::get_timeout(&echo_value(a.clone()), PATIENCE)?, a, "identity task on {what}, by value");
    let echoed = echo_ref(&r);
    assert_eq!(shoal::get_timeout(&echoed, PATIENCE)?, a, "identity task on {what}, by ref");
    assert_eq!(shoal::get_timeout(&copy(&r), PATIENCE)?, a, "SharedArray task on {what}");
    assert_eq!(shoal::get_timeout(&copy(&echoed), PATIENCE)?, a, "SharedArray task on a task's {what} output");
    assert_eq!(shoal::get_shared(&echoed)?.view(), a.view(), "get_shared of a task's {what} output");
    Ok(())
}

macro_rules! check_element {
    ($echo:ident, $copy:ident, $values:expr) => {
        check_element($values, |a| $echo::remote(a), |r| $echo::remote(r), |r| $copy::remote(r))?
    };
}

#[test]
fn every_element_type_round_trips() -> anyhow::Result<()> {
    shared_node();
    check_element!(echo_bool, copy_bool, [true, false, false, true, true, false]);
    check_element!(echo_i8, copy_i8, [i8::MIN, -1, 0, 1, 42, i8::MAX]);
    check_element!(echo_i16, copy_i16, [i16::MIN, -1, 0, 1, 42, i16::MAX]);
    check_element!(echo_i32, copy_i32, [i32::MIN, -1, 0, 1, 42, i32::MAX]);
    check_element!(echo_i64, copy_i64, [i64::MIN, -1, 0, 1, 42, i64::MAX]);
    check_element!(echo_i128, copy_i128, [i128::MIN, -1, 0, 1, 42, i128::MAX]);
    check_element!(echo_u8, copy_u8, [0, 1, 2, 42, 200, u8::MAX]);
    check_element!(echo_u16, copy_u16, [0, 1, 2, 42, 200, u16::MAX]);
    check_element!(echo_u32, copy_u32, [0, 1, 2, 42, 200, u32::MAX]);
    check_element!(echo_u64, copy_u64, [0, 1, 2, 42, 200, u64::MAX]);
    check_element!(echo_u128, copy_u128, [0, 1, 2, 42, 200, u128::MAX]);
    check_element!(echo_f32, copy_f32, [f32::MIN, -0.5, 0.0, f32::MIN_POSITIVE, f32::INFINITY, f32::MAX]);
    check_element!(echo_f64, copy_f64, [f64::MIN, -0.5, 0.0, 5e-324, f64::NEG_INFINITY, f64::MAX]);
    check_element!(echo_usize, copy_usize, [0, 1, 2, 42, 200, usize::MAX]);
    check_element!(echo_isize, copy_isize, [isize::MIN, -1, 0, 1, 42, isize::MAX]);
    Ok(())
}

// ---- every dimension ----------------------------------------------------

/// For each dimension type: an identity task, and a task that reads a
/// `SharedArray` and reports its shape and the sum of `index * element`.
macro_rules! dim_fns {
    ($($echo:ident, $probe:ident: $d:ty),* $(,)?) => {$(
        #[shoal::remote]
        fn $echo(a: Array<f64, $d>) -> Array<f64, $d> {
            a
        }

        #[shoal::remote]
        fn $probe(a: SharedArray<f64, $d>) -> (Vec<usize>, f64) {
            (a.shape().to_vec(), weighted_sum(a.as_slice().iter().copied()))
        }
    )*};
}

dim_fns! {
    echo_ix0, probe_ix0: Ix0,
    echo_ix1, probe_ix1: Ix1,
    echo_ix2, probe_ix2: Ix2,
    echo_ix3, probe_ix3: Ix3,
    echo_ix4, probe_ix4: Ix4,
    echo_ix5, probe_ix5: Ix5,
    echo_ix6, probe_ix6: Ix6,
    echo_dyn, probe_dyn: IxDyn,
}

/// An order-sensitive checksum of the elements in logical (C) order.
fn weighted_sum(elements: impl Iterator<Item = f64>) -> f64 {
    elements.enumerate().map(|(i, x)| (i as f64 + 1.0) * x).sum()
}

/// An array of `shape` with distinct elements.
fn distinct<D: Dimension>(shape: &[usize]) -> Array<f64, D> {
    let n: usize = shape.iter().product();
    let a = ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f64 * 0.5 - 3.0).collect()).expect("shape");
    a.into_dimensionality::<D>().expect("dimension")
}

fn check_dim<D: Dimension + Value>(
    a: Array<f64, D>,
    echo_value: impl Fn(Array<f64, D>) -> ObjectRef<Array<f64, D>>,
    echo_ref: impl Fn(&ObjectRef<Array<f64, D>>) -> ObjectRef<Array<f64, D>>,
    probe: impl Fn(&ObjectRef<Array<f64, D>>) -> ObjectRef<(Vec<usize>, f64)>,
) -> anyhow::Result<()> {
    let what = format!("{}-d array of shape {:?}", a.ndim(), a.shape());
    let expected_probe = (a.shape().to_vec(), weighted_sum(a.iter().copied()));
    let r = shoal::put(a.clone())?;
    assert_eq!(shoal::get(&r)?, a, "put/get of {what}");
    let shared = shoal::get_shared(&r)?;
    assert_eq!(shared.shape(), a.shape(), "get_shared of {what}");
    assert_eq!(shared.view(), a.view(), "get_shared of {what}");
    assert_eq!(shared.raw_dim(), a.raw_dim());
    if !a.is_empty() {
        assert_eq!(shared.as_ptr() as usize % 64, 0, "{what} alignment");
    }
    assert_eq!(shoal::get_timeout(&echo_value(a.clone()), PATIENCE)?, a, "identity task on {what}, by value");
    let echoed = echo_ref(&r);
    assert_eq!(shoal::get_timeout(&echoed, PATIENCE)?, a, "identity task on {what}, by ref");
    assert_eq!(shoal::get_timeout(&probe(&r), PATIENCE)?, expected_probe, "SharedArray task on {what}");
    assert_eq!(shoal::get_timeout(&probe(&echoed), PATIENCE)?, expected_probe, "SharedArray task on a task's {what}");
    Ok(())
}

macro_rules! check_dim {
    ($echo:ident, $probe:ident, $a:expr) => {
        check_dim($a, |a| $echo::remote(a), |r| $echo::remote(r), |r| $probe::remote(r))?
    };
}

#[test]
fn every_dimension_round_trips() -> anyhow::Result<()> {
    shared_node();
    check_dim!(echo_ix0, probe_ix0, arr0(2.5));
    check_dim!(echo_ix0, probe_ix0, distinct::<Ix0>(&[]));
    check_dim!(echo_ix1, probe_ix1, distinct::<Ix1>(&[7]));
    check_dim!(echo_ix2, probe_ix2, distinct::<Ix2>(&[3, 5]));
    check_dim!(echo_ix3, probe_ix3, distinct::<Ix3>(&[2, 3, 4]));
    check_dim!(echo_ix4, probe_ix4, distinct::<Ix4>(&[2, 1, 3, 2]));
    check_dim!(echo_ix5, probe_ix5, distinct::<Ix5>(&[1, 2, 3, 2, 2]));
    check_dim!(echo_ix6, probe_ix6, distinct::<Ix6>(&[2, 2, 1, 3, 1, 2]));
    check_dim!(echo_dyn, probe_dyn, distinct::<IxDyn>(&[]));
    check_dim!(echo_dyn, probe_dyn, distinct::<IxDyn>(&[4]));
    check_dim!(echo_dyn, probe_dyn, distinct::<IxDyn>(&[2, 3, 2]));
    check_dim!(echo_dyn, probe_dyn, distinct::<IxDyn>(&[1, 2, 1, 2, 1, 2, 1, 2])); // more axes than Ix6
    Ok(())
}

#[test]
fn empty_arrays_round_trip() -> anyhow::Result<()> {
    shared_node();
    check_dim!(echo_ix1, probe_ix1, Array1::<f64>::zeros(0));
    check_dim!(echo_ix2, probe_ix2, Array2::<f64>::zeros((0, 5)));
    check_dim!(echo_ix2, probe_ix2, Array2::<f64>::zeros((4, 0)));
    check_dim!(echo_ix3, probe_ix3, Array3::<f64>::zeros((0, 0, 0)));
    check_dim!(echo_dyn, probe_dyn, ArrayD::<f64>::zeros(IxDyn(&[3, 0, 2])));
    check_dim!(echo_dyn, probe_dyn, ArrayD::<f64>::zeros(IxDyn(&[0])));

    // Other element types: the element type of an empty array is never seen.
    let e = Array2::<u8>::zeros((0, 4));
    let r = shoal::put(e.clone())?;
    assert_eq!(shoal::get(&r)?, e);
    let shared = shoal::get_shared(&r)?;
    assert!(shared.is_empty());
    assert_eq!(shared.shape(), &[0, 4]);
    assert_eq!(shoal::get_timeout(&echo_u8::remote(&r), PATIENCE)?, e);
    assert_eq!(shoal::get_timeout(&copy_u8::remote(&r), PATIENCE)?, e);
    let e = Array2::<i128>::zeros((3, 0));
    assert_eq!(shoal::get_timeout(&copy_i128::remote(shoal::put(e.clone())?), PATIENCE)?, e);
    assert_eq!(
        shoal::get_timeout(&echo_bool::remote(Array2::<bool>::from_elem((0, 0), true)), PATIENCE)?,
        Array2::from_elem((0, 0), true)
    );
    Ok(())
}

#[shoal::remote]
fn row_sums(a: SharedArray<f64, Ix2>) -> Vec<f64> {
    a.view().sum_axis(Axis(1)).to_vec()
}

#[shoal::remote]
fn row_sums_owned(a: Array2<f64>) -> Vec<f64> {
    a.sum_axis(Axis(1)).to_vec()
}

#[test]
fn non_contiguous_arrays_by_value_and_put() -> anyhow::Result<()> {
    shared_node();
    let base = distinct::<Ix2>(&[4, 6]);
    // Fortran order (owned, transposed), a strided slice, and negative strides.
    let transposed = base.clone().reversed_axes();
    assert!(!transposed.is_standard_layout());
    let mut strided = base.clone();
    strided.slice_collapse(s![..;2, 1..;2]);
    assert!(!strided.is_standard_layout());
    let mut inverted = base.clone();
    inverted.invert_axis(Axis(0));
    assert!(!inverted.is_standard_layout());
    let view_copy = base.slice(s![1..3, ..;-3]).to_owned();

    for (name, a) in [("transposed", transposed), ("strided", strided), ("inverted", inverted), ("sliced", view_copy)] {
        let expected_sums = a.sum_axis(Axis(1)).to_vec();
        let out = echo_ix2::remote(a.clone());
        assert_eq!(shoal::get_timeout(&out, PATIENCE)?, a, "{name} array through the identity task");
        assert_eq!(
            shoal::get_timeout(&row_sums_owned::remote(a.clone()), PATIENCE)?,
            expected_sums,
            "{name} array by value to a task"
        );
        let r = shoal::put(a.clone())?;
        assert_eq!(shoal::get(&r)?, a, "{name} put/get");
        let shared = shoal::get_shared(&r)?;
        assert_eq!(shared.view(), a.view(), "{name} get_shared");
        assert_eq!(
            shoal::get_timeout(&row_sums::remote(&r), PATIENCE)?,
            expected_sums,
            "{name} put to a SharedArray task"
        );
    }

    // A permuted 3-d array through a 3-d task.
    let cube = distinct::<Ix3>(&[2, 3, 4]).permuted_axes([2, 0, 1]);
    assert!(!cube.is_standard_layout());
    assert_eq!(shoal::get_timeout(&echo_ix3::remote(cube.clone()), PATIENCE)?, cube);
    let expected = (cube.shape().to_vec(), weighted_sum(cube.iter().copied()));
    assert_eq!(shoal::get_timeout(&probe_ix3::remote(shoal::put(cube)?), PATIENCE)?, expected);
    Ok(())
}

// ---- zero copy -------------------------------------------------------------

#[shoal::remote]
fn same_buffer(a: SharedArray<f64, Ix1>, b: SharedArray<f64, Ix1>) -> (bool, usize) {
    (a.as_ptr() == b.as_ptr(), a.as_ptr() as usize % 64)
}

#[shoal::remote]
fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

#[shoal::remote]
fn make_array(n: usize) -> Array1<f64> {
    Array1::from_shape_fn(n, |i| i as f64)
}

#[shoal::remote]
fn sum_range(a: SharedArray<f64, Ix1>, start: usize, end: usize) -> f64 {
    a.view().slice(s![start..end]).sum()
}

#[test]
fn get_shared_is_zero_copy_and_aligned() -> anyhow::Result<()> {
    shared_node();
    let a = Array1::from_shape_fn(10_000, |i| (i as f64).sin());
    let r = shoal::put(a.clone())?;
    let v1 = shoal::get_shared(&r)?;
    let v2 = shoal::get_shared(&r.clone())?;
    assert_eq!(v1.as_ptr(), v2.as_ptr(), "two reads of one object see one buffer");
    assert_eq!(v1.as_ptr() as usize % 64, 0, "64-byte aligned");
    assert_eq!(v1.view(), a.view());
    assert_eq!(v1.len(), 10_000);
    assert_eq!(v1.clone().as_ptr(), v1.as_ptr(), "a clone shares the buffer");

    // `get` gives an owned copy: changing it leaves the object alone.
    let mut owned: Array1<f64> = shoal::get(&r)?;
    assert_eq!(owned, a);
    assert_ne!(owned.as_ptr(), v1.as_ptr(), "get copies");
    owned.fill(0.0);
    assert_eq!(shoal::get_shared(&r)?.view(), a.view());
    assert_eq!(v1.to_owned(), a, "to_owned copies out the same elements");

    // A different object with equal contents is a different buffer.
    let other = shoal::put(a.clone())?;
    assert_ne!(shoal::get_shared(&other)?.as_ptr(), v1.as_ptr());
    Ok(())
}

#[test]
fn worker_reads_one_buffer_in_place() -> anyhow::Result<()> {
    shared_node();
    let r = shoal::put(Array1::from_shape_fn(50_000, |i| i as f64))?;
    let (same, misalign) = shoal::get_timeout(&same_buffer::remote(&r, &r), PATIENCE)?;
    assert!(same, "both arguments must view the one buffer in the arena (a copy gives two addresses)");
    assert_eq!(misalign, 0, "the worker's view is 64-byte aligned");
    // The check can fail: two objects are two buffers.
    let r2 = shoal::put(Array1::from_shape_fn(50_000, |i| i as f64))?;
    let (same, _) = shoal::get_timeout(&same_buffer::remote(&r, &r2), PATIENCE)?;
    assert!(!same, "different objects must not share a buffer");
    // Also for an array a task produced, and a small array.
    let made = make_array::remote(1000);
    assert_eq!(shoal::get_timeout(&same_buffer::remote(&made, &made), PATIENCE)?, (true, 0));
    let tiny = shoal::put(Array1::from(vec![1.0, 2.0]))?;
    assert_eq!(shoal::get_timeout(&same_buffer::remote(&tiny, tiny.clone()), PATIENCE)?, (true, 0));
    Ok(())
}

#[test]
fn shared_array_task_accepts_array_refs() -> anyhow::Result<()> {
    shared_node();
    let a = Array1::from_shape_fn(1000, |i| i as f64);
    let expected = a.sum();
    let put_ref: ObjectRef<Array1<f64>> = shoal::put(a.clone())?;
    assert_eq!(shoal::get_timeout(&total::remote(&put_ref), PATIENCE)?, expected, "from put");
    let made: ObjectRef<Array1<f64>> = make_array::remote(1000);
    assert_eq!(shoal::get_timeout(&total::remote(&made), PATIENCE)?, expected, "from an array-returning task");
    assert_eq!(shoal::get_timeout(&total::remote(made.clone()), PATIENCE)?, expected, "owned ref");
    assert_eq!(shoal::get(&made)?, a, "get of the same ref gives the owned array");
    assert_eq!(shoal::get_shared(&made)?.view(), a.view());
    // Chained before the producer has run.
    let pending = make_array::remote(10);
    let sum = total::remote(pending);
    assert_eq!(shoal::get_timeout(&sum, PATIENCE)?, 45.0);
    Ok(())
}

#[test]
fn shared_array_keeps_its_object_alive() -> anyhow::Result<()> {
    shared_node();
    let n = 200_000;
    let expected = Array1::from_shape_fn(n, |i| i as f64 * 2.0);
    let r = shoal::put(expected.clone())?;
    let shared = shoal::get_shared(&r)?;
    let made = make_array::remote(n);
    let made_shared = shoal::get_shared(&made)?;
    drop(r);
    drop(made);
    // Fill the store with same-sized objects that would reuse freed space.
    let fillers: Vec<_> =
        (0..6).map(|_| shoal::put(Array1::<f64>::from_elem(n, -1.0))).collect::<shoal::Result<_>>()?;
    assert_eq!(shared.view(), expected.view(), "a SharedArray whose refs are all gone still reads its object");
    assert_eq!(made_shared.view(), Array1::from_shape_fn(n, |i| i as f64).view());
    let clone = shared.clone();
    drop(shared);
    assert_eq!(clone.view(), expected.view(), "a clone keeps it too");
    drop(fillers);
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    name: String,
    pixels: Array2<u8>,
    weights: Vec<Array1<f32>>,
}

#[derive(Debug, Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Frame)]
struct FrameView {
    name: String,
    pixels: SharedArray<u8, Ix2>,
    weights: Vec<SharedArray<f32, Ix1>>,
}

/// Name, pixel sum, per-weight sums, and whether every buffer is aligned.
#[shoal::remote]
fn frame_stats(frame: FrameView) -> (String, u64, Vec<f32>, bool) {
    let pixels = frame.pixels.view().iter().map(|&p| p as u64).sum();
    let weights = frame.weights.iter().map(|w| w.view().sum()).collect();
    let aligned = frame.pixels.as_ptr() as usize % 64 == 0
        && frame.weights.iter().all(|w| w.is_empty() || w.as_ptr() as usize % 64 == 0);
    (frame.name, pixels, weights, aligned)
}

#[shoal::remote]
fn echo_frame(frame: Frame) -> Frame {
    frame
}

fn sample_frame() -> Frame {
    Frame {
        name: "frame-1".into(),
        pixels: Array2::from_shape_fn((48, 64), |(y, x)| ((x * 3 + y * 7) % 256) as u8),
        weights: vec![
            Array1::from_shape_fn(10, |i| i as f32),
            Array1::zeros(0),
            Array1::from_shape_fn(3, |i| -(i as f32)),
        ],
    }
}

#[test]
fn view_twin_reads_nested_arrays_in_place() -> anyhow::Result<()> {
    shared_node();
    let frame = sample_frame();
    let r = shoal::put(frame.clone())?;
    let v1: FrameView = shoal::get_view::<FrameView, _>(&r)?;
    let v2: FrameView = shoal::get_view(&r)?;
    assert_eq!(v1.name, "frame-1");
    assert_eq!(v1.pixels.view(), frame.pixels.view());
    assert_eq!(v1.weights.len(), 3);
    for (w, expected) in v1.weights.iter().zip(&frame.weights) {
        assert_eq!(w.view(), expected.view());
    }
    assert_eq!(v1.pixels.as_ptr(), v2.pixels.as_ptr(), "two get_views see one pixel buffer");
    assert_eq!(v1.weights[0].as_ptr(), v2.weights[0].as_ptr(), "and one buffer per weight");
    assert_ne!(v1.pixels.as_ptr(), v1.weights[0].as_ptr().cast::<u8>());
    assert_eq!(v1.pixels.as_ptr() as usize % 64, 0);
    assert_eq!(v1.weights[2].as_ptr() as usize % 64, 0);
    assert_eq!(shoal::get(&r)?, frame, "get gives the owned struct");

    let expected_stats = (
        "frame-1".to_string(),
        frame.pixels.iter().map(|&p| p as u64).sum::<u64>(),
        frame.weights.iter().map(|w| w.sum()).collect::<Vec<f32>>(),
        true,
    );
    assert_eq!(
        shoal::get_timeout(&frame_stats::remote(&r), PATIENCE)?,
        expected_stats,
        "a FrameView task takes &ObjectRef<Frame>"
    );
    let echoed = echo_frame::remote(&r);
    assert_eq!(
        shoal::get_timeout(&frame_stats::remote(echoed.clone()), PATIENCE)?,
        expected_stats,
        "and a task's Frame output"
    );
    assert_eq!(shoal::get_timeout(&echoed, PATIENCE)?, frame);
    // A view outlives every ref.
    drop(r);
    drop(echoed);
    assert_eq!(v1.pixels.view(), frame.pixels.view());
    Ok(())
}

// ---- view twins are checked -------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Layer {
    bias: f32,
    weights: Array2<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    name: String,
    first: Layer,
    layers: Vec<Layer>,
    mask: Option<Array1<bool>>,
    scale: Option<Array1<f64>>,
    steps: Vec<Array1<f64>>,
    pair: (u8, Array1<i32>),
}

#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Layer)]
struct LayerView {
    bias: f32,
    weights: SharedArray<f32, Ix2>,
}

#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Model)]
struct ModelView {
    name: String,
    #[view_of(view)]
    first: LayerView,
    #[view_of(view)]
    layers: Vec<LayerView>,
    mask: Option<SharedArray<bool, Ix1>>,
    scale: Option<SharedArray<f64, Ix1>>,
    steps: Vec<SharedArray<f64, Ix1>>,
    pair: (u8, SharedArray<i32, Ix1>),
}

/// `Layer` with its fields the other way round: same names, same types, so
/// only the order check can tell.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Layer)]
struct LayerSwapped {
    weights: SharedArray<f32, Ix2>,
    bias: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: u32,
    y: u32,
    data: Array1<u8>,
}

/// Two `u32`s swapped: without the check this reads `y` as `x`, silently.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Point)]
struct PointSwapped {
    y: u32,
    x: u32,
    data: SharedArray<u8, Ix1>,
}

/// A correct twin whose nested twin is out of order.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Model)]
struct ModelWithSwappedLayers {
    name: String,
    #[view_of(view)]
    first: LayerView,
    #[view_of(view)]
    layers: Vec<LayerSwapped>,
    mask: Option<SharedArray<bool, Ix1>>,
    scale: Option<SharedArray<f64, Ix1>>,
    steps: Vec<SharedArray<f64, Ix1>>,
    pair: (u8, SharedArray<i32, Ix1>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tagged<T>(T, Array1<f32>);

#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Tagged<T>)]
struct TaggedView<T>(T, SharedArray<f32, Ix1>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Signal {
    Empty,
    Dense(Array1<f32>),
    Sparse { indices: Vec<u32>, values: Array1<f32> },
}

#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Signal)]
enum SignalView {
    Empty,
    Dense(SharedArray<f32, Ix1>),
    Sparse { indices: Vec<u32>, values: SharedArray<f32, Ix1> },
}

/// The variants out of order: `Dense` would read as `Empty`.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Signal)]
enum SignalVariantsSwapped {
    Dense(SharedArray<f32, Ix1>),
    Empty,
    Sparse { indices: Vec<u32>, values: SharedArray<f32, Ix1> },
}

/// A struct variant's fields out of order.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Signal)]
enum SignalFieldsSwapped {
    Empty,
    Dense(SharedArray<f32, Ix1>),
    Sparse { values: SharedArray<f32, Ix1>, indices: Vec<u32> },
}

/// What a task saw of its model: the first layer's weight sum, whether the
/// arrays are aligned in the store, and the mask's length.
#[shoal::remote]
fn model_stats(model: ModelView) -> (f32, bool, Option<usize>) {
    let aligned = model.first.weights.as_ptr() as usize % 64 == 0
        && model.layers.iter().all(|l| l.weights.as_ptr() as usize % 64 == 0);
    (model.first.weights.view().sum(), aligned, model.mask.map(|m| m.len()))
}

#[shoal::remote]
fn swapped_bias(layer: LayerSwapped) -> f32 {
    layer.bias
}

#[shoal::remote]
fn swapped_x(point: PointSwapped) -> u32 {
    point.x
}

#[shoal::remote]
fn swapped_model(model: ModelWithSwappedLayers) -> usize {
    model.layers.len()
}

fn sample_model() -> Model {
    let layer = |k: f32| Layer { bias: k, weights: Array2::from_shape_fn((8, 16), |(i, j)| k * (i * 16 + j) as f32) };
    Model {
        name: "model".into(),
        first: layer(1.0),
        layers: vec![layer(2.0), layer(3.0)],
        mask: Some(Array1::from_shape_fn(5, |i| i % 2 == 0)),
        scale: None,
        steps: vec![Array1::from_elem(4, 0.25), Array1::zeros(0)],
        pair: (7, Array1::from_vec(vec![-1, 2, -3])),
    }
}

fn is_type_mismatch<T>(result: &shoal::Result<T>) -> bool {
    matches!(result, Err(shoal::Error::TypeMismatch { .. }))
}

#[test]
fn a_correct_view_twin_reads_every_array_in_place() -> anyhow::Result<()> {
    shared_node();
    let model = sample_model();
    let r = shoal::put(model.clone())?;
    let v: ModelView = shoal::get_view(&r)?;
    let again: ModelView = shoal::get_view(&r)?;
    assert_eq!(v.name, "model");
    assert_eq!(v.first.bias, 1.0);
    assert_eq!(v.first.weights.view(), model.first.weights.view());
    assert_eq!(v.layers.len(), 2);
    for (l, expected) in v.layers.iter().zip(&model.layers) {
        assert_eq!(l.bias, expected.bias);
        assert_eq!(l.weights.view(), expected.weights.view());
    }
    assert_eq!(v.mask.as_ref().map(|m| m.to_owned()), model.mask);
    assert!(v.scale.is_none());
    assert_eq!(v.steps.len(), 2);
    assert_eq!(v.steps[0].view(), model.steps[0].view());
    assert!(v.steps[1].is_empty());
    assert_eq!(v.pair.0, 7);
    assert_eq!(v.pair.1.view(), model.pair.1.view());
    // In place: two reads see the same buffers, each 64-byte aligned.
    assert_eq!(v.first.weights.as_ptr(), again.first.weights.as_ptr());
    assert_eq!(v.layers[1].weights.as_ptr(), again.layers[1].weights.as_ptr());
    assert_eq!(v.mask.as_ref().unwrap().as_ptr(), again.mask.as_ref().unwrap().as_ptr());
    assert_eq!(v.pair.1.as_ptr(), again.pair.1.as_ptr());
    assert_eq!(v.first.weights.as_ptr() as usize % 64, 0);
    assert_eq!(v.mask.as_ref().unwrap().as_ptr() as usize % 64, 0);
    // A task taking the view accepts the owned type's ref.
    let stats = shoal::get_timeout(&model_stats::remote(&r), PATIENCE)?;
    assert_eq!(stats, (model.first.weights.sum(), true, Some(5)));
    // A Vec of twins reads a Vec of the owned type.
    let layers = shoal::put(model.layers.clone())?;
    let views: Vec<LayerView> = shoal::get_view(&layers)?;
    assert_eq!(views[1].weights.view(), model.layers[1].weights.view());
    // A generic tuple twin, and an enum twin, every variant.
    let tagged = shoal::put(Tagged("t".to_string(), Array1::from_elem(3, 1.5)))?;
    let tv: TaggedView<String> = shoal::get_view(&tagged)?;
    assert_eq!((tv.0.as_str(), tv.1.view().sum()), ("t", 4.5));
    let signals = [
        Signal::Empty,
        Signal::Dense(Array1::from_elem(6, 2.0)),
        Signal::Sparse { indices: vec![1, 4], values: Array1::from_vec(vec![0.5, 1.5]) },
    ];
    for signal in signals {
        let r = shoal::put(signal.clone())?;
        match (shoal::get_view::<SignalView, _>(&r)?, &signal) {
            (SignalView::Empty, Signal::Empty) => {}
            (SignalView::Dense(a), Signal::Dense(b)) => assert_eq!(a.view(), b.view()),
            (SignalView::Sparse { indices, values }, Signal::Sparse { indices: i, values: v }) => {
                assert_eq!(&indices, i);
                assert_eq!(values.view(), v.view());
            }
            _ => panic!("{signal:?} read as another variant"),
        }
    }
    Ok(())
}

#[test]
fn a_twin_out_of_order_is_a_type_mismatch() -> anyhow::Result<()> {
    shared_node();
    let point = shoal::put(Point { x: 1, y: 2, data: Array1::from_elem(3, 9) })?;
    let read = shoal::get_view::<PointSwapped, _>(&point);
    let Err(shoal::Error::TypeMismatch { detail }) = &read else {
        panic!("a twin with x and y swapped was read: {:?}", read.map(|p| (p.x, p.y)).ok());
    };
    assert!(detail.contains("PointSwapped") && detail.contains("Point"), "{detail}");
    assert!(detail.contains(r#"["y", "x", "data"]"#) && detail.contains(r#"["x", "y", "data"]"#), "{detail}");
    assert!(is_type_mismatch(&shoal::get_view::<PointSwapped, _>(&point)), "and again, from the cache");
    assert!(is_type_mismatch(&shoal::get_timeout(&swapped_x::remote(&point), PATIENCE)));
    assert!(is_type_mismatch(&shoal::get_timeout(&swapped_x::remote(point.clone()), PATIENCE)));

    let layer = shoal::put(sample_model().first)?;
    assert!(is_type_mismatch(&shoal::get_view::<LayerSwapped, _>(&layer)));
    assert!(is_type_mismatch(&shoal::get_timeout(&swapped_bias::remote(&layer), PATIENCE)));
    // A task's output, passed on, is checked the same way.
    let echoed = echo_layer::remote(&layer);
    assert!(is_type_mismatch(&shoal::get_timeout(&swapped_bias::remote(&echoed), PATIENCE)));
    assert_eq!(shoal::get_timeout(&echoed, PATIENCE)?, sample_model().first);

    // A nested twin out of order fails its outer twin.
    let model = shoal::put(sample_model())?;
    assert!(is_type_mismatch(&shoal::get_view::<ModelWithSwappedLayers, _>(&model)));
    assert!(is_type_mismatch(&shoal::get_timeout(&swapped_model::remote(&model), PATIENCE)));
    assert!(shoal::get_view::<ModelView, _>(&model).is_ok(), "the correct twin still reads");

    // Enums: variants, and a struct variant's fields.
    let dense = shoal::put(Signal::Dense(Array1::from_elem(2, 1.0)))?;
    assert!(is_type_mismatch(&shoal::get_view::<SignalVariantsSwapped, _>(&dense)));
    assert!(is_type_mismatch(&shoal::get_view::<SignalFieldsSwapped, _>(&dense)));
    assert!(shoal::get_view::<SignalView, _>(&dense).is_ok());
    Ok(())
}

#[shoal::remote]
fn echo_layer(layer: Layer) -> Layer {
    layer
}

#[test]
fn hundred_megabytes_summed_by_four_tasks() -> anyhow::Result<()> {
    shared_node();
    let n = 12_500_000;
    let mut a = Array1::<f64>::ones(n);
    a[0] = 3.0;
    a[n / 2] = 10.0;
    a[n - 1] = 5.0;
    let quarters: Vec<(usize, usize)> = (0..4).map(|q| (q * n / 4, (q + 1) * n / 4)).collect();
    let expected: Vec<f64> = quarters.iter().map(|&(s, e)| a.slice(s![s..e]).sum()).collect();
    let r = shoal::put(a)?;
    let sums: Vec<ObjectRef<f64>> = quarters.iter().map(|&(s, e)| sum_range::remote(&r, s, e)).collect();
    let total_ref = total::remote(&r);
    for (sum, expected) in sums.iter().zip(&expected) {
        assert_eq!(shoal::get_timeout(sum, PATIENCE)?, *expected);
    }
    assert_eq!(shoal::get_timeout(&total_ref, PATIENCE)?, expected.iter().sum::<f64>());
    assert_eq!(expected.iter().sum::<f64>(), n as f64 + 2.0 + 9.0 + 4.0);
    Ok(())
}
