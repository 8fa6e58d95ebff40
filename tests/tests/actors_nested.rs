//! What an actor's call submits never runs on top of the blocked task that
//! made the call: through the actor's state it can reach any ref any caller
//! gave the actor, that task's own output included. (Its own binary: one
//! worker and no extra ones: the reader must wait for the worker.)

use std::time::Duration;

use shoal::{ActorHandle, ObjectRef};

/// Keeps refs it is given; starts readers of them.
struct Vault {
    stored: Vec<ObjectRef<u64>>,
    reader: Option<ObjectRef<u64>>,
}

#[shoal::actor]
impl Vault {
    pub fn new() -> Self {
        Vault { stored: Vec::new(), reader: None }
    }

    pub fn store(&mut self, refs: Vec<ObjectRef<u64>>) -> usize {
        self.stored.extend(refs);
        self.stored.len()
    }

    /// Start a task that reads the first stored ref; return at once.
    pub fn kick(&mut self) -> bool {
        self.reader = Some(read_first::remote(self.stored.clone()));
        true
    }

    pub fn pause(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    pub fn reader_result(&self) -> u64 {
        shoal::get(self.reader.as_ref().expect("kicked")).expect("the reader's result")
    }
}

#[shoal::remote]
fn read_first(refs: Vec<ObjectRef<u64>>) -> u64 {
    shoal::get(&refs[0]).expect("the stored ref")
}

#[shoal::remote]
fn pause(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Kicks the vault (whose reader waits for this task's own output), then
/// blocks in a slow call of the vault's.
#[shoal::remote]
fn outer(vault: ActorHandle<Vault>, _gate: u64) -> u64 {
    let _kicked = vault.kick();
    shoal::get(&vault.pause(300)).expect("the vault's pause") + 5
}

fn node() -> &'static shoal::Shoal {
    static NODE: std::sync::OnceLock<shoal::Shoal> = std::sync::OnceLock::new();
    NODE.get_or_init(|| shoal::init(shoal::Config::default().workers(1).max_workers(1)).expect("start the node"))
}

/// Calls `f(y)` where `y` is computed by a child that calls `g` on the same
/// actor and waits for it: the child runs on top of this task (one worker),
/// and its call must not wait behind this task's.
#[shoal::remote]
fn waits_for_its_child_s_call(vault: ActorHandle<Vault>) -> u64 {
    let y = calls_and_waits::remote(vault.clone());
    shoal::get(&vault.pause(&y)).expect("the call waiting for the child")
}

#[shoal::remote]
fn calls_and_waits(vault: ActorHandle<Vault>) -> u64 {
    shoal::get(&vault.pause(7)).expect("the child's own call")
}

#[test]
fn calls_are_ordered_per_task_so_a_child_on_top_is_not_held_behind_its_parent() -> anyhow::Result<()> {
    let _node = node();
    let vault = Vault::remote();
    let r = waits_for_its_child_s_call::remote(vault.clone());
    assert_eq!(shoal::get_timeout(&r, Duration::from_secs(30))?, 7);
    Ok(())
}

#[test]
fn a_task_an_actor_call_submits_never_runs_on_top_of_the_caller() -> anyhow::Result<()> {
    let _node = node();
    let vault = Vault::remote();
    let gate = pause::remote(200);
    let t1 = outer::remote(vault.clone(), &gate);
    // Stored before `outer` starts (it waits for the gate).
    assert_eq!(shoal::get(&vault.store(vec![t1.clone()]))?, 1);
    // Were the reader run on top of `outer` (blocked in its child), it
    // would wait there for `outer`'s output forever.
    assert_eq!(shoal::get_timeout(&t1, Duration::from_secs(30))?, 305);
    assert_eq!(shoal::get_timeout(&vault.reader_result(), Duration::from_secs(30))?, 305);
    Ok(())
}
