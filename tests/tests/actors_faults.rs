//! Actors whose processes die: `ActorDied` with the cause, restarts that
//! run the constructor again, retried calls.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shoal::{ActorState, Error, ObjectRef};
use shoal_tests::{shared_node, wait_until};

struct Account {
    balance: i64,
    opened: u32,
}

#[shoal::actor]
impl Account {
    pub fn new(balance: i64) -> Self {
        Account { balance, opened: std::process::id() }
    }

    pub fn deposit(&mut self, k: i64) -> i64 {
        self.balance += k;
        self.balance
    }

    pub fn slow_deposit(&mut self, ms: u64, k: i64) -> i64 {
        std::thread::sleep(Duration::from_millis(ms));
        self.deposit(k)
    }

    pub fn pid(&self) -> u32 {
        self.opened
    }

    pub fn exit(&self, code: i32) -> i64 {
        eprintln!("account closing with code {code}");
        std::process::exit(code);
    }
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
}

fn died(r: &ObjectRef<i64>) -> String {
    match shoal::get(r) {
        Err(Error::ActorDied { actor, cause }) => {
            assert!(actor.contains("Account"), "{actor}");
            cause
        }
        other => panic!("expected ActorDied, got {other:?}"),
    }
}

#[test]
fn without_restarts_a_killed_actor_fails_every_call_naming_the_signal() -> anyhow::Result<()> {
    let _node = shared_node();
    let a = Account::remote(100);
    let pid = shoal::get(&a.pid())?;
    let running = a.slow_deposit(5_000, 1);
    let queued = a.deposit(1);
    std::thread::sleep(Duration::from_millis(200));
    sigkill(pid);
    for r in [&running, &queued, &a.deposit(1)] {
        let cause = died(r);
        assert!(cause.contains(&format!("pid {pid}")) && cause.contains("SIGKILL"), "{cause}");
    }
    Ok(())
}

#[test]
fn an_exit_names_its_code_and_its_last_stderr_line() -> anyhow::Result<()> {
    let _node = shared_node();
    let a = Account::remote(0);
    let cause = died(&a.exit(3));
    assert!(cause.contains("exited with code 3"), "{cause}");
    assert!(cause.contains("account closing with code 3"), "{cause}");
    Ok(())
}

#[test]
fn a_restarted_actor_runs_new_again_and_later_calls_run_there() -> anyhow::Result<()> {
    let node = shared_node();
    let a = Account::options().max_restarts(1).remote(100);
    assert_eq!(shoal::get(&a.deposit(5))?, 105);
    let first = shoal::get(&a.pid())?;
    let running = a.slow_deposit(5_000, 1);
    let queued = a.deposit(10);
    std::thread::sleep(Duration::from_millis(200));
    sigkill(first);
    // The running call is not retried (max_task_retries 0); the queued one
    // never started, so it runs on the new process, whose state started over.
    let cause = died(&running);
    assert!(cause.contains("while running this call"), "{cause}");
    assert_eq!(shoal::get(&queued)?, 110);
    let second = shoal::get(&a.pid())?;
    assert_ne!(first, second, "a new process");
    let info = node.actors().into_iter().find(|i| i.id == a.id()).expect("listed");
    assert_eq!(info.restarts, 1);
    assert_eq!(info.pid, Some(second));
    // Out of restarts: the next death is final.
    sigkill(second);
    let cause = died(&a.deposit(1));
    assert!(cause.contains("SIGKILL"), "{cause}");
    assert!(wait_until(Duration::from_secs(5), || node.actors().iter().all(|i| i.id != a.id())));
    Ok(())
}

#[test]
fn a_call_running_when_the_process_died_is_retried_within_max_task_retries() -> anyhow::Result<()> {
    let node = shared_node();
    let a = Account::options().max_restarts(3).max_task_retries(1).remote(100);
    let first = shoal::get(&a.pid())?;
    let retried = a.slow_deposit(1_000, 7);
    std::thread::sleep(Duration::from_millis(200));
    sigkill(first);
    // Run again from the start on the restarted actor.
    assert_eq!(shoal::get(&retried)?, 107);
    // Killed twice while running: out of retries.
    let twice = a.slow_deposit(5_000, 1);
    let mut last = first;
    for _ in 0..2 {
        let mut pid = None;
        let restarted = wait_until(Duration::from_secs(20), || {
            pid =
                node.actors().into_iter().find(|i| i.id == a.id() && i.state == ActorState::Alive).and_then(|i| i.pid);
            pid.is_some_and(|p| p != last)
        });
        assert!(restarted, "a new process runs the actor");
        // By now the call runs there.
        std::thread::sleep(Duration::from_millis(300));
        last = pid.expect("found");
        sigkill(last);
    }
    let cause = died(&twice);
    assert!(cause.contains("retried 1 times"), "{cause}");
    Ok(())
}
