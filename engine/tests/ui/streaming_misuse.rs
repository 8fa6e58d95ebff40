// A streaming function must say what it yields; its items must be values.

#[derive(Debug)]
struct Opaque;

#[shoal::remote(streaming)]
fn not_an_iterator(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[shoal::remote(streaming, num_returns = 2)]
fn two_streams() -> impl Iterator<Item = u64> {
    0..2
}

#[shoal::remote(streaming)]
fn opaque_items(n: usize) -> impl Iterator<Item = Opaque> {
    (0..n).map(|_| Opaque)
}

fn main() {
    let _ = opaque_items::remote(3);
}
