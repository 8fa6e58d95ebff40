//! The worker library: a user's crate built as a `cdylib` with the `ray`
//! feature, which Ray's C++ workers (`default_worker`) load from the
//! driver's `code_search_path`. When it loads, every `#[shoal::remote]`
//! function, actor constructor and method of its registry is registered
//! under its shoal name with the function manager of `libray_api.so`; one
//! generic entry ([`exec`]) runs them all, values as frames (`frame.rs`).
//!
//! Two built-in entries serve the driver (`table.rs`): the library's build
//! hash and function table, and an actor's class.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};

use super::cluster::Cluster;
use super::ffi::{self, Buf, Kind, RawArg};
use super::frame::{self, Opened, Plan};
use super::table::{CLASS_METHOD, TABLE_FUNCTION, own_table};
use crate::error::{Error, Result, panic_message};
use crate::object_ref::ArgReader;
use crate::protocol::ArgData;
use crate::registry::{self, Invoke, REMOTE_FUNCTIONS};
use crate::runtime::Runtime;
use crate::task::Output;

/// An actor's state in its process: its class, and what `new` made.
struct ActorState {
    class: &'static str,
    state: Box<dyn Any + Send>,
}

// Registration runs when the library (or a driver built with the feature)
// loads, before any task can arrive. In a driver it is harmless: Ray runs
// no task in a driver.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register_all;

extern "C" fn register_all() {
    let _ = catch_unwind(|| {
        let builtins = [(TABLE_FUNCTION, Kind::Function), (CLASS_METHOD, Kind::Method)];
        let entries = REMOTE_FUNCTIONS.iter().map(|f| {
            let kind = match f.invoke {
                Invoke::Function(_) | Invoke::Stream(_) => Kind::Function,
                Invoke::Constructor { .. } => Kind::Constructor,
                Invoke::Method { .. } | Invoke::StreamMethod { .. } => Kind::Method,
            };
            (f.name, kind)
        });
        for (name, kind) in builtins.into_iter().chain(entries) {
            let Ok(c_name) = CString::new(name) else { continue };
            if let Err(e) = ffi::register(&c_name, kind, exec) {
                eprintln!("shoal: cannot register `{name}` with Ray: {e}");
            }
        }
    });
}

/// The runtime tasks in this Ray worker use (nested calls, `put`, `get`).
fn worker_runtime() -> Runtime {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if !Runtime::installed() {
            let _ = Runtime::install(Runtime::Ray(Arc::new(Cluster::new(String::new()))));
        }
    });
    Runtime::current().expect("installed above")
}

/// The one entry Ray calls for every registered name (see `ffi::Exec`).
unsafe extern "C" fn exec(
    name: *const c_char,
    args: *const RawArg,
    n: usize,
    actor: *mut c_void,
    out: *mut Buf,
) -> c_int {
    // SAFETY: the shim passes the registered name, NUL-terminated, alive
    // for the call.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    let args: Vec<&[u8]> = (0..n)
        // SAFETY: the shim passes `n` arguments at `args`, each alive for
        // the call (`RawArg::bytes`' contract).
        .map(|i| unsafe { (*args.add(i)).bytes() })
        .collect();
    let answer = catch_unwind(AssertUnwindSafe(|| run(&name, &args, actor)));
    let (rc, bytes) = match answer {
        Ok(Ok(bytes)) => (0, bytes),
        Ok(Err(message)) => (1, message.into_bytes()),
        Err(_) => (1, format!("shoal's entry for `{name}` panicked").into_bytes()),
    };
    // SAFETY: `out` is the shim's empty buffer for this call's answer.
    unsafe { Buf::fill(out, &bytes) };
    rc
}

/// Run entry `name`: `Ok` with the answer's bytes (a frame, or a new
/// actor's state pointer), `Err` with a message for Ray to fail the call
/// with (a constructor that failed; anything that is no task's own failure).
fn run(name: &str, args: &[&[u8]], actor: *mut c_void) -> std::result::Result<Vec<u8>, String> {
    let runtime = worker_runtime();
    if name == TABLE_FUNCTION {
        return Ok(frame::value(&postcard::to_stdvec(&own_table()).map_err(|e| e.to_string())?));
    }
    let state = || {
        // SAFETY: a non-null `actor` is the pointer this library's
        // constructor answered (`Box::into_raw` below), which Ray hands back
        // only to methods run in the actor's own process, one call at a
        // time (ray-cpp's actors run one call at a time by default).
        (!actor.is_null()).then(|| unsafe { &mut *actor.cast::<ActorState>() })
    };
    if name == CLASS_METHOD {
        let state = state().ok_or("no actor")?;
        return Ok(frame::value(state.class.as_bytes()));
    }
    let Some(function) = registry::lookup(name) else {
        // Ray calls only what was registered from the registry: never met.
        return Ok(frame::failed(&Error::FunctionNotFound { function: name.into(), program: library_path() }));
    };
    let pid = std::process::id();
    let panicked = |payload: Box<dyn Any + Send>| Error::TaskPanicked {
        function: name.into(),
        message: panic_message(&*payload),
        pid,
    };
    let args = match arguments(args) {
        Ok(args) => args,
        // An argument's failure is the call's own: it flows on unchanged.
        Err(e) if !matches!(function.invoke, Invoke::Constructor { .. }) => return Ok(frame::failed(&e)),
        Err(e) => return Err(e.to_string()),
    };
    let mut reader = ArgReader { runtime: &runtime, args: args.into_iter() };
    let outputs = match &function.invoke {
        Invoke::Function(f) => catch_unwind(AssertUnwindSafe(|| f(&mut reader))).unwrap_or_else(|p| Err(panicked(p))),
        Invoke::Method { call, .. } => {
            let state = state().ok_or("a method called without its actor")?;
            catch_unwind(AssertUnwindSafe(|| call(&mut *state.state, &mut reader))).unwrap_or_else(|p| Err(panicked(p)))
        }
        Invoke::Constructor { class, new } => {
            let made = catch_unwind(AssertUnwindSafe(|| new(&mut reader))).unwrap_or_else(|p| Err(panicked(p)));
            let state = made.map_err(|e| e.to_string())?;
            let pointer = Box::into_raw(Box::new(ActorState { class, state }));
            return Ok((pointer as usize).to_ne_bytes().to_vec());
        }
        Invoke::Stream(_) | Invoke::StreamMethod { .. } => Err(Error::Unsupported(format!(
            "streaming `{name}` on the Ray backend: ray-cpp 2.60 has no generator tasks"
        ))),
    };
    Ok(match outputs {
        Ok(mut outputs) if outputs.len() == 1 => encode(outputs.pop().expect("one output")),
        Ok(outputs) => frame::outputs(outputs.into_iter().map(|o| serde_bytes::ByteBuf::from(encode(o))).collect()),
        Err(e) => frame::failed(&e),
    })
}

