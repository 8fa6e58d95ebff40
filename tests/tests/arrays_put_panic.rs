//! A `put_with` whose closure panics frees its allocation and reports the
//! panic, in the driver and in a task. Alone in its binary: it reads the
//! node's store totals, which other tests would move.

use std::time::Duration;

use ndarray::Array1;
use shoal::{Error, ObjectRef};
use shoal_tests::shared_node;

/// A task whose `put_with` closure panics: the error, as text.
#[shoal::remote]
fn panicking_fill_in_task() -> String {
    let result: shoal::Result<ObjectRef<Array1<f32>>> = shoal::put_with(1 << 20, |_| panic!("no fill today"));
    match result {
        Err(e) => e.to_string(),
        Ok(_) => "put_with returned Ok".into(),
    }
}

#[test]
fn a_panicking_put_with_frees_its_allocation_and_says_why() -> anyhow::Result<()> {
    let node = shared_node();
    let (used, objects) = (node.store_used_bytes(), node.object_count());
    let result: shoal::Result<ObjectRef<Array1<f64>>> = shoal::put_with(1 << 20, |mut v| {
        v[0] = 1.0;
        panic!("the fill broke");
    });
    match result {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("the fill broke"), "{message}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!((node.store_used_bytes(), node.object_count()), (used, objects), "nothing stays allocated");
    // Inside a task, the same; the worker lives on.
    let message = shoal::get(&panicking_fill_in_task::remote())?;
    assert!(message.contains("no fill today"), "{message}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.store_used_bytes() != used && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(node.store_used_bytes(), used, "the task's allocation was freed");
    Ok(())
}
