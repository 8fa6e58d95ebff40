//! The object encoder: postcard's wire format, except that every ndarray array
//! becomes a buffer index and every object reference is recorded.
//!
//! For a value without arrays the payload is byte-for-byte what
//! `postcard::to_stdvec` writes (a test checks it). ndarray serializes an array
//! as `struct Array { v: u8, dim, data: seq }`; the encoder recognises that
//! shape and writes only the buffer's index into the payload.
//!
//! Encoding takes two passes so that array elements are copied once, straight
//! to their final place (the arena), with no intermediate buffer to fault in:
//! the *measure* pass builds the payload and learns each array's shape and
//! dtype, stopping each array's element loop after its first element; the
//! *write* pass serializes the value again and streams each array's elements
//! into its slot. An owned array in standard layout, wherever it sits in the
//! value, skips serde in both passes: it is recognised by type
//! ([`crate::known_arrays`]) and its bytes are copied into its slot whole.

use std::cell::Cell;

use serde::ser::{self, Impossible, Serialize};

use crate::REF_MARKER;
use crate::element::DType;
use crate::known_arrays::{self, ArrayBytes};

/// The encoder's error: a real failure, or the measure pass's signal that it
/// has seen an array's first element and needs no more.
#[derive(Debug)]
pub(crate) enum SerError {
    Stop,
    Fail(String),
}

impl std::fmt::Display for SerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SerError::Stop => f.write_str("array measured"),
            SerError::Fail(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        SerError::Fail(msg.to_string())
    }
}

type Result<T, E = SerError> = std::result::Result<T, E>;

/// One array taken out of the payload.
pub(crate) struct CapturedArray {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub len: usize,
}

/// Where the write pass puts array elements: the whole object, and each
/// array's byte range in it, in order.
pub(crate) struct ArraySink<'d> {
    pub dst: &'d mut [u8],
    pub slots: &'d [(usize, usize, DType)],
    pub next: usize,
}

/// Serializer state for one object.
#[derive(Default)]
pub(crate) struct ObjectSerializer<'d> {
    pub payload: Vec<u8>,
    pub arrays: Vec<CapturedArray>,
    pub refs: Vec<u64>,
    /// `None` in the measure pass.
    pub sink: Option<ArraySink<'d>>,
    /// Whether owned standard-layout arrays skip serde (always, but for the
    /// tests that compare both ways).
    pub serde_only: bool,
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unsupported(what: &str) -> SerError {
    SerError::Fail(what.to_string())
}

impl ObjectSerializer<'_> {
    fn varint(&mut self, v: u128) {
        write_varint(&mut self.payload, v);
    }

    /// Serialize one value of the object (the whole, a field, an element…):
    /// an owned array in standard layout goes to its buffer with one copy
    /// (parallel when large), anything else through serde.
    pub(crate) fn value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        match known_arrays::standard_array(value).filter(|_| !self.serde_only) {
            Some(array) => self.array_bytes(array),
            None => value.serialize(self),
        }
    }

    /// Take an array's bytes out of the payload: measure it, or copy it into
    /// its slot; either way the payload gets its buffer index, exactly as
    /// the serde path writes it.
    fn array_bytes(&mut self, array: ArrayBytes<'_>) -> Result<()> {
        let len = array.bytes.len();
        if let Some(sink) = self.sink.as_mut() {
            let &(offset, slot_len, slot_dtype) = sink.slots.get(sink.next).ok_or_else(|| unsupported(CHANGED))?;
            if slot_len != len || slot_dtype != array.dtype {
                return Err(unsupported(CHANGED));
            }
            sink.next += 1;
            crate::copy::copy_bytes(&mut sink.dst[offset..offset + len], array.bytes);
        }
        let index = self.arrays.len();
        self.arrays.push(CapturedArray { dtype: array.dtype, shape: array.shape, len });
        self.varint(index as u128);
        Ok(())
    }
}

