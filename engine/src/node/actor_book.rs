//! The node's record of actors: what each is, where it runs, the calls it
//! has not been sent yet. Pure data; `actors.rs` decides what happens to it.
//!
//! An actor's id is the id of its *handle object*: an empty object that
//! every `ActorHandle` (in any process, inside any value or argument)
//! references like an `ObjectRef`, and that each of its calls and a name
//! count once more. So the node's ordinary reference counting says when no
//! one can call the actor any longer: the object is freed.

use std::collections::{HashMap, VecDeque};

use super::ids::IdMap;

use crate::error::Error;
use crate::options::ActorOptions;
use crate::protocol::SubmitArg;

/// Where an actor's life stands.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Waiting for CPUs, or for its process to be asked for.
    Waiting,
    /// Its process is starting or its constructor has not finished.
    Starting,
    /// Its constructor finished: calls run.
    Alive,
    /// Gone for good: every call fails with this (`ActorDied`).
    Dead(Error),
}

/// One actor.
#[derive(Debug)]
pub(crate) struct ActorEntry {
    /// Its type's registered name (`crate::module::Counter`).
    pub class: &'static str,
    /// Its constructor's registered name.
    pub constructor: &'static str,
    pub options: ActorOptions,
    /// The constructor's arguments, kept (and their objects counted) for
    /// restarts.
    pub args: Vec<SubmitArg>,
    pub phase: Phase,
    /// Its process's connection, once connected.
    pub worker: Option<usize>,
    pub pid: Option<u32>,
    /// The token its process being started will present.
    pub token: Option<u64>,
    pub restarts: u32,
    /// Calls (its constructor first, while starting) not yet sent, in the
    /// order they were made; some may still wait for their arguments.
    pub calls: VecDeque<u64>,
    /// The task running (or queued to run) its constructor.
    pub constructor_task: Option<u64>,
    /// It holds `options.num_cpus` CPUs.
    pub holds_cpus: bool,
    /// Its handle object was freed: no one can call it any more.
    pub unreferenced: bool,
    /// The program its process runs (its creator's, `WorkerConn::program`).
    pub program: u32,
}

impl ActorEntry {
    /// How errors name it: its type, and its name if it has one.
    pub fn label(&self, id: u64) -> String {
        match &self.options.name {
            Some(name) => format!("{} {name:?}", self.class),
            None => format!("{} #{id}", self.class),
        }
    }

    /// Whether it has a process (running or being started).
    pub fn has_process(&self) -> bool {
        self.worker.is_some() || self.token.is_some()
    }
}

/// What a task that is an actor call belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActorCall {
    pub actor: u64,
    /// Who made it: calls from one caller run in the order they were made.
    pub caller: Caller,
    /// It is the actor's constructor.
    pub constructor: bool,
}

/// Who made a call: the connection it came from (`LOCAL` for the node's own
/// process), and the task whose thread made it (0: a thread running no
/// task). Calls are ordered per task, not per process: a task run on top of
/// a blocked one in the same process must not wait behind that one's calls.
pub(crate) type Caller = (u64, u64);

/// The connection of the node's own process, in a [`Caller`].
pub(crate) const LOCAL: u64 = u64::MAX;

/// Every actor of the node, and the work for the dispatcher.
#[derive(Debug, Default)]
pub(crate) struct ActorBook {
    pub actors: IdMap<ActorEntry>,
    /// Live actors by name.
    pub names: HashMap<String, u64>,
    /// Processes being started, by the token they present: their actor.
    pub tokens: HashMap<u64, u64>,
    /// Actors that may have calls to send (or a process to ask for).
    pub work: Vec<u64>,
    /// Tokens of processes to start, for the supervisor, with the program
    /// each runs.
    pub spawn: Vec<(u64, u32)>,
    /// CPUs actors hold.
    pub cpus: u32,
    /// Mixed into every token: the node's worker token, a secret.
    pub token_base: u64,
    next_token: u64,
}

impl ActorBook {
    /// Look at actor `id` in the next dispatch.
    pub fn mark(&mut self, id: u64) {
        if !self.work.contains(&id) {
            self.work.push(id);
        }
    }

    /// Actor `id` no longer holds its CPUs (it died, or no one can call it).
    pub fn release_cpus(&mut self, id: u64) {
        if let Some(entry) = self.actors.get_mut(&id) {
            if std::mem::take(&mut entry.holds_cpus) {
                self.cpus = self.cpus.saturating_sub(entry.options.num_cpus);
            }
        }
    }

    /// Look at every actor with calls in the next dispatch.
    pub fn mark_all(&mut self) {
        let with_calls: Vec<u64> = self.actors.iter().filter(|(_, a)| !a.calls.is_empty()).map(|(&id, _)| id).collect();
        for id in with_calls {
            self.mark(id);
        }
    }

    /// A token for a new process of actor `id`, unlike the pool workers'
    /// and not to be guessed from another actor's (randomly keyed).
    pub fn new_token(&mut self, id: u64) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        self.next_token += 1;
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.token_base);
        h.write_u64(self.next_token);
        let token = h.finish();
        self.tokens.insert(token, id);
        token
    }
}
