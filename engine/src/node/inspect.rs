//! What the node remembers only to report it — the tasks that finished
//! (the timeline), what made each object — and the reports built from it
//! (`crate::status`: what `shoal status`, `memory` and `timeline` print).
//! Nothing here is read by the scheduler. Recording stays off the heap:
//! a timeline entry is `Copy`, an object's maker a `u32`.

use std::time::Duration;

use crate::status::{
    DriverInfo, MemoryReport, NodeStatus, ObjectInfo, ObjectPlace, ResourceUse, TIMELINE_LEN, TaskCounts, TaskEvent,
    WorkerInfo, WorkerState,
};

use super::state::{NodeState, ObjectState, TimelineEntry};

impl NodeState {
    /// The code of `name` for `ObjectEntry::creator` (registered on first
    /// use). Names are looked up by address; two names at one address
    /// (a literal that is a prefix of another) are told apart by length.
    pub fn creator_code(&mut self, name: &'static str) -> u32 {
        let key = name.as_ptr() as u64;
        if let Some(&code) = self.creator_codes.get(&key) {
            if std::ptr::eq(self.creators[code as usize - 1], name) {
                return code;
            }
        }
        let code = match self.creators.iter().position(|&known| known == name) {
            Some(at) => at as u32 + 1,
            None => {
                self.creators.push(name);
                self.creators.len() as u32
            }
        };
        self.creator_codes.entry(key).or_insert(code);
        code
    }

    /// The name an object's `creator` code stands for.
    pub fn creator_name(&self, code: u32) -> &'static str {
        code.checked_sub(1).and_then(|i| self.creators.get(i as usize)).copied().unwrap_or("put")
    }

    /// Say that `name` made object `id`.
    pub fn set_creator(&mut self, id: u64, name: &'static str) {
        let code = self.creator_code(name);
        if let Some(entry) = self.objects.get_mut(&id) {
            entry.creator = code;
        }
    }

    /// Remember that `task` ran `run_ns` on worker process `pid` and
    /// reported now.
    pub fn record_run(&mut self, task: u64, function: &'static str, pid: u32, run_ns: u64, failed: bool) {
        let end_ns = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if self.timeline.len() >= TIMELINE_LEN {
            self.timeline.pop_front();
        }
        self.timeline.push_back(TimelineEntry { task, function, worker: pid, end_ns, run_ns, failed });
    }

    /// The node's status, but for what only `Node` knows (its process,
    /// socket and arena reservation: filled in by `Node::report`).
    pub fn status(&self) -> NodeStatus {
        let cpus_in_use = self.workers.values().filter(|s| s.holds_cpu()).count() as u32 + self.actors.cpus;
        let mut resources: Vec<ResourceUse> = self
            .resources
            .iter()
            .map(|(name, &(total, in_use))| ResourceUse { name: name.clone(), total, in_use })
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut tasks = TaskCounts {
            finished: self.task_totals.finished,
            failed: self.task_totals.failed,
            ..TaskCounts::default()
        };
        for task in self.tasks.values() {
            if task.worker.is_some() {
                tasks.running += 1;
            } else if task.waiting_on > 0 {
                tasks.waiting += 1;
            } else {
                tasks.ready += 1;
            }
        }
        let mut workers: Vec<WorkerInfo> =
            self.workers.values().filter(|s| !s.driver).map(|slot| self.worker_info(slot)).collect();
        workers.sort_by_key(|w| w.pid);
        let mut drivers: Vec<DriverInfo> = self
            .workers
            .values()
            .filter(|s| s.driver)
            .map(|slot| DriverInfo {
                pid: slot.conn.pid,
                tasks: slot.submitted.iter().filter(|t| self.tasks.contains_key(t)).count(),
                references: slot.holds.values().sum(),
            })
            .collect();
        drivers.sort_by_key(|d| d.pid);
        NodeStatus {
            cpus: self.total_cpus,
            cpus_in_use: cpus_in_use.min(self.total_cpus),
            resources,
            workers,
            tasks,
            drivers,
            actors: self.actor_infos(),
            ..NodeStatus::default()
        }
    }

    fn worker_info(&self, slot: &super::state::WorkerSlot) -> WorkerInfo {
        // The task its thread runs now: on its top level, the first task
        // offered on top, else the level's own task (blocked while parked);
        // with no levels, its first task.
        let (current, blocked) = match slot.levels.last() {
            Some(level) => match level.offered.front() {
                Some(&on_top) => (Some(on_top), false),
                None => (Some(level.task), level.parked.is_some()),
            },
            None => (slot.in_flight.front().copied(), false),
        };
        let running = current.and_then(|t| self.tasks.get(&t));
        let state = if slot.actor.is_some() {
            WorkerState::Actor
        } else if slot.retiring {
            WorkerState::Retiring
        } else if blocked {
            WorkerState::Blocked
        } else if running.is_some() {
            WorkerState::Running
        } else {
            WorkerState::Idle
        };
        // Its driver: a connected one's pid, else this process's.
        let driver = running.map(|task| {
            let connected = usize::try_from(task.owner).ok().and_then(|id| self.workers.get(&id)).filter(|s| s.driver);
            connected.map_or(std::process::id(), |s| s.conn.pid)
        });
        WorkerInfo {
            pid: slot.conn.pid,
            state,
            function: running.map(|task| task.function.to_string()),
            driver,
            queued: slot.in_flight.len(),
        }
    }

    /// The `limit` largest objects, and totals over all of them.
    pub fn memory(&self, limit: usize) -> MemoryReport {
        let mut report = MemoryReport { total_objects: self.objects.len(), ..MemoryReport::default() };
        let mut sized: Vec<(u64, u64)> = Vec::with_capacity(self.objects.len());
        for (&id, entry) in &self.objects {
            let size = object_size(&entry.state);
            report.total_bytes += size;
            let tally = match entry.state {
                ObjectState::Inline(_) => Some((&mut report.inline_objects, &mut report.inline_bytes)),
                ObjectState::Arena { .. } => Some((&mut report.arena_objects, &mut report.arena_bytes)),
                ObjectState::Spilled { .. } => Some((&mut report.spilled_objects, &mut report.spilled_bytes)),
                ObjectState::Pending | ObjectState::Failed(_) => None,
            };
            if let Some((count, bytes)) = tally {
                *count += 1;
                *bytes += size;
            }
            report.pinned_objects += usize::from(entry.pins > 0);
            sized.push((size, id));
        }
        // Largest first; ties by id, so the listing is stable.
        let order = |a: &(u64, u64), b: &(u64, u64)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
        if limit < sized.len() {
            if limit > 0 {
                sized.select_nth_unstable_by(limit - 1, order);
            }
            sized.truncate(limit);
        }
        sized.sort_unstable_by(order);
        report.objects = sized
            .into_iter()
            .map(|(size, id)| {
                let entry = &self.objects[&id];
                let place = match entry.state {
                    ObjectState::Pending => ObjectPlace::Pending,
                    ObjectState::Inline(_) => ObjectPlace::Inline,
                    ObjectState::Arena { .. } => ObjectPlace::Arena,
                    ObjectState::Spilled { .. } => ObjectPlace::Spilled,
                    ObjectState::Failed(_) => ObjectPlace::Failed,
                };
                ObjectInfo {
                    id,
                    size,
                    place,
                    references: entry.refs,
                    created_by: self.creator_name(entry.creator).to_string(),
                    pinned: entry.pins > 0,
                }
            })
            .collect();
        report
    }
}

