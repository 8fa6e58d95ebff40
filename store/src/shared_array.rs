//! [`SharedArray`]: a read-only ndarray view into a sealed object.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use ndarray::{Array, ArrayView, Dimension, IxDyn};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::decode_context::{Keepalive, with_context};
use crate::element::{DType, Element};

/// The serde newtype-struct name through which a `SharedArray` asks the object
/// decoder for a buffer.
pub(crate) const SHARED_ARRAY_MARKER: &str = "$shoal::SharedArray";

/// A read-only, zero-copy n-dimensional array living in the object store.
///
/// A `SharedArray` points straight into the shared-memory arena: reading it
/// copies nothing, and two `SharedArray`s of one object in one process see the
/// same address. While it (or a clone) is alive the object stays pinned in the
/// store. Mutation means an explicit copy: [`SharedArray::to_owned`].
///
/// It is written exactly like an owned `ndarray::Array<A, D>` of the same
/// shape, so an object written from an `Array` can be read as a `SharedArray`
/// and the other way round; a struct with `Array` fields can be read through a
/// "view twin" struct with `SharedArray` fields (see the `shoal` crate docs).
///
/// Elements are always in standard (C) layout.
pub struct SharedArray<A: Element, D: Dimension> {
    ptr: NonNull<A>,
    dim: D,
    keepalive: Keepalive,
    _elements: PhantomData<A>,
}

// SAFETY: (1) a `SharedArray` only ever hands out shared (`&A`) access to its
// elements; (2) `A: Element` is `Send + Sync` plain data; (3) the memory it
// points to is a sealed object that no process writes while the keepalive is
// alive (the contract of `decode_in_place`); (4) the keepalive is itself
// `Send + Sync`. So moving or sharing it across threads is as safe as sharing
// an `&[A]`.
unsafe impl<A: Element, D: Dimension> Send for SharedArray<A, D> {}
// SAFETY: as for `Send` above: all access is shared and read-only.
unsafe impl<A: Element, D: Dimension> Sync for SharedArray<A, D> {}

impl<A: Element, D: Dimension> SharedArray<A, D> {
    /// A borrowed ndarray view of the elements (no copy).
    pub fn view(&self) -> ArrayView<'_, A, D> {
        // SAFETY: (1) `ptr` is non-null and aligned for `A` (checked in
        // `from_buffer`, or dangling-but-aligned for an empty array); (2) it
        // points to `dim.size()` initialised elements in C order (the buffer
        // length was checked against the shape and dtype); (3) those bytes stay
        // valid and unwritten while `keepalive` lives, which is at least as long
        // as `&self`; (4) the total size fits in `isize` because it fits in a
        // mapped object.
        unsafe { ArrayView::from_shape_ptr(self.dim.clone(), self.ptr.as_ptr()) }
    }

    /// The elements as one contiguous slice, in C order (no copy).
    pub fn as_slice(&self) -> &[A] {
        // SAFETY: same reasoning as `view`: `ptr` is aligned, valid for
        // `dim.size()` elements, immutable while `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.dim.size()) }
    }

    /// An owned, mutable copy.
    pub fn to_owned(&self) -> Array<A, D> {
        self.view().to_owned()
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// The array's dimension.
    pub fn raw_dim(&self) -> D {
        self.dim.clone()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Address of the first element: equal for every view of one object in
    /// one process, and 64-byte aligned for non-empty arrays.
    pub fn as_ptr(&self) -> *const A {
        self.ptr.as_ptr()
    }

    fn from_buffer(index: usize) -> Result<Self, String> {
        with_context(|ctx| {
            let ctx = ctx.ok_or("a SharedArray can only be read from a shoal object")?;
            let buffer = ctx.buffers.get(index).ok_or_else(|| format!("array buffer {index} does not exist"))?;
            let keepalive = ctx
                .keepalive
                .clone()
                .ok_or("a SharedArray needs an object in the store (use the owned Array type to copy instead)")?;
            // `parse` already bounds the product of the non-zero axes by
            // `isize::MAX`; checked anyway, so a descriptor-derived shape can
            // never overflow here (nor in `dim.size()` later).
            let elements = buffer
                .shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| format!("array shape {:?} overflows the element count", buffer.shape))?;
            if !(buffer.dtype == A::DTYPE || (buffer.dtype == DType::Empty && elements == 0)) {
                return Err(format!("array holds {:?}, not {:?}", buffer.dtype, A::DTYPE));
            }
            let dim = D::from_dimension(&IxDyn(&buffer.shape))
                .ok_or_else(|| format!("array has {} dimensions, wanted {:?}", buffer.shape.len(), D::NDIM))?;
            let ptr = if elements == 0 {
                NonNull::dangling()
            } else {
                let ptr = buffer.ptr as *mut A;
                if !ptr.is_aligned() {
                    return Err("array buffer is not aligned for its element type".into());
                }
                NonNull::new(ptr).ok_or("null array buffer")?
            };
            Ok(SharedArray { ptr, dim, keepalive, _elements: PhantomData })
        })
    }
}

impl<A: Element, D: Dimension> Clone for SharedArray<A, D> {
    fn clone(&self) -> Self {
        SharedArray { ptr: self.ptr, dim: self.dim.clone(), keepalive: self.keepalive.clone(), _elements: PhantomData }
    }
}

impl<A: Element + fmt::Debug, D: Dimension> fmt::Debug for SharedArray<A, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray").field("ptr", &self.ptr).field("view", &self.view()).finish()
    }
}

impl<A: Element + PartialEq, D: Dimension> PartialEq for SharedArray<A, D> {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl<A: Element, D: Dimension + Serialize> Serialize for SharedArray<A, D> {
    /// Serializes exactly as `ndarray::Array<A, D>` does, so that a value
    /// holding a `SharedArray` is written as one holding an `Array`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(serializer)
    }
}

impl<'de, A: Element, D: Dimension> Deserialize<'de> for SharedArray<A, D> {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        struct BufferIndex<A, D>(PhantomData<(A, D)>);
        impl<'de, A: Element, D: Dimension> Visitor<'de> for BufferIndex<A, D> {
            type Value = SharedArray<A, D>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array buffer of a shoal object")
            }
            fn visit_u64<E: de::Error>(self, index: u64) -> Result<Self::Value, E> {
                let index = usize::try_from(index).map_err(E::custom)?;
                SharedArray::from_buffer(index).map_err(E::custom)
            }
        }
        deserializer.deserialize_newtype_struct(SHARED_ARRAY_MARKER, BufferIndex(PhantomData))
    }
}
