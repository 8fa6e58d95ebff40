//! A program's code as a node knows it: the names it registers (with
//! their source hashes), its actor types and methods, and its build hash
//! (`NodeCode`); read from this binary's registry (`registry::code`) or
//! from another program, which describes itself when run with
//! [`ENV_DESCRIBE`] (`registry::describe` prints, [`code_of`] reads).

use std::collections::{HashMap, HashSet};

use crate::error::Error;

/// The code a node runs: the registered function names of this binary and
/// the hash a worker's build must match (see `registry`).
pub(crate) struct NodeCode {
    /// Every registered name (functions, constructors, methods).
    pub names: Vec<&'static str>,
    /// Each name's source hash, in the same order.
    pub sources: Vec<u64>,
    pub build_hash: u64,
    /// Actor methods: (name, class).
    pub methods: Vec<(&'static str, &'static str)>,
    /// Actor types: (class, constructor).
    pub classes: Vec<(&'static str, &'static str)>,
}

/// A program's code as the node looks names up in it: its remote
/// functions (not actor code), its methods with their class, its actor
/// types with their constructor.
pub(crate) struct CodeTable {
    functions: HashSet<&'static str>,
    methods: HashMap<&'static str, &'static str>,
    classes: HashMap<&'static str, &'static str>,
}

impl CodeTable {
    /// The table of `code`'s names.
    pub fn new(code: &NodeCode) -> CodeTable {
        let methods: HashMap<_, _> = code.methods.iter().copied().collect();
        let classes: HashMap<_, _> = code.classes.iter().copied().collect();
        let actor_code = |n: &&'static str| methods.contains_key(n) || classes.values().any(|c| c == n);
        CodeTable { functions: code.names.iter().copied().filter(|n| !actor_code(n)).collect(), methods, classes }
    }

    /// The registered name `name`, if it is a remote function here.
    pub fn function(&self, name: &str) -> Option<&'static str> {
        self.functions.get(name).copied()
    }

    /// The method `name` and its class, if it is one here.
    pub fn method(&self, name: &str) -> Option<(&'static str, &'static str)> {
        self.methods.get_key_value(name).map(|(&name, &class)| (name, class))
    }

    /// The actor type `class` and its constructor, if it is one here.
    pub fn actor_class(&self, class: &str) -> Option<(&'static str, &'static str)> {
        self.classes.get_key_value(class).map(|(&class, &constructor)| (class, constructor))
    }
}

/// Set in a program's environment to make it print its code
/// (`registry::describe`) and exit, before `main`.
pub(crate) const ENV_DESCRIBE: &str = "SHOAL_DESCRIBE";

/// How long a program may take to describe itself, and how much it may say.
const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const DESCRIBE_MAX_BYTES: u64 = 16 << 20;

/// The code of the program at `path`, as it describes itself (run with
/// [`ENV_DESCRIBE`]). Its names live as long as the process (a node learns a
/// program once).
pub(crate) fn code_of(path: &std::path::Path) -> Result<NodeCode, Error> {
    let bad = |why: String| Error::WorkerStartup(format!("worker program `{}`: {why}", path.display()));
    let not_shoal = || bad("it does not describe itself: is it a shoal program (built with this shoal)?".into());
    let mut child = std::process::Command::new(path)
        .env(ENV_DESCRIBE, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| bad(format!("cannot run it: {e}")))?;
    // A program that is no shoal program runs its own `main`: it gets a
    // few seconds and a few megabytes to say nothing useful.
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(stdout, DESCRIBE_MAX_BYTES), &mut text);
        text
    });
    let deadline = std::time::Instant::now() + DESCRIBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    let Some(status) = status.filter(|s| s.success()) else { return Err(not_shoal()) };
    let text = String::from_utf8(text).map_err(|_| bad("its description is not text".into()))?;
    let mut lines = text.lines();
    let build_hash = lines
        .next()
        .filter(|_| status.success())
        .and_then(|l| u64::from_str_radix(l, 16).ok())
        .ok_or_else(not_shoal)?;
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let (mut names, mut sources, mut methods, mut classes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let unexpected = || bad(format!("unexpected line in its description: {line:?}"));
        let source = parts.last().and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or_else(unexpected)?;
        match parts.as_slice() {
            ["F", name, _] => names.push(leak(name)),
            ["C", class, constructor, _] => {
                let constructor = leak(constructor);
                names.push(constructor);
                classes.push((leak(class), constructor));
            }
            ["M", method, class, _] => {
                let method = leak(method);
                names.push(method);
                methods.push((method, leak(class)));
            }
            _ => return Err(unexpected()),
        }
        sources.push(source);
    }
    Ok(NodeCode { names, sources, build_hash, methods, classes })
}
