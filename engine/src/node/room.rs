//! Making room in the arena: which objects to spill, and the bookkeeping of
//! writing them out and reading them back. Pure bookkeeping on
//! [`NodeState`], like `clients.rs`; the file I/O runs in `Node` (`mod.rs`)
//! without the lock, in `spill.rs`.
//!
//! Design notes
//! - Objects nothing references are already gone (counts free them at
//!   zero), so room comes from spilling: sealed arena objects that no one
//!   reads in place. Pinned objects (`ObjectEntry::pins`: a driver read or
//!   view, a dispatched task's argument) and every object a worker process
//!   holds a handle to (it may be reading it in place: a view, an argument,
//!   a nested `get`) stay.
//! - An object with a copy on disk already (it was spilled and read back:
//!   sealed objects never change) is evicted at once, with no I/O. The
//!   others are written in batches of at least [`MIN_SPILL_BATCH`], oldest
//!   first, so small objects share files.
//! - While a batch is written its objects stay readable in the arena; they
//!   leave it only if still unpinned when the write ends.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use crate::error::Error;
use crate::protocol::{ObjectData, ToClient};

use super::spill::SpillLoc;
use super::state::{ArgSpec, NodeState, ObjectState, ParkedKind};

/// Small objects are written out together, into files of at least this size.
pub(crate) const MIN_SPILL_BATCH: u64 = 32 << 20;

/// An object chosen to be written out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Victim {
    pub id: u64,
    pub offset: u64,
    pub len: u64,
}

/// What [`NodeState::begin_restore`] found.
pub(crate) enum Restore {
    /// Not spilled (in the arena, inline, failed or gone): nothing to do.
    NotSpilled,
    /// Another thread reads it back now.
    InProgress,
    /// Read `len` bytes from `file` at `pos` into a new allocation, then
    /// call [`NodeState::finish_restore`].
    Read { file: Arc<File>, pos: u64, len: u64 },
}

impl NodeState {
    /// Objects some worker process holds a handle to.
    fn held_by_workers(&self) -> HashSet<u64> {
        self.workers.values().flat_map(|w| w.holds.keys().copied()).collect()
    }

    /// Free at least `need` bytes (at least [`MIN_SPILL_BATCH`] when it
    /// writes): evict objects with a copy on disk (returns the bytes freed),
    /// and return the others chosen to be written out, marked as being
    /// written and each with a reference held for the writer. Nothing of
    /// either when nothing may be spilled. For a `restore`, objects read
    /// back for tasks not yet dispatched stay (`SpillBook::kept`).
    pub fn make_room(&mut self, need: u64, restore: bool) -> (u64, Vec<Victim>) {
        let kept: Vec<u64> = self.spill.kept.iter().copied().collect();
        for id in kept {
            if !self.ready_task_takes(id) {
                self.spill.kept.remove(&id);
            }
        }
        let held = self.held_by_workers();
        let mut candidates: Vec<(bool, u64, u64, u64)> = self
            .objects
            .iter()
            .filter(|(id, e)| {
                let busy = self.spill.writing.contains(id) || self.spill.restoring.contains(id);
                let kept = restore && self.spill.kept.contains(id);
                e.pins == 0 && !held.contains(id) && !busy && !kept
            })
            .filter_map(|(&id, e)| match e.state {
                ObjectState::Arena { offset, len } => Some((!self.spill.copies.contains_key(&id), id, offset, len)),
                _ => None,
            })
            .collect();
        // Copies on disk first (free to evict), then the oldest.
        candidates.sort_unstable();
        let target = need.max(MIN_SPILL_BATCH);
        let (mut evicted, mut batch, mut written) = (0, Vec::new(), 0);
        for (needs_write, id, offset, len) in candidates {
            if evicted + written >= target {
                break;
            }
            if needs_write {
                batch.push(Victim { id, offset, len });
                written += len;
            } else {
                self.evict(id);
                evicted += len;
            }
        }
        for victim in &batch {
            self.spill.writing.insert(victim.id);
            self.add_ref(victim.id);
        }
        if !batch.is_empty() {
            self.spill.batches_in_flight += 1;
        }
        (evicted, batch)
    }

    /// Object `id` (in the arena, with a copy on disk) leaves the arena.
    fn evict(&mut self, id: u64) {
        let Some(entry) = self.objects.get_mut(&id) else { return };
        let ObjectState::Arena { offset, len } = entry.state else { return };
        entry.state = ObjectState::Spilled { len };
        self.allocator.free(offset);
        self.spill.spilled_objects += 1;
        self.spill.spilled_bytes += len;
    }

