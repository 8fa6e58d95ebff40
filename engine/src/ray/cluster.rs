//! This process's connection to a Ray cluster: what `Runtime::Ray` holds,
//! in a driver (after `init` with [`Config::ray`](crate::Config::ray)) and
//! in a task running in a Ray worker. It maps shoal's `u64` object ids,
//! which the public API and `RefHandle` carry, onto Ray's object and actor
//! ids, and counts Ray's local references as handles come and go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shoal_store::Layout;

use super::ffi::{self, CallArg, Failure};
use super::frame::{self, Opened, Plan, Planned};
use super::table;
use crate::error::{Error, Result};
use crate::options::{ActorOptions, TaskOptions};
use crate::protocol::SubmitArg;

/// Values at most this large, holding no array, travel inside the task
/// (Ray's own limit for inlined arguments is 100 KiB).
const INLINE_MAX: usize = 100 * 1024;

/// What a shoal id stands for.
#[derive(Clone)]
enum Target {
    /// A Ray object (`element`: that output of a several-outputs task's
    /// object), made by `function` (named in errors).
    Object { ray: Vec<u8>, element: Option<u32>, function: &'static str },
    /// A Ray actor.
    Actor { ray: Vec<u8> },
    /// A task that failed before Ray saw it (its arguments could not be
    /// prepared, or Ray refused the submission).
    Failed(Error),
}

struct Entry {
    target: Target,
    /// Live handles to this id.
    count: usize,
}

/// See the module's doc.
pub(crate) struct Cluster {
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Where the cluster's workers find the worker library (a driver's
    /// `Config::ray_library`; empty in a worker), for error messages.
    library: String,
}

/// Ray's failure of a call that reads no task's object.
fn cluster_error(e: Failure) -> Error {
    Error::Ray(e.to_string())
}

impl Cluster {
    pub(super) fn new(library: String) -> Cluster {
        Cluster { entries: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1), library }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new id for `target`, with one handle counted. A new Ray object's
    /// first id takes over the local reference Ray counted when it made
    /// the object (as ray-cpp's own `Put` and calls do); further ids to the
    /// same object are [`insert_another`](Self::insert_another). ray-cpp
    /// counts no references to actors: they live until killed or their
    /// driver leaves.
    fn insert(&self, target: Target) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries().insert(id, Entry { target, count: 1 });
        id
    }

    /// [`insert`](Self::insert) of one more id to an object that has one.
    fn insert_another(&self, target: Target) -> u64 {
        if let Target::Object { ray, .. } = &target {
            ffi::add_ref(ray);
        }
        self.insert(target)
    }

    fn target(&self, id: u64) -> Result<Target> {
        self.entries().get(&id).map(|e| e.target.clone()).ok_or(Error::ObjectNotFound(id))
    }

    /// One more handle to `id`; `false` for an id this process never had.
    pub(crate) fn acquire(&self, id: u64) -> bool {
        match self.entries().get_mut(&id) {
            Some(entry) => {
                entry.count += 1;
                true
            }
            None => false,
        }
    }

    /// One handle to `id` fewer; the last one drops Ray's reference.
    pub(crate) fn release(&self, id: u64) {
        let gone = {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(&id) else { return };
            entry.count -= 1;
            if entry.count > 0 {
                return;
            }
            entries.remove(&id)
        };
        if let Some(Entry { target: Target::Object { ray, .. }, .. }) = gone {
            ffi::remove_ref(&ray);
        }
    }

    /// Whether a value of `layout` travels inside the task.
    pub(crate) fn is_inline(&self, layout: &Layout) -> bool {
        layout.fits_inline(INLINE_MAX)
    }

    /// Store a value of `layout` (see `Runtime::put_with`).
    pub(crate) fn put_with(&self, layout: Layout, write: impl FnOnce(&Layout, &mut [u8]) -> Result<()>) -> Result<u64> {
        refuse_refs(layout.contained_refs())?;
        let len = layout.total_len();
        let frame = frame::value_with(len, |dst| write(&layout, dst))?;
        let ray = ffi::put(frame.bytes()).map_err(cluster_error)?;
        Ok(self.insert(Target::Object { ray, element: None, function: "put" }))
    }

