//! # shoal
//!
//! Ray's remote-function model for Rust, on one host. Call a
//! `#[shoal::remote]` function and get a typed [`ObjectRef`] back at once;
//! worker processes — your own binary, re-executed — run the function; results
//! and large values (above all ndarray arrays) live once in a shared-memory
//! object store that every process reads without copying.
//!
//! ```no_run
//! use ndarray::{Array1, Ix1};
//! use shoal::{ObjectRef, SharedArray};
//!
//! #[shoal::remote]
//! fn increment(n: i64) -> i64 { n + 1 }
//!
//! #[shoal::remote]
//! fn total(a: SharedArray<f64, Ix1>) -> f64 { a.view().sum() }
//!
//! fn main() -> shoal::Result<()> {
//!     let _node = shoal::init(shoal::Config::default())?; // shuts down on drop
//!     let x: ObjectRef<i64> = increment::remote(1);     // returns at once
//!     let y = increment::remote(&x);                   // runs once x is ready
//!     assert_eq!(shoal::get(&y)?, 3);
//!
//!     let a = shoal::put(Array1::<f64>::ones(1 << 20))?; // one copy into the store
//!     let sums: Vec<ObjectRef<f64>> = (0..20).map(|_| total::remote(&a)).collect();
//!     let values: Vec<f64> = shoal::get_all(&sums)?;    // workers read `a` zero-copy
//!     assert!(values.iter().all(|&s| s == (1 << 20) as f64));
//!     Ok(())
//! }
//! ```
//!
//! [`init`] is optional: the first `remote` or `put` in a process without a
//! node starts one from [`Config::default`] (it lives
//! until the process exits), as Ray's `f.remote()` starts Ray, and
//! [`init_once`] gives every caller of a process the same node — many
//! `#[test]`s of one binary, say.
//!
//! ## Remote functions
//! `#[shoal::remote]` keeps the function callable as usual and adds a module of
//! the same name with `NAME::remote(args…)` and `NAME::options()…remote(args…)`.
//! Each argument accepts the value itself, an `ObjectRef` or a `&ObjectRef`
//! ([`IntoArg`]); a task runs once every `ObjectRef` argument is ready. With
//! `#[shoal::remote(num_returns = N)]` a function returning an N-tuple gives N
//! refs. Arguments must be owned types, and every argument and return type a
//! [`Value`]: `Serialize + DeserializeOwned + Send + 'static`.
//!
//! Values that cannot cross threads are compile errors, not runtime surprises:
//!
//! ```compile_fail
//! use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize)]
//! struct NotSend(#[serde(skip)] std::marker::PhantomData<*const ()>);
//!
//! #[shoal::remote]
//! fn consume(v: NotSend) -> u8 { 0 }
//! ```
//!
//! and so are borrowed arguments (a task gets its own copy, or a
//! [`SharedArray`] view):
//!
//! ```compile_fail
//! #[shoal::remote]
//! fn length(s: &str) -> usize { s.len() }
//! ```
//!
//! ## Zero-copy arrays and view twins
//! [`SharedArray<A, D>`] is a read-only ndarray view straight into the store.
//! An object written from an `Array<A, D>` can be read either way: a task
//! taking `SharedArray<A, D>` accepts the `ObjectRef<Array<A, D>>`;
//! [`get`] gives an owned `Array` (a copy), [`get_shared`] a `SharedArray`
//! (no copy). Arrays nested in your own types are stored as buffers too; read
//! them without copying through a *view twin*: the same struct with
//! `SharedArray` fields, declared with [`#[derive(ViewOf)]`](macro@ViewOf),
//! which checks that the twins correspond:
//!
//! ```
//! use ndarray::{Array2, Ix2};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Frame { name: String, pixels: Array2<u8> }
//!
//! #[derive(Serialize, Deserialize, shoal::ViewOf)]
//! #[view_of(Frame)]
//! struct FrameView { name: String, pixels: shoal::SharedArray<u8, Ix2> }
//!
//! #[shoal::remote]
//! fn brightness(frame: FrameView) -> f64 {
//!     frame.pixels.view().iter().map(|&p| p as f64).sum::<f64>() / frame.pixels.len() as f64
//! }
//!
//! # fn main() -> shoal::Result<()> {
//! # let _node = shoal::init(shoal::Config::default().workers(1).store_bytes(64 << 20))?;
//! let frame = shoal::put(Frame { name: "a".into(), pixels: Array2::from_elem((480, 640), 2) })?;
//! let view: FrameView = shoal::get_view(&frame)?;     // no copy
//! assert_eq!(view.pixels.shape(), [480, 640]);
//! let b = shoal::get(&brightness::remote(&frame))?;   // the worker reads it in place
//! assert_eq!(b, 2.0);
//! # Ok(()) }
//! ```
//!
//! ## Errors
//! Every failure is an [`Error`] variant. A task's panic becomes
//! [`Error::TaskPanicked`] at `get`, and the same error flows into every task
//! that depends on it. Reading an object as another type than it was written
//! as is [`Error::TypeMismatch`], and so is reading it through a view twin
//! whose fields are out of order.
//!
//! ## Nested tasks
//! Inside a task the whole API works unchanged — `NAME::remote`, `put`,
//! `get`, `wait` and the rest — from the task's own thread and from threads
//! it starts. Refs a task makes can be returned, stored in values and passed
//! on; their objects live while any handle anywhere holds them.
//!
//! ```no_run
//! #[shoal::remote]
//! fn fib(n: u64) -> u64 {
//!     if n < 2 {
//!         return n;
//!     }
//!     let (a, b) = (fib::remote(n - 1), fib::remote(n - 2));
//!     shoal::get(&a).unwrap() + shoal::get(&b).unwrap()
//! }
//!
//! # fn main() -> shoal::Result<()> {
//! let _node = shoal::init(shoal::Config::default().workers(2))?;
//! assert_eq!(shoal::get(&fib::remote(15))?, 610); // ~2 000 tasks on 2 workers
//! # Ok(()) }
//! ```
//!
//! A task blocked in `get` or `wait` gives its CPU back while it waits, and
//! its thread runs the tasks it waits for itself (its descendants) — as
//! rayon's `join` does — so recursion needs no extra process and cannot
//! deadlock. Other work that needs a CPU while
//! every task is blocked gets an extra worker, up to
//! [`Config::max_workers`]. A failed child is an `Err` for its parent to
//! handle.
//!
//! ## Actors
//! `#[shoal::actor]` on a type's impl block makes it an actor: `T::remote(args…)`
//! returns an [`ActorHandle<T>`] at once while a process of its own starts and
//! runs `T::new(args…)`; each `pub` method taking `&self` or `&mut self` is a
//! method of the handle, taking values or refs like a remote function and
//! returning refs at once. The process runs one call at a time; calls one
//! task (or the driver) makes through a handle and its clones run in the
//! order they were made, each waiting for its `ObjectRef` arguments without
//! being overtaken. `#[shoal::method(num_returns = N)]` gives N refs.
//!
//! ```no_run
//! pub struct Counter { n: i64 }
//!
//! #[shoal::actor]
//! impl Counter {
//!     pub fn new(start: i64) -> Self { Counter { n: start } }
//!     pub fn add(&mut self, k: i64) -> i64 { self.n += k; self.n }
//!     pub fn value(&self) -> i64 { self.n }
//! }
//!
//! # fn main() -> shoal::Result<()> {
//! let _node = shoal::init(shoal::Config::default())?;
//! let c: shoal::ActorHandle<Counter> = Counter::remote(0);   // returns at once
//! let r: shoal::ObjectRef<i64> = c.add(5);
//! assert_eq!(shoal::get(&r)?, 5);
//! let hits = Counter::options().name("hits").max_restarts(2).max_task_retries(1).remote(0);
//! let same: shoal::ActorHandle<Counter> = shoal::get_actor("hits")?;
//! shoal::get(&same.add(1))?;
//! shoal::kill(&hits)?;                                      // Error::ActorDied for later calls
//! # Ok(()) }
//! ```
//!
//! - Handles are `Clone + Serialize + Deserialize`: pass them to tasks and
//!   other actors, or keep them in values. An actor lives while a handle to
//!   it does anywhere; then it finishes its calls and its process exits. A
//!   named one ([`ActorOptions::name`]) lives until [`kill`]ed.
//! - An actor holds no CPU of the task pool unless
//!   [`ActorOptions::num_cpus`] says so: a 2-core node runs 8 actors and
//!   its tasks.
//! - A panicking method fails that call with [`Error::TaskPanicked`]; the
//!   actor lives on, with its state. If its process dies, it is restarted
//!   up to `max_restarts` times (`new` runs again; its state starts over)
//!   and the call it was running is retried up to `max_task_retries`; else
//!   that call and every later one fail with [`Error::ActorDied`], naming
//!   the actor and the cause (the signal, the exit code, the constructor's
//!   panic).
//! - [`Shoal::actors`] lists them; `examples/parameter_server.rs` is Ray's
//!   parameter server.
//!
//! ## Cancellation
//! [`cancel`] stops a task you no longer want: queued, it never runs;
//! running, [`is_cancelled`] turns true in it. Its refs, and its
//! dependents', give [`Error::TaskCancelled`] at once, and the tasks it
//! submitted are cancelled too. [`cancel_force`] also kills a running task's
//! worker (replaced at once), for code that never checks.
//!
//! ## Streaming returns
//! `#[shoal::remote(streaming)]` on a function returning `impl Iterator<Item
//! = T>` makes `NAME::remote(args…)` return an [`ObjectRefStream<T>`] at
//! once: an iterator of `Result<ObjectRef<T>>`, each item's ref as soon as
//! the worker has stored it, in order, while the task still runs; then
//! `None`. Items are objects like any other (arrays read in place, refs
//! passed to tasks, freed when no one holds them). A task that fails ends
//! its stream with its error, once, after the items it produced; a retried
//! task delivers no item twice. `NAME::options().backpressure(n)` pauses
//! the producer while `n` items are not taken; dropping the stream cancels
//! the task. `#[shoal::method(streaming)]` does the same for an actor's
//! method.
//!
//! ```no_run
//! #[shoal::remote(streaming)]
//! fn squares(n: u64) -> impl Iterator<Item = u64> {
//!     (0..n).map(|i| i * i)
//! }
//!
//! # fn main() -> shoal::Result<()> {
//! let _node = shoal::init(shoal::Config::default())?;
//! let mut stream: shoal::ObjectRefStream<u64> = squares::options().backpressure(2).remote(5);
//! let first = stream.next().expect("an item")?;          // while the task runs
//! assert_eq!(shoal::get(&first)?, 0);
//! let rest: Vec<u64> = stream.map(|r| shoal::get(&r?)).collect::<shoal::Result<_>>()?;
//! assert_eq!(rest, [1, 4, 9, 16]);
//! # Ok(()) }
//! ```
//!
//! ## Beyond one host
//! With the `ray` feature, [`Config::ray`] runs the same program on a Ray
//! cluster: tasks and actors run in Ray's workers from your crate built as a
//! `cdylib`, checked against the driver at [`init`]. What differs (copies
//! instead of zero-copy views; no streaming, `cancel` or refs inside values:
//! [`Error::Unsupported`]) is in the README's "When one machine is not
//! enough".

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod actor;
mod client;
mod config;
mod deferred_drop;
mod error;
mod init;
mod monitor;
mod node;
mod object_ref;
mod options;
mod protocol;
#[cfg(feature = "ray")]
mod ray;
mod registry;
mod runtime;
mod stack_overflow;
mod status;
mod stream;
mod task;
mod view;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use actor::{Actor, ActorHandle, get_actor, kill};
pub use config::{ADDRESS_ENV, Config, RAY_ADDRESS_ENV, RAY_LIBRARY_ENV};
use error::panic_message;
pub use error::{Error, Result};
pub use init::{Shoal, init, init_once, serve, standalone_nodes};
pub use monitor::Monitor;
pub use ndarray;
pub use object_ref::{Arg, IntoArg, ObjectRef, Value};
pub use options::{ActorOptions, TaskOptions};
pub use shoal_macros::{actor, method, remote};
pub use shoal_store::{Element, SharedArray};
pub use status::{
    ActorInfo, ActorState, DriverInfo, MemoryReport, NodeStatus, ObjectInfo, ObjectPlace, ResourceUse, StoreStats,
    TIMELINE_LEN, TaskCounts, TaskEvent, WorkerInfo, WorkerState,
};
pub use stream::ObjectRefStream;
pub use view::ViewOf;
pub use worker::worker_main;

