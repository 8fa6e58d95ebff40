//! Actors' typed handles: [`ActorHandle`], and [`get_actor`] and [`kill`].
//!
//! `#[shoal::actor]` on an impl block implements [`Actor`] for the type and
//! generates the rest: `Type::remote(args…)` and `Type::options()` to
//! create one, and a `TypeMethods` struct with one method per `pub` method
//! of the block, which an `ActorHandle<Type>` dereferences to. The node side
//! (processes, ordering, restarts) is in `node/actors.rs`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::object_ref::ObjectRef;
use crate::runtime::{RefHandle, Runtime};

/// A type whose values live in an actor process: implemented by
/// `#[shoal::actor]` on the type's impl block, never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an actor",
    note = "put `#[shoal::actor]` on an `impl {Self}` block with a `new` constructor"
)]
pub trait Actor: Send + 'static {
    /// The type's registered name (its module path and name).
    #[doc(hidden)]
    const CLASS: &'static str;
    /// The generated struct of its remote methods.
    #[doc(hidden)]
    type Methods: ActorMethods;
}

/// The generated struct of an actor type's remote methods (used by
/// generated code).
#[doc(hidden)]
pub trait ActorMethods: Clone + Send + Sync + 'static {
    /// Wrap a handle.
    fn from_raw(raw: RawActor) -> Self;
    /// The handle inside.
    fn raw(&self) -> &RawActor;
}

/// The untyped handle inside every `ActorHandle`: a counted reference to
/// the actor's handle object, whose id is the actor's id.
#[doc(hidden)]
#[derive(Clone)]
pub struct RawActor(ObjectRef<ActorMarker>);

/// The type an actor's handle object is referenced as.
#[doc(hidden)]
pub enum ActorMarker {}

impl RawActor {
    pub(crate) fn from_handle(handle: Arc<RefHandle>) -> Self {
        RawActor(ObjectRef::from_handle(handle))
    }

    /// The actor's id.
    pub(crate) fn id(&self) -> u64 {
        self.0.id()
    }
}

/// A handle to an actor: a `T` living in a process of its own, whose
/// methods run there one call at a time.
///
/// Made by `T::remote(args…)` (which returns at once, while the actor's
/// process starts and runs `T::new(args…)`) or [`get_actor`]. Each `pub`
/// method of `T` is a method of the handle taking its arguments as values,
/// `ObjectRef`s or `&ObjectRef`s and returning `ObjectRef`s at once.
/// Calls made through one handle and its clones by one task (or by the
/// threads of a process that run no task, the driver's) run in the order
/// they were made.
///
/// Handles are `Clone`, `Serialize` and `Deserialize`: pass them to tasks
/// and other actors, or store them in values. The actor lives while any
/// handle anywhere does (or, named, until [`kill`]ed); when the last one is
/// dropped it finishes its calls and its process exits.
///
/// ```no_run
/// pub struct Counter { n: i64 }
///
/// #[shoal::actor]
/// impl Counter {
///     pub fn new(start: i64) -> Self { Counter { n: start } }
///     pub fn add(&mut self, k: i64) -> i64 { self.n += k; self.n }
///     pub fn value(&self) -> i64 { self.n }
/// }
///
/// #[shoal::remote]
/// fn bump(counter: shoal::ActorHandle<Counter>) -> i64 {
///     shoal::get(&counter.add(10)).unwrap()
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let c = Counter::remote(0);
/// let r: shoal::ObjectRef<i64> = c.add(5);
/// assert_eq!(shoal::get(&r)?, 5);
/// assert_eq!(shoal::get(&bump::remote(c.clone()))?, 15); // called from a task
/// assert_eq!(shoal::get(&c.value())?, 15);
/// # Ok(()) }
/// ```
///
/// A method's arguments are checked like a remote function's:
///
/// ```compile_fail,E0277
/// # pub struct Counter { n: i64 }
/// # #[shoal::actor]
/// # impl Counter {
/// #     pub fn new(start: i64) -> Self { Counter { n: start } }
/// #     pub fn add(&mut self, k: i64) -> i64 { self.n += k; self.n }
/// # }
/// # fn main() {
/// let c = Counter::remote(0);
/// let r = c.add("five"); // error: `&str` cannot be passed where `i64` is expected
/// # }
/// ```
pub struct ActorHandle<T: Actor> {
    methods: T::Methods,
    _type: PhantomData<fn() -> T>,
}

