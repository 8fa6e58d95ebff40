//! Owned ndarray arrays of [`Element`]s recognised behind a generic type, so
//! that the encoder and decoder move their elements with one `memcpy` instead
//! of one serde call each, wherever in a value they sit.
//!
//! serde hands a serializer `&T` and a deserializer a seed `S` for types it
//! cannot name; `typeid` gives the `TypeId` of such a type (lifetimes erased),
//! and an equal `TypeId` to `Array<A, D>`'s means it *is* that type, since an
//! `Array<A: Element, D>` has no lifetime to erase. This module owns that
//! recognition and the one cast it allows; it does not know the object format.

use std::any::TypeId;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use ndarray::{Array, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn};

use crate::element::{DType, Element};

/// A standard-layout array found inside a value: its elements as bytes.
pub(crate) struct ArrayBytes<'a> {
    pub bytes: &'a [u8],
    /// `DType::Empty` for an array without elements, as the serde path writes.
    pub dtype: DType,
    pub shape: Vec<u64>,
}

fn bytes_of<A: Element, D: Dimension>(array: &Array<A, D>) -> Option<ArrayBytes<'_>> {
    let elements = array.as_slice()?;
    let bytes = crate::element::as_bytes(elements);
    let dtype = if elements.is_empty() { DType::Empty } else { A::DTYPE };
    Some(ArrayBytes { bytes, dtype, shape: array.shape().iter().map(|&d| d as u64).collect() })
}

/// Sizes of `Array<_, D>` for every dimension type below: a value of another
/// size is no array, which rules out most values with one comparison.
const ARRAY_SIZES: [usize; 8] = [
    size_of::<Array<u8, Ix0>>(),
    size_of::<Array<u8, Ix1>>(),
    size_of::<Array<u8, Ix2>>(),
    size_of::<Array<u8, Ix3>>(),
    size_of::<Array<u8, Ix4>>(),
    size_of::<Array<u8, Ix5>>(),
    size_of::<Array<u8, Ix6>>(),
    size_of::<Array<u8, IxDyn>>(),
];

/// Calls `$found!(element, dimension)` for every element and dimension type.
macro_rules! each_array_type {
    ($found:ident) => {
        each_array_type!(@elements $found; f64, f32, i64, u8, i32, u64, u32, i16, u16, i8, bool, i128, u128, usize, isize);
    };
    (@elements $found:ident; $($a:ty),*) => {$(
        each_array_type!(@dims $found, $a; Ix1, Ix2, Ix3, IxDyn, Ix4, Ix0, Ix5, Ix6);
    )*};
    (@dims $found:ident, $a:ty; $($d:ty),*) => {$(
        $found!($a, $d);
    )*};
}

/// If `value` is an owned `Array<A, D>` of an [`Element`] type in standard
/// layout, its elements as bytes.
pub(crate) fn standard_array<T: ?Sized>(value: &T) -> Option<ArrayBytes<'_>> {
    let id = typeid::of::<T>();
    macro_rules! found {
        ($a:ty, $d:ty) => {
            if id == TypeId::of::<Array<$a, $d>>() {
                // SAFETY: `T`'s TypeId (lifetimes erased) equals that of
                // `Array<$a, $d>`, which has no lifetimes: `T` is that type,
                // so the pointer is a valid `&Array<$a, $d>` for `value`'s
                // lifetime.
                let array = unsafe { &*(value as *const T).cast::<Array<$a, $d>>() };
                return bytes_of(array);
            }
            // serde's `collect_seq` (every `Vec`, slice, set…) hands each
            // element over as a reference to it.
            if id == TypeId::of::<&'static Array<$a, $d>>() {
                // SAFETY: as above, `T` is `&'x Array<$a, $d>` for some
                // lifetime 'x that outlives `value`'s borrow, so `value`
                // points to a valid reference to a live array.
                let array: &Array<$a, $d> = unsafe { *(value as *const T).cast::<&Array<$a, $d>>() };
                return bytes_of(array);
            }
        };
    }
    each_array_type!(found);
    None
}

/// Builds an owned array from a checked buffer's shape and bytes.
pub(crate) trait BuildArray {
    /// Why the bytes cannot be the array asked for.
    type Error;
    /// The built array.
    fn build<A: Element, D: Dimension>(self) -> Result<Array<A, D>, Self::Error>;
}

/// If the seed `S` asks plainly (`PhantomData`) for an owned `Array<A, D>` of
/// an [`Element`] type, build it with `build` and return it as `S`'s value;
/// `None` for any other seed.
pub(crate) fn build_for_seed<S, V, B: BuildArray>(build: B) -> Option<Result<V, B::Error>> {
    // A constant per `V`: every other type is ruled out at compile time.
    if !ARRAY_SIZES.contains(&size_of::<V>()) {
        return None;
    }
    let id = typeid::of::<S>();
    macro_rules! found {
        ($a:ty, $d:ty) => {
            if id == TypeId::of::<PhantomData<Array<$a, $d>>>() {
                return Some(build.build::<$a, $d>().map(|array| cast::<Array<$a, $d>, V>(array)));
            }
        };
    }
    each_array_type!(found);
    None
}