use ndarray::{Array, Dimension};
use node::state::ObjectState;
use object_ref::{fingerprint, read_in_place};
use protocol::ObjectData;
use runtime::{DecodeScope, Precounted, RefHandle, Runtime};

/// Declare a struct (or an enum) the checked zero-copy *view twin* of the
/// owned type named by `#[view_of(Owned)]`: the type that [`get_view`] and
/// remote functions read an `ObjectRef<Owned>` as, with every
/// `ndarray::Array<A, D>` of `Owned` a [`SharedArray<A, D>`] into the store,
/// not a copy.
///
/// ```
/// use ndarray::{Array1, Array2, Ix1, Ix2};
/// use serde::{Deserialize, Serialize};
/// use shoal::SharedArray;
///
/// #[derive(Serialize, Deserialize)]
/// struct Layer { bias: f32, weights: Array2<f32> }
///
/// #[derive(Serialize, Deserialize)]
/// struct Model { name: String, layers: Vec<Layer>, mask: Option<Array1<bool>>, steps: Vec<Array1<f64>> }
///
/// #[derive(Serialize, Deserialize, shoal::ViewOf)]
/// #[view_of(Layer)]
/// struct LayerView { bias: f32, weights: SharedArray<f32, Ix2> }
///
/// #[derive(Serialize, Deserialize, shoal::ViewOf)]
/// #[view_of(Model)]
/// struct ModelView {
///     name: String,
///     #[view_of(view)] // a twin itself: a `Vec` of `LayerView`s reads a `Vec<Layer>`
///     layers: Vec<LayerView>,
///     mask: Option<SharedArray<bool, Ix1>>,
///     steps: Vec<SharedArray<f64, Ix1>>,
/// }
///
/// # fn main() -> shoal::Result<()> {
/// # let _node = shoal::init(shoal::Config::default().workers(1).store_bytes(64 << 20))?;
/// let layer = Layer { bias: 0.5, weights: Array2::ones((16, 16)) };
/// let model = Model { name: "m".into(), layers: vec![layer], mask: None, steps: vec![Array1::zeros(8)] };
/// let r = shoal::put(model)?;
/// let view: ModelView = shoal::get_view(&r)?; // no array is copied
/// assert_eq!(view.layers[0].weights.view().sum(), 256.0);
/// # Ok(()) }
/// ```
///
/// The twins must correspond, field for field:
///
/// - **The same fields, by name** (a tuple struct: by position; an enum: the
///   same variants, each with corresponding fields). A field missing on
///   either side is a compile error.
/// - **Each of the same type**, where a `SharedArray<A, D>` anywhere in a
///   view field's type (inside a `Vec`, an `Option`, a tuple, an array, any
///   generic type) stands for `ndarray::Array<A, D>`; aliases such as
///   `Array2<u8>` are the same type. Anything else is a compile error.
/// - **In the same order.** The derive sees only the view, so this is checked
///   at run time, once per twin, by comparing the field (and variant) lists
///   that serde's derived `Deserialize` of each type declares: a twin out of
///   order gives [`Error::TypeMismatch`] from [`get_view`], and from a task
///   given an `ObjectRef<Owned>` for a view argument. Serde attributes that
///   change those lists (`rename`, `alias`, `skip`) must be the same on both
///   twins; a type whose `Deserialize` is written by hand (or uses
///   `#[serde(flatten)]`) declares no list, and its order is not checked.
///
/// Two field attributes relax the type rule:
///
/// - `#[view_of(view)]`: the field's type is itself a view of the owned
///   field's type — a twin derived with this macro, or a `Vec`, `Option`,
///   `Box` or array of them (any [`ViewOf`](trait@ViewOf)); its own order
///   check runs with this twin's.
/// - `#[view_of(owned = Type)]`: the owned field has type `Type`, and the
///   view field's type reads it its own way (a hand-written `Deserialize`).
///   Only the owned type is checked: how the view reads it is your word.
///
/// The derive implements [`ViewOf<Owned>`](trait@ViewOf) for the view, and
/// [`IntoArg`] so a remote function taking the view accepts an
/// `ObjectRef<Owned>` or `&ObjectRef<Owned>`. The owned type's fields must be
/// visible where the twin is declared.
///
/// A field of another type is a compile error:
///
/// ```compile_fail,E0277
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Sample { id: u32, x: u32 }
///
/// #[derive(Serialize, Deserialize, shoal::ViewOf)]
/// #[view_of(Sample)]
/// struct SampleView { id: u32, x: i32 } // `x` is a `u32` in `Sample`
/// ```
///
/// and so is a field missing from the view,
///
/// ```compile_fail,E0063
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Sample { id: u32, x: u32 }
///
/// #[derive(Serialize, Deserialize, shoal::ViewOf)]
/// #[view_of(Sample)]
/// struct SampleView { id: u32 } // no `x`
/// ```
///
/// or one the owned type does not have:
///
/// ```compile_fail,E0560
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Sample { id: u32, x: u32 }
///
/// #[derive(Serialize, Deserialize, shoal::ViewOf)]
/// #[view_of(Sample)]
/// struct SampleView { id: u32, x: u32, y: u32 } // no `y` in `Sample`
/// ```
pub use shoal_macros::ViewOf;

