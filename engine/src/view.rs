//! View twins: types that read an object written as another type, with its
//! arrays as [`SharedArray`]s, and the checks that they really correspond.

use std::fmt;

use ndarray::{Array, Dimension};
use serde::de::value::U32Deserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor};
use serde::{Deserializer, Serialize};
use shoal_store::{Element, SharedArray};

use crate::error::{Error, Result};
use crate::object_ref::{Arg, ArgKind, ObjectRef, Value};

/// `Self` reads, without copying, an object written as `T`: `T`'s arrays are
/// `SharedArray`s in `Self`, everything else is the same, field for field.
///
/// Read with [`get_view`](crate::get_view); a remote function taking a view
/// twin accepts an `ObjectRef` to the type it views.
///
/// Implemented by [`#[derive(ViewOf)]`](macro@crate::ViewOf) for your own
/// twins, which checks that the fields correspond; for
/// `SharedArray<A, D>` over `Array<A, D>`; and for a `Vec`, `Option`, `Box`
/// or array of views over the same container of what they view (so
/// `get_view::<Vec<FrameView>, _>` reads an `ObjectRef<Vec<Frame>>`).
///
/// Do not implement it by hand: its hidden method is the twin's run-time
/// check, which the derive writes, so a plain `impl ViewOf<T> for V {}` does
/// not compile (an unchecked twin could read garbage). A field whose view
/// type reads the owned one its own way has the derive's
/// `#[view_of(owned = …)]` escape hatch instead.
pub trait ViewOf<T: Value>: Value {
    /// Checks what the compiler could not (the order of named fields and of
    /// enum variants); `Err` is [`Error::TypeMismatch`]. Written by the
    /// derive; not a public API.
    #[doc(hidden)]
    fn __check_twin() -> Result<()>;
}

impl<A: Element, D: Dimension + Serialize + DeserializeOwned + 'static> ViewOf<Array<A, D>> for SharedArray<A, D> {
    fn __check_twin() -> Result<()> {
        Ok(())
    }
}

impl<T: Value, V: ViewOf<T>> ViewOf<Vec<T>> for Vec<V> {
    fn __check_twin() -> Result<()> {
        V::__check_twin()
    }
}

impl<T: Value, V: ViewOf<T>> ViewOf<Option<T>> for Option<V> {
    fn __check_twin() -> Result<()> {
        V::__check_twin()
    }
}

impl<T: Value, V: ViewOf<T>> ViewOf<Box<T>> for Box<V> {
    fn __check_twin() -> Result<()> {
        V::__check_twin()
    }
}

impl<T: Value, V: ViewOf<T>, const N: usize> ViewOf<[T; N]> for [V; N]
where
    [T; N]: Value,
    [V; N]: Value,
{
    fn __check_twin() -> Result<()> {
        V::__check_twin()
    }
}

/// The task argument for an `ObjectRef<T>` passed where a function takes its
/// view `V`: the ref, or the twin check's error (the task then fails with it).
pub fn view_arg<V: ViewOf<T>, T: Value>(r: &ObjectRef<T>) -> Arg {
    match V::__check_twin() {
        Ok(()) => Arg::from_ref(r),
        Err(e) => Arg(ArgKind::Failed(e)),
    }
}

/// Compiles only if `A` and `B` are one type (used by the derive; taking `&A`
/// with `A` inferred, so no coercion can make two types look alike).
pub fn same_type<A: SameType<B>, B>(_field: &A) {}

/// Compiles only if the field's type `T` is viewed by `V` (used by the derive
/// for `#[view_of(view)]` fields).
pub fn viewed_by<V: ViewOf<T>, T: Value>(_field: &T) {}

/// Type equality, as a trait.
#[diagnostic::on_unimplemented(
    message = "view twin field mismatch: the owned field is `{Self}`, the view's field reads `{T}`",
    label = "this field does not read the owned field",
    note = "a view twin has the owned type's fields, in order, with each `Array<A, D>` a `SharedArray<A, D>`; \
            mark a field that is itself a view twin `#[view_of(view)]`"
)]
pub trait SameType<T> {}
impl<T> SameType<T> for T {}

/// Run the twin check of the `#[view_of(view)]` field that `field` picks out
/// of an `O` (the closure is never called: it names the field's type).
pub fn check_field<V: ViewOf<T>, O, T: Value>(_field: impl Fn(&O) -> &T) -> Result<()> {
    V::__check_twin()
}

