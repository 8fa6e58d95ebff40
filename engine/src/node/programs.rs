//! The programs a node's workers run besides its own (program 0: this
//! binary, or `Config::worker_program`): one per build of the drivers that
//! connect built from other code, when the node has no worker program of
//! its own. Such a program is that driver's executable, opened from
//! `/proc/<pid>/exe` while it is connected, so workers run the exact image
//! the driver runs even if the file on disk is rebuilt; drivers of the same
//! build share its workers. Each has its code (what it registers) and the
//! token its workers present. Scheduling by program is in `state.rs`
//! (`Task::program`, `WorkerSlot::program`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::code::{CodeTable, NodeCode};

/// A program of drivers built from other code than the node's.
pub(crate) struct Program {
    /// Its index among the node's programs (from 1).
    pub index: u32,
    /// What its workers are started from (`/proc/self/fd/N` of `exe`).
    pub path: PathBuf,
    /// The file it was when its first driver connected, and its name then
    /// (the workers' `argv[0]`).
    _exe: File,
    pub name: PathBuf,
    /// The token its workers present.
    pub token: u64,
    pub build_hash: u64,
    /// What it registers.
    pub code: CodeTable,
}

impl Program {
    /// Open the executable of the connected process `pid` (its image now).
    pub fn open_exe(pid: i32) -> std::io::Result<(File, PathBuf, PathBuf)> {
        let link = PathBuf::from(format!("/proc/{pid}/exe"));
        let name = std::fs::read_link(&link)?;
        let exe = File::open(&link)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", exe.as_raw_fd()));
        Ok((exe, path, name))
    }

    /// Program `index` of `exe`, whose code is `code`.
    pub fn new(index: u32, exe: (File, PathBuf, PathBuf), token: u64, code: NodeCode) -> Program {
        let (exe, path, name) = exe;
        Program { index, path, _exe: exe, name, token, build_hash: code.build_hash, code: CodeTable::new(&code) }
    }
}

/// A program's workers as the scheduler counts them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProgramPool {
    /// Workers asked of the supervisor and not yet connected.
    pub pending: usize,
    /// Drivers of this program connected now.
    pub drivers: usize,
    /// Its workers that exited before their handshake since one last
    /// connected.
    pub failures: u32,
}