/// Store `value` in the object store (one copy) and return a reference to it.
///
/// Small values without arrays are kept inline; others are written to the
/// shared-memory arena, where every process can read them in place. A store
/// without room gives [`Error::ObjectStoreFull`].
///
/// `put` consumes `value`. A large one (4 MiB or more in the store, holding
/// no object refs) is dropped on a background thread, so the call returns
/// when the copy is done, not when its memory has gone back to the system;
/// its `Drop` (if it has one of its own) runs there, a little later, and may
/// not run at all if the process exits first. To keep an array, use
/// [`put_array`], which borrows it.
pub fn put<T: Value>(value: T) -> Result<ObjectRef<T>> {
    let runtime = init::current_or_start()?;
    let layout = shoal_store::measure(&value, fingerprint::<T>())?;
    let defer = layout.total_len() >= deferred_drop::DEFER_MIN_BYTES && layout.contained_refs().is_empty();
    let handle = runtime.put(layout, &value)?;
    if defer {
        deferred_drop::drop_later(value);
    }
    Ok(ObjectRef::from_handle(handle))
}

/// Store a copy of any ndarray array (owned, a view, a slice with strides;
/// any element type and dimension) and return a reference to it as an owned
/// `Array`; the caller keeps `array`.
///
/// One copy, straight into the store in standard layout (in parallel for
/// large arrays). The object is exactly what `put(array.to_owned())` would
/// write: [`get`] gives the `Array`, [`get_shared`] a zero-copy view, and a
/// task taking `SharedArray<A, D>` accepts the ref.
///
/// ```
/// use ndarray::{Array2, s};
/// # fn main() -> shoal::Result<()> {
/// # let _node = shoal::init(shoal::Config::default().workers(1))?;
/// let m = Array2::from_shape_fn((4, 6), |(i, j)| (10 * i + j) as f64);
/// let column_pairs = shoal::put_array(&m.slice(s![.., 1..3]))?; // m stays ours
/// assert_eq!(shoal::get(&column_pairs)?, m.slice(s![.., 1..3]));
/// assert_eq!(shoal::get_shared(&column_pairs)?.view()[(3, 1)], 32.0);
/// # Ok(()) }
/// ```
pub fn put_array<A, S, D>(array: &ndarray::ArrayBase<S, D>) -> Result<ObjectRef<Array<A, D>>>
where
    A: Element,
    S: ndarray::Data<Elem = A>,
    D: Dimension + Value,
{
    let runtime = init::current_or_start()?;
    let layout = shoal_store::Layout::of_array::<A>(array.shape(), fingerprint::<Array<A, D>>())?;
    let handle = runtime.put_with(layout, |layout, dst| {
        layout.write_array(array, dst);
        Ok(())
    })?;
    Ok(ObjectRef::from_handle(handle))
}

