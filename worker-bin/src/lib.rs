//! The remote functions and actors of the `shoal` command: its demo job's
//! and its benchmarks'. They live in this library, not in the binary, so
//! that the Ray backend's worker library is this crate built as a `cdylib`
//! (`shoal bench --ray`): the same table as the binary.

use std::sync::Mutex;

use ndarray::{ArcArray1, Ix1};
use shoal::{ObjectRef, SharedArray};

/// The seed's first remote function.
#[shoal::remote]
pub fn increment(n: i64) -> i64 {
    n + 1
}

/// Sum an array that lives in the object store, reading it in place.
#[shoal::remote]
pub fn total(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

/// Ray's `small_value`: a task that returns a tiny value.
#[shoal::remote]
pub fn small_value() -> [u8; 2] {
    *b"ok"
}

/// `multi client tasks async`'s client: submit `n` no-op tasks, then get
/// them all (Ray's `Actor.small_value_batch`); returns `n`.
#[shoal::remote]
pub fn client_tasks_async(n: u32) -> u32 {
    submit_and_get(n as usize).expect("children of a client task");
    n
}

/// `nested tasks sync`: submit a no-op child and get it, `n` times, one at a
/// time; returns `n`.
#[shoal::remote]
pub fn nested_sync(n: u32) -> u32 {
    for _ in 0..n {
        shoal::get(&small_value::remote()).expect("a nested child");
    }
    n
}

/// This worker process's array for `multi client put gigabytes`: built by
/// the first put task the process runs (the warm-up), shared by the later
/// ones, so the timed calls copy and never fill. Each process that ran one
/// keeps it (a quarter of `--large-mb`) until the node stops.
pub static PUT_TEMPLATE: Mutex<Option<ArcArray1<f64>>> = Mutex::new(None);

/// `multi client put gigabytes`' client: `put` an array of `len` f64s (its
/// own, filled with data; the ref dropped at once, as Ray's `do_put` does).
#[shoal::remote]
pub fn client_put(len: usize) -> usize {
    let array = {
        let mut template = PUT_TEMPLATE.lock().expect("put template lock");
        if template.as_ref().is_none_or(|t| t.len() != len) {
            *template = None; // free the old one before filling a new one
            *template = Some(ArcArray1::from_elem(len, 1.5));
        }
        template.clone().expect("filled above")
    };
    drop(shoal::put(array).expect("put from a client task"));
    len
}

/// Ray's `Actor` of its actor benchmarks: answers tiny values.
#[derive(Default)]
pub struct BenchActor;

#[shoal::actor]
impl BenchActor {
    /// A server with no state.
    pub fn new() -> Self {
        BenchActor
    }

    /// Ray's `small_value`.
    pub fn small_value(&self) -> [u8; 2] {
        *b"ok"
    }

    /// Ray's `small_value_arg`: takes an argument (an object) and ignores it.
    pub fn small_value_arg(&self, _x: i64) -> [u8; 2] {
        *b"ok"
    }
}

/// Ray's `Client` actor: calls its servers.
pub struct BenchClient {
    /// The servers it calls.
    servers: Vec<shoal::ActorHandle<BenchActor>>,
}

#[shoal::actor]
impl BenchClient {
    /// A client of `servers`.
    pub fn new(servers: Vec<shoal::ActorHandle<BenchActor>>) -> Self {
        BenchClient { servers }
    }

    /// Call `small_value` `n` times on each server, then get them all; returns the calls.
    pub fn small_value_batch(&self, n: u32) -> u32 {
        let refs: Vec<ObjectRef<[u8; 2]>> =
            self.servers.iter().flat_map(|s| (0..n).map(move |_| s.small_value())).collect();
        shoal::get_all(&refs).expect("the servers' answers");
        refs.len() as u32
    }

    /// The same with an argument: one object `put` once and passed to every call.
    pub fn small_value_batch_arg(&self, n: u32) -> u32 {
        let x = shoal::put(0i64).expect("put the argument");
        let refs: Vec<ObjectRef<[u8; 2]>> =
            self.servers.iter().flat_map(|s| (0..n).map(|_| s.small_value_arg(&x)).collect::<Vec<_>>()).collect();
        shoal::get_all(&refs).expect("the servers' answers");
        refs.len() as u32
    }
}

/// `n:n actor calls async`'s task: `n` calls spread over the actors, then
/// get them all; returns the calls.
#[shoal::remote]
pub fn call_actors(actors: Vec<shoal::ActorHandle<BenchActor>>, n: u32) -> u32 {
    let refs: Vec<ObjectRef<[u8; 2]>> = (0..n as usize).map(|i| actors[i % actors.len()].small_value()).collect();
    shoal::get_all(&refs).expect("the actors' answers");
    n
}

/// A task that waits `ms` milliseconds: `cancel pending`'s gate.
#[shoal::remote]
pub fn gate(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

/// `cancel pending`'s task: waits for the gate, never runs.
#[shoal::remote]
pub fn after_gate(_gate: u64) -> [u8; 2] {
    *b"ok"
}

/// `streaming items`' task: yields `n` small items.
#[shoal::remote(streaming)]
pub fn stream_items(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

/// One link of the dependent chain.
#[shoal::remote]
pub fn chain_step(n: i64) -> i64 {
    n + 1
}

/// Sum an array in the object store, in place (the `array tasks` body).
#[shoal::remote]
pub fn sum_in_place(a: SharedArray<f64, Ix1>) -> f64 {
    a.view().sum()
}

/// Submit `n` tasks, then get them all.
pub fn submit_and_get(n: usize) -> shoal::Result<()> {
    let refs: Vec<ObjectRef<[u8; 2]>> = (0..n).map(|_| small_value::remote()).collect();
    shoal::get_all(&refs)?;
    Ok(())
}
