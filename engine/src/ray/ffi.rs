//! The shim's C entry points (`shim.cc`), made safe: bytes in, and bytes
//! or a [`Failure`] out. Nothing here knows shoal's ids or values.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// A buffer the shim `malloc`ed (or an exec callback did, for the shim).
#[repr(C)]
pub(super) struct Buf {
    ptr: *mut c_char,
    len: usize,
}

impl Buf {
    fn empty() -> Buf {
        Buf { ptr: std::ptr::null_mut(), len: 0 }
    }

    fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a non-null `ptr` is a live `malloc`ed block of `len`
        // bytes that this `Buf` owns (the shim filled it, or `fill` did),
        // borrowed here for the `Buf`'s lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    /// Fill `out` (a buffer the shim gave an exec callback) with `bytes`,
    /// in memory the shim frees with `free`.
    ///
    /// # Safety
    /// `out` must point to a writable `Buf` that owns nothing.
    pub(super) unsafe fn fill(out: *mut Buf, bytes: &[u8]) {
        // SAFETY: `malloc` of at least one byte; null is handled below.
        let ptr = unsafe { libc::malloc(bytes.len().max(1)) }.cast::<c_char>();
        let len = if ptr.is_null() { 0 } else { bytes.len() };
        if !ptr.is_null() {
            // SAFETY: `ptr` holds `bytes.len()` writable bytes that no one
            // else sees yet; the source is a distinct live slice.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.cast::<u8>(), len) };
        }
        // SAFETY: the caller's contract: `out` is a writable `Buf`.
        unsafe { out.write(Buf { ptr, len }) };
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: the shim's `free` of a block it (or `fill`) `malloc`ed, once.
        unsafe { shoal_ray_free(self) }
    }
}

/// One argument of a call as the shim takes it: bytes passed by value, or
/// an object id passed by reference.
#[repr(C)]
pub(super) struct RawArg {
    ptr: *const u8,
    len: usize,
    by_ref: c_int,
}

impl RawArg {
    /// The bytes of an argument the shim handed an exec callback.
    ///
    /// # Safety
    /// `self` must be one of the shim's arguments to the running callback.
    pub(super) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the shim's arguments point into Ray's argument buffers,
        // alive until the callback returns.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A call's argument.
pub(super) enum CallArg {
    /// Bytes that travel inside the task.
    Value(Vec<u8>),
    /// A Ray object id: Ray resolves it before the task runs.
    Ref(Vec<u8>),
}

fn raw_args(args: &[CallArg]) -> Vec<RawArg> {
    args.iter()
        .map(|a| match a {
            CallArg::Value(b) => RawArg { ptr: b.as_ptr(), len: b.len(), by_ref: 0 },
            CallArg::Ref(id) => RawArg { ptr: id.as_ptr(), len: id.len(), by_ref: 1 },
        })
        .collect()
}

/// How a registered function is run: its name, its arguments, the actor
/// state (a method's; null otherwise), and where its answer goes. Returns
/// 0, or non-zero with a message in `out` (Ray then fails the task).
pub(super) type Exec = unsafe extern "C" fn(*const c_char, *const RawArg, usize, *mut c_void, *mut Buf) -> c_int;

/// What a registered entry is to Ray.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Function = 0,
    Constructor = 1,
    Method = 2,
}

unsafe extern "C" {
    fn shoal_ray_free(buf: *mut Buf);
    fn shoal_ray_init(
        address: *const c_char,
        code_search_path: *const c_char,
        node_ip: *const c_char,
        err: *mut Buf,
    ) -> c_int;
    fn shoal_ray_initialized() -> c_int;
    fn shoal_ray_shutdown();
    fn shoal_ray_put(data: *const u8, len: usize, id: *mut Buf, err: *mut Buf) -> c_int;
    fn shoal_ray_get(id: *const u8, id_len: usize, data: *mut Buf, err: *mut Buf) -> c_int;
    fn shoal_ray_wait(
        ids: *const RawArg,
        n: usize,
        num_objects: c_int,
        timeout_ms: c_int,
        ready: *mut u8,
        err: *mut Buf,
    ) -> c_int;
    fn shoal_ray_add_ref(id: *const u8, len: usize);
    fn shoal_ray_remove_ref(id: *const u8, len: usize);
    fn shoal_ray_call(
        name: *const c_char,
        args: *const RawArg,
        n: usize,
        res_names: *const *const c_char,
        res_amounts: *const f64,
        n_res: usize,
        id: *mut Buf,
        err: *mut Buf,
    ) -> c_int;
    fn shoal_ray_create_actor(
        constructor: *const c_char,
        args: *const RawArg,
        n: usize,
        res_names: *const *const c_char,
        res_amounts: *const f64,
        n_res: usize,
        max_restarts: c_int,
        actor_name: *const c_char,
        id: *mut Buf,
        err: *mut Buf,
    ) -> c_int;
    fn shoal_ray_call_actor(
        method: *const c_char,
        actor: *const u8,
        actor_len: usize,
        args: *const RawArg,
        n: usize,
        id: *mut Buf,
        err: *mut Buf,
    ) -> c_int;
    fn shoal_ray_get_actor(name: *const c_char, id: *mut Buf, err: *mut Buf) -> c_int;
    fn shoal_ray_kill_actor(actor: *const u8, len: usize, err: *mut Buf) -> c_int;
    fn shoal_ray_register(name: *const c_char, kind: c_int, exec: Exec, err: *mut Buf) -> c_int;
}

