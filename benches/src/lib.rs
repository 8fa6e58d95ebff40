//! shoal's criterion micro-benchmarks, one file per hot path under `benches/`:
//!
//! * `ipc_frame`: encoding a frame and reading it back with `FrameReader`;
//! * `store_alloc`: the arena's offset allocator, steady churn and many live
//!   blocks of mixed sizes;
//! * `store_format`: the object format — measure and write, fingerprint
//!   reads, decoding small values, in-place array views, owned-array copies;
//! * `engine_submit`: a real embedded node — task submission, round trips,
//!   `put` then `get`.
//!
//! Run them with `cargo bench -p shoal-benches` (add `-- --quick` for a short
//! run, or a name filter such as `-- store_format`). Whole-system figures —
//! throughput, bandwidth, the comparison with Ray — come from `shoal bench`.
//!
//! The library itself is empty: it exists so the package has a target besides
//! its benches.
