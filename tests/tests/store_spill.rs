//! Spilling: a store smaller than its working set writes sealed objects no
//! one reads in place to files and reads them back when a `get`, a view or
//! a task needs them. Pinned objects (a live view, a running task's
//! argument) never leave; when nothing can be spilled the error names the
//! sizes. Spill files go with their objects and with the node.
//!
//! Each test starts its own node with its own spill directory, so they take
//! [`serial`] first.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ndarray::{Array1, Ix1};
use shoal::{Error, SharedArray};

/// Elements of one 64 MiB array.
const N: usize = 8 << 20;
const MIB: u64 = 1 << 20;

/// Array `i`: every element distinct, so a wrong or shifted byte shows.
fn array(i: usize) -> Array1<f64> {
    Array1::from_shape_fn(N, |j| (i * 10_000_000 + j) as f64)
}

/// The sum of [`array`]`(i)`, exact in `f64`.
fn expected_sum(i: usize) -> f64 {
    let (i, n) = (i as f64, N as f64);
    i * 1e7 * n + n * (n - 1.0) / 2.0
}

#[shoal::remote]
fn first_last_sum(a: SharedArray<f64, Ix1>) -> (f64, f64, f64) {
    let s = a.as_slice();
    (s[0], s[s.len() - 1], s.iter().sum())
}

/// Puts array `i` from inside a task and answers its ref.
#[shoal::remote]
fn put_inside(i: usize) -> shoal::ObjectRef<Array1<f64>> {
    shoal::put(array(i)).expect("a nested put spills to make room")
}

/// Returns array `i` as the task's output.
#[shoal::remote]
fn make(i: usize) -> Array1<f64> {
    array(i)
}

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A spill base directory for one test, removed on drop.
struct SpillBase(PathBuf);

impl SpillBase {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("shoal-spill-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        SpillBase(path)
    }

    /// The per-user directory the node makes its own directory in.
    fn user_dir(&self) -> PathBuf {
        self.0.join(format!("shoal-{}", nix::unistd::geteuid().as_raw()))
    }

    /// Entries in the node directories under it (spill files with names).
    fn named_files(&self) -> usize {
        dirs(&self.user_dir()).iter().map(|d| dirs(d).len()).sum()
    }
}

impl Drop for SpillBase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dirs(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

fn node(base: &SpillBase) -> anyhow::Result<shoal::Shoal> {
    Ok(shoal::init(shoal::Config::default().workers(2).store_bytes(256 * MIB).spill_dir(&base.0))?)
}

fn check_sum(i: usize, got: f64) {
    assert_eq!(got, expected_sum(i), "array {i} came back changed");
}

#[test]
fn a_working_set_four_times_the_store_reads_back_right_in_the_driver_and_in_tasks() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("working-set");
    let node = node(&base)?;
    let refs: Vec<_> = (0..16).map(|i| shoal::put(array(i))).collect::<Result<_, _>>()?;
    let stats = node.store_stats();
    assert!(stats.spilled_objects >= 12, "1 GiB in a 256 MiB store: {stats:?}");
    assert!(stats.used_bytes <= 256 * MIB);

    for (i, r) in refs.iter().enumerate() {
        check_sum(i, shoal::get_shared(r)?.as_slice().iter().sum());
    }
    for (i, r) in refs.iter().enumerate().rev() {
        check_sum(i, shoal::get(r)?.sum());
    }
    let in_tasks: Vec<_> = refs.iter().map(first_last_sum::remote).collect();
    for (i, r) in in_tasks.iter().enumerate() {
        let (first, last, sum) = shoal::get(r)?;
        assert_eq!((first, last), (array(i)[0], array(i)[N - 1]));
        check_sum(i, sum);
    }
    let stats = node.store_stats();
    assert!(stats.total_restored_objects >= 12, "objects came back from disk: {stats:?}");
    assert!(
        stats.total_spilled_bytes < 20 * 64 * MIB,
        "an object read back keeps its copy: spilling it again writes nothing ({stats:?})"
    );
    assert_eq!(base.named_files(), 0, "spill files have no names");

    drop(refs);
    drop(in_tasks);
    let stats = node.store_stats();
    assert_eq!((stats.spill_files, stats.spill_file_bytes, stats.spilled_objects), (0, 0, 0), "{stats:?}");
    assert_eq!((stats.used_bytes, stats.objects), (0, 0), "{stats:?}");
    drop(node);
    assert!(dirs(&base.user_dir()).is_empty(), "the node's spill directory goes with it");
    Ok(())
}

#[test]
fn task_outputs_and_nested_puts_make_room_by_spilling() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("outputs");
    let node = node(&base)?;
    let outputs: Vec<_> = (0..8).map(make::remote).collect();
    let nested: Vec<_> = (8..12).map(put_inside::remote).collect();
    for (i, r) in outputs.iter().enumerate() {
        check_sum(i, shoal::get_shared(r)?.as_slice().iter().sum());
    }
    for (i, r) in nested.iter().enumerate() {
        let inner = shoal::get(r)?;
        check_sum(8 + i, shoal::get_shared(&inner)?.as_slice().iter().sum());
    }
    assert!(node.store_stats().total_spilled_objects >= 4, "{:?}", node.store_stats());
    Ok(())
}

