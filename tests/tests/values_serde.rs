//! Values through the store and through tasks: primitives, collections,
//! user types, refs nested inside values, inline vs arena placement, and
//! reading an object as the wrong type.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal::{Error, ObjectRef, Value};
use shoal_tests::shared_node;

/// Every test here takes this lock: one of them measures the store's used
/// bytes, which other tests' puts would disturb.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous bound on any single `get` here, so a broken engine fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    y: f64,
    label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Wrapper(u32, String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Poly(Vec<Point>),
    Tagged(Wrapper, Unit),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Scene {
    name: String,
    shapes: Vec<Shape>,
    index: BTreeMap<u64, Option<Point>>,
    tags: HashMap<String, Vec<(u8, char)>>,
    nested: Option<Box<Scene>>,
    unit: (),
}

macro_rules! echo_fns {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        #[shoal::remote]
        fn $name(v: $t) -> $t {
            v
        }
    )*};
}

echo_fns! {
    echo_i8: i8, echo_i16: i16, echo_i32: i32, echo_i64: i64, echo_i128: i128, echo_isize: isize,
    echo_u8: u8, echo_u16: u16, echo_u32: u32, echo_u64: u64, echo_u128: u128, echo_usize: usize,
    echo_f32: f32, echo_f64: f64, echo_bool: bool, echo_char: char,
    echo_string: String,
    echo_vec: Vec<i32>,
    echo_bytes: Vec<u8>,
    echo_tuple: (u8, String, f64, (bool, char)),
    echo_map: HashMap<String, Vec<u8>>,
    echo_btree: BTreeMap<i64, String>,
    echo_option: Option<Vec<Option<u16>>>,
    echo_shape: Shape,
    echo_shapes: Vec<Shape>,
    echo_point: Point,
    echo_wrapper: Wrapper,
    echo_unit_struct: Unit,
    echo_scene: Scene,
}

/// User types whose serde shape resembles an ndarray array's
/// (a struct named `Array` with three fields) are still plain values.
mod lookalike {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Array {
        pub a: u8,
        pub b: String,
        pub c: Vec<u16>,
    }

    #[shoal::remote]
    pub fn echo_lookalike(v: Array) -> Array {
        v
    }
}

use lookalike::echo_lookalike;

#[shoal::remote]
fn echo_unit(v: ()) {
    v
}

#[shoal::remote]
fn nothing(_n: i64) {}

#[shoal::remote]
fn pass_refs(v: Vec<ObjectRef<i64>>) -> Vec<ObjectRef<i64>> {
    v
}

#[shoal::remote]
fn count_refs(v: Vec<ObjectRef<i64>>) -> usize {
    v.len()
}

#[shoal::remote]
fn string_len(s: String) -> usize {
    s.len()
}

