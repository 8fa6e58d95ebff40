//! A `put_with` whose closure panics frees its allocation and reports the
//! panic, in the driver and in a task, as does a value whose `Serialize`
//! panics while it is written. Alone in its binary: it reads the
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

/// The tests that read the store's totals run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_panicking_put_with_frees_its_allocation_and_says_why() -> anyhow::Result<()> {
    let node = shared_node();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// Serializes fine when measured, panics when written (the second pass).
struct Bomb;

impl serde::Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        thread_local!(static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
        if CALLS.with(|c| c.replace(c.get() + 1)) % 2 == 1 {
            panic!("boom while writing");
        }
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Bomb {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Bomb)
    }
}

#[test]
fn a_value_whose_serialize_panics_leaves_nothing_allocated() {
    let node = shared_node();
    // Alone among this binary's tests in allocating while it runs.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (used, objects) = (node.store_used_bytes(), node.object_count());
    let value = (Array1::<f64>::zeros(1 << 16), Bomb);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shoal::put(value)));
    assert!(panicked.is_err(), "the write pass panicked");
    assert_eq!((node.store_used_bytes(), node.object_count()), (used, objects), "nothing stays allocated");
}

#[test]
fn a_shape_too_large_is_an_error_not_a_panic() {
    shared_node();
    let result: shoal::Result<ObjectRef<ndarray::Array2<u8>>> = shoal::put_with((usize::MAX, 0), |_| {});
    assert!(result.is_err());
}
