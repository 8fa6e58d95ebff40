//! Arrays into the store with one copy or none, and read back without copies.
//!
//! A matrix is built in place in the store (`put_with`), cut into row blocks
//! that are stored from strided views while the driver keeps its data
//! (`put_array`), and summed by tasks that read them in place
//! (`SharedArray`). Then a batch of images, a struct with arrays nested in a
//! `Vec`, is stored whole and read by a task through its checked view twin.
//!
//! ```text
//! cargo run --release -p shoal --example array_pipeline
//! ```

use std::time::Instant;

use ndarray::{Array2, Ix2, s};
use serde::{Deserialize, Serialize};
use shoal::{ObjectRef, SharedArray};

/// Sum and largest element of one block, read in place.
#[shoal::remote]
fn block_stats(block: SharedArray<f64, Ix2>) -> (f64, f64) {
    let view = block.view();
    (view.sum(), view.fold(f64::MIN, |m, &x| m.max(x)))
}

/// A batch of images, as a training loop would hand it around.
#[derive(Clone, Serialize, Deserialize)]
struct Batch {
    name: String,
    images: Vec<Array2<f32>>,
}

/// The same object, its images viewed in the store instead of copied.
#[derive(Serialize, Deserialize, shoal::ViewOf)]
#[view_of(Batch)]
struct BatchView {
    name: String,
    images: Vec<SharedArray<f32, Ix2>>,
}

/// Mean brightness of every image of a batch, without copying one.
#[shoal::remote]
fn image_means(batch: BatchView) -> (String, Vec<f32>) {
    let means = batch.images.iter().map(|im| im.view().mean().unwrap_or(0.0)).collect();
    (batch.name, means)
}

fn main() -> anyhow::Result<()> {
    let _node = shoal::init(shoal::Config::default().workers(2).store_bytes(512 << 20))?;
    let (rows, cols) = (4096, 2048);
    // Rates include the store's first use of its memory (pages reserved on
    // demand) and, for put_with, computing every element.
    let gigabytes = |bytes: usize, t: Instant| bytes as f64 / t.elapsed().as_secs_f64() / 1e9;

    // 64 MB built straight in the store: no copy at all.
    let t = Instant::now();
    let matrix: ObjectRef<Array2<f64>> = shoal::put_with((rows, cols), |mut m| {
        m.indexed_iter_mut().for_each(|((i, j), x)| *x = ((i * 31 + j * 17) % 1000) as f64);
    })?;
    println!("put_with: {rows}x{cols} f64 filled in place at {:.1} GB/s", gigabytes(rows * cols * 8, t));

    // Every other column of each row block, stored from a strided view: one
    // copy each, and the shared matrix stays as it was.
    let shared = shoal::get_shared(&matrix)?;
    let t = Instant::now();
    let blocks: Vec<ObjectRef<Array2<f64>>> = (0..4)
        .map(|b| shoal::put_array(&shared.view().slice(s![b * rows / 4..(b + 1) * rows / 4, ..;2])))
        .collect::<shoal::Result<_>>()?;
    println!(
        "put_array: 4 strided blocks, {} MB, at {:.1} GB/s",
        rows * cols * 4 / 1_000_000,
        gigabytes(rows * cols * 4, t)
    );

    let stats = shoal::get_all(&blocks.iter().map(block_stats::remote).collect::<Vec<_>>())?;
    let total: f64 = stats.iter().map(|(sum, _)| sum).sum();
    let expected: f64 = shared.view().slice(s![.., ..;2]).sum();
    assert_eq!(total, expected, "the blocks hold every other column");
    println!("block sums add up to {total} (max element {})", stats.iter().map(|s| s.1).fold(0.0, f64::max));

    // Arrays nested in a value: copied whole, and read through the view twin.
    let batch = Batch {
        name: "batch-0".into(),
        images: (0..8).map(|k| Array2::from_shape_fn((512, 512), |(i, j)| ((i * (k + 1) + j) % 200) as f32)).collect(),
    };
    let t = Instant::now();
    let stored = shoal::put(batch.clone())?;
    println!("put: a batch of 8 images ({} MB) at {:.1} GB/s", 8 * 512 * 512 * 4 / 1_000_000, gigabytes(8 << 20, t));
    let (name, means) = shoal::get(&image_means::remote(&stored))?;
    let local: Vec<f32> = batch.images.iter().map(|im| im.mean().unwrap_or(0.0)).collect();
    assert_eq!(means, local);
    println!("{name}: image means {means:?}");
    Ok(())
}