/// Allocate an array of `shape` in the store, let `fill` write it in place,
/// and return a reference to it: no copy at all.
///
/// `fill` gets a mutable view into the store's shared memory. Before it
/// writes, a `bool` array holds `false` everywhere; an array of numbers holds
/// whatever bytes its memory held before (zeroes in memory never used, an
/// earlier object's bytes in memory reused): valid numbers, never undefined
/// behaviour, but not necessarily zero, so write every element you need.
/// The object is sealed, and visible to others, only when `fill` returns.
///
/// If `fill` panics, the allocation is freed and the panic's message comes
/// back as [`Error::InvalidArgument`]. Works in the driver and inside tasks.
///
/// ```
/// use ndarray::Array2;
/// use shoal::ObjectRef;
/// # fn main() -> shoal::Result<()> {
/// # let _node = shoal::init(shoal::Config::default().workers(1))?;
/// let grid: ObjectRef<Array2<f64>> = shoal::put_with((512, 256), |mut v| {
///     v.indexed_iter_mut().for_each(|((i, j), x)| *x = (i * j) as f64);
/// })?;
/// assert_eq!(shoal::get_shared(&grid)?.view()[(3, 5)], 15.0);
/// # Ok(()) }
/// ```
pub fn put_with<A, Sh>(
    shape: Sh,
    fill: impl FnOnce(ndarray::ArrayViewMut<'_, A, Sh::Dim>),
) -> Result<ObjectRef<Array<A, Sh::Dim>>>
where
    A: Element,
    Sh: ndarray::IntoDimension,
    Sh::Dim: Value,
{
    let runtime = init::current_or_start()?;
    let dim = shape.into_dimension();
    let layout = shoal_store::Layout::of_array::<A>(dim.slice(), fingerprint::<Array<A, Sh::Dim>>())?;
    let handle = runtime.put_with(layout, |layout, dst| {
        let view = layout.array_view_mut::<A, _>(dst, dim);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(view))).map_err(|panic| {
            Error::InvalidArgument(format!("the put_with closure panicked: {}", panic_message(&*panic)))
        })
    })?;
    Ok(ObjectRef::from_handle(handle))
}

