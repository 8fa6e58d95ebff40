//! Element types that an array buffer can hold.

use serde::{Deserialize, Serialize};

/// The element type of an array buffer, as recorded in the object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum DType {
    /// An array with no elements: its element type was never observed.
    Empty = 0,
    /// `bool`, one byte holding 0 or 1.
    Bool,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64` (and `isize`, which serde writes as `i64`)
    I64,
    /// `i128`
    I128,
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64` (and `usize`, which serde writes as `u64`)
    U64,
    /// `u128`
    U128,
    /// `f32`
    F32,
    /// `f64`
    F64,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Empty => 0,
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
            DType::I128 | DType::U128 => 16,
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A type that can be an element of a zero-copy [`SharedArray`](crate::SharedArray):
/// every numeric primitive and `bool`.
///
/// Sealed: the zero-copy view relies on every element being plain data whose
/// layout is exactly [`Element::DTYPE`], so only this crate implements it.
pub trait Element: sealed::Sealed + Copy + Send + Sync + Serialize + for<'de> Deserialize<'de> + 'static {
    /// The dtype this element is stored as.
    const DTYPE: DType;
    /// Zero (`false`): all bytes 0, so a large `vec![ZERO; n]` is fresh
    /// zeroed memory that has not been touched yet.
    const ZERO: Self;
}

macro_rules! element {
    ($($t:ty => $d:ident = $zero:expr),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const ZERO: Self = $zero;
        }
    )*};
}

element! {
    bool => Bool = false, i8 => I8 = 0, i16 => I16 = 0, i32 => I32 = 0, i64 => I64 = 0, i128 => I128 = 0,
    u8 => U8 = 0, u16 => U16 = 0, u32 => U32 = 0, u64 => U64 = 0, u128 => U128 = 0, f32 => F32 = 0.0,
    f64 => F64 = 0.0,
}

#[cfg(target_pointer_width = "64")]
element! { isize => I64 = 0, usize => U64 = 0 }

/// The memory of `elements`, as bytes.
pub(crate) fn as_bytes<A: Element>(elements: &[A]) -> &[u8] {
    // SAFETY: (1) `A: Element` is sealed to the primitive numbers and `bool`,
    // which have no padding, so every byte of `elements` is initialised;
    // (2) the byte slice covers exactly the memory of `elements` and borrows
    // it for the same lifetime.
    unsafe { std::slice::from_raw_parts(elements.as_ptr().cast::<u8>(), size_of_val(elements)) }
}

/// The memory of `elements`, as bytes to overwrite.
///
/// # Safety
/// Whatever is written through the result must leave every element a valid
/// `A`: any bytes for the numbers, 0 or 1 for `bool`.
pub(crate) unsafe fn as_bytes_mut<A: Element>(elements: &mut [A]) -> &mut [u8] {
    // SAFETY: (1) as in `as_bytes`, the memory is exactly the elements'
    // initialised bytes, borrowed mutably for the same lifetime, so nothing
    // else sees them meanwhile; (2) the caller keeps every element valid.
    unsafe { std::slice::from_raw_parts_mut(elements.as_mut_ptr().cast::<u8>(), size_of_val(elements)) }
}
