//! The object decoder: reads what [`crate::ser`] writes.
//!
//! Array buffers are presented to ndarray's own `Deserialize` as the
//! `(v, dim, data)` sequence it expects (a copy, as an owned `Array` must be),
//! and to [`SharedArray`](crate::SharedArray) as a buffer index it resolves in
//! place through the decode context. An owned array that is a field or an
//! element of the value skips that sequence: it is recognised by type
//! ([`crate::known_arrays`]) and copied out of its buffer whole.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use ndarray::{Array, Dimension};

use crate::decode_context::{BufferView, owned_array, with_context};
use crate::element::{self, DType};
use crate::known_arrays::{self, BuildArray, BuildVec};
use crate::shared_array::SHARED_ARRAY_MARKER;

/// A decoding error as serde reports it.
#[derive(Debug)]
pub(crate) struct DeError(pub String);

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, DeError>;

fn err(msg: impl Into<String>) -> DeError {
    DeError(msg.into())
}

/// Reads a payload.
pub(crate) struct PayloadReader<'de> {
    input: &'de [u8],
}

impl<'de> PayloadReader<'de> {
    pub(crate) fn new(input: &'de [u8]) -> Self {
        PayloadReader { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.input.len()
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(err(format!("payload ends early: wanted {n} bytes, {} left", self.input.len())));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn varint(&mut self, max_bits: u32) -> Result<u128> {
        let mut value: u128 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            let bits = u128::from(byte & 0x7f);
            if shift >= 128 || (shift > 121 && bits >> (128 - shift) != 0) {
                return Err(err("varint overflows its type"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if max_bits < 128 && value >> max_bits != 0 {
                    return Err(err("varint overflows its type"));
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn signed(&mut self, bits: u32) -> Result<i128> {
        let v = self.varint(bits)?;
        Ok(((v >> 1) as i128) ^ -((v & 1) as i128))
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.varint(64)?).map_err(|_| err("length overflows usize"))
    }

    fn str(&mut self) -> Result<&'de str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| err(format!("invalid UTF-8: {e}")))
    }
}

macro_rules! unsigned {
    ($($m:ident $visit:ident $t:ty, $bits:expr);*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(self.varint($bits)? as $t)
        }
    )*};
}

macro_rules! signed {
    ($($m:ident $visit:ident $t:ty, $bits:expr);*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(self.signed($bits)? as $t)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut PayloadReader<'de> {
    type Error = DeError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(err("the object format is not self-describing"))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => Err(err(format!("invalid bool byte {b}"))),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }
    unsigned!(deserialize_u16 visit_u16 u16, 16; deserialize_u32 visit_u32 u32, 32;
              deserialize_u64 visit_u64 u64, 64; deserialize_u128 visit_u128 u128, 128);
    signed!(deserialize_i16 visit_i16 i16, 16; deserialize_i32 visit_i32 i32, 32;
            deserialize_i64 visit_i64 i64, 64; deserialize_i128 visit_i128 i128, 128);
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let s = self.str()?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(err("expected one char")),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            b => Err(err(format!("invalid option tag {b}"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value> {
        if name == SHARED_ARRAY_MARKER {
            return visitor.visit_u64(self.varint(64)? as u64);
        }
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.len()?;
        visitor.visit_seq(Counted { de: self, left: len })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Counted { de: self, left: len })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.len()?;
        visitor.visit_map(Counted { de: self, left: len })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if name == "Array" && fields == ["v", "dim", "data"] {
            let index = self.len()?;
            let buffer = with_context(|ctx| ctx.and_then(|c| c.buffers.get(index).cloned()))
                .ok_or_else(|| err(format!("array buffer {index} does not exist")))?;
            return visitor.visit_seq(ArrayParts { buffer, step: 0 });
        }
        self.deserialize_tuple(fields.len(), visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(self.varint(32)? as u32)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(err("the object format cannot skip unknown values"))
    }
}

/// A sequence, tuple, struct or map with a known number of entries.
struct Counted<'a, 'de> {
    de: &'a mut PayloadReader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Counted<'_, 'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        // A field or element that is an owned array: one copy from its
        // buffer, not one serde call per element.
        if let Some(array) = known_arrays::build_for_seed::<T, T::Value, _>(NextBuffer(self.de)) {
            return array.map(Some);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never promise more than the payload could hold: serde pre-allocates
        // from this hint, and a corrupt length must not allocate wildly.
        Some(self.left.min(self.de.remaining()))
    }
}

impl<'de> de::MapAccess<'de> for Counted<'_, 'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.remaining()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut PayloadReader<'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = self.varint(32)? as u32;
        let value = seed.deserialize(index.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut PayloadReader<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

/// Reads the buffer index an array left in the payload and builds the owned
/// array from that buffer.
struct NextBuffer<'a, 'de>(&'a mut PayloadReader<'de>);

impl BuildArray for NextBuffer<'_, '_> {
    type Error = DeError;
    fn build<A: element::Element, D: Dimension>(self) -> Result<Array<A, D>> {
        let index = self.0.len()?;
        let buffer = with_context(|ctx| ctx.and_then(|c| c.buffers.get(index).cloned()))
            .ok_or_else(|| err(format!("array buffer {index} does not exist")))?;
        owned_array(&buffer).map_err(err)
    }
}

impl BuildVec for &BufferView {
    fn build<A: element::Element>(self) -> Option<Vec<A>> {
        let same = self.dtype == A::DTYPE || (self.dtype == DType::Empty && self.len == 0);
        same.then(|| crate::copy::to_vec::<A>(self.bytes()))
    }
}

/// ndarray's `(v, dim, data)` sequence, made from a buffer.
struct ArrayParts {
    buffer: BufferView,
    step: u8,
}

impl<'de> de::SeqAccess<'de> for ArrayParts {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let step = self.step;
        self.step += 1;
        match step {
            0 => seed.deserialize(1u8.into_deserializer()).map(Some),
            1 => seed.deserialize(DimDeserializer(&self.buffer.shape)).map(Some),
            // ndarray asks for its elements as a `Vec<A>`: one copy.
            2 => match known_arrays::vec_for_seed::<T, T::Value, _>(&self.buffer) {
                Some(elements) => Ok(Some(elements)),
                None => seed.deserialize(DataDeserializer(&self.buffer)).map(Some),
            },
            _ => Ok(None),
        }
    }
}

/// An ndarray dimension, as the tuple or sequence of lengths it deserializes from.
struct DimDeserializer<'a>(&'a [usize]);

impl<'de> de::Deserializer<'de> for DimDeserializer<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let mut lengths = de::value::SeqDeserializer::new(self.0.iter().map(|&d| d as u64));
        let dim = visitor.visit_seq(&mut lengths)?;
        lengths.end()?;
        Ok(dim)
    }
    /// A fixed-dimension array (`Ix1`…`Ix6`): the buffer must have exactly
    /// that many axes.
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        if len != self.0.len() {
            return Err(err(format!("array has {} dimensions, the type has {len}", self.0.len())));
        }
        self.deserialize_any(visitor)
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq
        tuple_struct map struct enum identifier ignored_any
    }
}

/// An array's elements, copied out one by one.
struct DataDeserializer<'a>(&'a BufferView);

impl<'de> de::Deserializer<'de> for DataDeserializer<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let size = self.0.dtype.size().max(1);
        let count = if self.0.dtype == DType::Empty { 0 } else { self.0.len / size };
        visitor.visit_seq(Elements { bytes: self.0.bytes(), dtype: self.0.dtype, left: count })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct Elements<'a> {
    bytes: &'a [u8],
    dtype: DType,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (head, tail) = self.bytes.split_at(self.dtype.size());
        self.bytes = tail;
        seed.deserialize(Element { bytes: head, dtype: self.dtype }).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct Element<'a> {
    bytes: &'a [u8],
    dtype: DType,
}

impl<'de> de::Deserializer<'de> for Element<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        macro_rules! le {
            ($t:ty) => {
                <$t>::from_le_bytes(self.bytes.try_into().expect("element size"))
            };
        }
        match self.dtype {
            DType::Empty => Err(err("element of an empty array")),
            DType::Bool => visitor.visit_bool(self.bytes[0] != 0),
            DType::I8 => visitor.visit_i8(le!(i8)),
            DType::I16 => visitor.visit_i16(le!(i16)),
            DType::I32 => visitor.visit_i32(le!(i32)),
            DType::I64 => visitor.visit_i64(le!(i64)),
            DType::I128 => visitor.visit_i128(le!(i128)),
            DType::U8 => visitor.visit_u8(le!(u8)),
            DType::U16 => visitor.visit_u16(le!(u16)),
            DType::U32 => visitor.visit_u32(le!(u32)),
            DType::U64 => visitor.visit_u64(le!(u64)),
            DType::U128 => visitor.visit_u128(le!(u128)),
            DType::F32 => visitor.visit_f32(le!(f32)),
            DType::F64 => visitor.visit_f64(le!(f64)),
        }
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