/// The run-time half of a derived twin's check: the owned type `O` and the
/// view `V` must list their (serde) fields in the same order, and for an
/// enum their variants too. A type whose `Deserialize` is not serde's derived
/// one for a struct or an externally tagged enum tells nothing, and is not
/// checked.
pub fn check_order<O: DeserializeOwned, V: DeserializeOwned>() -> Result<()> {
    let (Some(owned), Some(view)) = (Shape::of::<O>(), Shape::of::<V>()) else { return Ok(()) };
    if owned == view {
        return Ok(());
    }
    Err(Error::TypeMismatch {
        detail: format!(
            "`{}` is not a view twin of `{}`: it reads {view} where `{}` is written as {owned}",
            std::any::type_name::<V>(),
            std::any::type_name::<O>(),
            std::any::type_name::<O>(),
        ),
    })
}

/// What a derived `Deserialize` asks its deserializer for, found with a probe
/// deserializer that stops at the first request.
#[derive(Debug, PartialEq)]
enum Shape {
    /// `deserialize_struct`, with the fields in order.
    Struct(&'static [&'static str]),
    /// `deserialize_enum`, with the variants in order and, for each variant
    /// index, the fields of a struct variant.
    Enum { variants: &'static [&'static str], fields: Vec<Option<&'static [&'static str]>> },
}

impl Shape {
    fn of<T: DeserializeOwned>() -> Option<Shape> {
        let mut probe = Probe::default();
        let _ = T::deserialize(&mut probe);
        match probe.seen? {
            Seen::Struct(fields) => Some(Shape::Struct(fields)),
            Seen::Enum(variants) => {
                let fields = (0..variants.len())
                    .map(|i| {
                        let mut probe = Probe { variant: Some(i as u32), ..Probe::default() };
                        let _ = T::deserialize(&mut probe);
                        probe.variant_fields
                    })
                    .collect();
                Some(Shape::Enum { variants, fields })
            }
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Struct(fields) => write!(f, "the fields {fields:?}"),
            Shape::Enum { variants, fields } => {
                write!(f, "the variants [")?;
                for (i, variant) in variants.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    match fields.get(i).copied().flatten() {
                        Some(fields) => write!(f, "{sep}{variant:?} {fields:?}")?,
                        None => write!(f, "{sep}{variant:?}")?,
                    }
                }
                write!(f, "]")
            }
        }
    }
}

/// The first request a probed `Deserialize` made.
enum Seen {
    Struct(&'static [&'static str]),
    Enum(&'static [&'static str]),
}

/// A deserializer that records what it is asked for and fails at once.
#[derive(Default)]
struct Probe {
    seen: Option<Seen>,
    /// For an enum: the variant index to hand the visitor, to learn its fields.
    variant: Option<u32>,
    variant_fields: Option<&'static [&'static str]>,
}

/// The probe's error: deserialization stops here.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: fmt::Display>(_msg: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> std::result::Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> std::result::Result<V::Value, Stop> {
        self.seen = Some(Seen::Struct(fields));
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> std::result::Result<V::Value, Stop> {
        self.seen = Some(Seen::Enum(variants));
        match self.variant {
            Some(index) => visitor.visit_enum(ProbeVariant { probe: self, index }),
            None => Err(Stop),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// Hands an enum's visitor variant `index`, then records a struct variant's
/// fields.
struct ProbeVariant<'a> {
    probe: &'a mut Probe,
    index: u32,
}

impl<'de> EnumAccess<'de> for ProbeVariant<'_> {
    type Error = Stop;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> std::result::Result<(S::Value, Self), Stop> {
        let index: U32Deserializer<Stop> = self.index.into_deserializer();
        Ok((seed.deserialize(index)?, self))
    }
}

impl<'de> VariantAccess<'de> for ProbeVariant<'_> {
    type Error = Stop;

    fn unit_variant(self) -> std::result::Result<(), Stop> {
        Err(Stop)
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> std::result::Result<S::Value, Stop> {
        Err(Stop)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> std::result::Result<V::Value, Stop> {
        Err(Stop)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> std::result::Result<V::Value, Stop> {
        self.probe.variant_fields = Some(fields);
        Err(Stop)
    }
}