/// The call's arguments as the reader takes them (after the plan); the
/// first failure among them, if one is. A call from a driver of another
/// build is refused: this node's copy of the library is stale.
fn arguments(args: &[&[u8]]) -> Result<Vec<ArgData>> {
    let Some((plan, args)) = args.split_first() else {
        return Err(Error::InvalidArgument("a call without its plan".into()));
    };
    let plan: Plan = postcard::from_bytes(plan).map_err(|e| Error::Serialization(e.to_string()))?;
    let ours = registry::build_hash();
    if plan.build != ours {
        return Err(Error::WorkerStartup(format!(
            "the worker library on this node ({}) was built from other code than the driver (build {ours:016x}, the driver's {:016x}): rebuild it, at the same path on every node",
            library_path(),
            plan.build
        )));
    }
    if plan.args.len() != args.len() {
        return Err(Error::InvalidArgument(format!("{} arguments for a plan of {}", args.len(), plan.args.len())));
    }
    plan.args
        .iter()
        .zip(args)
        .map(|(planned, bytes)| match frame::open(bytes, planned.element)? {
            Opened::Value(v) => Ok(ArgData::Inline { bytes: v.to_vec(), fingerprint: planned.fingerprint }),
            Opened::Failed(e) => Err(e),
        })
        .collect()
}

/// Where this library was loaded from (for messages).
fn library_path() -> String {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            let here = library_path as fn() -> String as usize;
            maps.lines().find_map(|line| {
                let (range, rest) = line.split_once(' ')?;
                let (lo, hi) = range.split_once('-')?;
                let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
                // perms, offset, dev, inode, then the path (which may hold spaces).
                (lo <= here && here < hi).then(|| rest.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
            })
        })
        .unwrap_or_default()
}

/// One output's frame.
fn encode(output: Output) -> Vec<u8> {
    let encoded = output.0.and_then(|(layout, write)| {
        if !layout.contained_refs().is_empty() {
            return Err(Error::Unsupported(
                "object refs inside a task's return value on the Ray backend: ray-cpp's calls by name carry no owner for them".into(),
            ));
        }
        let len = layout.total_len();
        let written = catch_unwind(AssertUnwindSafe(|| {
            frame::value_with(len, |dst| write(&layout, dst).map_err(Error::from))
        }));
        written.unwrap_or_else(|_| Err(Error::Serialization("serializing an output panicked".into())))
    });
    match encoded {
        Ok(frame) => frame.bytes().to_vec(),
        Err(e) => frame::failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::frame::Planned;

    fn plan_of(build: u64, args: &[(u64, Option<u32>)]) -> Vec<u8> {
        let args = args.iter().map(|&(fingerprint, element)| Planned { fingerprint, element }).collect();
        postcard::to_stdvec(&Plan { build, args }).expect("encodes")
    }

    fn plan(args: &[(u64, Option<u32>)]) -> Vec<u8> {
        plan_of(registry::build_hash(), args)
    }

    #[test]
    fn arguments_follow_their_plan() {
        let one = frame::value(&[1, 2, 3]);
        let got = arguments(&[&plan(&[(42, None)]), &one]).expect("decodes");
        assert!(matches!(&got[..], [ArgData::Inline { bytes, fingerprint: 42 }] if bytes == &[1, 2, 3]));
    }

    #[test]
    fn an_argument_that_failed_is_the_call_s_failure() {
        let e = Error::TaskPanicked { function: "up".into(), message: "m".into(), pid: 1 };
        let got = arguments(&[&plan(&[(1, None), (2, None)]), &frame::value(&[0]), &frame::failed(&e)]);
        assert_eq!(got.err(), Some(e));
    }

    #[test]
    fn a_call_out_of_shape_is_refused() {
        assert!(matches!(arguments(&[]), Err(Error::InvalidArgument(_))), "no plan");
        assert!(matches!(arguments(&[&[0xff, 0xff]]), Err(Error::Serialization(_))), "a plan that is none");
        let short = arguments(&[&plan(&[(1, None), (2, None)]), &frame::value(&[0])]);
        assert!(matches!(short, Err(Error::InvalidArgument(_))), "{:?}", short.err());
    }

    #[test]
    fn a_driver_of_another_build_is_refused_on_every_call() {
        let stale = arguments(&[&plan_of(registry::build_hash() ^ 1, &[(1, None)]), &frame::value(&[0])]);
        match stale {
            Err(Error::WorkerStartup(m)) => assert!(m.contains("built from other code"), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }
}