/// A `get` inside a task (through the worker's client, not the driver's
/// node) of each ref, as a string naming the outcome.
#[shoal::remote]
fn get_each_as_string(refs: Vec<ObjectRef<String>>) -> Vec<String> {
    refs.iter()
        .map(|r| match shoal::get(r) {
            Ok(s) => format!("ok {s}"),
            Err(Error::TypeMismatch { .. }) => "type mismatch".to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect()
}

/// `put` then `get` must give back `v`; so must the identity task, given the
/// value itself, the put ref, and a task's output.
fn round_trip<T: Value + Clone + PartialEq + Debug>(
    what: &str,
    v: T,
    by_value: impl Fn(T) -> ObjectRef<T>,
    by_ref: impl Fn(&ObjectRef<T>) -> ObjectRef<T>,
    chained: impl Fn(ObjectRef<T>) -> ObjectRef<T>,
) -> anyhow::Result<()> {
    let r = shoal::put(v.clone())?;
    assert_eq!(shoal::get(&r)?, v, "put/get of {what}");
    let out = by_value(v.clone());
    assert_eq!(shoal::get_timeout(&out, PATIENCE)?, v, "{what} passed by value");
    let out = by_ref(&r);
    assert_eq!(shoal::get_timeout(&out, PATIENCE)?, v, "{what} passed by ref");
    let out = chained(out);
    assert_eq!(shoal::get_timeout(&out, PATIENCE)?, v, "{what} from a task's output");
    Ok(())
}

macro_rules! check {
    ($echo:ident, $v:expr) => {
        round_trip(
            concat!(stringify!($echo), "(", stringify!($v), ")"),
            $v,
            |v| $echo::remote(v),
            |r| $echo::remote(r),
            |r| $echo::remote(r),
        )?
    };
}

#[test]
fn integers_with_extremes() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    for v in [i8::MIN, -1, 0, 1, i8::MAX] {
        check!(echo_i8, v);
    }
    for v in [i16::MIN, -1, 0, i16::MAX] {
        check!(echo_i16, v);
    }
    for v in [i32::MIN, -1, 0, i32::MAX] {
        check!(echo_i32, v);
    }
    for v in [i64::MIN, -1, 0, i64::MAX] {
        check!(echo_i64, v);
    }
    for v in [i128::MIN, -1, 0, i128::MAX] {
        check!(echo_i128, v);
    }
    for v in [isize::MIN, 0, isize::MAX] {
        check!(echo_isize, v);
    }
    for v in [0, 1, u8::MAX] {
        check!(echo_u8, v);
    }
    for v in [0, 1, u16::MAX] {
        check!(echo_u16, v);
    }
    for v in [0, 1, u32::MAX] {
        check!(echo_u32, v);
    }
    for v in [0, 1, u64::MAX] {
        check!(echo_u64, v);
    }
    for v in [0, 1, u128::MAX] {
        check!(echo_u128, v);
    }
    for v in [0, 1, usize::MAX] {
        check!(echo_usize, v);
    }
    Ok(())
}

#[test]
fn floats_bools_chars() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    for v in [0.0f32, -0.0, 1.5, f32::MIN, f32::MAX, f32::MIN_POSITIVE, f32::EPSILON, f32::INFINITY, f32::NEG_INFINITY]
    {
        let r = shoal::put(v)?;
        assert_eq!(shoal::get(&r)?.to_bits(), v.to_bits());
        let t = echo_f32::remote(&r);
        assert_eq!(shoal::get_timeout(&t, PATIENCE)?.to_bits(), v.to_bits());
    }
    for v in [0.0f64, -0.0, 1.5, f64::MIN, f64::MAX, f64::MIN_POSITIVE, 5e-324, f64::INFINITY, f64::NEG_INFINITY] {
        let r = shoal::put(v)?;
        assert_eq!(shoal::get(&r)?.to_bits(), v.to_bits());
        let t = echo_f64::remote(v);
        assert_eq!(shoal::get_timeout(&t, PATIENCE)?.to_bits(), v.to_bits());
    }
    // NaN is not equal to itself: compare bits.
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    assert_eq!(shoal::get(&shoal::put(nan)?)?.to_bits(), nan.to_bits());
    assert_eq!(shoal::get_timeout(&echo_f64::remote(nan), PATIENCE)?.to_bits(), nan.to_bits());
    assert!(shoal::get(&shoal::put(f32::NAN)?)?.is_nan());

    for v in [true, false] {
        check!(echo_bool, v);
    }
    for v in ['\0', 'a', 'é', '€', '🦀', '\u{10FFFF}'] {
        check!(echo_char, v);
    }
    Ok(())
}

#[test]
fn strings_vecs_tuples_maps_options() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    check!(echo_string, String::new());
    check!(echo_string, "hello, shoal — ünïcödé 🦀".to_string());
    check!(echo_string, "x".repeat(150_000)); // above the inline threshold
    check!(echo_vec, Vec::<i32>::new());
    check!(echo_vec, vec![i32::MIN, -1, 0, 1, i32::MAX]);
    check!(echo_vec, (0..50_000).collect::<Vec<i32>>()); // ~ 150 KB encoded: arena
    check!(echo_bytes, vec![0u8, 255, 7]);
    check!(echo_tuple, (7u8, "seven".to_string(), -7.5f64, (true, 'z')));

    let mut map = HashMap::new();
    check!(echo_map, map.clone());
    map.insert(String::new(), vec![]);
    map.insert("a".into(), vec![1, 2, 3]);
    map.insert("big".into(), vec![9; 1000]);
    check!(echo_map, map.clone());

    let mut btree = BTreeMap::new();
    btree.insert(i64::MIN, "min".to_string());
    btree.insert(0, String::new());
    btree.insert(i64::MAX, "max".to_string());
    check!(echo_btree, btree);

    check!(echo_option, None);
    check!(echo_option, Some(vec![]));
    check!(echo_option, Some(vec![None, Some(0), Some(u16::MAX), None]));
    Ok(())
}