/// Wait for the object and return its value (a copy; see [`get_shared`] and
/// [`get_view`] for reads that copy nothing).
pub fn get<T: Value>(r: &ObjectRef<T>) -> Result<T> {
    read::<T>(r, fingerprint::<T>(), None)
}

/// [`get`], giving up with [`Error::Timeout`] after `timeout`.
pub fn get_timeout<T: Value>(r: &ObjectRef<T>, timeout: Duration) -> Result<T> {
    read::<T>(r, fingerprint::<T>(), Some(timeout))
}

/// [`get`] for many refs; the first error wins.
pub fn get_all<T: Value>(refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
    // Inside a task: one round trip for all of them, not one each.
    if let Some(Runtime::Client(client)) = refs.first().map(|r| &r.handle.runtime) {
        let ids: Vec<u64> = refs.iter().map(|r| r.id()).collect();
        let found = client.get_many(&ids)?;
        let mut values = Vec::with_capacity(refs.len());
        let mut found = found.into_iter();
        for r in refs {
            let (data, contained) = found.next().expect("one answer per ref");
            match decode_found(&r.handle, data, contained, fingerprint::<T>()) {
                Ok(value) => values.push(value),
                Err(e) => {
                    // The references counted for the rest are dropped unread.
                    for (_, contained) in found {
                        r.handle.runtime.release_all(&contained);
                    }
                    return Err(e);
                }
            }
        }
        return Ok(values);
    }
    refs.iter().map(get).collect()
}