/// Builds the elements of a checked buffer as a `Vec<A>`, if they are `A`s.
pub(crate) trait BuildVec {
    /// The elements, or `None` if the buffer holds another element type.
    fn build<A: Element>(self) -> Option<Vec<A>>;
}

/// If the seed `S` asks plainly for a `Vec<A>` of an [`Element`] type (as
/// ndarray's own `Deserialize` asks for an array's `data`), build it with
/// `build` and return it as `S`'s value; `None` for any other seed, or a
/// buffer of another element type.
pub(crate) fn vec_for_seed<S, V, B: BuildVec>(build: B) -> Option<V> {
    if size_of::<V>() != size_of::<Vec<u8>>() {
        return None;
    }
    let id = typeid::of::<S>();
    macro_rules! found {
        ($($a:ty),*) => {$(
            if id == TypeId::of::<PhantomData<Vec<$a>>>() {
                return build.build::<$a>().map(cast::<Vec<$a>, V>);
            }
        )*};
    }
    found!(f64, f32, i64, u8, i32, u64, u32, i16, u16, i8, bool, i128, u128, usize, isize);
    None
}

/// `value` as a `V`, which the caller has established is `T`.
///
/// # Panics
/// If `V`'s TypeId (lifetimes erased) differs from `T`'s.
///
/// Every `T` this module casts (`Array<A: Element, D>`, `Vec<A: Element>`)
/// has no lifetime parameters.
fn cast<T: 'static, V>(value: T) -> V {
    assert!(typeid::of::<V>() == TypeId::of::<T>(), "known_arrays::cast between different types");
    let value = ManuallyDrop::new(value);
    // SAFETY: (1) `V` has `T`'s TypeId with lifetimes erased, and every `T`
    // this module casts (an `Array<A: Element, D>` or a `Vec<A: Element>`)
    // has no lifetime parameters, so `V` is exactly `T` (same size, layout
    // and validity);
    // (2) `value` is wrapped in `ManuallyDrop`, so ownership moves to the
    // result and nothing is dropped twice.
    unsafe { std::ptr::read((&*value as *const T).cast::<V>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, ArrayD, ShapeBuilder};

    #[test]
    fn recognises_standard_arrays_only() {
        let a = Array2::<f32>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        let found = standard_array(&a).expect("a standard Array2<f32>");
        assert_eq!((found.dtype, found.shape.clone(), found.bytes.len()), (DType::F32, vec![3, 4], 48));
        assert_eq!(&found.bytes[4..8], &1f32.to_le_bytes());
        // As serde's `collect_seq` hands over each element of a `Vec`.
        assert_eq!(standard_array(&&a).map(|f| f.bytes.len()), Some(48));
        assert!(standard_array(&a.clone().reversed_axes()).is_none(), "transposed strides");
        let f_order = Array2::<u8>::zeros((2, 3).f());
        assert!(standard_array(&f_order).is_none());
        assert!(standard_array(&a.view()).is_none(), "a view is not an owned array");
        assert!(standard_array(&vec![1u64; 6]).is_none());
        assert!(standard_array(&[0u8; 48]).is_none(), "an array-sized value of another type");
        let empty = ArrayD::<i64>::zeros(vec![0, 5]);
        assert_eq!(standard_array(&empty).map(|f| f.dtype), Some(DType::Empty));
        let usizes = Array1::<usize>::zeros(2);
        assert_eq!(standard_array(&usizes).map(|f| f.dtype), Some(DType::U64));
    }

    struct Fill(u8);
    impl BuildArray for Fill {
        type Error = String;
        fn build<A: Element, D: Dimension>(self) -> Result<Array<A, D>, String> {
            let dim = D::from_dimension(&IxDyn(&[2])).ok_or("not one-dimensional")?;
            let bytes = vec![self.0; 2 * size_of::<A>()];
            Array::from_shape_vec(dim, crate::copy::to_vec::<A>(&bytes)).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn builds_for_plain_seeds_only() {
        let built: Array1<u8> = build_for_seed::<PhantomData<Array1<u8>>, _, _>(Fill(7)).unwrap().unwrap();
        assert_eq!(built.to_vec(), [7, 7]);
        assert!(build_for_seed::<PhantomData<Array2<u8>>, Array2<u8>, _>(Fill(7)).unwrap().is_err());
        assert!(build_for_seed::<PhantomData<Vec<u8>>, Vec<u8>, _>(Fill(7)).is_none());
        assert!(build_for_seed::<Array1<u8>, Array1<u8>, _>(Fill(7)).is_none(), "a seed that is not PhantomData");
    }
}