impl<T: Actor> ActorHandle<T> {
    /// Wrap a handle (used by generated code).
    #[doc(hidden)]
    pub fn from_raw(raw: RawActor) -> Self {
        ActorHandle { methods: T::Methods::from_raw(raw), _type: PhantomData }
    }

    /// The actor's id, unique within its node.
    pub fn id(&self) -> u64 {
        self.methods.raw().id()
    }
}

impl<T: Actor> std::ops::Deref for ActorHandle<T> {
    type Target = T::Methods;

    /// The actor's remote methods.
    fn deref(&self) -> &T::Methods {
        &self.methods
    }
}

impl<T: Actor> Clone for ActorHandle<T> {
    fn clone(&self) -> Self {
        ActorHandle { methods: self.methods.clone(), _type: PhantomData }
    }
}

impl<T: Actor> fmt::Debug for ActorHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorHandle<{}>({})", T::CLASS, self.id())
    }
}

impl<T: Actor> PartialEq for ActorHandle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<T: Actor> Eq for ActorHandle<T> {}

impl<T: Actor> Serialize for ActorHandle<T> {
    /// As a reference to the actor's handle object, so the store counts
    /// handles inside values like any reference.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.methods.raw().0.serialize(serializer)
    }
}

impl<'de, T: Actor> Deserialize<'de> for ActorHandle<T> {
    /// Makes a new counted handle, so it needs a running node (or a worker)
    /// in this process. The value it comes from was written as an
    /// `ActorHandle<T>` (every object's type is checked), so it is a `T`'s.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawActor(ObjectRef::deserialize(deserializer)?);
        Ok(ActorHandle::from_raw(raw))
    }
}

/// The live actor named `name` (see `options().name(…)`), from any process
/// of the node: a task, another actor, the driver.
///
/// [`Error::ActorNotFound`] if no live actor has that name;
/// [`Error::TypeMismatch`] if it is not a `T`.
///
/// ```no_run
/// pub struct Counter { n: i64 }
///
/// #[shoal::actor]
/// impl Counter {
///     pub fn new(start: i64) -> Self { Counter { n: start } }
///     pub fn add(&mut self, k: i64) -> i64 { self.n += k; self.n }
/// }
///
/// #[shoal::remote]
/// fn hit() -> i64 {
///     let hits = shoal::get_actor::<Counter>("hits").unwrap();
///     shoal::get(&hits.add(1)).unwrap()
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let _hits = Counter::options().name("hits").remote(0);
/// shoal::get(&hit::remote())?;
/// assert_eq!(shoal::get(&shoal::get_actor::<Counter>("hits")?.add(1))?, 2);
/// # Ok(()) }
/// ```
pub fn get_actor<T: Actor>(name: &str) -> Result<ActorHandle<T>> {
    let runtime = Runtime::current()?;
    let (handle, class) = runtime.get_actor(name)?;
    let raw = RawActor::from_handle(handle);
    if class != T::CLASS {
        return Err(Error::TypeMismatch { detail: format!("actor {name:?} is a {class}, not a {}", T::CLASS) });
    }
    Ok(ActorHandle::from_raw(raw))
}

/// End the actor now: the call it runs and every call not yet run fail
/// with [`Error::ActorDied`] (cause `killed by shoal::kill`), its process
/// is killed and not restarted, its name is free. Killing a dead actor does
/// nothing.
///
/// ```no_run
/// pub struct Counter { n: i64 }
///
/// #[shoal::actor]
/// impl Counter {
///     pub fn new(start: i64) -> Self { Counter { n: start } }
///     pub fn value(&self) -> i64 { self.n }
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let c = Counter::remote(7);
/// assert_eq!(shoal::get(&c.value())?, 7);
/// shoal::kill(&c)?;
/// assert!(matches!(shoal::get(&c.value()), Err(shoal::Error::ActorDied { .. })));
/// # Ok(()) }
/// ```
pub fn kill<T: Actor>(handle: &ActorHandle<T>) -> Result<()> {
    Runtime::current()?.kill_actor(handle.id())
}