/// Decode what a client's `get` found for `handle`'s object.
fn decode_found<V: Value>(
    handle: &Arc<RefHandle>,
    data: ObjectData,
    contained: Vec<u64>,
    written_as: u64,
) -> Result<V> {
    // The node counted a reference to each contained object for us.
    let _scope = DecodeScope::enter(Some(handle.runtime.clone()), Precounted::new(contained));
    match data {
        ObjectData::Inline(bytes) => Ok(shoal_store::decode(&bytes, written_as)?),
        ObjectData::Arena { offset, len } => read_in_place(&handle.runtime, offset, len, written_as, handle.clone()),
        ObjectData::Failed(e) => Err(e),
    }
}

/// Read an array object without copying: the view points into shared memory
/// and keeps the object alive while it exists.
pub fn get_shared<A: Element, D: Dimension + Value>(r: &ObjectRef<Array<A, D>>) -> Result<SharedArray<A, D>> {
    get_view(r)
}

/// Read an object written as `T` through its view twin `V` (see
/// [`ViewOf`](trait@ViewOf)): arrays become [`SharedArray`]s into the store, no copy.
///
/// A twin whose fields are not in `T`'s order gives [`Error::TypeMismatch`].
pub fn get_view<V: ViewOf<T>, T: Value>(r: &ObjectRef<T>) -> Result<V> {
    V::__check_twin()?;
    read::<V>(r, fingerprint::<T>(), None)
}

