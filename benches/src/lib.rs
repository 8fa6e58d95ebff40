//! shoal's benchmarks. `quickbench` prints the first figures (task round
//! trips, async batches, `put` bandwidth, zero-copy `get`) beside this
//! machine's memcpy rate measured in the same run.
