//! Typed object references and how values become task arguments.

use std::any::TypeId;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use ndarray::{Array, Dimension};
use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shoal_store::{Element, Keepalive, SharedArray};

use crate::error::{Error, Result};
use crate::protocol::ArgData;
use crate::runtime::{DecodeScope, Precounted, RefHandle, Runtime};

/// What can be stored in the object store and passed to or returned from a
/// remote function: any `Serialize + DeserializeOwned + Send + 'static` type.
/// A type that cannot be sent between threads is a compile error, and so is
/// one without serde's traits; the error names the type and what it lacks:
///
/// ```compile_fail,E0277
/// struct Point { x: f64, y: f64 } // no Serialize, no Deserialize
///
/// #[shoal::remote]
/// fn norm(p: Point) -> f64 { (p.x * p.x + p.y * p.y).sqrt() }
/// // error[E0277]: `Point` is not a shoal value: it must be `Serialize + DeserializeOwned + Send + 'static`
/// # fn main() {}
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shoal value: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "not `Serialize + DeserializeOwned + Send + 'static`",
    note = "derive serde's traits on it: `#[derive(serde::Serialize, serde::Deserialize)]`; a type holding a reference, an `Rc` or a raw pointer cannot travel between processes"
)]
pub trait Value: Serialize + DeserializeOwned + Send + 'static {}
// Not recommended: an error then names `Value` (and its message above), not
// each of serde's traits the type lacks, one error apiece.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> Value for T {}

/// Fingerprint of a type, stamped on every object written as that type and
/// checked on every read. Equal in every process of one build.
pub(crate) fn fingerprint<T: 'static>() -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    TypeId::of::<T>().hash(&mut h);
    h.finish()
}

/// A reference to an object in the store that holds (or will hold) a `T`.
///
/// Returned at once by `put` and by `NAME::remote(…)`; the value is read with
/// [`get`](crate::get). Cloning is cheap; the object is freed when the last
/// reference in any process is dropped and no pending task needs it.
/// References serialize inside values (a `Vec<ObjectRef<T>>` is a fine
/// value), and a reference stored inside an object keeps its target alive.
pub struct ObjectRef<T> {
    pub(crate) handle: Arc<RefHandle>,
    _type: PhantomData<fn() -> T>,
}

impl<T> ObjectRef<T> {
    pub(crate) fn from_handle(handle: Arc<RefHandle>) -> Self {
        ObjectRef { handle, _type: PhantomData }
    }

    /// The object's id, unique within its node.
    pub fn id(&self) -> u64 {
        self.handle.id
    }
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        ObjectRef::from_handle(self.handle.clone())
    }
}

impl<T> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef<{}>({})", std::any::type_name::<T>(), self.handle.id)
    }
}

impl<T> PartialEq for ObjectRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.handle.id == other.handle.id
    }
}

impl<T> Eq for ObjectRef<T> {}

impl<T> Hash for ObjectRef<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.handle.id.hash(state);
    }
}

impl<T> Serialize for ObjectRef<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(shoal_store::REF_MARKER, &self.handle.id)
    }
}

impl<'de, T> Deserialize<'de> for ObjectRef<T> {
    /// Deserializing a reference makes a new counted handle, so it needs a
    /// running node (or a worker) in this process.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object id")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<u64, E> {
                Ok(v)
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> std::result::Result<u64, D::Error> {
                u64::deserialize(d)
            }
        }
        let id = deserializer.deserialize_newtype_struct(shoal_store::REF_MARKER, IdVisitor)?;
        // The thread's decoding context (set while `get` or a task's
        // arguments decode) saves the global lookup, and may hold a reference
        // already counted for this id.
        let handle = Runtime::deserialized_ref(id).map_err(serde::de::Error::custom)?;
        Ok(ObjectRef::from_handle(handle))
    }
}

/// A task argument, ready to submit. Made by [`IntoArg::into_arg`].
pub struct Arg(pub(crate) ArgKind);

pub(crate) enum ArgKind {
    /// A small value passed directly: the encoded object, and handles to the
    /// refs inside it (the value itself is gone, so these keep them alive
    /// until the task pins them).
    Inline { bytes: Vec<u8>, fingerprint: u64, refs: Vec<Arc<RefHandle>> },
    /// An object passed by reference; `fingerprint` is the type it was written as.
    /// (A large value passed directly is `put` first and passed this way.)
    Ref { handle: Arc<RefHandle>, fingerprint: u64 },
    /// The argument could not be prepared; the task fails with this error.
    Failed(Error),
}

impl Arg {
    /// An argument that passes `value` itself: inline in the task if small,
    /// else through the store (one copy).
    pub fn from_value<P: Value>(value: &P) -> Arg {
        let fingerprint = fingerprint::<P>();
        let prepared = Runtime::current().and_then(|runtime| {
            let layout = shoal_store::measure(value, fingerprint)?;
            if runtime.is_inline(&layout) {
                let refs = layout.contained_refs().iter().map(|&id| runtime.acquire(id)).collect();
                let bytes = layout.into_inline().expect("inline layouts hold no arrays");
                return Ok(ArgKind::Inline { bytes, fingerprint, refs });
            }
            Ok(ArgKind::Ref { handle: runtime.put(layout, value)?, fingerprint })
        });
        Arg(prepared.unwrap_or_else(ArgKind::Failed))
    }

    /// An argument that passes the object behind `r`, written as `T`.
    pub fn from_ref<T: 'static>(r: &ObjectRef<T>) -> Arg {
        Arg(ArgKind::Ref { handle: r.handle.clone(), fingerprint: fingerprint::<T>() })
    }
}