fn read<V: Value>(handle_of: &ObjectRef<impl Sized>, written_as: u64, timeout: Option<Duration>) -> Result<V> {
    let handle = &handle_of.handle;
    let deadline = timeout.map(|t| Instant::now() + t);
    let node = match &handle.runtime {
        Runtime::Local(node) => node.clone(),
        Runtime::Client(client) => {
            let (data, contained) = client.get(handle.id, deadline, timeout.unwrap_or_default())?;
            return decode_found(handle, data, contained, written_as);
        }
        #[cfg(feature = "ray")]
        Runtime::Ray(cluster) => return cluster.get(handle.id, written_as, timeout),
    };
    // Refs inside the value belong to the process's runtime (looked up once
    // here, not per ref). When that is this node, it counts a reference to
    // each contained object while it finds the object sealed, and decoding
    // adopts those instead of locking the node once per ref.
    let current = Runtime::current().ok();
    let same_node = matches!(&current, Some(Runtime::Local(n)) if Arc::ptr_eq(n, &node));
    let (state, precounted) = node.wait_sealed(handle.id, deadline, timeout, same_node)?;
    // Leftover precounted references are released when the scope ends,
    // however decoding ends.
    let _scope = DecodeScope::enter(current, Precounted::new(precounted));
    match state {
        ObjectState::Inline(bytes) => Ok(shoal_store::decode(&bytes, written_as)?),
        ObjectState::Arena { offset, len } => {
            // `wait_sealed` pinned it: it stays in the arena while read in place.
            let keepalive = Arc::new((handle.clone(), node::Pin::new(node, handle.id)));
            read_in_place(&handle.runtime, offset, len, written_as, keepalive)
        }
        ObjectState::Failed(e) => Err(*e),
        ObjectState::Pending | ObjectState::Spilled { .. } => {
            unreachable!("wait_sealed returns sealed states in memory")
        }
    }
}