fn sample_scene() -> Scene {
    let p = |x: f64, label: &str| Point { x, y: -x, label: label.into() };
    let mut index = BTreeMap::new();
    index.insert(1, Some(p(1.0, "one")));
    index.insert(2, None);
    let mut tags = HashMap::new();
    tags.insert("k".to_string(), vec![(1u8, 'a'), (255, '🦀')]);
    tags.insert(String::new(), vec![]);
    let inner = Scene {
        name: "inner".into(),
        shapes: vec![Shape::Empty],
        index: BTreeMap::new(),
        tags: HashMap::new(),
        nested: None,
        unit: (),
    };
    Scene {
        name: "outer".into(),
        shapes: vec![
            Shape::Empty,
            Shape::Circle(2.5),
            Shape::Rect { w: 3, h: u32::MAX },
            Shape::Poly(vec![p(0.0, ""), p(1.5, "b")]),
            Shape::Tagged(Wrapper(9, "w".into()), Unit),
        ],
        index,
        tags,
        nested: Some(Box::new(inner)),
        unit: (),
    }
}

#[test]
fn enums_structs_and_nesting() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    check!(echo_shape, Shape::Empty);
    check!(echo_shape, Shape::Circle(-1.25));
    check!(echo_shape, Shape::Rect { w: 0, h: u32::MAX });
    check!(echo_shape, Shape::Tagged(Wrapper(1, "t".into()), Unit));
    check!(echo_shapes, vec![Shape::Poly(vec![]), Shape::Empty, Shape::Circle(0.5)]);
    check!(echo_point, Point { x: 1.0, y: 2.0, label: "p".into() });
    check!(echo_wrapper, Wrapper(u32::MAX, String::new()));
    check!(echo_unit_struct, Unit);
    check!(echo_scene, sample_scene());
    Ok(())
}

#[test]
fn user_struct_named_array_is_a_plain_value() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let v = lookalike::Array { a: 1, b: "b".into(), c: vec![3, 4] };
    check!(echo_lookalike, v);
    Ok(())
}

#[test]
fn unit_values_and_unit_return() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    check!(echo_unit, ());
    let r: ObjectRef<()> = nothing::remote(5);
    shoal::get_timeout(&r, PATIENCE)?;
    // A unit result feeds another task like any value.
    shoal::get_timeout(&echo_unit::remote(&r), PATIENCE)?;
    Ok(())
}

#[test]
fn refs_inside_put_values() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let refs: Vec<ObjectRef<i64>> = (0..5).map(|i| shoal::put(i * 100)).collect::<shoal::Result<_>>()?;
    let outer = shoal::put(refs.clone())?;
    drop(refs);
    let back: Vec<ObjectRef<i64>> = shoal::get(&outer)?;
    assert_eq!(back.len(), 5);
    for (i, r) in back.iter().enumerate() {
        assert_eq!(shoal::get(r)?, i as i64 * 100);
    }
    // Read twice: each read makes fresh counted handles.
    let again = shoal::get(&outer)?;
    assert_eq!(again, back, "same objects (ids) both times");
    drop(back);
    for (i, r) in again.iter().enumerate() {
        assert_eq!(shoal::get(r)?, i as i64 * 100);
    }
    Ok(())
}

