//! Actors with real processes: typed handles, order, state, handles that
//! travel, names, lifetime and inspection.

use std::time::Duration;

use ndarray::Array1;
use shoal::{ActorHandle, Error, ObjectRef};
use shoal_tests::{shared_node, wait_until};

struct Counter {
    n: i64,
    log: Vec<i64>,
}

#[shoal::actor]
impl Counter {
    pub fn new(start: i64) -> Self {
        Counter { n: start, log: Vec::new() }
    }

    pub fn add(&mut self, k: i64) -> i64 {
        self.n += k;
        self.log.push(k);
        self.n
    }

    pub fn value(&self) -> i64 {
        self.n
    }

    /// Every `k` given to `add`, in the order the calls ran.
    pub fn log(&self) -> Vec<i64> {
        self.log.clone()
    }

    #[shoal::method(num_returns = 2)]
    pub fn split(&self) -> (i64, String) {
        (self.n, format!("n={}", self.n))
    }

    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    pub fn fail(&mut self, message: String) -> i64 {
        self.n += 1000;
        panic!("{message}");
    }

    pub fn sleep_then_add(&mut self, ms: u64, k: i64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        self.add(k)
    }

    /// Not remote: not `pub`.
    fn helper(&self) -> i64 {
        self.n * 2
    }

    pub fn doubled(&self) -> i64 {
        self.helper()
    }
}

#[shoal::remote]
fn slow_value(ms: u64, v: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

#[shoal::remote]
fn add_through(counter: ActorHandle<Counter>, k: i64) -> i64 {
    shoal::get(&counter.add(k)).unwrap()
}

#[shoal::remote]
fn find_and_add(name: String, k: i64) -> Result<i64, String> {
    let counter = shoal::get_actor::<Counter>(&name).map_err(|e| e.to_string())?;
    shoal::get(&counter.add(k)).map_err(|e| e.to_string())
}

/// An actor holding another's handle.
struct Relay {
    target: ActorHandle<Counter>,
}

#[shoal::actor]
impl Relay {
    pub fn new(target: ActorHandle<Counter>) -> Self {
        Relay { target }
    }

    pub fn forward(&self, k: i64) -> i64 {
        shoal::get(&self.target.add(k)).unwrap()
    }
}

struct Summer {
    total: f64,
}

#[shoal::actor]
impl Summer {
    pub fn new() -> Self {
        Summer { total: 0.0 }
    }

    pub fn add_array(&mut self, a: shoal::SharedArray<f64, ndarray::Ix1>) -> f64 {
        self.total += a.view().sum();
        self.total
    }
}

#[test]
fn calls_run_in_order_and_keep_state() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(10);
    let refs: Vec<ObjectRef<i64>> = (1..=200).map(|k| c.add(k)).collect();
    let values = shoal::get_all(&refs)?;
    let mut expected = 10;
    for (k, v) in (1..=200).zip(values) {
        expected += k;
        assert_eq!(v, expected, "each call sees every earlier call's effect");
    }
    assert_eq!(shoal::get(&c.value())?, expected);
    assert_eq!(shoal::get(&c.log())?, (1..=200).collect::<Vec<_>>());
    assert_eq!(shoal::get(&c.doubled())?, expected * 2);
    let (n, text) = c.split();
    assert_eq!(shoal::get(&n)?, expected);
    assert_eq!(shoal::get(&text)?, format!("n={expected}"));
    Ok(())
}

#[test]
fn arguments_are_values_or_refs_and_wait_without_being_overtaken() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(0);
    let slow = slow_value::remote(300, 5);
    let ready = shoal::put(7i64)?;
    let first = c.add(&slow); // waits for `slow`
    let second = c.add(1); // made later: must not run first
    let third = c.add(ready.clone());
    let fourth = c.add(&ready);
    assert_eq!(shoal::get(&first)?, 5);
    assert_eq!(shoal::get(&second)?, 6);
    assert_eq!(shoal::get(&third)?, 13);
    assert_eq!(shoal::get(&fourth)?, 20);
    assert_eq!(shoal::get(&c.log())?, vec![5, 1, 7, 7]);
    // A zero-copy array argument.
    let s = Summer::remote();
    let a = shoal::put(Array1::<f64>::ones(1 << 16))?;
    assert_eq!(shoal::get(&s.add_array(&a))?, 65536.0);
    assert_eq!(shoal::get(&s.add_array(&a))?, 131072.0);
    Ok(())
}

#[test]
fn a_failed_argument_fails_the_call_and_not_the_actor() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(1);
    let bad: ObjectRef<i64> = {
        let r = Counter::remote(0);
        r.fail("argument".to_string())
    };
    match shoal::get(&c.add(&bad)) {
        Err(Error::TaskPanicked { message, .. }) => assert!(message.contains("argument")),
        other => panic!("expected the argument's panic, got {other:?}"),
    }
    assert_eq!(shoal::get(&c.add(1))?, 2);
    Ok(())
}

