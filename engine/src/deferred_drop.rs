//! Dropping large values off the caller's thread.
//!
//! Freeing a large heap buffer is not free: the allocator returns its pages
//! to the kernel, ~70 µs per MB on the machines measured (an 800 MB array:
//! ~55 ms, more than copying it into the store). `put` of an owned value that
//! no longer needs it hands it here, and one background thread per process
//! drops it while the caller goes on.

use std::sync::OnceLock;

use crossbeam_channel::Sender;

/// Values of at least this many bytes in the store (4 MiB) are dropped
/// off-thread.
pub(crate) const DEFER_MIN_BYTES: usize = 4 << 20;

/// Drop `value` on the process's dropping thread (or here, if that thread
/// cannot start).
pub(crate) fn drop_later<T: Send + 'static>(value: T) {
    static DROPPER: OnceLock<Option<Sender<Box<dyn Send>>>> = OnceLock::new();
    let dropper = DROPPER.get_or_init(|| {
        // Bounded: a caller that puts faster than memory can be freed waits
        // here rather than piling up garbage.
        let (tx, rx) = crossbeam_channel::bounded::<Box<dyn Send>>(4);
        std::thread::Builder::new().name("shoal-drop".into()).spawn(move || rx.iter().for_each(drop)).ok()?;
        Some(tx)
    });
    match dropper {
        Some(tx) => {
            if let Err(returned) = tx.send(Box::new(value)) {
                drop(returned);
            }
        }
        None => drop(value),
    }
}
