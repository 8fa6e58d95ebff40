//! A worker program that links the test crate's shared remote functions
//! (`shoal_tests::nested`) and nothing else, for a standalone node's
//! `--worker-program`: drivers built from other code call those through
//! it (`driver_worker_program.rs`).

fn main() {
    // Referenced, so the linker keeps the module's registry entries.
    let _ = shoal_tests::nested::square(2) + shoal_tests::nested::fib(2);
    shoal::worker_main();
}