#[test]
fn a_panicking_method_fails_its_call_and_the_actor_lives_on() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(0);
    let pid = shoal::get(&c.pid())?;
    match shoal::get(&c.fail("boom".to_string())) {
        Err(Error::TaskPanicked { message, function, pid: at }) => {
            assert_eq!(message, "boom");
            assert!(function.ends_with("Counter::fail"), "{function}");
            assert_eq!(at, pid);
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    // Its state (changed before the panic) and its process are still there.
    assert_eq!(shoal::get(&c.add(1))?, 1001);
    assert_eq!(shoal::get(&c.pid())?, pid);
    Ok(())
}

#[test]
fn handles_travel_to_tasks_and_to_other_actors() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(0);
    let from_tasks: Vec<ObjectRef<i64>> = (0..10).map(|_| add_through::remote(c.clone(), 1)).collect();
    shoal::get_all(&from_tasks)?;
    assert_eq!(shoal::get(&c.value())?, 10);
    let relay = Relay::remote(c.clone());
    assert_eq!(shoal::get(&relay.forward(5))?, 15);
    // A handle inside a stored value.
    let stored = shoal::put(vec![c.clone(), c.clone()])?;
    let back: Vec<ActorHandle<Counter>> = shoal::get(&stored)?;
    assert_eq!(back[0], c);
    assert_eq!(shoal::get(&back[1].add(1))?, 16);
    Ok(())
}

#[test]
fn actors_take_no_cpu_so_many_run_beside_tasks() -> anyhow::Result<()> {
    let node = shared_node();
    let actors: Vec<ActorHandle<Counter>> = (0..8).map(Counter::remote).collect();
    // Each holds a call that sleeps; the pool's tasks still run meanwhile.
    let sleeping: Vec<ObjectRef<i64>> = actors.iter().map(|a| a.sleep_then_add(500, 1)).collect();
    let quick: Vec<ObjectRef<i64>> = (0..20).map(|i| slow_value::remote(1, i)).collect();
    assert_eq!(shoal::get_all(&quick)?, (0..20).collect::<Vec<_>>());
    assert!(
        shoal::wait(&sleeping, 1, Some(Duration::ZERO))?.0.is_empty(),
        "the tasks finished while every actor was still asleep"
    );
    let values = shoal::get_all(&sleeping)?;
    assert_eq!(values, (1..=8).collect::<Vec<_>>());
    let pids: std::collections::HashSet<u32> =
        shoal::get_all(&actors.iter().map(|a| a.pid()).collect::<Vec<_>>())?.into_iter().collect();
    assert_eq!(pids.len(), 8, "one process per actor");
    assert!(pids.iter().all(|p| !node.worker_pids().contains(p)), "none of them a pool worker");
    Ok(())
}

