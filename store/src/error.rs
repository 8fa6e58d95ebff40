use thiserror::Error;

/// Why a value could not be encoded into the object format.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// serde reported an error, or the value uses a shape the format cannot hold
    /// (for example a sequence of unknown length).
    #[error("cannot encode value: {0}")]
    Unsupported(String),
}

impl serde::ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError::Unsupported(msg.to_string())
    }
}

/// Why bytes could not be decoded as the requested type.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The header, the buffer table or a length/offset is inconsistent.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// The object was written as a different type than the one requested.
    #[error("type mismatch: object was written as another type than `{expected}`")]
    TypeMismatch {
        /// The type the reader asked for.
        expected: &'static str,
    },
    /// The payload did not decode as the requested type.
    #[error("cannot decode value as `{expected}`: {message}")]
    Invalid {
        /// The type the reader asked for.
        expected: &'static str,
        /// serde's account of what went wrong.
        message: String,
    },
}

/// Errors of the arena and its allocator.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No free block is large enough for the request.
    #[error(
        "object store full: {requested} bytes requested, {free} of {capacity} bytes free (largest free block {largest_free})"
    )]
    Full {
        /// Bytes asked for (after alignment).
        requested: u64,
        /// Total arena size.
        capacity: u64,
        /// Bytes free in all.
        free: u64,
        /// The largest single free block.
        largest_free: u64,
    },
    /// An offset and length that do not lie inside the arena.
    #[error("range {offset}+{len} lies outside the {arena}-byte arena")]
    OutOfRange {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// Arena size.
        arena: u64,
    },
    /// The range lies beyond what the host could reserve for the arena.
    #[error("the host could not provide the store's memory: {wanted} bytes needed, {reserved} reserved ({reason})")]
    Unreserved {
        /// End of the range that was to be written.
        wanted: u64,
        /// Bytes reserved.
        reserved: u64,
        /// Why reservation stopped.
        reason: String,
    },
    /// Creating, sizing, sealing or mapping the arena failed.
    #[error("arena: {context}: {source}")]
    Arena {
        /// What was being done.
        context: &'static str,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}
