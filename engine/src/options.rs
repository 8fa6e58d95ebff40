//! Per-call options of a remote function.

use serde::{Deserialize, Serialize};

/// Per-call options of a remote function: `NAME::options().max_retries(5).remote(…)`.
///
/// ```no_run
/// #[shoal::remote]
/// fn train(steps: u32) -> f64 { steps as f64 }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default().resource("gpu", 2.0))?;
/// let r = train::options().max_retries(0).num_cpus(1).resource("gpu", 1.0).remote(100);
/// assert_eq!(shoal::get(&r)?, 100.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    pub(crate) max_retries: u32,
    pub(crate) retry_panics: bool,
    pub(crate) num_cpus: u32,
    /// Custom resources the task holds while it runs, by name.
    pub(crate) resources: Vec<(String, f64)>,
    /// A streaming task pauses while this many items are not taken.
    pub(crate) backpressure: Option<u32>,
    /// It is a streaming function's (set by generated code): it never runs
    /// on top of a blocked task, which may be its consumer.
    pub(crate) streaming: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            max_retries: 3,
            retry_panics: false,
            num_cpus: 1,
            resources: Vec::new(),
            backpressure: None,
            streaming: false,
        }
    }
}

impl TaskOptions {
    /// Times the task is started again if its worker process dies (default 3):
    /// the worker is replaced at once and the task re-run on another one;
    /// past that, every output is [`Error::WorkerDied`](crate::Error::WorkerDied).
    /// `0` fails at the first death. A panic is not retried unless
    /// [`retry_panics`](Self::retry_panics) says so.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Whether a panic is retried too (default `false`: a panic is the
    /// function's answer), within the same `max_retries` as worker deaths:
    /// Ray's `retry_exceptions`. For functions that fail transiently (a
    /// flaky download). The last attempt's `TaskPanicked` is what `get` sees.
    ///
    /// ```no_run
    /// #[shoal::remote]
    /// fn fetch(url: String) -> usize { url.len() }
    ///
    /// # fn main() -> shoal::Result<()> {
    /// let _node = shoal::init(shoal::Config::default())?;
    /// let page = fetch::options().retry_panics(true).max_retries(5).remote("https://example.com".to_string());
    /// assert_eq!(shoal::get(&page)?, 19);
    /// # Ok(()) }
    /// ```
    pub fn retry_panics(mut self, retry: bool) -> Self {
        self.retry_panics = retry;
        self
    }

    /// CPUs the task occupies while it runs (default 1). A task waits until
    /// that many are free; one asking for more than the node has fails with
    /// [`Error::Unschedulable`](crate::Error::Unschedulable). A task blocked
    /// in a nested `get` or `wait` gives its CPUs back while it waits.
    pub fn num_cpus(mut self, cpus: u32) -> Self {
        self.num_cpus = cpus;
        self
    }

    /// An amount of a custom resource the task holds while it runs (declared
    /// on the node with [`Config::resource`](crate::Config::resource)). A task
    /// waits until its resources are free; asking for more than the node has
    /// is [`Error::Unschedulable`](crate::Error::Unschedulable). Unlike CPUs,
    /// resources stay held while the task blocks in a nested `get`. Giving
    /// the same name twice sets it again.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        let name = name.into();
        self.resources.retain(|(n, _)| *n != name);
        if amount > 0.0 {
            self.resources.push((name, amount));
        }
        self
    }

    /// For a streaming function (`#[shoal::remote(streaming)]`): pause the
    /// producer while `items` of its items are not taken from its
    /// [`ObjectRefStream`](crate::ObjectRefStream) (default: never pause, as
    /// in Ray). `0` is taken as `1`. Other functions ignore it.
    pub fn backpressure(mut self, items: u32) -> Self {
        self.backpressure = Some(items.max(1));
        self
    }
}

/// Options of an actor, given when it is created:
/// `Counter::options().name("hits").max_restarts(2).remote(0)`.
///
/// ```no_run
/// pub struct Counter { n: i64 }
///
/// #[shoal::actor]
/// impl Counter {
///     pub fn new(start: i64) -> Self { Counter { n: start } }
///     pub fn add(&mut self, k: i64) -> i64 { self.n += k; self.n }
/// }
///
/// # fn main() -> shoal::Result<()> {
/// let _node = shoal::init(shoal::Config::default())?;
/// let hits = Counter::options().name("hits").max_restarts(2).max_task_retries(1).remote(0);
/// let same: shoal::ActorHandle<Counter> = shoal::get_actor("hits")?;
/// assert_eq!(shoal::get(&same.add(1))?, 1);
/// shoal::kill(&hits)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActorOptions {
    pub(crate) num_cpus: u32,
    pub(crate) name: Option<String>,
    pub(crate) max_restarts: u32,
    pub(crate) max_task_retries: u32,
}

impl ActorOptions {
    /// CPUs the actor holds for as long as it lives (default 0: an actor
    /// does not take a CPU from the task pool, as in Ray). Tasks then share
    /// the CPUs left; the actor starts once that many are free.
    pub fn num_cpus(mut self, cpus: u32) -> Self {
        self.num_cpus = cpus;
        self
    }

    /// Register the actor under `name`, for [`get_actor`](crate::get_actor)
    /// from any process of the node. A named actor lives until
    /// [`kill`](crate::kill)ed or the node stops, handles or not. A name
    /// already taken by a live actor makes this one dead on arrival: its
    /// calls fail with [`Error::ActorDied`](crate::Error::ActorDied) saying so.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Times the actor's process is started again, running `new` with the
    /// same arguments (its state starts over), when it dies (default 0).
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.max_restarts = restarts;
        self
    }

    /// Times a call that was running when the actor's process died is run
    /// again on the restarted actor (default 0: it fails with
    /// [`Error::ActorDied`](crate::Error::ActorDied)). Calls that had not
    /// started yet are never charged.
    pub fn max_task_retries(mut self, retries: u32) -> Self {
        self.max_task_retries = retries;
        self
    }
}
