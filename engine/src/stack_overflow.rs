//! A worker's report of a stack overflow on its task thread.
//!
//! std installs a handler that prints "thread '…' has overflowed its stack"
//! before every Rust `main`; a worker never reaches `main` (see `worker.rs`),
//! so without this a runaway recursion in a task is a bare SIGSEGV. The
//! handler here tells an overflow (a fault just below the task thread's
//! stack) from any other fault, prints std's message for the first and
//! aborts, and gives every other fault its default action. The node relays
//! a worker's stderr and puts its last lines in `Error::WorkerDied`.

use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Addresses whose fault is an overflow of the task thread's stack: the
/// kernel's guard gap (256 pages by default) on either side of the lowest
/// address glibc reports for it (below it for a stack limit, above it for
/// an unlimited one, where glibc reports the end of the mapping below).
static GUARD_LOW: AtomicUsize = AtomicUsize::new(0);
static GUARD_HIGH: AtomicUsize = AtomicUsize::new(0);
const GUARD_GAP: usize = 1 << 20;
/// The handler's own stack: the faulting one has no room left.
const ALT_STACK: usize = 64 * 1024;

const MESSAGE: &[u8] =
    b"\nthread 'main' has overflowed its stack (a shoal worker's task thread)\nfatal runtime error: stack overflow, aborting\n";

/// Install the handler for the calling thread, the worker's task thread.
/// Best effort: a failure leaves faults with their default action.
pub(crate) fn install() {
    let Some(low) = stack_low() else { return };
    GUARD_LOW.store(low.saturating_sub(GUARD_GAP), Ordering::Relaxed);
    GUARD_HIGH.store(low.saturating_add(GUARD_GAP), Ordering::Relaxed);
    let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK].into_boxed_slice());
    let alt = libc::stack_t { ss_sp: stack.as_mut_ptr().cast(), ss_flags: 0, ss_size: stack.len() };
    // SAFETY: `alt` describes memory leaked above, so it stays valid and
    // unused by anything else for the life of the process.
    if unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) } != 0 {
        return;
    }
    let action =
        SigAction::new(SigHandler::SigAction(on_fault), SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK, SigSet::empty());
    for signal in [Signal::SIGSEGV, Signal::SIGBUS] {
        // SAFETY: `on_fault` calls only async-signal-safe functions (write,
        // abort, signal, raise) and reads two atomics.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// The lowest address of the calling thread's stack.
fn stack_low() -> Option<usize> {
    // SAFETY: (1) a zeroed `pthread_attr_t` is only an out-parameter for
    // `pthread_getattr_np`, which initialises it; (2) it is destroyed once,
    // after `pthread_attr_getstack` read it, and only if it was initialised.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && !addr.is_null()).then_some(addr as usize)
    }
}

extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel hands an `SA_SIGINFO` handler a valid `siginfo_t`.
    let address = unsafe { (*info).si_addr() } as usize;
    if (GUARD_LOW.load(Ordering::Relaxed)..GUARD_HIGH.load(Ordering::Relaxed)).contains(&address) {
        // SAFETY: write(2) of a static buffer and abort(3) are async-signal-safe.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::abort();
        }
    }
    // Any other fault: the default action, now (a raised signal would not
    // come back on its own, a real fault would).
    // SAFETY: signal(2) and raise(3) are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