impl<'a, 'd> ser::Serializer for &'a mut ObjectSerializer<'d> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructSerializer<'a, 'd>;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.payload.push(v as u8);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.payload.push(v as u8);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.varint(zigzag(v.into()));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.varint(zigzag(v.into()));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.varint(zigzag(v.into()));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.varint(zigzag(v));
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.payload.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.varint(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.payload.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.payload.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        let mut buf = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.varint(v.len() as u128);
        self.payload.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.payload.push(0);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.payload.push(1);
        self.value(value)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, index: u32, _variant: &'static str) -> Result<()> {
        self.varint(index.into());
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, value: &T) -> Result<()> {
        if name == REF_MARKER {
            let id = value.serialize(U64Probe)?;
            self.refs.push(id);
            self.varint(id.into());
            return Ok(());
        }
        self.value(value)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint(index.into());
        self.value(value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        let len = len.ok_or_else(|| unsupported("sequences and maps must know their length"))?;
        self.varint(len as u128);
        Ok(self)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.serialize_seq(len)
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructSerializer<'a, 'd>> {
        let array = (name == "Array" && len == 3).then(|| ArrayCapture { step: 0, shape: Vec::new(), data: None });
        Ok(StructSerializer { ser: self, array })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
    fn collect_str<T: ?Sized + std::fmt::Display>(self, value: &T) -> Result<()> {
        self.serialize_str(&value.to_string())
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut ObjectSerializer<'_> {
            type Ok = ();
            type Error = SerError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
                self.value(value)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut ObjectSerializer<'_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        self.value(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut ObjectSerializer<'_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _key: &'static str, value: &T) -> Result<()> {
        self.value(value)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// A struct being serialized: an ordinary one, or (with `array`) what looks
/// like an ndarray array, captured into a buffer.
pub(crate) struct StructSerializer<'a, 'd> {
    ser: &'a mut ObjectSerializer<'d>,
    array: Option<ArrayCapture>,
}

pub(crate) struct ArrayCapture {
    step: u8,
    shape: Vec<u64>,
    data: Option<(DType, usize)>,
}

impl ser::SerializeStruct for StructSerializer<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<()> {
        if self.array.as_ref().is_some_and(|c| c.step == 0 && key != "v") {
            // A struct of the user's that happens to be named `Array`.
            self.array = None;
        }
        let Some(capture) = self.array.as_mut() else {
            return self.ser.value(value);
        };
        match (capture.step, key) {
            (0, "v") => {
                value.serialize(U64Probe)?;
            }
            (1, "dim") => capture.shape = value.serialize(DimProbe)?,
            (2, "data") => {
                let elements = capture.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
                let elements = elements.ok_or_else(|| unsupported("array element count overflows"))?;
                let elements = usize::try_from(elements).map_err(|_| unsupported("array too large"))?;
                let dtype = Cell::new(DType::Empty);
                capture.data = Some(match self.ser.sink.as_mut() {
                    None => match value.serialize(DataProbe { elements, dtype: &dtype, out: None }) {
                        Ok(_) => (DType::Empty, 0),
                        Err(SerError::Stop) => {
                            let len = elements
                                .checked_mul(dtype.get().size())
                                .ok_or_else(|| unsupported("array too large"))?;
                            (dtype.get(), len)
                        }
                        Err(e) => return Err(e),
                    },
                    Some(sink) => {
                        let &(offset, len, slot_dtype) =
                            sink.slots.get(sink.next).ok_or_else(|| unsupported(CHANGED))?;
                        sink.next += 1;
                        dtype.set(slot_dtype);
                        let out = &mut sink.dst[offset..offset + len];
                        let left = value.serialize(DataProbe { elements, dtype: &dtype, out: Some(out) })?;
                        if left != 0 || dtype.get() != slot_dtype {
                            return Err(unsupported(CHANGED));
                        }
                        (slot_dtype, len)
                    }
                });
            }
            _ => return Err(unsupported("a struct named `Array` must have ndarray's fields v, dim, data")),
        }
        capture.step += 1;
        Ok(())
    }

    fn end(self) -> Result<()> {
        let Some(capture) = self.array else { return Ok(()) };
        let (dtype, len) = capture.data.ok_or_else(|| unsupported("ndarray array without data"))?;
        let index = self.ser.arrays.len();
        self.ser.arrays.push(CapturedArray { dtype, shape: capture.shape, len });
        self.ser.varint(index as u128);
        Ok(())
    }
}

/// Generates the `Serializer` methods a probe does not accept.
macro_rules! reject {
    ($($m:ident($($t:ty),*)),* $(,)?) => {$(
        fn $m(self, $(_: $t),*) -> Result<Self::Ok> {
            Err(unsupported(concat!("unexpected ", stringify!($m), " inside an array")))
        }
    )*};
}

macro_rules! reject_compound {
    () => {
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok> {
            Err(unsupported("unexpected option inside an array"))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<Self::Ok> {
            Err(unsupported("unexpected newtype inside an array"))
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok> {
            Err(unsupported("unexpected enum inside an array"))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct> {
            Err(unsupported("unexpected tuple struct inside an array"))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant> {
            Err(unsupported("unexpected enum inside an array"))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
            Err(unsupported("unexpected map inside an array"))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
            Err(unsupported("ndarray arrays may only hold numbers or bool"))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant> {
            Err(unsupported("unexpected enum inside an array"))
        }
    };
}

/// Generates the `Serializer` methods for every non-numeric scalar, each
/// refusing (no probe accepts them).
macro_rules! reject_non_numeric {
    () => {
        reject!(
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str),
        );
    };
}

/// Generates every scalar `Serializer` method, each refusing.
macro_rules! reject_scalars {
    () => {
        reject!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_f32(f32),
            serialize_f64(f64),
        );
        reject_non_numeric!();
    };
}

/// Accepts one unsigned integer (a version byte, an id, a dimension length).
struct U64Probe;

impl ser::Serializer for U64Probe {
    type Ok = u64;
    type Error = SerError;
    type SerializeSeq = Impossible<u64, SerError>;
    type SerializeTuple = Impossible<u64, SerError>;
    type SerializeTupleStruct = Impossible<u64, SerError>;
    type SerializeTupleVariant = Impossible<u64, SerError>;
    type SerializeMap = Impossible<u64, SerError>;
    type SerializeStruct = Impossible<u64, SerError>;
    type SerializeStructVariant = Impossible<u64, SerError>;

    fn serialize_u8(self, v: u8) -> Result<u64> {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<u64> {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<u64> {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<u64> {
        Ok(v)
    }
    reject!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_f32(f32),
        serialize_f64(f64),
    );
    reject_non_numeric!();
    reject_compound!();
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(unsupported("expected an unsigned integer"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(unsupported("expected an unsigned integer"))
    }
}

/// Accepts an ndarray dimension: a tuple (`Ix1`…`Ix6`) or a sequence (`IxDyn`)
/// of lengths.
struct DimProbe;

struct DimCollector(Vec<u64>);

impl ser::Serializer for DimProbe {
    type Ok = Vec<u64>;
    type Error = SerError;
    type SerializeSeq = DimCollector;
    type SerializeTuple = DimCollector;
    type SerializeTupleStruct = Impossible<Vec<u64>, SerError>;
    type SerializeTupleVariant = Impossible<Vec<u64>, SerError>;
    type SerializeMap = Impossible<Vec<u64>, SerError>;
    type SerializeStruct = Impossible<Vec<u64>, SerError>;
    type SerializeStructVariant = Impossible<Vec<u64>, SerError>;

    fn serialize_seq(self, len: Option<usize>) -> Result<DimCollector> {
        Ok(DimCollector(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<DimCollector> {
        Ok(DimCollector(Vec::with_capacity(len)))
    }
    reject_scalars!();
    reject_compound!();
}

impl ser::SerializeSeq for DimCollector {
    type Ok = Vec<u64>;
    type Error = SerError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        self.0.push(value.serialize(U64Probe)?);
        Ok(())
    }
    fn end(self) -> Result<Vec<u64>> {
        Ok(self.0)
    }
}

impl ser::SerializeTuple for DimCollector {
    type Ok = Vec<u64>;
    type Error = SerError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Vec<u64>> {
        Ok(self.0)
    }
}

/// The write pass met a value that serialized differently than in the
/// measure pass.
pub(crate) const CHANGED: &str =
    "the value serialized differently on the second pass (non-deterministic Serialize impl?)";

/// Accepts ndarray's `data` sequence. Measuring, it records the first
/// element's dtype and stops; writing, it copies every element into `out`.
/// Returns the bytes of `out` left unwritten.
struct DataProbe<'x, 'o> {
    elements: usize,
    dtype: &'x Cell<DType>,
    out: Option<&'o mut [u8]>,
}

struct DataCollector<'x, 'o> {
    dtype: &'x Cell<DType>,
    out: Option<&'o mut [u8]>,
}

impl<'x, 'o> ser::Serializer for DataProbe<'x, 'o> {
    type Ok = usize;
    type Error = SerError;
    type SerializeSeq = DataCollector<'x, 'o>;
    type SerializeTuple = Impossible<usize, SerError>;
    type SerializeTupleStruct = Impossible<usize, SerError>;
    type SerializeTupleVariant = Impossible<usize, SerError>;
    type SerializeMap = Impossible<usize, SerError>;
    type SerializeStruct = Impossible<usize, SerError>;
    type SerializeStructVariant = Impossible<usize, SerError>;

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        if len != Some(self.elements) {
            return Err(unsupported("array data length does not match its shape"));
        }
        Ok(DataCollector { dtype: self.dtype, out: self.out })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(unsupported("expected array data"))
    }
    reject_scalars!();
    reject_compound!();
}

impl ser::SerializeSeq for DataCollector<'_, '_> {
    type Ok = usize;
    type Error = SerError;
    #[inline]
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(ElementSink(self))
    }
    fn end(self) -> Result<usize> {
        Ok(self.out.map_or(0, |out| out.len()))
    }
}

/// Takes one element: records its dtype (measure pass) or appends its
/// little-endian bytes (write pass), checking every element has one dtype.
struct ElementSink<'c, 'x, 'o>(&'c mut DataCollector<'x, 'o>);

impl ElementSink<'_, '_, '_> {
    #[inline]
    fn push<const N: usize>(self, dtype: DType, bytes: [u8; N]) -> Result<()> {
        let c = self.0;
        let Some(out) = c.out.take() else {
            c.dtype.set(dtype);
            return Err(SerError::Stop);
        };
        if c.dtype.get() != dtype {
            return Err(unsupported("array elements of mixed types"));
        }
        if out.len() < N {
            return Err(unsupported(CHANGED));
        }
        let (head, tail) = out.split_at_mut(N);
        head.copy_from_slice(&bytes);
        c.out = Some(tail);
        Ok(())
    }
}

impl ser::Serializer for ElementSink<'_, '_, '_> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = Impossible<(), SerError>;
    type SerializeTuple = Impossible<(), SerError>;
    type SerializeTupleStruct = Impossible<(), SerError>;
    type SerializeTupleVariant = Impossible<(), SerError>;
    type SerializeMap = Impossible<(), SerError>;
    type SerializeStruct = Impossible<(), SerError>;
    type SerializeStructVariant = Impossible<(), SerError>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.push(DType::Bool, [v as u8])
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.push(DType::I8, v.to_le_bytes())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.push(DType::I16, v.to_le_bytes())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.push(DType::I32, v.to_le_bytes())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.push(DType::I64, v.to_le_bytes())
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.push(DType::I128, v.to_le_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.push(DType::U8, v.to_le_bytes())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.push(DType::U16, v.to_le_bytes())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.push(DType::U32, v.to_le_bytes())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.push(DType::U64, v.to_le_bytes())
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.push(DType::U128, v.to_le_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.push(DType::F32, v.to_le_bytes())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.push(DType::F64, v.to_le_bytes())
    }
    reject_non_numeric!();
    reject_compound!();
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(unsupported("ndarray arrays may only hold numbers or bool"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(unsupported("ndarray arrays may only hold numbers or bool"))
    }
}
