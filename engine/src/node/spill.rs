//! Spill files: where objects that do not fit the arena go, and how they come
//! back. Only the I/O lives here; which objects to spill and when is the
//! node's (`Node::allocate`, `NodeState::choose_victims`).
//!
//! Design notes
//! - A spill writes a batch of objects one after another into one new file
//!   with vectored writes (small objects fused into one file, large ones in
//!   one sequential write each); a restore reads one object back with one
//!   positioned read. No lock is held meanwhile.
//! - Files are unlinked as soon as they are created (`O_TMPFILE` where the
//!   file system has it): the node's open descriptor is all that keeps one,
//!   so its space is given back when the last object in it is freed (the
//!   node drops the file), when the node stops, and when the process dies,
//!   even by `kill -9`. The private directory they were made in is empty
//!   then; the next node of the same user removes it (as socket directories).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One node's spill directory.
pub(crate) struct SpillDir {
    path: PathBuf,
    made: AtomicU64,
}

impl SpillDir {
    /// Spill into `path`, a private directory already created for this node.
    pub fn new(path: PathBuf) -> SpillDir {
        SpillDir { path, made: AtomicU64::new(0) }
    }

    /// The directory (removed by the node when it stops).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, already unlinked file in the directory.
    pub fn new_file(&self) -> std::io::Result<File> {
        let anonymous = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&self.path);
        if let Ok(file) = anonymous {
            return Ok(file);
        }
        // A file system without O_TMPFILE: a named file, unlinked at once.
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let path = self.path.join(format!("spill-{n}"));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }
}

/// Where the copy of an object lies on disk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpillLoc {
    pub file: u64,
    pub pos: u64,
}

/// Totals since the node started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpillTotals {
    pub spilled_objects: u64,
    pub spilled_bytes: u64,
    pub restored_objects: u64,
    pub restored_bytes: u64,
}

/// What the node knows of its spill files; under the node's lock.
#[derive(Default)]
pub(crate) struct SpillBook {
    /// The copy on disk of every object that has one: spilled objects, and
    /// restored ones (a sealed object never changes, so its copy stays good
    /// and spilling it again writes nothing).
    pub copies: HashMap<u64, SpillLoc>,
    /// Open spill files: each with how many copies it holds, and its size.
    files: HashMap<u64, (Arc<File>, usize, u64)>,
    /// The sizes of the open files, summed.
    pub file_bytes: u64,
    next_file: u64,
    /// Objects being written out, and being read back, now.
    pub writing: HashSet<u64>,
    pub restoring: HashSet<u64>,
    /// Spilled objects a task or a client waits for; the next dispatch
    /// hands them to the restore thread.
    pub wanted: Vec<u64>,
    /// Those handed over and not yet taken up by the restore thread.
    pub requested: HashSet<u64>,
    /// Objects read back for a ready task, kept in the arena until it is
    /// dispatched (else restoring a task's second argument could push out
    /// its first, and so on forever).
    pub kept: HashSet<u64>,
    /// Objects whose only copy is on disk, and their bytes.
    pub spilled_objects: usize,
    pub spilled_bytes: u64,
    /// Batches being written out now.
    pub batches_in_flight: usize,
    pub totals: SpillTotals,
}

impl SpillBook {
    /// Register a new spill file of `bytes`; returns its number.
    pub fn add_file(&mut self, file: Arc<File>, bytes: u64) -> u64 {
        self.next_file += 1;
        self.files.insert(self.next_file, (file, 0, bytes));
        self.file_bytes += bytes;
        self.next_file
    }

    pub fn file(&self, n: u64) -> Option<Arc<File>> {
        self.files.get(&n).map(|(f, ..)| f.clone())
    }

    /// How many spill files are open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Object `id` has a copy at `loc` (a file with no copies left is dropped
    /// by [`drop_copy`](Self::drop_copy) or [`forget_empty`](Self::forget_empty)).
    pub fn add_copy(&mut self, id: u64, loc: SpillLoc) {
        if let Some((_, live, _)) = self.files.get_mut(&loc.file) {
            *live += 1;
            if let Some(old) = self.copies.insert(id, loc) {
                self.release_file(old.file);
            }
        }
    }

    /// Object `id` is gone: its copy too. Closing the last descriptor of a
    /// file gives its space back (it has no name).
    pub fn drop_copy(&mut self, id: u64) {
        if let Some(loc) = self.copies.remove(&id) {
            self.release_file(loc.file);
        }
    }

    /// Drop file `n` if it holds no copy (a batch none of whose objects
    /// needed it any more).
    pub fn forget_empty(&mut self, n: u64) {
        if self.files.get(&n).is_some_and(|(_, live, _)| *live == 0) {
            self.remove_file(n);
        }
    }

    fn release_file(&mut self, n: u64) {
        if let Some((_, live, _)) = self.files.get_mut(&n) {
            *live -= 1;
            if *live == 0 {
                self.remove_file(n);
            }
        }
    }

    fn remove_file(&mut self, n: u64) {
        if let Some((_, _, bytes)) = self.files.remove(&n) {
            self.file_bytes -= bytes;
        }
    }
}

/// Write `parts` one after another at the start of `file`.
pub(crate) fn write_parts(mut file: &File, parts: &[&[u8]]) -> std::io::Result<()> {
    // At most IOV_MAX (1024) slices per call.
    for chunk in parts.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = chunk.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Read `dst.len()` bytes of `file` from `pos`.
pub(crate) fn read_at(file: &File, pos: u64, dst: &mut [u8]) -> std::io::Result<()> {
    file.read_exact_at(dst, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_written_back_to_back_read_back_at_their_positions() {
        let dir = std::env::temp_dir().join(format!("shoal-spill-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spill = SpillDir::new(dir.clone());
        let file = spill.new_file().unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the file has no name");
        let big = vec![7u8; 3 << 20];
        let parts: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; i % 97]).collect();
        let mut all: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        all.insert(1000, &big);
        write_parts(&file, &all).unwrap();
        let mut pos = 0;
        for part in &all {
            let mut back = vec![0u8; part.len()];
            read_at(&file, pos, &mut back).unwrap();
            assert_eq!(&back, part);
            pos += part.len() as u64;
        }
        let mut past = [0u8; 1];
        assert!(read_at(&file, pos, &mut past).is_err(), "nothing past the end");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