/// Anything that can be passed where a remote function takes a `P`: the value
/// itself, an `ObjectRef<P>` or a `&ObjectRef<P>` (the task then waits for
/// that object), and, for a view type, a reference to the type it views (an
/// `ObjectRef<Array<A, D>>` where the function takes `SharedArray<A, D>`, and
/// an `ObjectRef<Frame>` where it takes a `FrameView` made with
/// [`#[derive(ViewOf)]`](macro@crate::ViewOf)).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be passed where a remote function or method takes `{P}`",
    label = "expected `{P}`, `ObjectRef<{P}>` or `&ObjectRef<{P}>`"
)]
pub trait IntoArg<P> {
    /// Package `self` for submission; `checked` is how a `P` is encoded
    /// (`<P as IsValue>::CHECKED`, which generated code names).
    fn into_arg(self, checked: Checked<P>) -> Arg;
}

// No bound here: whether `P` is a value is checked once per argument where
// the function is declared (`IsValue::CHECKED`), so a type that is none is
// one error there, not one more at every call.
impl<P> IntoArg<P> for P {
    fn into_arg(self, checked: Checked<P>) -> Arg {
        (checked.encode)(&self)
    }
}

#[diagnostic::do_not_recommend]
impl<P: 'static> IntoArg<P> for ObjectRef<P> {
    fn into_arg(self, _: Checked<P>) -> Arg {
        Arg::from_ref(&self)
    }
}

#[diagnostic::do_not_recommend]
impl<P: 'static> IntoArg<P> for &ObjectRef<P> {
    fn into_arg(self, _: Checked<P>) -> Arg {
        Arg::from_ref(self)
    }
}

#[diagnostic::do_not_recommend]
impl<A: Element, D: Dimension + Serialize + DeserializeOwned + 'static> IntoArg<SharedArray<A, D>>
    for ObjectRef<Array<A, D>>
{
    fn into_arg(self, _: Checked<SharedArray<A, D>>) -> Arg {
        Arg::from_ref(&self)
    }
}

#[diagnostic::do_not_recommend]
impl<A: Element, D: Dimension + Serialize + DeserializeOwned + 'static> IntoArg<SharedArray<A, D>>
    for &ObjectRef<Array<A, D>>
{
    fn into_arg(self, _: Checked<SharedArray<A, D>>) -> Arg {
        Arg::from_ref(self)
    }
}

/// How an argument of type `P`, a [`Value`], is encoded and decoded:
/// `IsValue::CHECKED` (used by generated code).
#[doc(hidden)]
pub struct Checked<P> {
    pub(crate) encode: fn(&P) -> Arg,
    pub(crate) decode: fn(&mut ArgReader<'_>) -> Result<P>,
}

impl<P> Clone for Checked<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Checked<P> {}

/// Decode an argument as a `P` (`Checked::decode` of a value).
pub(crate) fn decode_arg<P: Value>(reader: &mut ArgReader<'_>) -> Result<P> {
    reader.read_next::<P>()
}

/// Decodes a task's arguments inside the worker (used by generated code).
pub struct ArgReader<'a> {
    pub(crate) runtime: &'a Runtime,
    pub(crate) args: std::vec::IntoIter<ArgData>,
}

impl ArgReader<'_> {
    /// Decode the next argument as a `P` (see `IsValue`).
    pub fn read_checked<P>(&mut self, checked: Checked<P>) -> Result<P> {
        (checked.decode)(self)
    }

    /// Decode the next argument as a `P`.
    pub fn read_next<P: Value>(&mut self) -> Result<P> {
        let _scope = DecodeScope::enter(Some(self.runtime.clone()), Precounted::default());
        match self.args.next() {
            None => Err(Error::InvalidArgument("too few arguments for the function".into())),
            Some(ArgData::Inline { bytes, fingerprint }) => {
                #[cfg(feature = "ray")]
                if let Runtime::Ray(_) = self.runtime {
                    // Arrays in a Ray object's bytes are viewed in a copy.
                    return crate::ray::decode(&bytes, fingerprint);
                }
                Ok(shoal_store::decode(&bytes, fingerprint)?)
            }
            Some(ArgData::Arena { id, offset, len, fingerprint }) => {
                let keepalive: Keepalive = self.runtime.acquire(id);
                read_in_place(self.runtime, offset, len, fingerprint, keepalive)
            }
        }
    }
}

/// Decode the arena object at `offset` as a `V` whose arrays view the arena.
///
/// `keepalive` must hold a counted reference to that object.
pub(crate) fn read_in_place<V: Value>(
    runtime: &Runtime,
    offset: u64,
    len: u64,
    fingerprint: u64,
    keepalive: Keepalive,
) -> Result<V> {
    let arena = runtime.arena()?;
    // SAFETY: (1) `keepalive` holds a counted reference to the object at
    // `offset`, so the node neither frees nor reuses its bytes while it lives;
    // (2) the object is sealed (the node only hands out locations of sealed
    // objects) and sealed objects are never written again; (3) the slice's
    // borrow ends with this function, and the views `decode_in_place` makes
    // hold `keepalive`, which also holds the runtime and so the mapping.
    let bytes = unsafe { arena.bytes(offset, len)? };
    if let Some(owned) = shoal_store::decode_owned_array::<V>(bytes, fingerprint) {
        return Ok(owned?);
    }
    // SAFETY: the bytes stay mapped and unwritten while `keepalive` lives, by
    // the argument just above; that is `decode_in_place`'s contract.
    Ok(unsafe { shoal_store::decode_in_place(bytes, fingerprint, keepalive)? })
}
