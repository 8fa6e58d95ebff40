//! The object encoder: postcard's wire format, except that every ndarray array
//! becomes a buffer index and every object reference is recorded.
//!
//! For a value without arrays the payload is byte-for-byte what
//! `postcard::to_stdvec` writes (a test checks it). ndarray serializes an array
//! as `struct Array { v: u8, dim, data: seq }`; the encoder recognises that
//! shape, collects the elements into a buffer of their own, and writes only the
//! buffer's index into the payload.

use serde::ser::{self, Impossible, Serialize};

use crate::element::DType;
use crate::error::EncodeError;
use crate::REF_MARKER;

type Result<T, E = EncodeError> = std::result::Result<T, E>;

/// One array taken out of the payload.
pub(crate) struct CapturedArray {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

/// Serializer state for one object.
#[derive(Default)]
pub(crate) struct ObjectSerializer {
    pub payload: Vec<u8>,
    pub arrays: Vec<CapturedArray>,
    pub refs: Vec<u64>,
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

fn unsupported(what: &str) -> EncodeError {
    EncodeError::Unsupported(what.to_string())
}

impl ObjectSerializer {
    fn varint(&mut self, v: u128) {
        write_varint(&mut self.payload, v);
    }
}

impl<'a> ser::Serializer for &'a mut ObjectSerializer {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructSerializer<'a>;
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
        value.serialize(self)
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
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint(index.into());
        value.serialize(self)
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
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructSerializer<'a>> {
        if name == "Array" && len == 3 {
            return Ok(StructSerializer::Array(ArrayCapture { ser: self, step: 0, shape: Vec::new(), data: None }));
        }
        Ok(StructSerializer::Plain(self))
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
        impl ser::$trait for &mut ObjectSerializer {
            type Ok = ();
            type Error = EncodeError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
compound!(SerializeSeq::serialize_element, SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field, SerializeTupleVariant::serialize_field);

impl ser::SerializeMap for &mut ObjectSerializer {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut ObjectSerializer {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, _key: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// A struct being serialized: an ordinary one, or an ndarray array being
/// captured into a buffer.
pub(crate) enum StructSerializer<'a> {
    Plain(&'a mut ObjectSerializer),
    Array(ArrayCapture<'a>),
}

pub(crate) struct ArrayCapture<'a> {
    ser: &'a mut ObjectSerializer,
    step: u8,
    shape: Vec<u64>,
    data: Option<(DType, Vec<u8>)>,
}

impl ser::SerializeStruct for StructSerializer<'_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<()> {
        let capture = match self {
            StructSerializer::Plain(ser) => return value.serialize(&mut **ser),
            StructSerializer::Array(capture) => capture,
        };
        match (capture.step, key) {
            (0, "v") => {
                value.serialize(U64Probe)?;
            }
            (1, "dim") => capture.shape = value.serialize(DimProbe)?,
            (2, "data") => {
                let elements = capture.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
                let elements = elements.ok_or_else(|| unsupported("array element count overflows"))?;
                let (dtype, data) = value.serialize(DataProbe { elements })?;
                if dtype != DType::Empty && data.len() as u64 != elements * dtype.size() as u64 {
                    return Err(unsupported("array data does not match its shape"));
                }
                capture.data = Some((dtype, data));
            }
            _ => return Err(unsupported("a struct named `Array` must have ndarray's fields v, dim, data")),
        }
        capture.step += 1;
        Ok(())
    }

