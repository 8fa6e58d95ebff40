//! Ray's parameter server, on shoal's actors: a linear model fitted by
//! gradient descent, its weights held by one actor, its gradients computed
//! by tasks that read their shard of the data in place.
//!
//! First synchronously (each step averages every shard's gradient: the
//! whole loop is submitted at once, each step's tasks waiting for the
//! previous step's weights), then asynchronously (workers, themselves
//! tasks, find the server by name, pull weights and push gradients at
//! their own pace).
//!
//! `cargo run --release -p shoal --example parameter_server`

use std::time::Instant;

use ndarray::{Array1, Array2, Ix1, Ix2};
use serde::{Deserialize, Serialize};
use shoal::{ActorHandle, ObjectRef, SharedArray};

/// The server: the weights, and the step size.
struct ParameterServer {
    weights: Array1<f64>,
    rate: f64,
    updates: u64,
}

#[shoal::actor]
impl ParameterServer {
    pub fn new(dim: usize, rate: f64) -> Self {
        ParameterServer { weights: Array1::zeros(dim), rate, updates: 0 }
    }

    pub fn weights(&self) -> Array1<f64> {
        self.weights.clone()
    }

    /// One synchronous step: the average of the gradients given.
    pub fn apply(&mut self, gradients: Vec<ObjectRef<Array1<f64>>>) -> Array1<f64> {
        let gradients = shoal::get_all(&gradients).expect("the step's gradients");
        let mean = gradients.iter().fold(Array1::zeros(self.weights.len()), |sum, g| sum + g) / gradients.len() as f64;
        self.push(mean);
        self.weights.clone()
    }

    /// One asynchronous update; returns how many there were.
    pub fn push(&mut self, gradient: Array1<f64>) -> u64 {
        self.weights.scaled_add(-self.rate, &gradient);
        self.updates += 1;
        self.updates
    }
}

/// A shard of the data set.
#[derive(Serialize, Deserialize)]
struct Shard {
    x: Array2<f64>,
    y: Array1<f64>,
}

/// The same shard read in place.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Shard)]
struct ShardView {
    x: SharedArray<f64, Ix2>,
    y: SharedArray<f64, Ix1>,
}

/// The gradient of the mean squared error on one shard.
fn gradient_of(weights: &Array1<f64>, shard: &ShardView) -> Array1<f64> {
    let (x, y) = (shard.x.view(), shard.y.view());
    let residual = x.dot(weights) - y;
    x.t().dot(&residual) * (2.0 / y.len() as f64)
}

#[shoal::remote]
fn gradient(weights: Array1<f64>, shard: ShardView) -> Array1<f64> {
    gradient_of(&weights, &shard)
}

/// An asynchronous worker: `steps` pulls and pushes against the server
/// named `ps`; returns the last update count it saw.
#[shoal::remote]
fn async_worker(shard: ShardView, steps: u32) -> u64 {
    let server: ActorHandle<ParameterServer> = shoal::get_actor("ps").expect("the server by name");
    let mut seen = 0;
    for _ in 0..steps {
        let weights = shoal::get(&server.weights()).expect("the weights");
        seen = shoal::get(&server.push(gradient_of(&weights, &shard))).expect("a push");
    }
    seen
}

fn loss(shards: &[Shard], weights: &Array1<f64>) -> f64 {
    let (sum, n) = shards.iter().fold((0.0, 0), |(sum, n), s| {
        let r = s.x.dot(weights) - &s.y;
        (sum + r.dot(&r), n + s.y.len())
    });
    sum / n as f64
}

fn main() -> anyhow::Result<()> {
    const DIM: usize = 16;
    const SHARDS: usize = 4;
    const ROWS: usize = 20_000;
    let node = shoal::init(shoal::Config::default())?;

    // y = x · w_true (+ a little noise), in shards.
    let truth = Array1::from_shape_fn(DIM, |i| i as f64 / DIM as f64 - 0.5);
    let mut seed = 7u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let shards: Vec<Shard> = (0..SHARDS)
        .map(|_| {
            let x = Array2::from_shape_fn((ROWS, DIM), |_| noise());
            let y = x.dot(&truth) + Array1::from_shape_fn(ROWS, |_| noise() * 0.01);
            Shard { x, y }
        })
        .collect();
    let stored: Vec<ObjectRef<Shard>> =
        shards.iter().map(|s| shoal::put(Shard { x: s.x.clone(), y: s.y.clone() })).collect::<Result<_, _>>()?;
    let start_loss = loss(&shards, &Array1::zeros(DIM));

    // Synchronous: the whole loop is a graph, submitted before any of it runs.
    let t = Instant::now();
    let server = ParameterServer::remote(DIM, 0.5);
    let mut weights: ObjectRef<Array1<f64>> = server.weights();
    for _ in 0..40 {
        let gradients: Vec<ObjectRef<Array1<f64>>> = stored.iter().map(|s| gradient::remote(&weights, s)).collect();
        weights = server.apply(gradients);
    }
    let fitted = shoal::get(&weights)?;
    let sync_loss = loss(&shards, &fitted);
    println!(
        "synchronous: 40 steps × {SHARDS} shards in {:.0} ms; loss {start_loss:.4} → {sync_loss:.6}",
        t.elapsed().as_secs_f64() * 1e3
    );
    anyhow::ensure!(sync_loss < start_loss / 100.0, "the synchronous fit did not converge");
    drop(server);

    // Asynchronous: a named server, workers that find it themselves.
    let t = Instant::now();
    let server = ParameterServer::options().name("ps").remote(DIM, 0.25);
    let workers: Vec<ObjectRef<u64>> = stored.iter().map(|s| async_worker::remote(s, 40)).collect();
    let last_seen = shoal::get_all(&workers)?;
    let fitted = shoal::get(&server.weights())?;
    let async_loss = loss(&shards, &fitted);
    println!(
        "asynchronous: {SHARDS} workers × 40 pushes in {:.0} ms (the last saw update {}); loss {start_loss:.4} → {async_loss:.6}",
        t.elapsed().as_secs_f64() * 1e3,
        last_seen.iter().max().copied().unwrap_or(0)
    );
    anyhow::ensure!(async_loss < start_loss / 100.0, "the asynchronous fit did not converge");
    for actor in node.actors() {
        println!("actor {} {:?} pid {:?}: {:?}", actor.class, actor.name, actor.pid, actor.state);
    }
    shoal::kill(&server)?;
    Ok(())
}