    /// A batch from [`make_room`](Self::make_room) was written to `file`,
    /// one object after another (`None`: the write failed). Objects still
    /// unpinned leave the arena; every one keeps its copy.
    pub fn finish_spill(&mut self, batch: &[Victim], file: Option<Arc<File>>) {
        self.spill.batches_in_flight -= 1;
        for victim in batch {
            self.spill.writing.remove(&victim.id);
        }
        if let Some(file) = file {
            let n = self.spill.add_file(file, batch.iter().map(|v| v.len).sum());
            let held = self.held_by_workers();
            let mut pos = 0;
            for victim in batch {
                self.spill.add_copy(victim.id, SpillLoc { file: n, pos });
                pos += victim.len;
                self.spill.totals.spilled_objects += 1;
                self.spill.totals.spilled_bytes += victim.len;
                if self.objects.get(&victim.id).is_some_and(|e| e.pins == 0) && !held.contains(&victim.id) {
                    self.evict(victim.id);
                }
            }
            self.spill.forget_empty(n);
        }
        for victim in batch {
            self.release(victim.id);
        }
    }

    /// Bytes in the arena that may not be spilled now.
    pub fn pinned_bytes(&self) -> u64 {
        let held = self.held_by_workers();
        self.objects
            .iter()
            .filter_map(|(id, e)| match e.state {
                ObjectState::Arena { len, .. }
                    if e.pins > 0 || held.contains(id) || self.spill.writing.contains(id) =>
                {
                    Some(len)
                }
                _ => None,
            })
            .sum()
    }

    /// Start reading object `id` back into the arena. On `Read`, a
    /// reference is held for the reader until [`finish_restore`](Self::finish_restore).
    pub fn begin_restore(&mut self, id: u64) -> Restore {
        let Some(ObjectState::Spilled { len }) = self.objects.get(&id).map(|e| &e.state) else {
            return Restore::NotSpilled;
        };
        let len = *len;
        if self.spill.restoring.contains(&id) {
            return Restore::InProgress;
        }
        let Some((file, pos)) = self.spill.copies.get(&id).and_then(|loc| Some((self.spill.file(loc.file)?, loc.pos)))
        else {
            return Restore::NotSpilled;
        };
        self.spill.restoring.insert(id);
        self.add_ref(id);
        Restore::Read { file, pos, len }
    }

    /// Object `id` was read back into the allocation at `offset` (or could
    /// not be: every request and ready task waiting for it fails with the
    /// error). Answers the clients waiting for it.
    pub fn finish_restore(&mut self, id: u64, restored: Result<u64, Error>) {
        self.spill.restoring.remove(&id);
        match restored {
            Ok(offset) => {
                let entry = self.objects.get_mut(&id).expect("the reader holds a reference");
                let ObjectState::Spilled { len } = entry.state else { unreachable!("only readers restore") };
                entry.state = ObjectState::Arena { offset, len };
                let watchers = std::mem::take(&mut entry.watchers);
                self.spill.spilled_objects -= 1;
                self.spill.spilled_bytes -= len;
                self.spill.totals.restored_objects += 1;
                self.spill.totals.restored_bytes += len;
                if self.ready_task_takes(id) {
                    self.spill.kept.insert(id);
                }
                self.actors.mark_all();
                for key in watchers {
                    self.watched_sealed(key, id);
                }
            }
            Err(error) => self.fail_waiting_for(id, error),
        }
        self.release(id);
    }

    /// Object `id` cannot be read back: fail the requests parked on it and
    /// the ready tasks taking it.
    fn fail_waiting_for(&mut self, id: u64, error: Error) {
        let watchers = self.objects.get_mut(&id).map(|e| std::mem::take(&mut e.watchers)).unwrap_or_default();
        for (worker, request) in watchers {
            if matches!(self.parked.get(&(worker, request)).map(|p| &p.kind), Some(ParkedKind::Get(got)) if *got == id)
            {
                let data = ObjectData::Failed(error.clone());
                self.answer_parked(worker, request, ToClient::Object { request, data, contained: Vec::new() });
            }
        }
        let takes_it =
            |args: &[ArgSpec]| args.iter().any(|a| matches!(a, ArgSpec::Object { id: arg, .. } if *arg == id));
        let failing: Vec<u64> = self.ready_or_calls().filter(|t| takes_it(&self.tasks[t].args)).collect();
        for task in failing {
            self.fail_task(task, error.clone());
        }
    }
}