    /// Store bytes already in store format.
    pub(crate) fn put_bytes(&self, bytes: &[u8], refs: Vec<u64>) -> Result<u64> {
        refuse_refs(&refs)?;
        let ray = ffi::put(&frame::value(bytes)).map_err(cluster_error)?;
        Ok(self.insert(Target::Object { ray, element: None, function: "put" }))
    }

    /// The call's arguments for Ray: the plan first, then each argument.
    fn call_args(&self, args: Vec<SubmitArg>) -> Result<Vec<CallArg>> {
        let mut plan = Vec::with_capacity(args.len());
        let build = crate::registry::build_hash();
        let mut call = Vec::with_capacity(args.len() + 1);
        call.push(CallArg::Value(Vec::new()));
        for arg in args {
            match arg {
                SubmitArg::Inline { bytes, fingerprint, refs } => {
                    refuse_refs(&refs)?;
                    plan.push(Planned { fingerprint, element: None });
                    call.push(CallArg::Value(frame::value(&bytes)));
                }
                SubmitArg::Object { id, fingerprint } => match self.target(id)? {
                    Target::Object { ray, element, .. } => {
                        plan.push(Planned { fingerprint, element });
                        call.push(CallArg::Ref(ray));
                    }
                    Target::Actor { .. } => {
                        return Err(Error::Unsupported(
                            "an actor handle as an argument on the Ray backend (ray-cpp passes handles by value only to C++ code)".into(),
                        ));
                    }
                    Target::Failed(e) => return Err(e),
                },
            }
        }
        let plan = Plan { build, args: plan };
        call[0] = CallArg::Value(postcard::to_stdvec(&plan).map_err(|e| Error::Serialization(e.to_string()))?);
        Ok(call)
    }

    /// Submit a task, or a call of actor `actor`'s method (see `Runtime::submit`).
    pub(crate) fn submit(
        &self,
        function: &'static str,
        options: &TaskOptions,
        args: Vec<SubmitArg>,
        num_returns: usize,
        failure: Option<Error>,
        actor: Option<u64>,
    ) -> Vec<u64> {
        let submitted = (|| {
            if let Some(e) = failure {
                return Err(e);
            }
            if options.streaming {
                return Err(Error::Unsupported(format!(
                    "streaming `{function}` on the Ray backend: ray-cpp 2.60 has no generator tasks"
                )));
            }
            let call = self.call_args(args)?;
            match actor {
                Some(actor) => match self.target(actor)? {
                    Target::Actor { ray } => ffi::call_actor(function, &ray, &call).map_err(cluster_error),
                    // The actor could not be created: its calls fail so.
                    Target::Failed(e) => Err(e),
                    Target::Object { .. } => Err(Error::InvalidArgument(format!("{actor} is no actor"))),
                },
                None => {
                    let mut resources = options.resources.clone();
                    if options.num_cpus > 0 {
                        resources.push(("CPU".into(), f64::from(options.num_cpus)));
                    }
                    ffi::call(function, &call, &resources).map_err(cluster_error)
                }
            }
        })();
        match submitted {
            Ok(ray) if num_returns == 1 => vec![self.insert(Target::Object { ray, element: None, function })],
            Ok(ray) => (0..num_returns)
                .map(|i| {
                    let target = Target::Object { ray: ray.clone(), element: Some(i as u32), function };
                    if i == 0 { self.insert(target) } else { self.insert_another(target) }
                })
                .collect(),
            Err(e) => (0..num_returns).map(|_| self.insert(Target::Failed(e.clone()))).collect(),
        }
    }

    /// Create an actor of `class` (see `Runtime::create_actor`).
    pub(crate) fn create_actor(
        &self,
        class: &'static str,
        options: &ActorOptions,
        args: Vec<SubmitArg>,
        failure: Option<Error>,
    ) -> u64 {
        let created = (|| {
            if let Some(e) = failure {
                return Err(e);
            }
            let constructor = table::constructor_of(class)
                .ok_or_else(|| Error::FunctionNotFound { function: class.into(), program: self.library.clone() })?;
            let call = self.call_args(args)?;
            let mut resources = Vec::new();
            if options.num_cpus > 0 {
                resources.push(("CPU".to_string(), f64::from(options.num_cpus)));
            }
            let name = options.name.as_deref().unwrap_or("");
            ffi::create_actor(constructor, &call, &resources, options.max_restarts, name).map_err(cluster_error)
        })();
        match created {
            Ok(ray) => self.insert(Target::Actor { ray }),
            Err(e) => self.insert(Target::Failed(e)),
        }
    }