#[test]
fn ref_inside_value_keeps_its_object_alive() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let inner = shoal::put(vec![7u8; 300_000])?;
    let outer = shoal::put((inner.clone(), 1u8))?;
    drop(inner);
    let (r, one) = shoal::get(&outer)?;
    assert_eq!(one, 1);
    let bytes = shoal::get(&r)?;
    assert_eq!(bytes.len(), 300_000);
    assert!(bytes.iter().all(|&b| b == 7));

    // Only the outer object holds it now; drop our fresh handle and read again.
    drop(r);
    let (r, _) = shoal::get(&outer)?;
    assert_eq!(shoal::get(&r)?.len(), 300_000);

    // Also when the outer value is a task's output held by no one but us.
    let inner = shoal::put(vec![3u8; 250_000])?;
    let packed = shoal::put(vec![inner.clone()])?;
    drop(inner);
    let held: Vec<ObjectRef<Vec<u8>>> = shoal::get(&packed)?;
    drop(packed);
    assert_eq!(shoal::get(&held[0])?, vec![3u8; 250_000], "a ref read out of a value outlives the value");
    Ok(())
}

#[test]
fn refs_pass_through_a_task() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    // The refs travel inside a put object, so that object pins them.
    let refs: Vec<ObjectRef<i64>> = (0..4).map(|i| shoal::put(i - 2)).collect::<shoal::Result<_>>()?;
    let packed = shoal::put(refs.clone())?;
    let out = pass_refs::remote(&packed);
    drop(refs);
    drop(packed);
    let returned = shoal::get_timeout(&out, PATIENCE)?;
    drop(out);
    assert_eq!(returned.len(), 4);
    for (i, r) in returned.iter().enumerate() {
        assert_eq!(shoal::get_timeout(r, PATIENCE)?, i as i64 - 2, "ref {i} returned by the worker");
    }

    // A chain of tasks passing the refs along.
    let refs: Vec<ObjectRef<i64>> = (0..3).map(|i| shoal::put(i * 11)).collect::<shoal::Result<_>>()?;
    let mut out = pass_refs::remote(refs.clone());
    for _ in 0..3 {
        out = pass_refs::remote(out);
    }
    let returned = shoal::get_timeout(&out, PATIENCE)?;
    assert_eq!(returned, refs);
    drop(refs);
    drop(out);
    for (i, r) in returned.iter().enumerate() {
        assert_eq!(shoal::get(r)?, i as i64 * 11);
    }
    Ok(())
}

#[test]
fn refs_passed_by_value_stay_alive_until_the_task_runs() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    // The vector is moved into the call: the argument is then the only thing
    // that refers to the inner objects.
    let refs: Vec<ObjectRef<i64>> = (0..4).map(|i| shoal::put(i + 40)).collect::<shoal::Result<_>>()?;
    let ids: Vec<u64> = refs.iter().map(ObjectRef::id).collect();
    let out = pass_refs::remote(refs);
    let returned = shoal::get_timeout(&out, PATIENCE)?;
    assert_eq!(returned.iter().map(ObjectRef::id).collect::<Vec<_>>(), ids);
    for (i, r) in returned.iter().enumerate() {
        assert_eq!(shoal::get_timeout(r, PATIENCE)?, i as i64 + 40, "ref {i} passed by value");
    }
    // The same with an argument the worker only counts.
    let refs: Vec<ObjectRef<i64>> = (0..3i64).map(shoal::put).collect::<shoal::Result<_>>()?;
    assert_eq!(shoal::get_timeout(&count_refs::remote(refs), PATIENCE)?, 3);
    Ok(())
}

#[test]
fn small_values_inline_large_in_arena() -> anyhow::Result<()> {
    let _g = serial();
    let node = shared_node();
    // Other tests in this binary hold the lock, so only late releases (which
    // shrink the usage) can happen meanwhile.
    let before = node.store_used_bytes();
    let smalls: Vec<ObjectRef<u64>> = (0..200).map(|i| shoal::put(5u64 + i)).collect::<shoal::Result<_>>()?;
    let small_string = shoal::put("short".to_string())?;
    let after_small = node.store_used_bytes();
    assert!(after_small <= before, "small values must stay inline: store went {before} -> {after_small} bytes");
    assert_eq!(shoal::get(&smalls[199])?, 204);
    assert_eq!(shoal::get(&small_string)?, "short");

    let bigs: Vec<ObjectRef<Vec<u8>>> =
        (0..4).map(|i| shoal::put(vec![i as u8; 200_000])).collect::<shoal::Result<_>>()?;
    let after_big = node.store_used_bytes();
    assert!(
        after_big >= after_small + 200_000,
        "four 200 KB values must live in the arena: store went {after_small} -> {after_big} bytes"
    );
    for (i, r) in bigs.iter().enumerate() {
        assert_eq!(shoal::get(r)?, vec![i as u8; 200_000]);
    }
    // Dropping them frees their space again.
    drop(bigs);
    let after_drop = node.store_used_bytes();
    assert!(after_drop + 200_000 <= after_big, "dropped values are freed: {after_big} -> {after_drop} bytes");
    Ok(())
}

