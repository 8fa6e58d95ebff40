//! The small pieces generated code calls: submitting a task, creating and
//! calling an actor, measuring a return value, typing an output handle (or
//! a stream's end).

use std::sync::Arc;

use shoal_store::{EncodeError, Layout};

use crate::actor::RawActor;
use crate::error::Error;
use crate::object_ref::{Arg, ArgKind, Checked, ObjectRef, Value, decode_arg, fingerprint};
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::SubmitArg;
use crate::runtime::{RefHandle, Runtime};
use crate::stream::ObjectRefStream;

/// Inline argument bytes one task message may carry; further arguments go
/// through the arena.
const TASK_INLINE_BUDGET: usize = 8 << 20;

/// Writes a measured value into its place in the store.
pub(crate) type WriteFn = Box<dyn FnOnce(&Layout, &mut [u8]) -> Result<(), EncodeError>>;

/// One return value of a task, measured but not yet placed in the store.
pub struct Output(pub(crate) Result<(Layout, WriteFn), Error>);

/// What generated code needs of every argument and return type: that it
/// is a [`Value`], checked once per type where the function or method is
/// declared (generated code names `<T as IsValue>::CHECKED` or `::OUTPUT`
/// spanned at the type): the one place a type that is none is reported,
/// with `Value`'s message (`Value`'s supertraits would be reported one by
/// one).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shoal value: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "not `Serialize + DeserializeOwned + Send + 'static`",
    note = "derive serde's traits on it: `#[derive(serde::Serialize, serde::Deserialize)]`; a type holding a reference, an `Rc` or a raw pointer cannot travel between processes"
)]
pub trait IsValue: Sized {
    /// How one is encoded and decoded as an argument.
    const CHECKED: Checked<Self>;
    /// How one is measured as a return value.
    const OUTPUT: fn(Self) -> Output;
}

#[diagnostic::do_not_recommend]
impl<T: Value> IsValue for T {
    const CHECKED: Checked<T> = Checked { encode: Arg::from_value::<T>, decode: decode_arg::<T> };
    const OUTPUT: fn(T) -> Output = output::<T>;
}

/// Measure a return value (used by generated code).
pub fn output<T: Value>(value: T) -> Output {
    Output(match shoal_store::measure(&value, fingerprint::<T>()) {
        Ok(layout) => Ok((layout, Box::new(move |layout: &Layout, dst: &mut [u8]| layout.write_to(&value, dst)))),
        Err(e) => Err(e.into()),
    })
}

/// Submit a task (used by generated code). Returns one handle per output.
/// Works in the driver and inside tasks alike.
///
/// # Panics
/// In a process without a node (generated code first starts one if none
/// ran: `init::start_on_first_use`).
pub fn submit(
    function: &'static str,
    options: &TaskOptions,
    args: Vec<Arg>,
    num_returns: usize,
) -> Vec<Arc<RefHandle>> {
    let runtime = current_runtime(function);
    let (specs, pinned, failure) = prepare_args(&runtime, args);
    let outputs = runtime.submit(function, options, specs, num_returns, failure, None);
    drop(pinned);
    outputs
}

/// Call `method` on the actor `actor` refers to (used by generated code).
/// Returns one handle per output.
///
/// # Panics
/// As [`submit`].
pub fn call(actor: &RawActor, method: &'static str, args: Vec<Arg>, num_returns: usize) -> Vec<Arc<RefHandle>> {
    let runtime = current_runtime(method);
    let (specs, pinned, failure) = prepare_args(&runtime, args);
    // Per-call options come from the actor (its `max_task_retries`).
    let options = TaskOptions::default();
    let outputs = runtime.submit(method, &options, specs, num_returns, failure, Some(actor.id()));
    drop(pinned);
    outputs
}

/// Create an actor of type `class` (used by generated code).
///
/// # Panics
/// As [`submit`].
pub fn create_actor(class: &'static str, options: &ActorOptions, args: Vec<Arg>) -> RawActor {
    let runtime = current_runtime(class);
    let (specs, pinned, failure) = prepare_args(&runtime, args);
    let handle = runtime.create_actor(class, options, specs, failure);
    drop(pinned);
    RawActor::from_handle(handle)
}

fn current_runtime(what: &str) -> Runtime {
    match Runtime::current() {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot call `{what}::remote`: {e}"),
    }
}

/// Arguments as the node takes them, the handles that keep them alive
/// until the node has counted them, and the first that could not be
/// prepared.
fn prepare_args(runtime: &Runtime, args: Vec<Arg>) -> (Vec<SubmitArg>, Vec<Arc<RefHandle>>, Option<Error>) {
    let mut specs = Vec::with_capacity(args.len());
    let mut pinned = Vec::new();
    let mut failure = None;
    let mut inline_bytes = 0;
    for arg in args {
        match arg.0 {
            ArgKind::Ref { handle, fingerprint } => {
                specs.push(SubmitArg::Object { id: handle.id, fingerprint });
                pinned.push(handle);
            }
            ArgKind::Inline { bytes, fingerprint, refs } => {
                let ids: Vec<u64> = refs.iter().map(|h| h.id).collect();
                inline_bytes += bytes.len();
                if inline_bytes <= TASK_INLINE_BUDGET {
                    specs.push(SubmitArg::Inline { bytes, fingerprint, refs: ids });
                } else {
                    // Many small arguments: past the budget they go through
                    // the arena, so a task message stays small.
                    match runtime.put_bytes(&bytes, ids) {
                        Ok(handle) => {
                            specs.push(SubmitArg::Object { id: handle.id, fingerprint });
                            pinned.push(handle);
                        }
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                pinned.extend(refs);
            }
            ArgKind::Failed(e) => failure = failure.or(Some(e)),
        }
    }
    (specs, pinned, failure)
}

/// The actor state a method runs on, as a `T` (used by generated code).
pub fn actor_state<T: 'static>(state: &mut (dyn std::any::Any + Send)) -> Result<&mut T, Error> {
    state.downcast_mut::<T>().ok_or_else(|| Error::TypeMismatch {
        detail: format!("this actor process does not hold a {}", std::any::type_name::<T>()),
    })
}

/// Wrap an output handle as a typed reference (used by generated code).
pub fn typed<T>(handle: Arc<RefHandle>) -> ObjectRef<T> {
    ObjectRef::from_handle(handle)
}

/// The default options of a streaming function (used by generated code).
pub fn stream_options() -> TaskOptions {
    TaskOptions { streaming: true, ..TaskOptions::default() }
}

/// Wrap a streaming task's one output, its end object, as the stream of its
/// items (used by generated code).
pub fn stream<T>(end: Arc<RefHandle>) -> ObjectRefStream<T> {
    ObjectRefStream::from_end(end)
}