/// The timeline's entries as events, oldest first. A worker reports tasks
/// in batches, so a report's arrival is no task's end: a bar starts no
/// earlier than the previous bar of its worker ended, so bars of one lane
/// do not overlap.
pub(super) fn timeline_events(entries: &[TimelineEntry]) -> Vec<TaskEvent> {
    let mut last_end: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    entries
        .iter()
        .map(|e| {
            let end = last_end.entry(e.worker).or_default();
            let start = e.end_ns.saturating_sub(e.run_ns).max(*end);
            *end = start.saturating_add(e.run_ns);
            TaskEvent {
                task: e.task,
                function: e.function.to_string(),
                worker: e.worker,
                start: Duration::from_nanos(start),
                duration: Duration::from_nanos(e.run_ns),
                failed: e.failed,
            }
        })
        .collect()
}

/// An object's encoded bytes.
fn object_size(state: &ObjectState) -> u64 {
    match state {
        ObjectState::Inline(bytes) => bytes.len() as u64,
        ObjectState::Arena { len, .. } | ObjectState::Spilled { len } => *len,
        ObjectState::Pending | ObjectState::Failed(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::state::ObjectEntry;

    #[test]
    fn names_sharing_an_address_keep_their_own_codes() {
        let mut state = NodeState::new(1 << 20, 1, 1);
        let long: &'static str = "my_crate::f2";
        let short: &'static str = &long[..11]; // "my_crate::f", at the same address
        let (a, b) = (state.creator_code(long), state.creator_code(short));
        assert_ne!(a, b);
        assert_eq!((state.creator_name(a), state.creator_name(b)), (long, short));
        assert_eq!((state.creator_code(long), state.creator_code(short)), (a, b));
        assert_eq!(state.creator_name(0), "put");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_object_entry_keeps_its_size() {
        // The maker's code lives in padding: the entry, on the path of
        // every object, does not grow.
        assert_eq!(std::mem::size_of::<ObjectEntry>(), 120);
    }

    #[test]
    fn memory_lists_the_largest_first_with_totals_over_all() {
        let mut state = NodeState::new(1 << 20, 1, 1);
        let ids: Vec<u64> = [5usize, 50, 20, 50]
            .iter()
            .map(|&n| state.new_object(ObjectState::Inline(vec![0; n].into()), vec![]))
            .collect();
        state.new_object(ObjectState::Pending, vec![]);
        let report = state.memory(3);
        let listed: Vec<(u64, u64)> = report.objects.iter().map(|o| (o.size, o.id)).collect();
        assert_eq!(listed, vec![(50, ids[1]), (50, ids[3]), (20, ids[2])], "largest first, ties by id");
        assert_eq!((report.total_objects, report.total_bytes), (5, 125));
        assert_eq!((report.inline_objects, report.inline_bytes), (4, 125));
        assert!(report.objects.iter().all(|o| o.created_by == "put" && o.place == ObjectPlace::Inline));
        let none = state.memory(0);
        assert!(none.objects.is_empty() && none.total_objects == 5);
        assert_eq!(state.memory(100).objects.len(), 5);
    }
}
