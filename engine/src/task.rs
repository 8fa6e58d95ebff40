//! Task options and the small pieces generated code calls.

use serde::{Deserialize, Serialize};
use shoal_store::{EncodeError, Layout};

use crate::error::Error;
use crate::object_ref::{Arg, ObjectRef, Value, fingerprint};
use crate::runtime::{RefHandle, Runtime};
use std::sync::Arc;

/// Per-call options of a remote function: `NAME::options().max_retries(5).remote(…)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    pub(crate) max_retries: u32,
    pub(crate) num_cpus: u32,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions { max_retries: 3, num_cpus: 1 }
    }
}

impl TaskOptions {
    /// Times the task is started again if its worker process dies (default 3).
    /// A panic is not retried: it is the function's answer.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// CPUs the task occupies while it runs (default 1). A task waits until
    /// that many are free; one asking for more than the node has fails with
    /// [`Error::Unschedulable`].
    pub fn num_cpus(mut self, cpus: u32) -> Self {
        self.num_cpus = cpus;
        self
    }
}

/// Writes a measured value into its place in the store.
pub(crate) type WriteFn = Box<dyn FnOnce(&Layout, &mut [u8]) -> Result<(), EncodeError>>;

/// One return value of a task, measured but not yet placed in the store.
pub struct Output(pub(crate) Result<(Layout, WriteFn), Error>);

/// Measure a return value (used by generated code).
pub fn output<T: Value>(value: T) -> Output {
    Output(match shoal_store::measure(&value, fingerprint::<T>()) {
        Ok(layout) => Ok((layout, Box::new(move |layout: &Layout, dst: &mut [u8]| layout.write_value_to(&value, dst)))),
        Err(e) => Err(e.into()),
    })
}

/// Submit a task (used by generated code). Returns one handle per output.
///
/// # Panics
/// Outside a driver: in a process without `shoal::init`, or inside a task
/// (nested tasks come in a later release). The panic message says which.
pub fn submit(
    function: &'static str,
    options: &TaskOptions,
    args: Vec<Arg>,
    num_returns: usize,
) -> Vec<Arc<RefHandle>> {
    match Runtime::current() {
        Ok(Runtime::Driver(node)) => node.submit(function, options, args, num_returns),
        Ok(Runtime::Worker(_)) => panic!(
            "{}",
            Error::Unsupported(format!(
                "calling `{function}::remote` inside a task: nested tasks are not supported yet"
            ))
        ),
        Err(e) => panic!("cannot call `{function}::remote`: {e}"),
    }
}

/// Wrap an output handle as a typed reference (used by generated code).
pub fn typed<T>(handle: Arc<RefHandle>) -> ObjectRef<T> {
    ObjectRef::from_handle(handle)
}
