//! Cancelling tasks (`shoal::cancel`, `shoal::cancel_force`): bookkeeping on
//! [`NodeState`], like `clients.rs`.
//!
//! A task not yet at a worker (waiting for arguments, queued, or in an
//! actor's queue) fails at once and never runs. One at a worker has its
//! outputs failed at once (so `get` returns), keeps its arguments pinned
//! until it reports or its process dies, and is never retried; its worker
//! is told (`ToClient::Cancel`), so `shoal::is_cancelled()` turns true
//! there and a task not started yet is skipped. `force` kills that worker
//! (the supervisor replaces it) when nothing else has started there but the
//! task and its own descendants; else the task is told, as without force.
//! Dependents fail through the outputs, as for any failure; what the
//! cancelled task submitted, at any depth (its children, the actor calls it
//! made, theirs), is cancelled the same way, and so is what it submits
//! after: a cancelled task keeps its outputs' `producer`, so a
//! `cancel_force` after a `cancel` finds it.

use crate::error::Error;
use crate::protocol::ToClient;

use super::state::{NodeState, ObjectState};

impl NodeState {
    /// Cancel the task producing object `id`, and its descendants. A
    /// finished task (or an unknown object) is left alone. An actor's call
    /// cannot be cancelled by force (`InvalidArgument`: kill the actor).
    pub fn cancel_object(&mut self, id: u64, force: bool) -> Result<(), Error> {
        // A cancelled task keeps its outputs' producer (see `cancel_task`),
        // so a later `cancel_force` finds it.
        let Some(task_id) = self.objects.get(&id).and_then(|e| e.producer).map(std::num::NonZeroU64::get) else {
            return Ok(());
        };
        let Some(task) = self.tasks.get(&task_id) else { return Ok(()) };
        if force && task.actor.is_some() {
            return Err(Error::InvalidArgument(format!(
                "`{}` is an actor's call: cancel_force would kill the actor; use shoal::kill",
                task.function
            )));
        }
        let descendants = self.descendants(task_id);
        self.cancel_task(task_id, force);
        for descendant in descendants {
            // An actor's call among them is cancelled gently.
            let gently = self.tasks.get(&descendant).is_some_and(|t| t.actor.is_some());
            self.cancel_task(descendant, force && !gently);
        }
        Ok(())
    }

    /// The tasks `task_id` submitted, directly or not: its children (by
    /// the first of their ancestors), the actor calls it made (by their
    /// caller), and theirs, at any depth. None without a scan when it
    /// submitted nothing; else one pass over the tasks.
    fn descendants(&self, task_id: u64) -> Vec<u64> {
        if !self.tasks.get(&task_id).is_some_and(|t| t.submitted) {
            return Vec::new();
        }
        let mut children: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
        for (&id, task) in &self.tasks {
            let called_by = task.actor.filter(|c| !c.constructor && c.caller.1 != 0).map(|c| c.caller.1);
            if let Some(parent) = task.ancestors.first().copied().or(called_by) {
                children.entry(parent).or_default().push(id);
            }
        }
        let mut found = Vec::new();
        let mut parents = vec![task_id];
        while let Some(parent) = parents.pop() {
            for &child in children.get(&parent).into_iter().flatten() {
                found.push(child);
                parents.push(child);
            }
        }
        found
    }

    /// Cancel task `task_id` (see the module notes).
    pub(super) fn cancel_task(&mut self, task_id: u64, force: bool) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        let error = task.cancelled_error();
        let Some(worker) = task.worker else {
            self.fail_task(task_id, error);
            return;
        };
        let again = std::mem::replace(&mut task.cancelled, true);
        if again && !force {
            return;
        }
        let outputs = task.outputs.clone();
        if !again {
            for &out in &outputs {
                self.seal(out, ObjectState::Failed(Box::new(error.clone())), Vec::new());
                // Still its producer while it runs: `cancel_force` may follow.
                if let Some(entry) = self.objects.get_mut(&out) {
                    entry.producer = std::num::NonZeroU64::new(task_id);
                }
            }
        }
        let Some(slot) = self.workers.get(&worker) else { return };
        // Killing the worker kills whatever else has started there: only
        // when that is this task and what runs on top of it, its own
        // descendants (being cancelled too). Else the task is told.
        let alone = slot.actor.is_none()
            && slot.reserved_by.is_none()
            && slot.in_flight.front() == Some(&task_id)
            && slot
                .in_flight
                .iter()
                .skip(1)
                .all(|t| self.tasks.get(t).is_none_or(|t| !t.nested || t.ancestors.contains(&task_id)));
        if force && alone {
            let slot = self.workers.get_mut(&worker).expect("checked");
            slot.retiring = true;
            self.kill.push(slot.conn.pid);
        } else if !again {
            self.replies.push((worker, ToClient::Cancel { task: task_id }));
        }
    }
}
