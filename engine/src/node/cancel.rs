//! Cancelling tasks (`shoal::cancel`, `shoal::cancel_force`): bookkeeping on
//! [`NodeState`], like `clients.rs`.
//!
//! A task not yet at a worker (waiting for arguments, queued, or in an
//! actor's queue) fails at once and never runs. One at a worker has its
//! outputs failed at once (so `get` returns), keeps its arguments pinned
//! until it reports or its process dies, and is never retried; its worker
//! is told (`ToClient::Cancel`), so `shoal::is_cancelled()` turns true
//! there and a task not started yet is skipped. `force` kills that worker
//! (the supervisor replaces it). Dependents fail through the outputs, as
//! for any failure; tasks the cancelled one submitted (its descendants,
//! by ancestry) are cancelled the same way.

use crate::error::Error;
use crate::protocol::ToClient;

use super::state::{NodeState, ObjectState};

impl NodeState {
    /// Cancel the task producing object `id`, and its descendants. A
    /// finished task (or an unknown object) is left alone. An actor's call
    /// cannot be cancelled by force (`InvalidArgument`: kill the actor).
    pub fn cancel_object(&mut self, id: u64, force: bool) -> Result<(), Error> {
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
        let descendants: Vec<u64> = if task.submitted {
            self.tasks.iter().filter(|(_, t)| t.ancestors.contains(&task_id)).map(|(&t, _)| t).collect()
        } else {
            Vec::new()
        };
        self.cancel_task(task_id, force);
        for descendant in descendants {
            // A descendant that is an actor's call is cancelled gently.
            let gently = self.tasks.get(&descendant).is_some_and(|t| t.actor.is_some());
            self.cancel_task(descendant, force && !gently);
        }
        Ok(())
    }

    /// Cancel task `task_id` (see the module notes).
    fn cancel_task(&mut self, task_id: u64, force: bool) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        let error = Error::TaskCancelled { function: task.function.to_string() };
        let Some(worker) = task.worker else {
            self.fail_task(task_id, error);
            return;
        };
        if std::mem::replace(&mut task.cancelled, true) && !force {
            return;
        }
        for out in task.outputs.clone() {
            self.seal(out, ObjectState::Failed(Box::new(error.clone())), Vec::new());
        }
        let Some(slot) = self.workers.get_mut(&worker) else { return };
        if force && slot.actor.is_none() {
            slot.retiring = true;
            self.kill.push(slot.conn.pid);
        } else {
            self.replies.push((worker, ToClient::Cancel { task: task_id }));
        }
    }
}
