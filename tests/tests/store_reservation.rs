//! The store reserves memory ahead of use, not all at start: an idle default
//! node holds only its margin; a large put is reserved before it is written
//! (and so never faults, nor raises SIGBUS), and the margin grows with it.

use std::time::{Duration, Instant};

use ndarray::Array1;

const MIB: u64 = 1 << 20;

/// Wait until the node's reservation stops moving; returns it.
fn settled(node: &shoal::Shoal) -> u64 {
    let mut last = node.store_reserved_bytes();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = node.store_reserved_bytes();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn the_store_reserves_as_it_fills() -> anyhow::Result<()> {
    let store = 1 << 30;
    let node = shoal::init(shoal::Config::default().workers(1).store_bytes(store))?;
    let idle = settled(&node);
    assert!((32 * MIB..=64 * MIB).contains(&idle), "an idle store reserves its margin only: {idle}");

    let a = Array1::from_shape_fn(25_000_000, |i| i as f64); // 200 MB
    let r = shoal::put_array(&a)?;
    assert!(node.store_reserved_bytes() >= 200_000_000, "reserved before it was written");
    let grown = settled(&node);
    assert!((400_000_000..=store).contains(&grown), "the margin grows with the store: {grown}");
    assert!(shoal::get_shared(&r)?.view() == a.view());

    // Never past the store's size, however large the frontier.
    let b = shoal::put_array(&Array1::<u8>::ones(600_000_000))?;
    assert_eq!(settled(&node), store);
    assert!(shoal::get_shared(&b)?.view().iter().all(|&x| x == 1));
    Ok(())
}
