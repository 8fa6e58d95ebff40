//! What the node does for its clients' requests: tasks they submit, objects
//! they seal, and `get`/`wait` requests parked until objects seal (a
//! stream's requests are in `streams.rs`). Pure
//! bookkeeping on [`NodeState`], like `state.rs`; replies are queued in
//! `NodeState::replies` and go out with the next dispatch.
//!
//! A request parked from a client's task thread blocks the task on top of
//! that thread: the worker gives its CPU back (`WorkerSlot::levels`) and may
//! be sent tasks to run on top of the blocked one meanwhile
//! (`NodeState::dispatch`).

use crate::error::Error;
use crate::protocol::{ObjectData, Placed, Submit, ToClient, is_client_id};

use super::actor_book::LOCAL;
use super::state::{ArgSpec, Level, MAX_ANCESTRY, NodeState, ObjectState, ParkedKind, ParkedRequest};

impl NodeState {
    /// Whether `id` is a fresh id in client `worker`'s range.
    fn fresh_client_id(&self, worker: usize, id: u64) -> bool {
        is_client_id(worker as u32, id) && !self.objects.contains_key(&id)
    }

    /// A new object made by client `worker`, which holds one reference.
    fn client_object(&mut self, worker: usize, id: u64, state: ObjectState, contained: Vec<u64>) {
        self.insert_object(id, state, contained);
        if let Some(slot) = self.workers.get_mut(&worker) {
            *slot.holds.entry(id).or_default() += 1;
        }
    }