    /// The live actor named `name`, and its class.
    pub(crate) fn get_actor(&self, name: &str) -> Result<(u64, String)> {
        let ray = ffi::get_actor(name).map_err(cluster_error)?.ok_or_else(|| Error::ActorNotFound(name.into()))?;
        // Ray records no shoal class: the actor's process says.
        let probe = ffi::call_actor(table::CLASS_METHOD, &ray, &[]).map_err(cluster_error)?;
        let class = String::from_utf8_lossy(&self.read_builtin(&probe, table::CLASS_METHOD)?).into_owned();
        Ok((self.insert(Target::Actor { ray }), class))
    }

    /// What the worker library was built from (its built-in entry's answer).
    pub(super) fn library_table(&self) -> Result<table::LibraryTable> {
        let ray = ffi::call(table::TABLE_FUNCTION, &[], &[]).map_err(cluster_error)?;
        let bytes = self.read_builtin(&ray, table::TABLE_FUNCTION)?;
        postcard::from_bytes(&bytes).map_err(|e| Error::Serialization(e.to_string()))
    }

    /// The answer of a built-in entry's call, object `ray` (whose
    /// reference this drops).
    fn read_builtin(&self, ray: &[u8], entry: &str) -> Result<Vec<u8>> {
        let data = ffi::get(ray);
        ffi::remove_ref(ray);
        let data = data.map_err(|e| self.failure(e, entry, None))?;
        match frame::open(&data, None)? {
            Opened::Value(v) => Ok(v.to_vec()),
            Opened::Failed(e) => Err(e),
        }
    }

    /// Why object `id` cannot be streamed: streaming tasks fail at submission.
    pub(crate) fn failure_of(&self, id: u64) -> Error {
        match self.target(id) {
            Ok(Target::Failed(e)) | Err(e) => e,
            Ok(_) => Error::Unsupported("streaming on the Ray backend".into()),
        }
    }