#[test]
fn pinned_objects_stay_and_a_store_of_only_pinned_objects_is_full() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("pinned");
    let node = node(&base)?;
    let held: Vec<_> = (0..2).map(|i| shoal::put(array(i))).collect::<Result<_, _>>()?;
    let views: Vec<SharedArray<f64, Ix1>> = held.iter().map(shoal::get_shared).collect::<Result<_, _>>()?;

    let big = Array1::<f64>::zeros(17 << 20); // 136 MiB: does not fit beside 128 MiB of views
    match shoal::put(big.clone()) {
        Err(Error::ObjectStoreFull { requested, pinned, capacity, .. }) => {
            assert!(requested >= 136 * MIB, "names what was wanted: {requested}");
            assert!(pinned >= 128 * MIB, "names what is pinned: {pinned}");
            assert_eq!(capacity, 256 * MIB);
        }
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    // Smaller puts spill each other, never the viewed arrays.
    for round in 0..6 {
        drop(shoal::put(array(10 + round))?);
        let keep = shoal::put(array(20 + round))?;
        check_sum(20 + round, shoal::get(&keep)?.sum());
    }
    for (i, view) in views.iter().enumerate() {
        check_sum(i, view.as_slice().iter().sum());
    }
    drop(views);
    let fits = shoal::put(big)?;
    assert!(node.store_stats().spilled_objects >= 1, "the unpinned arrays made room");
    assert_eq!(shoal::get(&fits)?.len(), 17 << 20);
    for (i, r) in held.iter().enumerate() {
        check_sum(i, shoal::get(r)?.sum());
    }
    Ok(())
}

#[test]
fn a_crashed_nodes_spill_directory_is_removed_by_the_next_node() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("sweep");
    let mut gone = std::process::Command::new("true").spawn()?;
    let dead = gone.id();
    gone.wait()?;
    let leftover = base.user_dir().join(format!("spill-{dead}-0"));
    std::fs::create_dir_all(&leftover)?;
    std::fs::write(leftover.join("spill-0"), b"left by a node killed mid-spill")?;
    let node = node(&base)?;
    assert!(!leftover.exists(), "the dead node's directory is swept at start");
    drop(node);
    Ok(())
}

#[test]
fn spilling_off_gives_object_store_full() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("off");
    let _node =
        shoal::init(shoal::Config::default().workers(1).store_bytes(256 * MIB).spill(false).spill_dir(&base.0))?;
    let refs: Vec<_> = (0..3).map(|i| shoal::put(array(i))).collect::<Result<_, _>>()?;
    assert!(matches!(shoal::put(array(3)), Err(Error::ObjectStoreFull { .. })));
    drop(refs);
    Ok(())
}

#[test]
fn small_objects_are_spilled_together_into_few_files() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("small");
    let node = node(&base)?;
    // 2 000 arrays of 256 KiB (above the inline limit, so in the arena): 500 MiB.
    let small: Vec<_> =
        (0..2000).map(|i| shoal::put(Array1::from_elem(32 << 10, i as f64))).collect::<Result<_, _>>()?;
    let stats = node.store_stats();
    assert!(stats.spilled_objects >= 1000, "{stats:?}");
    assert!(stats.spill_files * 100 <= stats.spilled_objects, "at least 100 objects to a file: {stats:?}");
    for (i, r) in small.iter().enumerate().step_by(97) {
        assert_eq!(shoal::get(r)?[100], i as f64);
    }
    Ok(())
}

#[test]
fn a_spill_that_cannot_be_written_is_a_full_store_not_a_hang() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("unwritable");
    let node = node(&base)?;
    // The node's spill directory disappears (a cleaner, a full disk's kin).
    for dir in dirs(&base.user_dir()) {
        std::fs::remove_dir_all(dir)?;
    }
    let refs: Vec<_> = (0..3).map(|i| shoal::put(array(i))).collect::<Result<_, _>>()?;
    match shoal::put(array(3)) {
        Err(Error::ObjectStoreFull { requested, .. }) => assert!(requested >= 64 * MIB),
        other => panic!("expected ObjectStoreFull, got {other:?}"),
    }
    for (i, r) in refs.iter().enumerate() {
        check_sum(i, shoal::get(r)?.sum());
    }
    assert_eq!(node.store_stats().spilled_objects, 0, "nothing left the arena");
    Ok(())
}

#[shoal::remote]
fn hold_cpu(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[test]
fn get_timeout_of_a_spilled_object_that_has_no_room_yet_times_out_on_time() -> anyhow::Result<()> {
    let _serial = serial();
    let base = SpillBase::new("timeout");
    let _node = node(&base)?;
    let refs: Vec<_> = (0..4).map(|i| shoal::put(array(i))).collect::<Result<_, _>>()?;
    // Three views pin three arrays: the fourth, spilled, has no room to come back.
    let views: Vec<SharedArray<f64, Ix1>> = refs[1..].iter().map(shoal::get_shared).collect::<Result<_, _>>()?;
    // A running task could unpin something, so the node would wait for room.
    let busy = hold_cpu::remote(5_000);
    let started = std::time::Instant::now();
    let got = shoal::get_timeout(&refs[0], std::time::Duration::from_millis(200));
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "waited {:?}, past its deadline", started.elapsed());
    drop(views);
    check_sum(0, shoal::get(&refs[0])?.sum());
    assert_eq!(shoal::get(&busy)?, 5_000);
    Ok(())
}
