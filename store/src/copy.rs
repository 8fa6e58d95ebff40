//! Copying large byte ranges into and out of the arena with several threads.
//!
//! One core's `memcpy` is the ceiling for a single-threaded `put` (see
//! `shoal bench`'s `machine memcpy gigabytes`); a few cores copying disjoint
//! parts go past it, until memory bandwidth stops them. Threads are scoped
//! and spawned per copy: tens of microseconds, against tens of milliseconds
//! for the sizes that use them.

use std::sync::OnceLock;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension};

use crate::element::{DType, Element};
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
    let wanted = if src.len() < PARALLEL_MIN { 1 } else { threads_for(src.len(), PER_THREAD_MIN) };
    if wanted <= 1 {
        dst.copy_from_slice(src);
        return;
    }
    // Page-sized parts, so no two threads touch one page.
    let part = src.len().div_ceil(wanted).next_multiple_of(4096);
    in_parallel(dst.chunks_mut(part).zip(src.chunks(part)), wanted, |(d, s)| copy_streaming(d, s));
}

/// `dst.copy_from_slice(src)` for large copies: the destination is written
/// with non-temporal stores, which skip reading each line into the cache
/// first (glibc's `memcpy` only streams copies above a threshold, here
/// 240 MiB, so the parts of a parallel copy would each read their
/// destination once for nothing: measured 13–14 GB/s against 19–22 GB/s).
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_streaming: lengths differ");
    #[cfg(target_arch = "x86_64")]
    {
        let head = dst.as_ptr().align_offset(64).min(dst.len());
        let (dst_head, dst_rest) = dst.split_at_mut(head);
        let (src_head, src_rest) = src.split_at(head);
        dst_head.copy_from_slice(src_head);
        let body = dst_rest.len() / 64 * 64;
        let (dst_body, dst_tail) = dst_rest.split_at_mut(body);
        let (src_body, src_tail) = src_rest.split_at(body);
        if body > 0 {
            stream_lines(dst_body, src_body);
        }
        dst_tail.copy_from_slice(src_tail);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Copy whole 64-byte lines into a 64-byte aligned destination with
/// non-temporal stores, then fence, so the bytes are ordered before whatever
/// this thread does next (a join, a lock, a message that seals the object).
#[cfg(target_arch = "x86_64")]
fn stream_lines(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    assert!(dst.len() == src.len() && dst.len() % 64 == 0 && dst.as_ptr().align_offset(64) == 0);
    for (d, s) in dst.chunks_exact_mut(64).zip(src.chunks_exact(64)) {
        let (d, s) = (d.as_mut_ptr().cast::<__m128i>(), s.as_ptr().cast::<__m128i>());
        // SAFETY: (1) SSE2 is part of the x86_64 baseline, so these
        // instructions exist on every x86_64 CPU; (2) `s` and `d` point to
        // 64 valid bytes each (whole chunks of slices of equal length), read
        // and written as four 16-byte halves at offsets 0..4; (3) loads are
        // unaligned loads; stores need 16-byte alignment, which holds since
        // `dst` is 64-byte aligned (asserted) and chunks are 64 bytes; (4)
        // `d` is borrowed mutably, so nothing else reads it meanwhile.
        unsafe {
            for i in 0..4 {
                _mm_stream_si128(d.add(i), _mm_loadu_si128(s.add(i)));
            }
        }
    }
    // SAFETY: `sfence` has no preconditions (SSE, x86_64 baseline).
    unsafe { _mm_sfence() };
}

/// The elements of `bytes` (little-endian `A`s) in a new vector, copied in
/// parallel when large, each part's destination pages faulted in ahead with
/// one `MADV_POPULATE_WRITE` instead of one fault per page.
///
/// # Panics
/// If `bytes` is not a whole number of `A`s, or holds a `bool` other than 0
/// or 1 (object buffers are checked for both before this runs).
pub(crate) fn to_vec<A: Element>(bytes: &[u8]) -> Vec<A> {
    let size = size_of::<A>();
    assert!(bytes.len() % size == 0, "to_vec: {} bytes is not a whole number of elements", bytes.len());
    if A::DTYPE == DType::Bool {
        assert!(bytes.iter().all(|&b| b <= 1), "to_vec: a bool byte other than 0 or 1");
    }
    // Zeroed and untouched: the allocator maps fresh pages for large sizes.
    let mut elements = vec![A::ZERO; bytes.len() / size];
    // SAFETY: what is written is `bytes`, valid `A`s: any bytes for the
    // numbers, 0 or 1 for `bool` (asserted above).
    let dst = unsafe { crate::element::as_bytes_mut(&mut elements) };
    if bytes.len() < PARALLEL_MIN {
        dst.copy_from_slice(bytes);
        return elements;
    }
    let threads = threads_for(bytes.len(), PER_THREAD_MIN);
    let part = bytes.len().div_ceil(threads).next_multiple_of(4096);
    in_parallel(dst.chunks_mut(part).zip(bytes.chunks(part)), threads, |(d, s)| {
        populate(d);
        copy_streaming(d, s);
    });
    elements
}

/// `dst.assign(&src)` for arrays of one shape in any memory order, split
/// along the first axis over threads when large.
pub(crate) fn assign<A: Element, D: Dimension>(mut dst: ArrayViewMut<'_, A, D>, src: ArrayView<'_, A, D>) {
    let bytes = src.len() * size_of::<A>();
    if bytes < PARALLEL_MIN || src.ndim() == 0 || src.len_of(Axis(0)) < 2 {
        dst.assign(&src);
        return;
    }
    let threads = threads_for(bytes, PER_THREAD_MIN);
    let rows = src.len_of(Axis(0)).div_ceil(threads * 4);
    let parts = dst.axis_chunks_iter_mut(Axis(0), rows).zip(src.axis_chunks_iter(Axis(0), rows));
    in_parallel(parts, threads, |(mut d, s)| d.assign(&s));
}

/// Fault in the whole pages inside `memory` for writing, in one call. A hint:
/// where the kernel refuses, the writes that follow fault them in instead.
fn populate(memory: &mut [u8]) {
    let start = (memory.as_ptr() as usize).next_multiple_of(4096);
    let end = (memory.as_ptr() as usize + memory.len()) & !4095;
    if end > start {
        // SAFETY: (1) `start..end` lies inside `memory`, which this function
        // borrows mutably, so it is mapped, writable and ours; (2)
        // MADV_POPULATE_WRITE only faults pages in as a write would, without
        // changing their contents.
        unsafe {
            nix::libc::madvise(start as *mut nix::libc::c_void, end - start, nix::libc::MADV_POPULATE_WRITE);
        }
    }
}

/// Run `work` on every item of `parts`, on up to `wanted` threads (the
/// caller's among them).
///
/// Work running at once shares the cores: each call claims the threads still
/// free (its own always), so concurrent copies do not oversubscribe the
/// machine. Every thread takes parts until none is left, so a thread that
/// cannot start only leaves more to the others.
pub(crate) fn in_parallel<I>(parts: I, wanted: usize, work: impl Fn(I::Item) + Sync)
where
    I: Iterator + Send,
    I::Item: Send,
{
    let claim = CopyThreads::claim(wanted.max(1));
    let parts = std::sync::Mutex::new(parts);
    let take_parts = || {
        loop {
            let next = parts.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some(part) = next else { return };
            work(part);
        }
    };
    if claim.threads <= 1 {
        take_parts();
        return;
    }
    std::thread::scope(|scope| {
        for _ in 1..claim.threads {
            let _ = std::thread::Builder::new().name("shoal-copy".into()).spawn_scoped(scope, take_parts);
        }
        take_parts();
    });
}

/// Threads worth running one job of `len` bytes in parts of at least
/// `per_thread` bytes.
pub(crate) fn threads_for(len: usize, per_thread: usize) -> usize {
    cores().min(MAX_THREADS).min(len / per_thread.max(1)).max(1)
}

/// Tests that count [`BUSY`], or start parallel work, run one at a time.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn streaming_copies_are_exact_at_any_alignment() {
        let src: Vec<u8> = (0..10_000).map(|i| (i * 7 % 253) as u8).collect();
        let mut dst = vec![0u8; 10_100];
        for (start, len) in [(0, 10_000), (1, 9_000), (63, 64), (5, 63), (17, 0), (64, 6_400)] {
            dst.fill(0);
            copy_streaming(&mut dst[start..start + len], &src[..len]);
            assert!(dst[start..start + len] == src[..len], "{start}+{len}");
            assert!(dst[..start].iter().chain(&dst[start + len..]).all(|&b| b == 0), "{start}+{len}: outside");
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn different_lengths_panic_like_copy_from_slice() {
        copy_bytes(&mut [0u8; 2], &[1, 2, 3]);
    }
}