    fn end(self) -> Result<()> {
        let StructSerializer::Array(capture) = self else { return Ok(()) };
        let (dtype, data) = capture.data.ok_or_else(|| unsupported("ndarray array without data"))?;
        let index = capture.ser.arrays.len();
        capture.ser.arrays.push(CapturedArray { dtype, shape: capture.shape, data });
        capture.ser.varint(index as u128);
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

/// Accepts one unsigned integer (a version byte, an id, a dimension length).
struct U64Probe;

impl ser::Serializer for U64Probe {
    type Ok = u64;
    type Error = EncodeError;
    type SerializeSeq = Impossible<u64, EncodeError>;
    type SerializeTuple = Impossible<u64, EncodeError>;
    type SerializeTupleStruct = Impossible<u64, EncodeError>;
    type SerializeTupleVariant = Impossible<u64, EncodeError>;
    type SerializeMap = Impossible<u64, EncodeError>;
    type SerializeStruct = Impossible<u64, EncodeError>;
    type SerializeStructVariant = Impossible<u64, EncodeError>;

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
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
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
    type Error = EncodeError;
    type SerializeSeq = DimCollector;
    type SerializeTuple = DimCollector;
    type SerializeTupleStruct = Impossible<Vec<u64>, EncodeError>;
    type SerializeTupleVariant = Impossible<Vec<u64>, EncodeError>;
    type SerializeMap = Impossible<Vec<u64>, EncodeError>;
    type SerializeStruct = Impossible<Vec<u64>, EncodeError>;
    type SerializeStructVariant = Impossible<Vec<u64>, EncodeError>;

    fn serialize_seq(self, len: Option<usize>) -> Result<DimCollector> {
        Ok(DimCollector(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<DimCollector> {
        Ok(DimCollector(Vec::with_capacity(len)))
    }
    reject!(
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    reject_compound!();
}

impl ser::SerializeSeq for DimCollector {
    type Ok = Vec<u64>;
    type Error = EncodeError;
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
    type Error = EncodeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Vec<u64>> {
        Ok(self.0)
    }
}

/// Accepts ndarray's `data` sequence and copies its elements into a buffer.
struct DataProbe {
    elements: u64,
}

struct DataCollector {
    elements: u64,
    dtype: DType,
    data: Vec<u8>,
}

impl ser::Serializer for DataProbe {
    type Ok = (DType, Vec<u8>);
    type Error = EncodeError;
    type SerializeSeq = DataCollector;
    type SerializeTuple = Impossible<Self::Ok, EncodeError>;
    type SerializeTupleStruct = Impossible<Self::Ok, EncodeError>;
    type SerializeTupleVariant = Impossible<Self::Ok, EncodeError>;
    type SerializeMap = Impossible<Self::Ok, EncodeError>;
    type SerializeStruct = Impossible<Self::Ok, EncodeError>;
    type SerializeStructVariant = Impossible<Self::Ok, EncodeError>;

    fn serialize_seq(self, len: Option<usize>) -> Result<DataCollector> {
        if len.map(|l| l as u64) != Some(self.elements) {
            return Err(unsupported("array data length does not match its shape"));
        }
        Ok(DataCollector { elements: self.elements, dtype: DType::Empty, data: Vec::new() })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(unsupported("expected array data"))
    }
    reject!(
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    reject_compound!();
}

impl ser::SerializeSeq for DataCollector {
    type Ok = (DType, Vec<u8>);
    type Error = EncodeError;
    #[inline]
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(ElementSink(self))
    }
    fn end(self) -> Result<Self::Ok> {
        Ok((self.dtype, self.data))
    }
}

/// Appends one element's little-endian bytes, checking every element has the
/// same dtype.
struct ElementSink<'a>(&'a mut DataCollector);

impl ElementSink<'_> {
    #[inline]
    fn push<const N: usize>(self, dtype: DType, bytes: [u8; N]) -> Result<()> {
        let c = self.0;
        if c.dtype != dtype {
            if c.dtype != DType::Empty {
                return Err(unsupported("array elements of mixed types"));
            }
            c.dtype = dtype;
            let bytes_total = usize::try_from(c.elements * N as u64).map_err(|_| unsupported("array too large"))?;
            c.data.reserve_exact(bytes_total);
        }
        c.data.extend_from_slice(&bytes);
        Ok(())
    }
}

impl ser::Serializer for ElementSink<'_> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Impossible<(), EncodeError>;
    type SerializeTuple = Impossible<(), EncodeError>;
    type SerializeTupleStruct = Impossible<(), EncodeError>;
    type SerializeTupleVariant = Impossible<(), EncodeError>;
    type SerializeMap = Impossible<(), EncodeError>;
    type SerializeStruct = Impossible<(), EncodeError>;
    type SerializeStructVariant = Impossible<(), EncodeError>;

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
    reject!(
        serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    reject_compound!();
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(unsupported("ndarray arrays may only hold numbers or bool"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        Err(unsupported("ndarray arrays may only hold numbers or bool"))
    }
}