#[test]
fn wrongly_typed_ref_is_a_type_mismatch() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let r: ObjectRef<i64> = shoal::put(42i64)?;
    let bytes = postcard::to_stdvec(&r)?;
    let wrong: ObjectRef<String> = postcard::from_bytes(&bytes)?;
    assert_eq!(wrong.id(), r.id());
    match shoal::get(&wrong) {
        Err(Error::TypeMismatch { .. }) => {}
        other => panic!("get of an i64 object as String gave {other:?}"),
    }
    // The object itself is unharmed.
    assert_eq!(shoal::get(&r)?, 42);

    // The same for an object in the arena.
    let big = shoal::put(vec![1u64; 50_000])?;
    let wrong_big: ObjectRef<Vec<i64>> = postcard::from_bytes(&postcard::to_stdvec(&big)?)?;
    assert!(matches!(shoal::get(&wrong_big), Err(Error::TypeMismatch { .. })), "arena object read as another type");
    assert_eq!(shoal::get(&big)?.len(), 50_000);
    Ok(())
}

#[test]
fn wrongly_typed_get_inside_a_task_is_a_type_mismatch() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let small = shoal::put(42i64)?;
    let big = shoal::put(vec![7u64; 50_000])?;
    let right = shoal::put(String::from("right"))?;
    // The same objects, claimed to hold strings.
    let as_string = |bytes: Vec<u8>| -> anyhow::Result<ObjectRef<String>> { Ok(postcard::from_bytes(&bytes)?) };
    let refs = vec![as_string(postcard::to_stdvec(&small)?)?, as_string(postcard::to_stdvec(&big)?)?, right.clone()];
    let outcomes = shoal::get_timeout(&get_each_as_string::remote(refs), PATIENCE)?;
    assert_eq!(outcomes, ["type mismatch", "type mismatch", "ok right"], "inline, arena, and a right one");
    // The objects are unharmed, and so is the worker that read them.
    assert_eq!(shoal::get(&small)?, 42);
    assert_eq!(shoal::get(&big)?.len(), 50_000);
    assert_eq!(shoal::get_timeout(&string_len::remote(right), PATIENCE)?, 5);
    Ok(())
}

#[test]
fn wrongly_typed_ref_to_a_task_fails_at_get() -> anyhow::Result<()> {
    let _g = serial();
    shared_node();
    let r: ObjectRef<i64> = shoal::put(42i64)?;
    let wrong: ObjectRef<String> = postcard::from_bytes(&postcard::to_stdvec(&r)?)?;
    let out = string_len::remote(&wrong);
    match shoal::get_timeout(&out, PATIENCE) {
        Err(Error::TypeMismatch { .. }) => {}
        other => panic!("a task given an i64 object as String gave {other:?}"),
    }
    // Its dependents fail with the same error.
    let dependent = echo_usize::remote(&out);
    assert!(matches!(shoal::get_timeout(&dependent, PATIENCE), Err(Error::TypeMismatch { .. })));

    // An arena object, too.
    let big = shoal::put(vec![0u8; 200_000])?;
    let wrong_big: ObjectRef<String> = postcard::from_bytes(&postcard::to_stdvec(&big)?)?;
    let out = string_len::remote(wrong_big);
    assert!(matches!(shoal::get_timeout(&out, PATIENCE), Err(Error::TypeMismatch { .. })));

    // The pool still works.
    assert_eq!(shoal::get_timeout(&string_len::remote("four".to_string()), PATIENCE)?, 4);
    Ok(())
}
