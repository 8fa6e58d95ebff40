//! The per-process runtime: which node this process talks to — in this
//! process (`Local`: the embedded driver's direct path) or over its socket
//! (`Client`: a worker, later a connecting driver) — and the counted
//! handles (`RefHandle`) that the public API wraps as typed `ObjectRef`s.
//!
//! This layer turns handles into ids and back; below it the node and the
//! client know only ids.

use std::cell::RefCell;
use std::sync::{Arc, RwLock};

use shoal_store::Arena;

use serde::Serialize;
use shoal_store::Layout;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::node::state::IdMap;
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::{RefOp, SubmitArg};

/// This process's connection to its node.
#[derive(Clone)]
pub(crate) enum Runtime {
    /// The node runs in this process (the embedded driver).
    Local(Arc<Node>),
    /// The node is another process, reached over its socket (a worker).
    Client(Arc<Client>),
    /// A Ray cluster (the `ray` feature): a driver's, or a task's in a Ray worker.
    #[cfg(feature = "ray")]
    Ray(Arc<crate::ray::Cluster>),
}

static CURRENT: RwLock<Option<Runtime>> = RwLock::new(None);
/// `CURRENT` holds a runtime: read without its lock, on the path of every
/// `remote` (which starts a node when none runs).
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Runtime {
    /// The runtime of this process, if `init` ran (or this is a worker).
    pub(crate) fn current() -> Result<Runtime> {
        CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::NotInitialized)
    }

    /// Make `rt` this process's runtime; fails if one is installed.
    pub(crate) fn install(rt: Runtime) -> Result<()> {
        let mut slot = CURRENT.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        *slot = Some(rt);
        INSTALLED.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether a runtime is installed (as `current` would find, without
    /// its lock).
    pub(crate) fn installed() -> bool {
        INSTALLED.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forget the installed runtime (the node is shutting down).
    pub(crate) fn uninstall() {
        let mut slot = CURRENT.write().unwrap_or_else(|e| e.into_inner());
        INSTALLED.store(false, std::sync::atomic::Ordering::Release);
        slot.take();
    }

    /// The arena mapping of this process.
    pub(crate) fn arena(&self) -> Result<&Arc<Arena>> {
        match self {
            Runtime::Local(node) => Ok(node.arena()),
            Runtime::Client(client) => Ok(client.arena()),
            #[cfg(feature = "ray")]
            Runtime::Ray(_) => Err(Error::Unsupported("the shared-memory arena on the Ray backend".into())),
        }
    }

    /// Whether a value of this layout travels inline rather than in the arena.
    pub(crate) fn is_inline(&self, layout: &Layout) -> bool {
        match self {
            Runtime::Local(node) => node.is_inline(layout),
            Runtime::Client(client) => client.is_inline(layout),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.is_inline(layout),
        }
    }

    /// Store `value`, measured as `layout`; returns a handle to it.
    pub(crate) fn put<T: Serialize + ?Sized>(&self, layout: Layout, value: &T) -> Result<Arc<RefHandle>> {
        self.put_with(layout, |layout, dst| Ok(layout.write_to(value, dst)?))
    }

    /// Store an object of `layout` that `write` writes into its place (the
    /// arena, or inline bytes when `layout` has no arrays and is small,
    /// where `write` is not called); returns a handle to it.
    pub(crate) fn put_with(
        &self,
        layout: Layout,
        write: impl FnOnce(&Layout, &mut [u8]) -> Result<()>,
    ) -> Result<Arc<RefHandle>> {
        let id = match self {
            Runtime::Local(node) => node.put(layout, write)?,
            Runtime::Client(client) => client.put(layout, write)?,
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.put_with(layout, write)?,
        };
        Ok(self.adopt(id))
    }

    /// Store an already encoded object holding no arrays, in the arena.
    pub(crate) fn put_bytes(&self, bytes: &[u8], refs: Vec<u64>) -> Result<Arc<RefHandle>> {
        let id = match self {
            Runtime::Local(node) => node.put_bytes(bytes, refs)?,
            Runtime::Client(client) => client.put_bytes(bytes, refs)?,
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.put_bytes(bytes, refs)?,
        };
        Ok(self.adopt(id))
    }

    /// Submit a task (`actor`: a call of that actor's method `function`);
    /// `failure` fails it at once. The caller keeps the objects in `args`
    /// alive until this returns. One handle per output.
    pub(crate) fn submit(
        &self,
        function: &'static str,
        options: &TaskOptions,
        args: Vec<SubmitArg>,
        num_returns: usize,
        failure: Option<Error>,
        actor: Option<u64>,
    ) -> Vec<Arc<RefHandle>> {
        let outputs = match self {
            Runtime::Local(node) => node.submit(function, options, args, num_returns, failure, actor),
            Runtime::Client(client) => client.submit(function, options, args, num_returns, failure, actor),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.submit(function, options, args, num_returns, failure, actor),
        };
        outputs.into_iter().map(|id| self.adopt(id)).collect()
    }

    /// Create an actor of `class`; returns a handle to its handle object.
    pub(crate) fn create_actor(
        &self,
        class: &'static str,
        options: &ActorOptions,
        args: Vec<SubmitArg>,
        failure: Option<Error>,
    ) -> Arc<RefHandle> {
        let id = match self {
            Runtime::Local(node) => node.create_actor(class, options, args, failure),
            Runtime::Client(client) => client.create_actor(class, options, args, failure),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.create_actor(class, options, args, failure),
        };
        self.adopt(id)
    }

    /// The live actor named `name`: a handle to its handle object, and its class.
    pub(crate) fn get_actor(&self, name: &str) -> Result<(Arc<RefHandle>, String)> {
        let (id, class) = match self {
            Runtime::Local(node) => node.get_actor(name).map(|(id, class)| (id, class.to_string()))?,
            Runtime::Client(client) => client.get_actor(name)?,
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.get_actor(name)?,
        };
        Ok((self.adopt(id), class))
    }

    /// Cancel the task producing object `id` (see `node/cancel.rs`).
    pub(crate) fn cancel(&self, id: u64, force: bool) -> Result<()> {
        match self {
            Runtime::Local(node) => node.cancel(id, force),
            Runtime::Client(client) => client.cancel(id, force),
            #[cfg(feature = "ray")]
            Runtime::Ray(_) => {
                Err(Error::Unsupported("cancel on the Ray backend: ray-cpp 2.60 cannot cancel a task".into()))
            }
        }
    }

    /// Whether the task this thread runs was cancelled (never, outside tasks).
    pub(crate) fn is_cancelled(&self) -> bool {
        match self {
            Runtime::Local(_) => false,
            Runtime::Client(client) => client.current_cancelled(),
            #[cfg(feature = "ray")]
            Runtime::Ray(_) => false,
        }
    }

    /// End actor `id` now.
    pub(crate) fn kill_actor(&self, id: u64) -> Result<()> {
        match self {
            Runtime::Local(node) => {
                node.kill_actor(id);
                Ok(())
            }
            Runtime::Client(client) => client.kill_actor(id),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.kill_actor(id),
        }
    }

    /// Drop one reference per entry of `ids`.
    pub(crate) fn release_all(&self, ids: &[u64]) {
        match self {
            Runtime::Local(node) => node.release_all(ids),
            Runtime::Client(client) => ids.iter().for_each(|&id| client.push_ref_op(RefOp::Release(id))),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => ids.iter().for_each(|&id| cluster.release(id)),
        }
    }

    /// A new counted handle to object `id` (the count rises by one). A
    /// handle to an id the node does not know counts nothing and releases
    /// nothing; reading through it gives `ObjectNotFound`.
    pub(crate) fn acquire(&self, id: u64) -> Arc<RefHandle> {
        self.clone().acquire_owned(id)
    }

    /// [`acquire`](Self::acquire), keeping this runtime in the handle.
    fn acquire_owned(self, id: u64) -> Arc<RefHandle> {
        let counted = match &self {
            Runtime::Local(node) => node.acquire(id),
            // The node ignores (and will not release) an unknown id.
            Runtime::Client(client) => {
                client.push_ref_op(RefOp::Acquire(id));
                true
            }
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.acquire(id),
        };
        Arc::new(RefHandle { id, runtime: self, counted })
    }

    /// Wrap a reference the node already counted for us (a new object).
    pub(crate) fn adopt(&self, id: u64) -> Arc<RefHandle> {
        Arc::new(RefHandle { id, runtime: self.clone(), counted: true })
    }

    /// A counted handle to `id` for a ref being deserialized: adopts one of
    /// the references the decoding context counted in advance, if it holds
    /// one for `id`, else acquires one. Outside a decoding context, uses the
    /// process's runtime.
    pub(crate) fn deserialized_ref(id: u64) -> Result<Arc<RefHandle>> {
        // The context's borrow ends before the node is called.
        let found = DECODING.with(|slot| {
            let mut slot = slot.borrow_mut();
            let context = slot.as_mut()?;
            Some(match &context.runtime {
                Some(runtime) => Ok((runtime.clone(), context.precounted.take(id))),
                None => Err(Error::NotInitialized),
            })
        });
        let (runtime, counted) = match found {
            Some(found) => found?,
            None => (Runtime::current()?, false),
        };
        Ok(if counted { Arc::new(RefHandle { id, runtime, counted }) } else { runtime.acquire_owned(id) })
    }
}

/// What this thread is decoding with: the runtime deserialized refs belong
/// to, and references the node counted in advance for the refs the object
/// contains (see [`Node::wait_sealed`]).
struct DecodeContext {
    /// `None` when no runtime is installed: a ref then fails to decode with
    /// `NotInitialized`, as it does outside a context.
    runtime: Option<Runtime>,
    precounted: Precounted,
}

thread_local! {
    static DECODING: RefCell<Option<DecodeContext>> = const { RefCell::new(None) };
}

/// References counted in advance, one per entry of `ids` (in the order the
/// object serialized them, which is the order decoding meets them).
#[derive(Default)]
pub(crate) struct Precounted {
    ids: Vec<u64>,
    /// `ids[..next]` were taken in order.
    next: usize,
    /// Once decoding meets an id out of order, what is left of `ids`, as counts.
    rest: Option<IdMap<usize>>,
}

impl Precounted {
    /// `ids` must each hold one reference counted for this decode (an id
    /// twice, two).
    pub(crate) fn new(ids: Vec<u64>) -> Self {
        Precounted { ids, next: 0, rest: None }
    }

    /// Take one counted reference to `id`, if one is left.
    fn take(&mut self, id: u64) -> bool {
        if self.rest.is_none() {
            let ids = &self.ids;
            if ids.get(self.next) == Some(&id) {
                self.next += 1;
                return true;
            }
            if self.next == ids.len() {
                return false;
            }
            // Out of order (an id that did not exist when the object was
            // made is not counted, so not listed): count what is left.
            let mut rest = IdMap::default();
            for &left in &ids[self.next..] {
                *rest.entry(left).or_insert(0) += 1;
            }
            self.next = ids.len();
            self.rest = Some(rest);
        }
        match self.rest.as_mut().and_then(|rest| rest.get_mut(&id)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// The references not taken, an id once per reference.
    fn into_leftovers(mut self) -> Vec<u64> {
        let mut left = self.ids.split_off(self.next);
        if let Some(rest) = self.rest {
            for (id, n) in rest {
                left.extend(std::iter::repeat_n(id, n));
            }
        }
        left
    }
}

/// While it lives, refs this thread deserializes belong to `runtime` and
/// adopt the references in `precounted` first. Dropping it restores the
/// context it replaced (decodes nest) and releases the references nobody
/// took — say the decode failed — in one go.
pub(crate) struct DecodeScope {
    previous: Option<DecodeContext>,
}

impl DecodeScope {
    /// `precounted` must be counted for `runtime` by its node.
    pub(crate) fn enter(runtime: Option<Runtime>, precounted: Precounted) -> DecodeScope {
        let context = DecodeContext { runtime, precounted };
        let previous = DECODING.with(|slot| slot.borrow_mut().replace(context));
        DecodeScope { previous }
    }
}

impl Drop for DecodeScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: the thread's locals may be gone if this runs while the
        // thread exits; the references then cannot be released (a leak, never
        // a double release).
        let ours = DECODING.try_with(|slot| std::mem::replace(&mut *slot.borrow_mut(), previous)).ok().flatten();
        let Some(DecodeContext { runtime, precounted }) = ours else { return };
        let left = precounted.into_leftovers();
        if left.is_empty() {
            return;
        }
        if let Some(runtime) = runtime {
            runtime.release_all(&left);
        }
    }
}

/// One counted reference to an object. `ObjectRef` clones share one handle;
/// the node frees the object when every handle in every process is gone and
/// no task needs it.
#[doc(hidden)]
pub struct RefHandle {
    pub(crate) id: u64,
    pub(crate) runtime: Runtime,
    counted: bool,
}

impl Drop for RefHandle {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        match &self.runtime {
            Runtime::Local(node) => node.release(self.id),
            Runtime::Client(client) => client.push_ref_op(RefOp::Release(self.id)),
            #[cfg(feature = "ray")]
            Runtime::Ray(cluster) => cluster.release(self.id),
        }
    }
}