/// What went wrong in Ray, as the shim classified what it threw.
#[derive(Debug)]
pub(super) enum Failure {
    /// The task failed in Ray's hands (not a panic: those travel as values).
    Task(String),
    /// The worker process died, and so did Ray's retry.
    WorkerDied(String),
    /// The actor's process died or its constructor failed.
    ActorDied(String),
    /// The object was lost (its owner died, or it was freed).
    ObjectLost(String),
    /// A bounded get ran out.
    Timeout,
    /// Anything else Ray reported.
    Ray(String),
    /// Ray found no function of that name in the worker library.
    NotFound(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Task(m) | Failure::WorkerDied(m) | Failure::ActorDied(m) | Failure::ObjectLost(m) => {
                f.write_str(m)
            }
            Failure::Ray(m) | Failure::NotFound(m) => f.write_str(m),
        }
    }
}

fn check(rc: c_int, err: &Buf) -> Result<(), Failure> {
    Err(match rc {
        0 => return Ok(()),
        1 => Failure::Task(err.text()),
        2 => Failure::WorkerDied(err.text()),
        3 => Failure::ActorDied(err.text()),
        4 => Failure::ObjectLost(err.text()),
        5 => Failure::Timeout,
        7 => Failure::NotFound(err.text()),
        _ => Failure::Ray(err.text()),
    })
}

fn c_string(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::Ray(format!("a name holds a NUL byte: {s:?}")))
}

/// Connect this process to the cluster at `address` as a driver; Ray's
/// workers load the libraries in `library_dir`; `node_ip`: this host's
/// address in the cluster ("": Ray's guess).
pub(super) fn init(address: &str, library_dir: &str, node_ip: &str) -> Result<(), Failure> {
    let (address, dir, ip) = (c_string(address)?, c_string(library_dir)?, c_string(node_ip)?);
    let mut err = Buf::empty();
    // SAFETY: NUL-terminated strings alive for the call; `err` is ours.
    check(unsafe { shoal_ray_init(address.as_ptr(), dir.as_ptr(), ip.as_ptr(), &mut err) }, &err)
}

/// Whether Ray runs in this process (a driver after `init`, or a Ray worker).
pub(super) fn initialized() -> bool {
    // SAFETY: no arguments; the shim catches what Ray throws.
    unsafe { shoal_ray_initialized() != 0 }
}

/// Disconnect this driver from the cluster.
pub(super) fn shutdown() {
    // SAFETY: no arguments; the shim catches what Ray throws.
    unsafe { shoal_ray_shutdown() }
}

