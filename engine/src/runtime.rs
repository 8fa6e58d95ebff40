//! The per-process runtime: which node this process talks to, and how an
//! object handle reaches it.
//!
//! In the driver the node lives in this process and handles call it directly;
//! in a worker they batch reference changes into the worker's next message.

use std::sync::{Arc, RwLock};

use shoal_store::Arena;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::protocol::RefOp;
use crate::worker::WorkerClient;

/// This process's connection to its node.
#[derive(Clone)]
pub(crate) enum Runtime {
    /// The driver: the node runs in this process.
    Driver(Arc<Node>),
    /// A worker process.
    Worker(Arc<WorkerClient>),
}

static CURRENT: RwLock<Option<Runtime>> = RwLock::new(None);

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
        Ok(())
    }

    /// Forget the installed runtime (the node is shutting down).
    pub(crate) fn uninstall() {
        CURRENT.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The arena mapping of this process.
    pub(crate) fn arena(&self) -> &Arc<Arena> {
        match self {
            Runtime::Driver(node) => node.arena(),
            Runtime::Worker(worker) => worker.arena(),
        }
    }

    /// A new counted handle to object `id` (the count rises by one). A
    /// handle to an id the node does not know counts nothing and releases
    /// nothing; reading through it gives `ObjectNotFound`.
    pub(crate) fn acquire(&self, id: u64) -> Arc<RefHandle> {
        let counted = match self {
            Runtime::Driver(node) => node.acquire(id),
            // The node ignores (and will not release) an unknown id.
            Runtime::Worker(worker) => {
                worker.push_ref_op(RefOp::Acquire(id));
                true
            }
        };
        Arc::new(RefHandle { id, runtime: self.clone(), counted })
    }

    /// Wrap a reference the node already counted for us (a new object).
    pub(crate) fn adopt(&self, id: u64) -> Arc<RefHandle> {
        Arc::new(RefHandle { id, runtime: self.clone(), counted: true })
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
            Runtime::Driver(node) => node.release(self.id),
            Runtime::Worker(worker) => worker.push_ref_op(RefOp::Release(self.id)),
        }
    }
}