#[test]
fn named_actors_are_found_from_anywhere_and_live_until_killed() -> anyhow::Result<()> {
    let node = shared_node();
    let pid = {
        let hits = Counter::options().name("hits").remote(0);
        shoal::get(&hits.pid())?
        // every handle dropped here
    };
    std::thread::sleep(Duration::from_millis(200));
    let hits = shoal::get_actor::<Counter>("hits")?;
    assert_eq!(shoal::get(&hits.pid())?, pid, "a named actor outlives its handles");
    assert_eq!(shoal::get(&find_and_add::remote("hits".to_string(), 3))?, Ok(3));
    let listed = node.actors().into_iter().find(|a| a.name.as_deref() == Some("hits")).expect("listed");
    assert_eq!(listed.pid, Some(pid));
    assert_eq!(listed.state, shoal::ActorState::Alive);
    assert_eq!(listed.restarts, 0);
    assert!(listed.class.ends_with("actors_basic::Counter"), "{}", listed.class);

    // A taken name: the second actor is dead on arrival, saying why.
    let twin = Counter::options().name("hits").remote(0);
    match shoal::get(&twin.value()) {
        Err(Error::ActorDied { cause, .. }) => assert!(cause.contains("taken"), "{cause}"),
        other => panic!("expected ActorDied, got {other:?}"),
    }
    assert!(matches!(shoal::get_actor::<Relay>("hits"), Err(Error::TypeMismatch { .. })));
    assert!(matches!(shoal::get_actor::<Counter>("nobody"), Err(Error::ActorNotFound(_))));

    shoal::kill(&hits)?;
    assert!(matches!(shoal::get_actor::<Counter>("hits"), Err(Error::ActorNotFound(_))));
    match shoal::get(&hits.value()) {
        Err(Error::ActorDied { actor, cause }) => {
            assert!(actor.contains("\"hits\""), "{actor}");
            assert!(cause.contains("shoal::kill"), "{cause}");
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
    assert!(wait_until(Duration::from_secs(5), || !process_exists(pid)), "its process is gone");
    // The name is free again.
    let again = Counter::options().name("hits").remote(5);
    assert_eq!(shoal::get(&again.value())?, 5);
    shoal::kill(&again)?;
    Ok(())
}

#[test]
fn kill_fails_the_running_call_and_the_queued_ones() -> anyhow::Result<()> {
    let _node = shared_node();
    let c = Counter::remote(0);
    let running = c.sleep_then_add(2_000, 1);
    let queued: Vec<ObjectRef<i64>> = (0..5).map(|k| c.add(k)).collect();
    std::thread::sleep(Duration::from_millis(200));
    shoal::kill(&c)?;
    for r in std::iter::once(&running).chain(&queued) {
        assert!(matches!(shoal::get(r), Err(Error::ActorDied { .. })));
    }
    shoal::kill(&c)?; // a dead actor: nothing to do
    Ok(())
}

#[test]
fn a_constructor_that_panics_makes_every_call_actor_died() -> anyhow::Result<()> {
    let _node = shared_node();
    let broken = Picky::remote(-1);
    for r in [broken.get(), broken.get()] {
        match shoal::get(&r) {
            Err(Error::ActorDied { cause, .. }) => {
                assert!(cause.contains("constructor panicked") && cause.contains("negative"), "{cause}")
            }
            other => panic!("expected ActorDied, got {other:?}"),
        }
    }
    let fine = Picky::remote(3);
    assert_eq!(shoal::get(&fine.get())?, 3);
    Ok(())
}

struct Picky(i64);

#[shoal::actor]
impl Picky {
    pub fn new(n: i64) -> Self {
        assert!(n >= 0, "negative start {n}");
        Picky(n)
    }

    pub fn get(&self) -> i64 {
        self.0
    }

    pub fn exit(&self, code: i32) -> i64 {
        std::process::exit(code)
    }
}

#[test]
fn the_last_handle_dropped_ends_the_actor_after_its_calls() -> anyhow::Result<()> {
    let node = shared_node();
    let c = Counter::remote(0);
    let pid = shoal::get(&c.pid())?;
    let last = c.sleep_then_add(300, 1);
    drop(c);
    // Its calls still run.
    assert_eq!(shoal::get(&last)?, 1);
    assert!(wait_until(Duration::from_secs(5), || !process_exists(pid)), "its process exited");
    assert!(wait_until(Duration::from_secs(5), || node.actors().iter().all(|a| a.pid != Some(pid))));
    Ok(())
}

/// Parameters named like generated code's locals, `Self` in a signature,
/// a private method taking `self`: none of it trips the macro.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Odd {
    v: Vec<i64>,
}

#[shoal::actor]
impl Odd {
    pub fn new(args: Vec<i64>) -> Self {
        Odd { v: args }
    }

    pub fn push(&mut self, state: i64, refs: i64, ret: i64) -> usize {
        self.v.push(state + refs + ret);
        self.v.len()
    }

    pub fn snapshot(&self) -> Self {
        Odd { v: self.v.clone() }
    }

    pub fn absorb(&mut self, other: Self) -> usize {
        self.v.extend(other.into_inner());
        self.v.len()
    }

    fn into_inner(self) -> Vec<i64> {
        self.v
    }
}

#[test]
fn generated_code_keeps_out_of_the_users_names() -> anyhow::Result<()> {
    let _node = shared_node();
    let odd = Odd::remote(vec![1]);
    assert_eq!(shoal::get(&odd.push(1, 2, 3))?, 2);
    assert_eq!(shoal::get(&odd.absorb(Odd { v: vec![7] }))?, 3);
    assert_eq!(shoal::get(&odd.snapshot())?, Odd { v: vec![1, 6, 7] });
    Ok(())
}

#[test]
fn an_actor_whose_handle_is_dropped_at_once_still_ends() -> anyhow::Result<()> {
    let node = shared_node();
    // Dropped before its constructor ran (restarts allowed: it must not
    // come back), and dropped with a call that kills its process pending.
    let discarded: Vec<u64> = (0..4).map(|i| Counter::options().max_restarts(2).remote(i).id()).collect();
    let crashing = {
        let c = Picky::options().max_restarts(1).remote(1);
        (c.id(), c.exit(3))
    };
    assert!(matches!(shoal::get(&crashing.1), Err(Error::ActorDied { .. })));
    let gone = |id: &u64| node.actors().iter().all(|a| a.id != *id);
    assert!(
        wait_until(Duration::from_secs(10), || discarded.iter().all(gone) && gone(&crashing.0)),
        "still listed: {:?}",
        node.actors()
    );
    // The node is fine.
    assert_eq!(shoal::get(&slow_value::remote(1, 9))?, 9);
    Ok(())
}

fn process_exists(pid: u32) -> bool {
    // A reaped child is gone; a zombie is not reaped yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}
