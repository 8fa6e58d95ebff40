//! What the node does with actors: creating them, starting (and
//! restarting) their processes, sending their calls in order, and ending
//! them. Bookkeeping on [`NodeState`], like `clients.rs`; the data is in
//! `actor_book.rs`.
//!
//! Design notes
//! - An actor is a worker process of its own (the same binary), started
//!   for it and never given pool tasks. Its calls are tasks that only it
//!   runs: they wait for their arguments like any task, but sit in the
//!   actor's queue instead of the ready queue.
//! - Calls from one caller (one task, or the threads of a process that run
//!   no task) are sent in the order they were made: a call waiting for an
//!   argument holds back its caller's later calls, not other callers' (so a
//!   call whose argument is computed by a
//!   task that calls the same actor cannot deadlock it). Up to
//!   [`ACTOR_PIPELINE`] calls wait in the actor's socket, so a burst of
//!   calls costs a few writes and wake-ups, not one per call; the process
//!   runs them one at a time.
//! - The constructor is the first call of each process; the others are
//!   sent once it has finished. A process that dies is replaced up to
//!   `max_restarts` times (the constructor runs again with the same
//!   arguments, which the actor keeps); the call it was running is retried
//!   up to `max_task_retries`, calls sent behind it never started and are
//!   sent again uncharged.
//! - An actor lives while its handle object is referenced (handles, calls,
//!   a name). When that object is freed, every call has ended, and its
//!   process is told to exit.

use crate::error::Error;
use crate::node::conn::Outbox;
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::{SubmitArg, ToClient};

use super::actor_book::{ActorCall, ActorEntry, Caller, LOCAL, Phase};
use super::state::{ArgSpec, Death, NodeState, ObjectState};
use crate::status::{ActorInfo, ActorState};

/// Most calls waiting at an actor's process.
pub(crate) const ACTOR_PIPELINE: usize = 64;

/// Calls held back (waiting for arguments, or behind such a call of their
/// caller) looked past, per actor and dispatch: later ones wait until the
/// front of the queue moves.
const MAX_SKIPPED: usize = 256;

impl NodeState {
    /// Create actor `id`, whose handle object is already recorded (with the
    /// creator's reference). `failed`: its arguments could not be prepared.
    #[allow(clippy::too_many_arguments)]
    pub fn create_actor(
        &mut self,
        id: u64,
        class: &'static str,
        constructor: &'static str,
        options: ActorOptions,
        args: Vec<SubmitArg>,
        failed: Option<Error>,
        program: u32,
    ) {
        // Its handle object is listed as made by its class.
        self.set_creator(id, class);
        for arg in &args {
            // Kept for restarts. (An id that does not exist counts nothing;
            // the constructor fails with `ObjectNotFound`.)
            match arg {
                SubmitArg::Object { id, .. } => {
                    self.add_ref(*id);
                }
                SubmitArg::Inline { refs, .. } => refs.iter().for_each(|&r| {
                    self.add_ref(r);
                }),
            }
        }
        let mut dead = None;
        if let Some(name) = &options.name {
            match self.actors.names.get(name) {
                Some(other) => {
                    let label = self.actors.actors.get(other).map_or_else(String::new, |a| a.label(*other));
                    dead = Some(format!("the name {name:?} is taken by live actor {label}"));
                }
                None => {
                    self.actors.names.insert(name.clone(), id);
                    // A named actor lives until killed.
                    self.add_ref(id);
                }
            }
        }
        if options.num_cpus > self.total_cpus {
            dead = dead.or(Some(format!("it needs {} CPUs but the node has {}", options.num_cpus, self.total_cpus)));
        }
        let entry = ActorEntry {
            class,
            constructor,
            options,
            args,
            phase: Phase::Waiting,
            worker: None,
            pid: None,
            token: None,
            restarts: 0,
            calls: Default::default(),
            constructor_task: None,
            holds_cpus: false,
            unreferenced: false,
            program,
        };
        self.actors.actors.insert(id, entry);
        if let Some(cause) = dead {
            self.actor_dies(id, cause);
            return;
        }
        self.start_constructor(id, failed);
        self.actors.mark(id);
    }