    /// A task submitted by client `worker`; `function` is the registered
    /// name it asked for, if this node knows it; `call`: it is a call of
    /// that actor, of a method of that class (if the node knows the method).
    /// An error is a protocol violation (the caller drops the connection).
    pub fn client_submit(
        &mut self,
        worker: usize,
        submit: Submit,
        function: Option<&'static str>,
        call: Option<(u64, Option<&'static str>)>,
    ) -> Result<(), String> {
        let Submit { function: name, options, args, outputs, parent, failed } = submit;
        for (i, &out) in outputs.iter().enumerate() {
            if !self.fresh_client_id(worker, out) || outputs[..i].contains(&out) {
                return Err(format!("output id {out} is not a fresh id of this client"));
            }
        }
        if let Some((name, amount)) = options.resources.iter().find(|(_, a)| !a.is_finite() || *a <= 0.0) {
            // The builder never makes one; a negative amount would let others oversubscribe.
            return Err(format!("resource `{name}` asked for {amount}"));
        }
        if outputs.is_empty() {
            return Err("a task without outputs".into());
        }
        for &out in &outputs {
            self.client_object(worker, out, ObjectState::Pending, Vec::new());
        }
        let specs = args.into_iter().map(ArgSpec::from).collect();
        // Only a task this worker runs can be the parent.
        let runs = |p: &u64| self.workers.get(&worker).is_some_and(|s| s.in_flight.contains(p));
        let parent = parent.filter(runs);
        let ancestors = match parent.and_then(|p| self.tasks.get(&p).map(|t| (p, t))) {
            Some((p, task)) => std::iter::once(p).chain(task.ancestors.iter().copied()).take(MAX_ANCESTRY).collect(),
            None => Vec::new(),
        };
        let (function, failed) = match function {
            Some(f) => (f, failed),
            None => {
                let error = Error::FunctionNotFound { function: name, program: "this node's binary".into() };
                ("<unknown function>", Some(error))
            }
        };
        // Its output is for the driver it works for.
        let owner = match self.workers.get(&worker) {
            Some(slot) if slot.driver => worker as u64,
            _ => parent.and_then(|p| self.tasks.get(&p)).map_or(LOCAL, |t| t.owner),
        };
        let first_task = self.next_task;
        match call {
            None => {
                self.add_task_for(function, options, specs, outputs, failed, ancestors, None);
            }
            Some((actor, class)) => {
                // An actor runs its own program's code: a caller of another
                // program could not know its methods are the same.
                let program = self.workers.get(&worker).map_or(0, |s| s.conn.program);
                let failed = match self.actors.actors.get(&actor) {
                    Some(entry) if entry.program != program => failed.or(Some(Error::FunctionNotFound {
                        function: function.to_string(),
                        program: "an actor of another program (calls across programs are not supported)".into(),
                    })),
                    _ => failed,
                };
                // Ancestry stops at an actor: what an actor's calls submit may
                // reach, through its state, any ref any caller gave it (an
                // ancestor's output too), so they may not run on top of their
                // caller's blocked task (see `may_run_on`).
                let caller = (worker as u64, parent.unwrap_or(0));
                self.add_call(actor, caller, function, class, specs, outputs, failed, Vec::new());
            }
        }
        let program = self.workers.get(&worker).map_or(0, |s| s.conn.program);
        for task in first_task..self.next_task {
            if let Some(task) = self.tasks.get_mut(&task) {
                (task.owner, task.program) = (owner, program);
            }
        }
        self.note_driver_task(worker, first_task);
        Ok(())
    }

    /// A driver's submission made tasks from `first_task` on: remember them
    /// (see `NodeState::driver_gone`), forgetting those that ended once the
    /// list has doubled.
    fn note_driver_task(&mut self, worker: usize, first_task: u64) {
        let Some(slot) = self.workers.get_mut(&worker).filter(|s| s.driver) else { return };
        slot.submitted.extend(first_task..self.next_task);
        if slot.submitted.len() >= 1024 && slot.submitted.len().is_power_of_two() {
            let tasks = &self.tasks;
            slot.submitted.retain(|t| tasks.contains_key(t));
        }
    }

    /// Client `worker` creates actor `id` (a fresh id of its own, for the
    /// handle object it holds one reference to) of `class` (registered as
    /// such, with `constructor`, if the node knows it). An error is a
    /// protocol violation.
    pub fn client_create_actor(
        &mut self,
        worker: usize,
        id: u64,
        known: Option<(&'static str, &'static str)>,
        create: crate::protocol::CreateActor,
    ) -> Result<(), String> {
        if !self.fresh_client_id(worker, id) {
            return Err(format!("actor id {id} is not a fresh id of this client"));
        }
        self.client_object(worker, id, ObjectState::Inline(Vec::new().into()), Vec::new());
        let (class, constructor, failed) = match known {
            Some((class, constructor)) => (class, constructor, create.failed),
            None => {
                let error = Error::FunctionNotFound { function: create.class, program: "this node's binary".into() };
                ("<unknown actor>", "<unknown constructor>", Some(error))
            }
        };
        let program = self.workers.get(&worker).map_or(0, |s| s.conn.program);
        self.create_actor(id, class, constructor, create.options, create.args, failed, program);
        Ok(())
    }

    /// Client `worker` looks up the actor named `name`: answered at once,
    /// with a reference counted for it.
    pub fn client_get_actor(&mut self, worker: usize, request: u64, name: &str) {
        let found = self.find_actor(name).map(|(id, class)| {
            self.worker_ref(worker, true, id);
            (id, class.to_string())
        });
        self.replies.push((worker, ToClient::ActorFound { request, found }));
    }

    /// Client `worker` seals a new object it made.
    pub fn client_put(&mut self, worker: usize, id: u64, placed: Placed) -> Result<(), String> {
        if !self.fresh_client_id(worker, id) {
            return Err(format!("object id {id} is not a fresh id of this client"));
        }
        let (state, refs) = self.claim_placed(worker, placed)?;
        self.client_object(worker, id, state, refs);
        Ok(())
    }

    /// What client `worker` placed, as an object's state and the refs it
    /// contains: an arena object claims its allocation (an error, a
    /// protocol violation, claims nothing).
    pub(super) fn claim_placed(&mut self, worker: usize, placed: Placed) -> Result<(ObjectState, Vec<u64>), String> {
        match placed {
            Placed::Inline { bytes, refs } => Ok((ObjectState::Inline(bytes.into()), refs)),
            Placed::Arena { offset, len, refs } => {
                let slot = self.workers.get(&worker).ok_or("unknown worker")?;
                if !slot.unsealed.contains(&offset) {
                    return Err(format!("offset {offset} was not allocated to this client"));
                }
                if self.allocator.allocation_len(offset).is_none_or(|size| len > size) {
                    return Err(format!("object of {len} bytes overruns its allocation at {offset}"));
                }
                self.workers.get_mut(&worker).expect("checked").unsealed.remove(&offset);
                Ok((ObjectState::Arena { offset, len }, refs))
            }
            Placed::Failed(_) => Err("a stored object cannot be an error".into()),
        }
    }

    /// The reply to a `get` of a sealed (or unknown) object: its contents,
    /// and a reference counted for the client to each object it contains.
    fn object_reply(&mut self, worker: usize, request: u64, id: u64) -> ToClient {
        let (data, mut contained) = match self.objects.get(&id) {
            None => (ObjectData::Failed(Error::ObjectNotFound(id)), Vec::new()),
            Some(entry) => match &entry.state {
                ObjectState::Inline(bytes) => (ObjectData::Inline(bytes.to_vec()), entry.contained.clone()),
                &ObjectState::Arena { offset, len } => (ObjectData::Arena { offset, len }, entry.contained.clone()),
                ObjectState::Failed(e) => (ObjectData::Failed((**e).clone()), Vec::new()),
                ObjectState::Pending | ObjectState::Spilled { .. } => {
                    unreachable!("replies are for sealed objects in memory")
                }
            },
        };
        contained.retain(|&c| self.worker_ref(worker, true, c));
        ToClient::Object { request, data, contained }
    }

    fn is_pending(&self, id: u64) -> bool {
        self.objects.get(&id).is_some_and(|e| matches!(e.state, ObjectState::Pending))
    }

    /// A request number that is still parked cannot name a second request:
    /// the objects the first one watches would wake the second (answering
    /// a `get` of an object still pending, which is unreachable).
    pub(super) fn check_request_free(&self, worker: usize, request: u64) -> Result<(), String> {
        if self.parked.contains_key(&(worker, request)) {
            return Err(format!("request {request} is still waiting"));
        }
        Ok(())
    }

    /// Client `worker` asks for object `id`: answered now if it is sealed,
    /// else parked until it is. `task` is set when the client's task thread
    /// asks, blocked inside that task. An error is a protocol violation.
    pub fn client_get(&mut self, worker: usize, request: u64, id: u64, task: Option<u64>) -> Result<(), String> {
        self.check_request_free(worker, request)?;
        if let Some(entry) = self.objects.get_mut(&id).filter(|e| matches!(e.state, ObjectState::Spilled { .. })) {
            // Answered once the restore thread has read it back.
            entry.watchers.push((worker, request));
            self.want_back(id);
            self.park(worker, request, ParkedKind::Get(id), task);
            return Ok(());
        }
        if !self.is_pending(id) {
            let reply = self.object_reply(worker, request, id);
            self.replies.push((worker, reply));
            return Ok(());
        }
        let entry = self.objects.get_mut(&id).expect("pending");
        entry.watchers.push((worker, request));
        let producer = entry.producer;
        self.park(worker, request, ParkedKind::Get(id), task);
        // What the blocked task thread waits for runs first, there if it can.
        // Looked for in the whole queue (from the back: usually a child just
        // submitted): past a window, behind work no worker can take, a
        // producer the task did not submit would wait forever.
        if let Some(producer) = producer.map(std::num::NonZeroU64::get) {
            if let Some(at) = self.ready.iter().rposition(|&t| t == producer) {
                self.ready.remove(at);
                self.ready.push_front(producer);
                // (A streaming task may wait for its consumer: never there.)
                if task.is_some() && !self.tasks[&producer].options.streaming {
                    self.run_first.push((worker, request, producer));
                }
            }
        }
        Ok(())
    }

    /// Client `worker` waits until `num` of `ids` are sealed or failed.
    /// The reply lists at most `limit` positions. An error is a protocol
    /// violation.
    pub fn client_wait(
        &mut self,
        worker: usize,
        request: u64,
        ids: Vec<u64>,
        num: usize,
        limit: usize,
        task: Option<u64>,
    ) -> Result<(), String> {
        self.check_request_free(worker, request)?;
        let ready = ids.iter().filter(|&&id| !self.is_pending(id)).count();
        if ready >= num {
            let positions = self.ready_positions(&ids, limit);
            self.replies.push((worker, ToClient::Ready { request, positions }));
            return Ok(());
        }
        for &id in &ids {
            if let Some(entry) = self.objects.get_mut(&id).filter(|e| matches!(e.state, ObjectState::Pending)) {
                entry.watchers.push((worker, request));
            }
        }
        self.park(worker, request, ParkedKind::Wait { ids, num, limit, ready }, task);
        Ok(())
    }

    fn ready_positions(&self, ids: &[u64], num: usize) -> Vec<u32> {
        ids.iter().enumerate().filter(|&(_, &id)| !self.is_pending(id)).take(num).map(|(i, _)| i as u32).collect()
    }

    /// Record a parked request and what it blocks.
    pub(super) fn park(&mut self, worker: usize, request: u64, kind: ParkedKind, task: Option<u64>) {
        let Some(slot) = self.workers.get_mut(&worker) else { return };
        let top = slot.levels.last_mut();
        let main = match (task, top) {
            // The task running on top of a blocked one blocks in turn.
            (Some(t), Some(top)) if top.offered.front() == Some(&t) => {
                let expected = self.tasks.get(&t).map_or(0, |task| task.expected_ns);
                top.offered.pop_front();
                top.offered_ns = top.offered_ns.saturating_sub(expected);
                slot.levels.push(Level::new(t, Some(request), true));
                true
            }
            // A nested task that blocked before blocks again.
            (Some(t), Some(top)) if top.task == t && top.parked.is_none() && top.offered.is_empty() => {
                top.parked = Some(request);
                true
            }
            // The ordinary task the worker runs.
            (Some(t), None) if slot.in_flight.front() == Some(&t) => {
                slot.levels.push(Level::new(t, Some(request), false));
                true
            }
            _ => {
                slot.parked_other.insert(request);
                false
            }
        };
        self.parked.insert((worker, request), ParkedRequest { kind, main });
    }

    /// A parked request ends (answered or forgotten).
    fn unpark(&mut self, worker: usize, request: u64, parked: &ParkedRequest) {
        let Some(slot) = self.workers.get_mut(&worker) else { return };
        if !parked.main {
            slot.parked_other.remove(&request);
            if let Some(actor) = slot.actor {
                self.actors.mark(actor);
            }
            return;
        }
        slot.answered_at = Some(std::time::Instant::now());
        if let Some(actor) = slot.actor {
            // Its queue was handed back while it waited.
            self.actors.mark(actor);
        }
        if let Some(level) = slot.levels.iter_mut().find(|l| l.parked == Some(request)) {
            level.parked = None;
        }
        slot.levels.retain(|l| l.nested || l.parked.is_some() || !l.offered.is_empty());
    }

    /// An object that request `key` watches was sealed: answer it if it is
    /// complete now.
    /// A request leaves no watcher behind when it ends (answered, or
    /// forgotten), so a request number the client uses again is never
    /// answered for what its old use watched; a `Get` checks it anyway.
    pub(super) fn watched_sealed(&mut self, key: (usize, u64), sealed: u64) {
        let Some(parked) = self.parked.get_mut(&key) else { return };
        let (worker, request) = key;
        let reply = match &mut parked.kind {
            ParkedKind::Get(id) if *id != sealed => return,
            ParkedKind::StreamNext(_) | ParkedKind::Backpressure(_) => return,
            ParkedKind::Get(id) => {
                let id = *id;
                self.object_reply(worker, request, id)
            }
            ParkedKind::Wait { ids, num, limit, ready } => {
                *ready += 1;
                if *ready < *num {
                    return;
                }
                let (ids, limit) = (std::mem::take(ids), *limit);
                // Objects still pending keep no watcher for it.
                for id in &ids {
                    if let Some(entry) = self.objects.get_mut(id).filter(|e| matches!(e.state, ObjectState::Pending)) {
                        entry.watchers.retain(|&w| w != key);
                    }
                }
                ToClient::Ready { request, positions: self.ready_positions(&ids, limit) }
            }
        };
        self.answer_parked(worker, request, reply);
    }

    /// Answer parked request `request` of `worker` with `reply`.
    pub(super) fn answer_parked(&mut self, worker: usize, request: u64, reply: ToClient) {
        if let Some(parked) = self.parked.remove(&(worker, request)) {
            self.unpark(worker, request, &parked);
            self.replies.push((worker, reply));
        }
    }

    /// Client `worker` stopped waiting for `request`.
    pub fn client_forget(&mut self, worker: usize, request: u64) {
        if let Some(parked) = self.parked.remove(&(worker, request)) {
            let watched = match &parked.kind {
                ParkedKind::Get(id) => std::slice::from_ref(id),
                ParkedKind::Wait { ids, .. } => ids.as_slice(),
                &ParkedKind::StreamNext(end) | &ParkedKind::Backpressure(end) => {
                    self.forget_stream_waiter(worker, request, end);
                    &[]
                }
            };
            for id in watched {
                if let Some(entry) = self.objects.get_mut(id) {
                    entry.watchers.retain(|&w| w != (worker, request));
                }
            }
            self.unpark(worker, request, &parked);
        }
    }

    /// Client `worker` hands back tasks it was sent and never started.
    pub fn client_requeue(&mut self, worker: usize, tasks: Vec<u64>) -> Result<(), String> {
        for task_id in tasks.into_iter().rev() {
            let slot = self.workers.get_mut(&worker).ok_or("unknown worker")?;
            let Some(at) = slot.in_flight.iter().position(|&t| t == task_id) else {
                return Err(format!("task {task_id} was not sent to this worker"));
            };
            slot.in_flight.remove(at);
            let task = self.tasks.get_mut(&task_id).ok_or("unknown task")?;
            slot.forget_task(task_id, task.expected_ns);
            slot.queued_ns = slot.queued_ns.saturating_sub(task.expected_ns);
            task.attempts = task.attempts.saturating_sub(1);
            self.take_back(task_id, worker);
            self.requeue_front(task_id);
        }
        Ok(())
    }

    /// Workers beyond `keep` that are idle: marked retiring (they get no
    /// more tasks), to be told to exit.
    pub fn retire_idle(&mut self, keep: usize) -> Vec<std::sync::Arc<super::conn::WorkerConn>> {
        let idle_worker = |s: &super::state::WorkerSlot| {
            !s.retiring && s.in_pool() && s.in_flight.is_empty() && s.parked_other.is_empty()
        };
        // Workers of a program no driver uses any more go too (see `programs.rs`).
        let unused = |s: &super::state::WorkerSlot| {
            s.conn
                .program
                .checked_sub(1)
                .and_then(|i| self.program_pools.get(i as usize))
                .is_some_and(|p| p.drivers == 0)
        };
        let mut retiring: Vec<usize> =
            self.workers.iter().filter(|(_, s)| idle_worker(s) && unused(s)).map(|(&id, _)| id).collect();
        let live = self.workers.values().filter(|s| !s.retiring && s.in_pool() && s.conn.program == 0).count();
        if live > keep && self.ready.is_empty() {
            let mut idle: Vec<usize> =
                self.workers.iter().filter(|(_, s)| idle_worker(s) && s.conn.program == 0).map(|(&id, _)| id).collect();
            idle.sort_unstable_by(|a, b| b.cmp(a));
            idle.truncate(live - keep);
            retiring.extend(idle);
        }
        retiring
            .into_iter()
            .map(|id| {
                let slot = self.workers.get_mut(&id).expect("listed");
                slot.retiring = true;
                slot.conn.clone()
            })
            .collect()
    }
}
