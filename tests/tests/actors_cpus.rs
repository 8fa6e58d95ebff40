//! An actor's `num_cpus` holds CPUs from the task pool for as long as it
//! lives (its own binary: it takes the shared node's CPUs away).

use std::time::Duration;

use shoal::Error;
use shoal_tests::shared_node;

struct Holder;

#[shoal::actor]
impl Holder {
    pub fn new() -> Self {
        Holder
    }

    pub fn ping(&self) -> u8 {
        1
    }
}

#[shoal::remote]
fn quick(v: u32) -> u32 {
    v
}

#[test]
fn an_actor_holding_every_cpu_keeps_tasks_waiting_until_it_ends() -> anyhow::Result<()> {
    let _node = shared_node(); // 2 CPUs
    assert_eq!(shoal::get(&quick::remote(1))?, 1);
    let holder = Holder::options().num_cpus(2).remote();
    assert_eq!(shoal::get(&holder.ping())?, 1);
    let waiting = quick::remote(2);
    assert!(
        matches!(shoal::get_timeout(&waiting, Duration::from_millis(500)), Err(Error::Timeout(_))),
        "no CPU is left for tasks"
    );
    // A second one waits for CPUs too, and starts once they are free.
    let second = Holder::options().num_cpus(1).remote();
    let pinged = second.ping();
    assert!(matches!(shoal::get_timeout(&pinged, Duration::from_millis(300)), Err(Error::Timeout(_))));
    shoal::kill(&holder)?;
    assert_eq!(shoal::get_timeout(&waiting, Duration::from_secs(30))?, 2);
    assert_eq!(shoal::get_timeout(&pinged, Duration::from_secs(30))?, 1);
    // One CPU is left to tasks while `second` lives.
    assert_eq!(shoal::get(&quick::remote(3))?, 3);
    // More CPUs than the node has: dead on arrival.
    let greedy = Holder::options().num_cpus(3).remote();
    match shoal::get(&greedy.ping()) {
        Err(Error::ActorDied { cause, .. }) => assert!(cause.contains("needs 3 CPUs"), "{cause}"),
        other => panic!("expected ActorDied, got {other:?}"),
    }
    Ok(())
}
