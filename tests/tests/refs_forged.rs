//! References made from raw ids (deserialized outside shoal's own format)
//! can never disturb the count of a real object.

use std::sync::{Mutex, MutexGuard};

use shoal::{Error, ObjectRef};
use shoal_tests::shared_node;

/// The tests forge ids near the newest one: no other test may make objects meanwhile.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_forged_ref_to_a_future_id_counts_nothing() -> anyhow::Result<()> {
    let _serial = serial();
    let node = shared_node();
    let probe = shoal::put(1u64)?;
    // An id a few objects ahead of the newest.
    let forged: ObjectRef<u64> =
        postcard::from_bytes(&postcard::to_stdvec(&ObjectRef::<u64>::id(&probe).wrapping_add(3))?)?;
    assert!(matches!(shoal::get(&forged), Err(Error::ObjectNotFound(_))));
    let made: Vec<ObjectRef<u64>> = (0..6).map(shoal::put).collect::<shoal::Result<_>>()?;
    assert!(made.iter().any(|r| r.id() == forged.id()), "the forged id now names a real object");
    let objects = node.object_count();
    drop(forged); // must not release the real object's reference
    assert_eq!(node.object_count(), objects);
    for (i, r) in made.iter().enumerate() {
        assert_eq!(shoal::get(r)?, i as u64);
    }
    Ok(())
}

#[test]
fn a_ref_outliving_nothing_reads_as_not_found() -> anyhow::Result<()> {
    let _serial = serial();
    shared_node();
    let gone = {
        let r = shoal::put(5u8)?;
        postcard::to_stdvec(&r)?
    };
    let stale: ObjectRef<u8> = postcard::from_bytes(&gone)?;
    assert!(matches!(shoal::get(&stale), Err(Error::ObjectNotFound(_))));
    Ok(())
}
