//! Copying large byte ranges into the arena with several threads.
//!
//! One core's `memcpy` is the ceiling for a single-threaded `put` (see
//! `shoal bench`'s `machine memcpy gigabytes`); a few cores copying disjoint
//! parts go past it, until memory bandwidth stops them. Threads are scoped
//! and spawned per copy: tens of microseconds, against tens of milliseconds
//! for the sizes that use them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Copies smaller than this use one thread.
const PARALLEL_MIN: usize = 32 << 20;
/// Each thread copies at least this much.
const PER_THREAD_MIN: usize = 16 << 20;
/// At most this many threads copy one value.
const MAX_THREADS: usize = 8;

/// Threads this process may run at once (read once: it reads cgroup files).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Copy threads running in this process, the callers included.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Threads one copy holds, counted in [`BUSY`] until dropped.
struct CopyThreads {
    threads: usize,
}

impl CopyThreads {
    /// One thread (the caller's) always; up to `wanted` while the process's
    /// copies together stay within its cores.
    fn claim(wanted: usize) -> CopyThreads {
        let mut busy = BUSY.load(Ordering::Relaxed);
        loop {
            let threads = wanted.min(cores().saturating_sub(busy)).max(1);
            match BUSY.compare_exchange_weak(busy, busy + threads, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return CopyThreads { threads },
                Err(now) => busy = now,
            }
        }
    }
}

impl Drop for CopyThreads {
    fn drop(&mut self) {
        BUSY.fetch_sub(self.threads, Ordering::Relaxed);
    }
}

/// `dst.copy_from_slice(src)`, split across threads when it is large.
///
/// # Panics
/// If the lengths differ, as `copy_from_slice` does.
pub(crate) fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_bytes: lengths differ");
    // Copies running at once share the cores: each large one claims the
    // threads still free (itself always), so concurrent puts do not
    // oversubscribe the machine.
    let wanted = if src.len() < PARALLEL_MIN { 1 } else { cores().min(MAX_THREADS).min(src.len() / PER_THREAD_MIN) };
    if wanted <= 1 {
        dst.copy_from_slice(src);
        return;
    }
    let claim = CopyThreads::claim(wanted);
    let threads = claim.threads;
    if threads <= 1 {
        dst.copy_from_slice(src);
        return;
    }
    // Page-sized parts, so no two threads touch one page; every thread
    // (this one too) takes parts until none is left, so a thread that cannot
    // start only leaves more to the others.
    let part = src.len().div_ceil(threads).next_multiple_of(4096);
    let parts = std::sync::Mutex::new(dst.chunks_mut(part).zip(src.chunks(part)));
    let copy_parts = || {
        loop {
            let next = parts.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((d, s)) = next else { return };
            d.copy_from_slice(s);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new().name("shoal-copy".into()).spawn_scoped(scope, copy_parts);
        }
        copy_parts();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy tests count [`BUSY`], so they run one at a time.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn large_copies_are_exact_across_thread_boundaries() {
        let _serial = serial();
        // Not a multiple of the part size, so the last part is short.
        let len = PARALLEL_MIN * 2 + 12_345;
        let src: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut dst = vec![0u8; len];
        copy_bytes(&mut dst, &src);
        assert!(dst == src);
        let mut small = [0u8; 3];
        copy_bytes(&mut small, &[1, 2, 3]);
        assert_eq!(small, [1, 2, 3]);
    }

    #[test]
    fn concurrent_copies_share_the_cores_and_give_their_threads_back() {
        let _serial = serial();
        let len = PARALLEL_MIN * 2;
        let src = vec![7u8; len];
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut dst = vec![0u8; len];
                    copy_bytes(&mut dst, &src);
                    assert!(dst == src);
                });
            }
        });
        assert_eq!(BUSY.load(Ordering::Relaxed), 0, "every claim was given back");
        let first = CopyThreads::claim(usize::MAX);
        assert_eq!(first.threads, cores(), "an idle process gives one copy every core");
        let second = CopyThreads::claim(usize::MAX);
        assert_eq!(second.threads, 1, "a copy while the cores are taken uses its own thread only");
        drop((first, second));
        assert_eq!(BUSY.load(Ordering::Relaxed), 0);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn different_lengths_panic_like_copy_from_slice() {
        copy_bytes(&mut [0u8; 2], &[1, 2, 3]);
    }
}
