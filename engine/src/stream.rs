//! [`ObjectRefStream`]: the consumer's side of a streaming task.
//!
//! A streaming task has one output, the stream's *end object*: once the
//! task ends it holds the number of items, or the error that ended it. The
//! node keeps the items it was sent (`node/streams.rs`) and hands them out
//! by position; this type only counts positions and turns the node's
//! answers into refs. It owns no items: an item the node handed out is a
//! counted ref like any other.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::object_ref::ObjectRef;
use crate::runtime::{RefHandle, Runtime};

/// The items of a streaming task (`#[shoal::remote(streaming)]`), as refs,
/// in the order its iterator yielded them: each as soon as the worker has
/// stored it, while the task still runs. After the last item the stream
/// gives `None`; a task that failed gives its error once (after the items it
/// produced before failing), then `None`.
///
/// Dropping the stream cancels the task if it still runs and frees the
/// items not taken; items taken live as long as their refs.
///
/// ```no_run
/// #[shoal::remote(streaming)]
/// fn squares(n: u64) -> impl Iterator<Item = u64> {
///     (0..n).map(|i| i * i)
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let mut total = 0;
/// for item in squares::remote(5) {
///     total += shoal::get(&item?)?;
/// }
/// assert_eq!(total, 30);
/// # Ok(()) }
/// ```
pub struct ObjectRefStream<T> {
    end: ObjectRef<u64>,
    /// The position of the next item.
    next: u64,
    /// It gave its end (`None`, or an error).
    finished: bool,
    _items: PhantomData<fn() -> T>,
}

impl<T> ObjectRefStream<T> {
    pub(crate) fn from_end(handle: Arc<RefHandle>) -> Self {
        ObjectRefStream { end: ObjectRef::from_handle(handle), next: 0, finished: false, _items: PhantomData }
    }

    /// The stream's end object, Ray's `completed()`: ready once the task
    /// has ended, holding the number of items, or the error that ended it.
    /// `shoal::cancel(stream.completed())` cancels the task: the stream ends
    /// with [`Error::TaskCancelled`] after the items already produced.
    pub fn completed(&self) -> &ObjectRef<u64> {
        &self.end
    }

    /// [`Iterator::next`], waiting at most `timeout`: `Some(Err(Error::Timeout))`
    /// when no item came meanwhile. A timeout does not end the stream; the
    /// next call waits for the same item.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<ObjectRef<T>>> {
        self.advance(Some(Instant::now() + timeout)).map(|item| {
            item.map_err(|e| match e {
                Error::Timeout(_) => Error::Timeout(timeout),
                e => e,
            })
        })
    }

    fn advance(&mut self, deadline: Option<Instant>) -> Option<Result<ObjectRef<T>>> {
        if self.finished {
            return None;
        }
        let handle = &self.end.handle;
        let found = match &handle.runtime {
            Runtime::Local(node) => node.stream_next(handle.id, self.next, deadline),
            Runtime::Client(client) => client.stream_next(handle.id, self.next, deadline),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => Err(cluster.failure_of(handle.id)),
        };
        match found {
            Ok(Some(id)) => {
                self.next += 1;
                Some(Ok(ObjectRef::from_handle(handle.runtime.adopt(id))))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e @ Error::Timeout(_)) => Some(Err(e)),
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl<T> Iterator for ObjectRefStream<T> {
    type Item = Result<ObjectRef<T>>;

    /// Wait for the next item's ref (see the type's docs).
    fn next(&mut self) -> Option<Self::Item> {
        self.advance(None)
    }
}

impl<T> std::iter::FusedIterator for ObjectRefStream<T> {}

impl<T> std::fmt::Debug for ObjectRefStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRefStream")
            .field("end", &self.end.id())
            .field("next", &self.next)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<T> Drop for ObjectRefStream<T> {
    fn drop(&mut self) {
        let handle = &self.end.handle;
        match &handle.runtime {
            Runtime::Local(node) => node.stream_close(handle.id),
            Runtime::Client(client) => client.stream_close(handle.id),
            #[cfg(feature = "ray")]
            Runtime::Ray(_) => {}
        }
    }
}
