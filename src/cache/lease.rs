//! Which `bk` processes are alive, without a daemon to ask: each process
//! that uses the store holds an exclusive `flock` on its own file
//! `<root>/locks/proc/<owner>.lock` for as long as it runs. The kernel
//! drops the lock when the process dies (even by `kill -9`), so "I can
//! lock it" means "its owner is gone". A lock file appears already locked
//! (it is created and locked under `locks/new-…` and renamed into
//! `proc/`), so no one can mistake a starting process for a dead one.
//!
//! The owner name keys the process's rows in the `leases` table; its lock
//! file's modification time is when the process started, which lets a
//! pruner tell a snapshot or blob a live process may have just written
//! (and not recorded yet) from a crashed run's leftover.
//!
//! Imports `crate::util` and its parent's error type only.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use super::CacheError;
use crate::util::fs::{self as ufs, FsError};

/// `<root>/locks`: process and key lock files.
pub(super) fn locks_dir(root: &Path) -> PathBuf {
    root.join("locks")
}

fn proc_dir(root: &Path) -> PathBuf {
    locks_dir(root).join("proc")
}

/// This process's claim on the store: held until dropped (or death).
#[derive(Debug)]
pub struct ProcessLease {
    owner: String,
    path: PathBuf,
    _lock: Flock<File>,
}

impl ProcessLease {
    /// Creates and locks this process's lock file.
    pub fn acquire(root: &Path) -> Result<ProcessLease, CacheError> {
        let dir = proc_dir(root);
        ufs::create_dir_all(&dir).map_err(CacheError::ProcessLock)?;
        let owner = format!("{}-{}", std::process::id(), random_hex());
        let staging = locks_dir(root).join(format!("new-{owner}"));
        let fail = |op, path: &Path, e| CacheError::ProcessLock(FsError::new(op, path, e));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&staging)
            .map_err(|e| fail("create", &staging, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| fail("lock", &staging, errno.into()))?;
        let path = dir.join(format!("{owner}.lock"));
        fs::rename(&staging, &path).map_err(|e| fail("rename", &staging, e))?;
        Ok(ProcessLease {
            owner,
            path,
            _lock: lock,
        })
    }

    /// The name this process's leases are recorded under.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

impl Drop for ProcessLease {
    fn drop(&mut self) {
        // Best effort: a file left behind is unlocked, so the next
        // `live_processes` sees a dead owner and removes it.
        let _ = fs::remove_file(&self.path);
    }
}

/// The processes using the store right now.
#[derive(Debug, Clone, Default)]
pub struct LiveProcesses {
    pub owners: HashSet<String>,
    /// When the oldest of them started: anything created before that was
    /// not created by a process still running.
    pub oldest_start: Option<SystemTime>,
}

/// Lists the live processes and removes the lock files of dead ones (and
/// the staging files of processes that died while starting).
pub fn live_processes(root: &Path) -> Result<LiveProcesses, CacheError> {
    let dir = proc_dir(root);
    let mut live = LiveProcesses::default();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(live),
        Err(e) => return Err(CacheError::ProcessLock(FsError::new("read", &dir, e))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::ProcessLock(FsError::new("read", &dir, e)))?;
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        let path = entry.path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(CacheError::ProcessLock(FsError::new("open", &path, e))),
        };
        let started = file.metadata().and_then(|m| m.modified()).ok();
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(_dead) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => {
                live.owners.insert(owner.to_string());
                if let Some(t) = started {
                    live.oldest_start = Some(live.oldest_start.map_or(t, |o| o.min(t)));
                }
            }
        }
    }
    clean_staging(root);
    Ok(live)
}

/// Removes `locks/new-<pid>-…` files of processes that no longer run (a
/// process killed between creating and renaming its lock file). Not by
/// trying their lock: a starting process creates the file before it can
/// lock it, and taking that moment for death would pull its file away.
fn clean_staging(root: &Path) {
    let dir = locks_dir(root);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("new-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
            .filter(|&p| p > 0)
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A blocking exclusive lock on one cache key: the process that holds it
/// is computing that key's result, and others wait for it and then find
/// the result recorded instead of computing it again. Released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _lock: Flock<File>,
}

/// Waits for and takes the lock of `key_hex` under `<root>/locks/keys/`.
pub fn lock_key(root: &Path, key_hex: &str) -> Result<KeyLock, CacheError> {
    let dir = locks_dir(root).join("keys");
    ufs::create_dir_all(&dir).map_err(CacheError::ProcessLock)?;
    let path = dir.join(key_hex);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(|e| CacheError::ProcessLock(FsError::new("open", &path, e)))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| CacheError::ProcessLock(FsError::new("lock", &path, errno.into())))?;
    Ok(KeyLock { _lock: lock })
}

/// Removes key lock files nobody holds. A process that opened one just
/// before it is unlinked may then lock a file no one else sees and compute
/// a result another process computes too: wasted work, never a wrong
/// result (both commit atomically; the later row wins).
pub fn clean_key_locks(root: &Path) -> usize {
    let dir = locks_dir(root).join("keys");
    let Ok(entries) = fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(file) = File::open(&path) {
            if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok()
                && fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_leases_are_live_and_unheld_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProcessLease::acquire(dir.path()).unwrap();
        let b = ProcessLease::acquire(dir.path()).unwrap();
        // What a `kill -9`ed process leaves: its file, without a lock.
        let dead = proc_dir(dir.path()).join("1-dead.lock");
        fs::write(&dead, "").unwrap();
        let live = live_processes(dir.path()).unwrap();
        assert_eq!(live.owners.len(), 2);
        assert!(live.owners.contains(a.owner()) && live.owners.contains(b.owner()));
        assert!(live.oldest_start.is_some());
        assert!(!dead.exists());
        drop(a);
        let live = live_processes(dir.path()).unwrap();
        assert_eq!(live.owners.len(), 1);
    }

    #[test]
    fn key_locks_exclude_each_other_and_are_cleaned_when_free() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_key(dir.path(), "ab").unwrap();
        assert_eq!(clean_key_locks(dir.path()), 0);
        drop(held);
        assert_eq!(clean_key_locks(dir.path()), 1);
    }
}