/// Wait until `num_returns` of `refs` are ready (finished, successfully or
/// not) or `timeout` passes. Returns `(ready, pending)`, each in the order of
/// `refs`; `ready` holds at most `num_returns` refs.
#[allow(clippy::type_complexity)]
pub fn wait<T>(
    refs: &[ObjectRef<T>],
    num_returns: usize,
    timeout: Option<Duration>,
) -> Result<(Vec<ObjectRef<T>>, Vec<ObjectRef<T>>)> {
    if num_returns > refs.len() {
        return Err(Error::InvalidArgument(format!("wait for {num_returns} of {} refs", refs.len())));
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let done = match Runtime::current()? {
        Runtime::Local(node) => node.wait_any(refs.len(), |i| refs[i].id(), num_returns, deadline),
        Runtime::Client(client) => {
            let ids: Vec<u64> = refs.iter().map(|r| r.id()).collect();
            client.wait(&ids, num_returns, deadline)?
        }
        #[cfg(feature = "ray")]
        Runtime::Ray(cluster) => {
            let ids: Vec<u64> = refs.iter().map(|r| r.id()).collect();
            cluster.wait(&ids, num_returns, deadline)?
        }
    };
    let mut ready = Vec::with_capacity(done.len());
    let mut pending = Vec::with_capacity(refs.len() - done.len());
    let mut next_done = done.iter().peekable();
    for (i, r) in refs.iter().enumerate() {
        if next_done.next_if_eq(&&i).is_some() {
            ready.push(r.clone());
        } else {
            pending.push(r.clone());
        }
    }
    Ok((ready, pending))
}

/// Cancel the task that produces `r`: queued or waiting for its arguments,
/// it never runs; running, [`is_cancelled`] turns true inside it (for it to
/// stop early). Either way `get(&r)` — and every output of the task, and
/// every task depending on them — gives [`Error::TaskCancelled`] at once,
/// the task is not retried, and the tasks it submitted that have not
/// finished are cancelled too. A finished task is untouched. An actor's
/// call is cancelled the same way (queued: never runs; running: sees the
/// flag).
///
/// ```no_run
/// #[shoal::remote]
/// fn search(limit: u64) -> u64 {
///     let mut n = 0;
///     while n < limit && !shoal::is_cancelled() {
///         n += 1;
///     }
///     n
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let r = search::remote(u64::MAX);
/// shoal::cancel(&r)?;
/// assert!(matches!(shoal::get(&r), Err(shoal::Error::TaskCancelled { .. })));
/// # Ok(()) }
/// ```
pub fn cancel<T>(r: &ObjectRef<T>) -> Result<()> {
    Runtime::current()?.cancel(r.id(), false)
}

/// [`cancel`], and if the task is running, kill its worker process at once
/// (the pool starts a replacement): for a task that never checks
/// [`is_cancelled`]. Its descendants are cancelled with the same force. An
/// actor's call cannot be forced ([`Error::InvalidArgument`]): use
/// [`kill`].
pub fn cancel_force<T>(r: &ObjectRef<T>) -> Result<()> {
    Runtime::current()?.cancel(r.id(), true)
}

/// Whether the task this worker process runs was cancelled ([`cancel`]):
/// the task on its task thread, asked from that thread or from threads the
/// task started; `false` outside tasks.
pub fn is_cancelled() -> bool {
    Runtime::current().is_ok_and(|runtime| runtime.is_cancelled())
}

/// What generated code calls. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::actor::{ActorMethods, RawActor};
    pub use crate::init::start_on_first_use;
    pub use crate::object_ref::{ArgReader, Checked};
    pub use crate::registry::{Invoke, REMOTE_FUNCTIONS, RemoteFunction, Sink};
    pub use crate::task::{
        IsValue, Output, actor_state, call, create_actor, output, stream, stream_options, submit, typed,
    };
    pub use crate::view::{SameType, check_field, check_order, same_type, view_arg, viewed_by};
    pub use linkme;
}