    /// Kill actor `id`; returns once calls made after it fail.
    pub(crate) fn kill_actor(&self, id: u64) -> Result<()> {
        let ray = match self.target(id)? {
            Target::Actor { ray } => ray,
            Target::Failed(_) => return Ok(()),
            Target::Object { .. } => return Err(Error::InvalidArgument(format!("{id} is no actor"))),
        };
        ffi::kill_actor(&ray).map_err(cluster_error)?;
        // Ray kills asynchronously: a call made just after could still run.
        // Calls run in order, so once one fails as dead, all later ones do.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Ray("the actor was still alive 30 s after it was killed".into()));
            }
            // A call refused at submission: the actor is gone already.
            let Ok(probe) = ffi::call_actor(table::CLASS_METHOD, &ray, &[]) else { return Ok(()) };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let answered = ffi::wait(&[&probe], 1, ms).map(|ready| ready[0]);
            let got = match answered {
                Ok(true) => Some(ffi::get(&probe)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            };
            ffi::remove_ref(&probe);
            match got {
                Some(Err(Failure::ActorDied(_))) => return Ok(()),
                Some(Err(e)) => return Err(self.failure(e, table::CLASS_METHOD, None)),
                Some(Ok(_)) => std::thread::sleep(Duration::from_millis(10)),
                None => {}
            }
        }
    }

    /// The error Ray's `failure` of `function`'s object means.
    fn failure(&self, failure: Failure, function: &str, timeout: Option<Duration>) -> Error {
        match failure {
            Failure::Timeout => Error::Timeout(timeout.unwrap_or_default()),
            Failure::WorkerDied(cause) => Error::WorkerDied {
                function: function.into(),
                pid: 0,
                // ray-cpp 2.60 submits every task with one retry.
                attempts: 2,
                cause,
                stderr: String::new(),
            },
            // A method's name is its type's path, then its own.
            Failure::ActorDied(cause) => {
                Error::ActorDied { actor: function.rsplit_once("::").map_or(function, |(t, _)| t).into(), cause }
            }
            Failure::NotFound(_) => {
                Error::FunctionNotFound { function: function.into(), program: self.library.clone() }
            }
            Failure::Task(m) if m.contains("function not found") => {
                Error::FunctionNotFound { function: function.into(), program: self.library.clone() }
            }
            Failure::Task(m) | Failure::ObjectLost(m) | Failure::Ray(m) => Error::Ray(format!("`{function}`: {m}")),
        }
    }

    /// The value of object `id`, read as a `V` written as `written_as`.
    pub(crate) fn get<V: crate::Value>(&self, id: u64, written_as: u64, timeout: Option<Duration>) -> Result<V> {
        let (ray, element, function) = match self.target(id)? {
            Target::Object { ray, element, function } => (ray, element, function),
            Target::Failed(e) => return Err(e),
            Target::Actor { .. } => return Err(Error::InvalidArgument(format!("{id} is an actor, not an object"))),
        };
        if let Some(t) = timeout {
            let ms = i32::try_from(t.as_millis()).unwrap_or(i32::MAX);
            // A ready object is read even with a zero timeout.
            let ready = ffi::wait(&[&ray], 1, ms).map_err(|e| self.failure(e, function, timeout))?;
            if !ready[0] {
                return Err(Error::Timeout(t));
            }
        }
        let data = ffi::get(&ray).map_err(|e| self.failure(e, function, timeout))?;
        match frame::open(&data, element)? {
            Opened::Value(bytes) => frame::decode(bytes, written_as),
            Opened::Failed(e) => Err(e),
        }
    }

    /// Indexes of the ready among `ids`, at most `num`, once `num` are or
    /// `deadline` passed (see `shoal::wait`).
    pub(crate) fn wait(&self, ids: &[u64], num: usize, deadline: Option<Instant>) -> Result<Vec<usize>> {
        // Several outputs of one task are one Ray object; Ray wants each once.
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        let mut slot = Vec::with_capacity(ids.len());
        for &id in ids {
            slot.push(match self.target(id)? {
                Target::Object { ray, .. } => Some(match distinct.iter().position(|d| *d == ray) {
                    Some(i) => i,
                    None => {
                        distinct.push(ray);
                        distinct.len() - 1
                    }
                }),
                Target::Failed(_) => None,
                Target::Actor { .. } => return Err(Error::InvalidArgument(format!("{id} is an actor, not an object"))),
            });
        }
        // Ray's `Wait` counts objects, not ids (and answers at most as many
        // as asked): ask for the fewest objects that could cover the ids
        // still missing, again until `num` ids are covered or the deadline
        // passes. One call when each id is an object of its own.
        let mut ready = vec![false; distinct.len()];
        let covered = |ready: &[bool]| slot.iter().filter(|s| s.is_none_or(|i| ready[i])).count();
        let ids_of = |object: usize| slot.iter().filter(|s| **s == Some(object)).count();
        loop {
            let missing = num.saturating_sub(covered(&ready));
            let mut waiting: Vec<usize> = (0..distinct.len()).filter(|&i| !ready[i]).collect();
            if missing == 0 || waiting.is_empty() {
                break;
            }
            waiting.sort_by_key(|&i| std::cmp::Reverse(ids_of(i)));
            let mut ask = 0;
            let mut would_cover = 0;
            while would_cover < missing && ask < waiting.len() {
                would_cover += ids_of(waiting[ask]);
                ask += 1;
            }
            let timeout_ms = deadline.map_or(-1, |d| {
                i32::try_from(d.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(i32::MAX)
            });
            let refs: Vec<&[u8]> = waiting.iter().map(|&i| distinct[i].as_slice()).collect();
            let now = ffi::wait(&refs, ask, timeout_ms).map_err(cluster_error)?;
            let mut more = false;
            for (k, &i) in waiting.iter().enumerate() {
                if now[k] {
                    ready[i] = true;
                    more = true;
                }
            }
            if !more {
                break; // the deadline passed
            }
        }
        Ok(slot.iter().enumerate().filter(|(_, s)| s.is_none_or(|i| ready[i])).map(|(i, _)| i).take(num).collect())
    }
}

/// Refs inside values are not carried on the Ray backend.
fn refuse_refs(refs: &[u64]) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    Err(Error::Unsupported(
        "object refs inside values on the Ray backend: ray-cpp's calls by name carry no owner for them; pass each ref as an argument".into(),
    ))
}
