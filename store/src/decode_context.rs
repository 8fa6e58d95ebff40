//! What a decode in progress makes available beyond the payload: the
//! object's validated array buffers and the keepalive that views hold, in a
//! thread-local stack, and the owned arrays built from those buffers.
//!
//! Below both the decoder (`de.rs`, `shared_array.rs`) and the object format
//! (`format.rs`), which validates the buffers and enters the context; it
//! knows neither the header nor serde.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use ndarray::{Array, Dimension, IxDyn};

use crate::element::{DType, Element};

/// Something that keeps an object (and the mapping it lives in) alive while a
/// [`SharedArray`](crate::SharedArray) views it. The engine supplies it.
pub type Keepalive = Arc<dyn Any + Send + Sync>;

/// A validated array buffer inside an object being decoded.
#[derive(Debug, Clone)]
pub(crate) struct BufferView {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub ptr: *const u8,
    pub len: usize,
}

impl BufferView {
    /// The buffer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: (1) `ptr..ptr+len` was checked by `parse` to lie inside the
        // object slice handed to `decode`; (2) a `BufferView` lives only in the
        // decode context frame, which `decode` pops before that slice's borrow
        // ends, so the bytes are still borrowed when this runs.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// What a decode makes available to `Deserialize` impls that need more than
/// the payload: the object's buffers and its keepalive.
pub(crate) struct DecodeContext {
    pub(crate) buffers: Vec<BufferView>,
    pub(crate) keepalive: Option<Keepalive>,
}

thread_local! {
    static CONTEXT: RefCell<Vec<DecodeContext>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with the innermost decode context, if a decode is in progress on
/// this thread.
pub(crate) fn with_context<R>(f: impl FnOnce(Option<&DecodeContext>) -> R) -> R {
    CONTEXT.with(|stack| f(stack.borrow().last()))
}

/// Make `context` the innermost decode context of this thread until the
/// returned guard is dropped.
pub(crate) fn enter(context: DecodeContext) -> ContextGuard {
    CONTEXT.with(|stack| stack.borrow_mut().push(context));
    ContextGuard
}

/// Pops the decode context [`enter`] pushed.
pub(crate) struct ContextGuard;

impl Drop for ContextGuard {
    fn drop(&mut self) {
        CONTEXT.with(|stack| stack.borrow_mut().pop());
    }
}

/// An owned `Array<A, D>` holding a checked buffer's elements (one copy,
/// parallel when large).
pub(crate) fn owned_array<A: Element, D: Dimension>(buffer: &BufferView) -> Result<Array<A, D>, String> {
    if !(buffer.dtype == A::DTYPE || (buffer.dtype == DType::Empty && buffer.len == 0)) {
        return Err(format!("array holds {:?}, not {:?}", buffer.dtype, A::DTYPE));
    }
    let dim = D::from_dimension(&IxDyn(&buffer.shape))
        .ok_or_else(|| format!("array has {} dimensions, the type another number", buffer.shape.len()))?;
    let elements = crate::copy::to_vec::<A>(buffer.bytes());
    Array::from_shape_vec(dim, elements).map_err(|e| e.to_string())
}