    /// Queue actor `id`'s constructor as its first call.
    fn start_constructor(&mut self, id: u64, failed: Option<Error>) {
        let entry = self.actors.actors.get_mut(&id).expect("a live actor");
        let args: Vec<ArgSpec> = entry.args.iter().cloned().map(ArgSpec::from).collect();
        let constructor = entry.constructor;
        entry.constructor_task = Some(self.next_task);
        // No one reads its output: it is freed when sealed.
        let output = self.new_object(ObjectState::Pending, Vec::new());
        let options = TaskOptions { max_retries: 0, num_cpus: 0, ..TaskOptions::default() };
        let call = ActorCall { actor: id, caller: (LOCAL, 0), constructor: true };
        self.add_task_for(constructor, options, args, vec![output], failed, Vec::new(), Some(call));
        self.release(output);
    }

    /// A call of `function` (a method of `class`, if the node knows it) on
    /// actor `actor`, made by `caller`; like `add_task_for` otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn add_call(
        &mut self,
        actor: u64,
        caller: Caller,
        function: &'static str,
        class: Option<&'static str>,
        args: Vec<ArgSpec>,
        outputs: Vec<u64>,
        mut failed: Option<Error>,
        ancestors: Vec<u64>,
    ) {
        let mut options = TaskOptions { num_cpus: 0, ..TaskOptions::default() };
        match self.actors.actors.get(&actor) {
            None => {
                failed = failed.or(Some(Error::ActorDied {
                    actor: format!("#{actor}"),
                    cause: "this node has no such actor".into(),
                }))
            }
            Some(entry) => {
                options.max_retries = entry.options.max_task_retries;
                if let Phase::Dead(e) = &entry.phase {
                    failed = failed.or(Some(e.clone()));
                } else if class != Some(entry.class) {
                    failed = failed.or(Some(Error::TypeMismatch {
                        detail: format!("`{function}` is not a method of actor {}", entry.label(actor)),
                    }));
                }
            }
        }
        let call = ActorCall { actor, caller, constructor: false };
        self.add_task_for(function, options, args, outputs, failed, ancestors, Some(call));
    }

    /// Send what actors can take: start processes for actors waiting for
    /// one, and send calls, in their callers' order, to processes with room.
    pub(super) fn dispatch_actors(&mut self, out: &mut Outbox) {
        for id in std::mem::take(&mut self.actors.work) {
            let Some(entry) = self.actors.actors.get(&id) else { continue };
            match entry.phase {
                Phase::Dead(_) => {}
                Phase::Waiting => self.start_process(id),
                Phase::Starting | Phase::Alive => {
                    if let Some(worker) = entry.worker {
                        self.send_calls(id, worker, out);
                    }
                }
            }
        }
    }

    /// Ask for a process for actor `id` once the CPUs it holds are free.
    fn start_process(&mut self, id: u64) {
        let entry = &self.actors.actors[&id];
        if self.stopped {
            return;
        }
        let need = if entry.holds_cpus { 0 } else { entry.options.num_cpus };
        if need > 0 {
            // Reserved against other actors' CPUs only: tasks running now
            // finish on the CPUs they have, and no new one starts on these
            // (waiting for the pool to go idle could wait forever).
            if self.total_cpus.saturating_sub(self.actors.cpus) < need {
                // Looked at again in every dispatch until another actor ends.
                self.actors.mark(id);
                return;
            }
            self.actors.cpus += need;
        }
        let token = self.actors.new_token(id);
        let entry = self.actors.actors.get_mut(&id).expect("present");
        entry.holds_cpus |= need > 0;
        entry.token = Some(token);
        entry.phase = Phase::Starting;
        self.actors.spawn.push((token, entry.program));
    }

    /// Send actor `id`'s sendable calls to its process `worker`.
    fn send_calls(&mut self, id: u64, worker: usize, out: &mut Outbox) {
        let Some(slot) = self.workers.get(&worker) else { return };
        if !slot.accepts_calls() {
            return;
        }
        let mut room = ACTOR_PIPELINE.saturating_sub(slot.in_flight.len());
        let starting = matches!(self.actors.actors[&id].phase, Phase::Starting);
        let mut held_back: Vec<(u64, u64)> = Vec::new();
        let mut position = 0;
        while room > 0 && position < MAX_SKIPPED {
            let Some(&task_id) = self.actors.actors[&id].calls.get(position) else { break };
            let task = &self.tasks[&task_id];
            let call = task.actor.expect("actor calls are calls");
            if starting && !call.constructor {
                // Calls wait for the constructor to finish.
                break;
            }
            if held_back.contains(&call.caller) {
                position += 1;
                continue;
            }
            if task.waiting_on > 0 || self.needs_restore(task_id) {
                held_back.push(call.caller);
                position += 1;
                continue;
            }
            self.actors.actors.get_mut(&id).expect("present").calls.remove(position);
            // No run time: nothing else could run it (it only matters
            // for balancing the pool's pipelines).
            self.send_task(task_id, worker, None, 0, out);
            room -= 1;
            if call.constructor {
                break;
            }
        }
    }

    /// The process presenting `token` connected as client `worker`: the
    /// actor it is for, and whether it serves it (else it is told to exit:
    /// its actor died or lost its last handle while it started). `None`: a
    /// pool worker.
    pub fn actor_connected(&mut self, token: u64, worker: usize, pid: u32) -> Option<(u64, bool)> {
        let id = self.actors.tokens.remove(&token)?;
        let Some(entry) = self.actors.actors.get_mut(&id) else { return Some((id, false)) };
        let serves = entry.token == Some(token) && !matches!(entry.phase, Phase::Dead(_)) && !self.stopped;
        if entry.token == Some(token) {
            entry.token = None;
        }
        if serves {
            entry.worker = Some(worker);
            entry.pid = Some(pid);
            self.actors.mark(id);
        } else {
            self.remove_if_done(id);
        }
        Some((id, serves))
    }

    /// The program of the actor whose process presents `token`.
    pub fn actor_program(&self, token: u64) -> Option<u32> {
        let id = self.actors.tokens.get(&token)?;
        self.actors.actors.get(id).map(|a| a.program)
    }

    /// The process presenting `token` could not start, was refused, or
    /// exited before its handshake. Returns whether it was still awaited.
    /// (The token stays known: should that process connect after all, it
    /// is told to exit, never taken for a pool worker.)
    pub fn actor_start_failed(&mut self, token: u64, error: &Error) -> bool {
        let Some(&id) = self.actors.tokens.get(&token) else { return false };
        let Some(entry) = self.actors.actors.get_mut(&id) else { return false };
        if entry.token != Some(token) {
            return false;
        }
        entry.token = None;
        if !matches!(entry.phase, Phase::Dead(_)) {
            self.actor_dies(id, format!("its process could not start: {error}"));
        }
        self.remove_if_done(id);
        true
    }

    /// Constructor task `task_id` of actor `actor` ended with `result`.
    pub(super) fn constructor_done(&mut self, actor: u64, task_id: u64, result: Result<(), &Error>) {
        let Some(entry) = self.actors.actors.get_mut(&actor) else { return };
        if entry.constructor_task != Some(task_id) || matches!(entry.phase, Phase::Dead(_)) {
            // A constructor replaced by a restart, or of an actor gone.
            return;
        }
        entry.constructor_task = None;
        match result {
            Ok(()) => {
                entry.phase = Phase::Alive;
                self.actors.mark(actor);
            }
            Err(Error::TaskPanicked { message, .. }) => {
                let cause = format!("its constructor panicked: {message}");
                self.actor_dies(actor, cause);
            }
            Err(e) => self.actor_dies(actor, format!("its constructor failed: {e}")),
        }
    }

    /// Actor `id` is gone for good (`cause` says why): its calls fail,
    /// its process (if any) is killed, its name and CPUs are free.
    pub(super) fn actor_dies(&mut self, id: u64, cause: String) {
        let Some(entry) = self.actors.actors.get_mut(&id) else { return };
        if matches!(entry.phase, Phase::Dead(_)) {
            return;
        }
        let error = Error::ActorDied { actor: entry.label(id), cause };
        entry.phase = Phase::Dead(error.clone());
        entry.constructor_task = None;
        let queued = std::mem::take(&mut entry.calls);
        let worker = entry.worker;
        let named = entry.options.name.clone().filter(|n| self.actors.names.get(n) == Some(&id));
        self.actors.release_cpus(id);
        // Failing its calls may drop the last reference to the handle object.
        let held = self.add_ref(id);
        for task_id in queued {
            self.fail_task(task_id, error.clone());
        }
        if let Some(slot) = worker.and_then(|w| self.workers.get_mut(&w)) {
            slot.retiring = true;
            self.kill.push(slot.conn.pid);
            // The calls it runs fail now, but keep their arguments pinned
            // until the process is gone (it may still read them), as
            // `stop` does.
            let in_flight: Vec<u64> = slot.in_flight.iter().copied().collect();
            for task_id in in_flight {
                let outputs = self.tasks.get(&task_id).map(|t| t.outputs.clone()).unwrap_or_default();
                for out in outputs {
                    self.seal(out, ObjectState::Failed(Box::new(error.clone())), Vec::new());
                }
            }
        }
        if let Some(name) = named {
            self.actors.names.remove(&name);
            // The name's reference.
            self.release(id);
        }
        self.remove_if_done(id);
        if held {
            self.release(id);
        }
    }

    /// Actor `id`'s handle object was freed: no handle, call or name is
    /// left, so no one can call it. Its process is told to exit.
    pub(super) fn actor_unreferenced(&mut self, id: u64) {
        let Some(entry) = self.actors.actors.get_mut(&id) else { return };
        entry.unreferenced = true;
        // A constructor that finishes now must not bring it back.
        entry.constructor_task = None;
        if !matches!(entry.phase, Phase::Dead(_)) {
            // Nothing fails: there are no calls. A process still starting
            // is told to exit when it connects.
            let error = Error::ActorDied { actor: entry.label(id), cause: "no handle to it is left".into() };
            entry.phase = Phase::Dead(error);
        }
        if let Some(worker) = entry.worker {
            if let Some(slot) = self.workers.get_mut(&worker) {
                slot.retiring = true;
            }
            self.replies.push((worker, ToClient::Shutdown));
        }
        self.actors.release_cpus(id);
        self.remove_if_done(id);
    }

    /// Forget actor `id`: unreferenced, and without a process.
    fn remove_actor(&mut self, id: u64) {
        self.actors.release_cpus(id);
        let Some(entry) = self.actors.actors.remove(&id) else { return };
        for arg in entry.args {
            match arg {
                SubmitArg::Object { id, .. } => self.release(id),
                SubmitArg::Inline { refs, .. } => refs.into_iter().for_each(|r| self.release(r)),
            }
        }
    }

    /// Actor `id`'s process, client `worker` with pid `pid`, is gone (how:
    /// `death`); `in_flight` are the calls it had been sent. Restart it, or
    /// let it die.
    pub(super) fn actor_process_lost(
        &mut self,
        id: u64,
        worker: usize,
        in_flight: &std::collections::VecDeque<u64>,
        pid: u32,
        death: &Death,
    ) {
        let Some(entry) = self.actors.actors.get_mut(&id) else { return };
        if entry.worker != Some(worker) {
            // A process told to exit as it connected.
            return;
        }
        entry.worker = None;
        entry.pid = None;
        // Failing a call below may drop the last reference to the handle
        // object: the entry stays until this one is released, at the end.
        let held = self.add_ref(id);
        let entry = self.actors.actors.get_mut(&id).expect("present");
        let alive = matches!(entry.phase, Phase::Starting | Phase::Alive);
        let restart = alive && entry.restarts < entry.options.max_restarts && !self.stopped;
        if restart {
            // The constructor runs again; one that was running is dropped.
            entry.constructor_task = None;
        }
        let label = entry.label(id);
        let dead = match &entry.phase {
            Phase::Dead(e) => Some(e.clone()),
            _ => None,
        };
        let stderr =
            if death.stderr.is_empty() { String::new() } else { format!("; its last stderr lines:\n{}", death.stderr) };
        let cause = format!("its process (pid {pid}) {}{stderr}", death.cause);
        // Only the first had started.
        for (position, &task_id) in in_flight.iter().enumerate() {
            let Some(task) = self.tasks.get_mut(&task_id) else { continue };
            let started = position == 0;
            if !started {
                task.attempts = task.attempts.saturating_sub(1);
            }
            let constructor = task.actor.is_some_and(|c| c.constructor);
            let retries_left = task.attempts <= task.options.max_retries;
            let max_retries = task.options.max_retries;
            self.take_back(task_id, worker);
            let cancelled = self.tasks.get(&task_id).is_some_and(|t| t.cancelled);
            if let Some(error) = &dead {
                // Its outputs failed when it died; now its arguments go too.
                self.fail_task(task_id, error.clone());
            } else if cancelled {
                // Failed when cancelled: never run again.
                let error = self.tasks[&task_id].cancelled_error();
                self.fail_task(task_id, error);
            } else if constructor && restart {
                self.fail_task(task_id, Error::NodeStopped);
            } else if restart && started && !retries_left {
                let cause = format!("{cause} while running this call (retried {max_retries} times)");
                self.fail_task(task_id, Error::ActorDied { actor: label.clone(), cause });
            } else {
                // Run again when restarted; else failed with the rest below.
                self.requeue_call(id, task_id);
            }
        }
        if restart {
            let entry = self.actors.actors.get_mut(&id).expect("held");
            entry.restarts += 1;
            entry.phase = Phase::Waiting;
            self.start_constructor(id, None);
            self.actors.mark(id);
        } else if dead.is_none() {
            self.actor_dies(id, cause);
        }
        self.remove_if_done(id);
        if held {
            self.release(id);
        }
    }

    /// Put call `task_id` of actor `actor` back in its queue, where its
    /// id says (the queue is in the order calls were made, after a
    /// constructor): calls handed back in several batches keep their order.
    pub(super) fn requeue_call(&mut self, actor: u64, task_id: u64) {
        let Some(entry) = self.actors.actors.get_mut(&actor) else {
            self.fail_task(task_id, Error::NodeStopped);
            return;
        };
        if let Phase::Dead(error) = &entry.phase {
            let error = error.clone();
            self.fail_task(task_id, error);
            return;
        }
        let first_call = match entry.constructor_task {
            Some(c) if entry.calls.front() == Some(&c) => 1,
            _ => 0,
        };
        let at = entry
            .calls
            .iter()
            .skip(first_call)
            .position(|&t| t > task_id)
            .map_or(entry.calls.len(), |p| p + first_call);
        entry.calls.insert(at, task_id);
        self.actors.mark(actor);
    }

    /// Forget actor `id` if nothing can reach it any more: unreferenced,
    /// and without a process.
    fn remove_if_done(&mut self, id: u64) {
        if self.actors.actors.get(&id).is_some_and(|e| e.unreferenced && !e.has_process()) {
            self.remove_actor(id);
        }
    }

    /// End actor `id` now: its calls fail with `ActorDied`, its process is
    /// killed, it is not restarted. Killing a dead (or unknown) actor does
    /// nothing.
    pub fn kill_actor(&mut self, id: u64) {
        self.actor_dies(id, "killed by shoal::kill".into());
    }

    /// The live actor named `name`: its id and type (the caller counts a
    /// reference to it).
    pub fn find_actor(&self, name: &str) -> Result<(u64, &'static str), Error> {
        self.actors
            .names
            .get(name)
            .and_then(|&id| self.actors.actors.get(&id).map(|entry| (id, entry)))
            .filter(|(_, entry)| !matches!(entry.phase, Phase::Dead(_)))
            .map(|(id, entry)| (id, entry.class))
            .ok_or_else(|| Error::ActorNotFound(name.to_string()))
    }

    /// The actors that have not died, by id.
    pub fn actor_infos(&self) -> Vec<ActorInfo> {
        let mut infos: Vec<ActorInfo> = self
            .actors
            .actors
            .iter()
            .filter_map(|(&id, entry)| {
                let state = match entry.phase {
                    Phase::Dead(_) => return None,
                    Phase::Alive => ActorState::Alive,
                    _ if entry.restarts > 0 => ActorState::Restarting,
                    _ => ActorState::Starting,
                };
                Some(ActorInfo {
                    id,
                    class: entry.class.to_string(),
                    name: entry.options.name.clone(),
                    pid: entry.pid,
                    state,
                    restarts: entry.restarts,
                })
            })
            .collect();
        infos.sort_by_key(|info| info.id);
        infos
    }
}