/// Store `data` in Ray's object store; its object id.
pub(super) fn put(data: &[u8]) -> Result<Vec<u8>, Failure> {
    let (mut id, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: `data` is a live slice for the call; the buffers are ours.
    check(unsafe { shoal_ray_put(data.as_ptr(), data.len(), &mut id, &mut err) }, &err)?;
    Ok(id.bytes().to_vec())
}

/// The bytes of object `id`, once it is ready (a bounded wait is `wait`'s).
pub(super) fn get(id: &[u8]) -> Result<Vec<u8>, Failure> {
    let (mut data, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: `id` is a live slice for the call; the buffers are ours.
    check(unsafe { shoal_ray_get(id.as_ptr(), id.len(), &mut data, &mut err) }, &err)?;
    Ok(data.bytes().to_vec())
}

/// Which of `ids` (distinct) are ready, once `num` are or `timeout_ms` passed.
pub(super) fn wait(ids: &[&[u8]], num: usize, timeout_ms: i32) -> Result<Vec<bool>, Failure> {
    let raw: Vec<RawArg> = ids.iter().map(|id| RawArg { ptr: id.as_ptr(), len: id.len(), by_ref: 1 }).collect();
    let mut ready = vec![0u8; ids.len()];
    let mut err = Buf::empty();
    let num = c_int::try_from(num).unwrap_or(c_int::MAX);
    // SAFETY: `raw` points into `ids`, alive for the call; `ready` holds one
    // byte per id, as the shim writes.
    let rc = unsafe { shoal_ray_wait(raw.as_ptr(), raw.len(), num, timeout_ms, ready.as_mut_ptr(), &mut err) };
    check(rc, &err)?;
    Ok(ready.into_iter().map(|r| r != 0).collect())
}

/// Count one more local reference to object `id`.
pub(super) fn add_ref(id: &[u8]) {
    // SAFETY: `id` is a live slice for the call.
    unsafe { shoal_ray_add_ref(id.as_ptr(), id.len()) }
}

/// Drop a local reference to object `id`.
pub(super) fn remove_ref(id: &[u8]) {
    // SAFETY: `id` is a live slice for the call.
    unsafe { shoal_ray_remove_ref(id.as_ptr(), id.len()) }
}

/// Resource names and amounts as the shim takes them.
struct Resources {
    names: Vec<CString>,
    pointers: Vec<*const c_char>,
    amounts: Vec<f64>,
}

impl Resources {
    fn new(resources: &[(String, f64)]) -> Result<Resources, Failure> {
        let names = resources.iter().map(|(n, _)| c_string(n)).collect::<Result<Vec<_>, _>>()?;
        let pointers = names.iter().map(|n| n.as_ptr()).collect();
        Ok(Resources { names, pointers, amounts: resources.iter().map(|(_, a)| *a).collect() })
    }
}

/// Submit a task of the function registered as `name`; its return object's id.
pub(super) fn call(name: &str, args: &[CallArg], resources: &[(String, f64)]) -> Result<Vec<u8>, Failure> {
    let name = c_string(name)?;
    let raw = raw_args(args);
    let res = Resources::new(resources)?;
    let (mut id, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: every pointer is into a value alive for the call (`raw` into
    // `args`, `res.pointers` into `res.names`), with the lengths given.
    let rc = unsafe {
        shoal_ray_call(
            name.as_ptr(),
            raw.as_ptr(),
            raw.len(),
            res.pointers.as_ptr(),
            res.amounts.as_ptr(),
            res.names.len(),
            &mut id,
            &mut err,
        )
    };
    check(rc, &err)?;
    Ok(id.bytes().to_vec())
}

/// Create an actor by its registered constructor; the actor's id.
pub(super) fn create_actor(
    constructor: &str,
    args: &[CallArg],
    resources: &[(String, f64)],
    max_restarts: u32,
    name: &str,
) -> Result<Vec<u8>, Failure> {
    let (constructor, name) = (c_string(constructor)?, c_string(name)?);
    let raw = raw_args(args);
    let res = Resources::new(resources)?;
    let restarts = c_int::try_from(max_restarts).unwrap_or(c_int::MAX);
    let (mut id, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: as in `call`.
    let rc = unsafe {
        shoal_ray_create_actor(
            constructor.as_ptr(),
            raw.as_ptr(),
            raw.len(),
            res.pointers.as_ptr(),
            res.amounts.as_ptr(),
            res.names.len(),
            restarts,
            name.as_ptr(),
            &mut id,
            &mut err,
        )
    };
    check(rc, &err)?;
    Ok(id.bytes().to_vec())
}

/// Call the registered method `method` of actor `actor`; its return object's id.
pub(super) fn call_actor(method: &str, actor: &[u8], args: &[CallArg]) -> Result<Vec<u8>, Failure> {
    let method = c_string(method)?;
    let raw = raw_args(args);
    let (mut id, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: as in `call`.
    let rc = unsafe {
        shoal_ray_call_actor(method.as_ptr(), actor.as_ptr(), actor.len(), raw.as_ptr(), raw.len(), &mut id, &mut err)
    };
    check(rc, &err)?;
    Ok(id.bytes().to_vec())
}

/// The id of the live actor named `name` in this job's namespace, if any.
pub(super) fn get_actor(name: &str) -> Result<Option<Vec<u8>>, Failure> {
    let name = c_string(name)?;
    let (mut id, mut err) = (Buf::empty(), Buf::empty());
    // SAFETY: a NUL-terminated string alive for the call; the buffers are ours.
    check(unsafe { shoal_ray_get_actor(name.as_ptr(), &mut id, &mut err) }, &err)?;
    Ok((!id.bytes().is_empty()).then(|| id.bytes().to_vec()))
}

/// Kill actor `actor` (no restart).
pub(super) fn kill_actor(actor: &[u8]) -> Result<(), Failure> {
    let mut err = Buf::empty();
    // SAFETY: `actor` is a live slice for the call; `err` is ours.
    check(unsafe { shoal_ray_kill_actor(actor.as_ptr(), actor.len(), &mut err) }, &err)
}

/// Register `name` with Ray's function manager, run by `exec`.
pub(super) fn register(name: &CStr, kind: Kind, exec: Exec) -> Result<(), Failure> {
    let mut err = Buf::empty();
    // SAFETY: a NUL-terminated string alive for the call (the shim copies
    // it); `exec` is a function of the `Exec` signature, callable any time.
    check(unsafe { shoal_ray_register(name.as_ptr(), kind as c_int, exec, &mut err) }, &err)
}
