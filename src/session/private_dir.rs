//! A directory only this user can enter (mode 0700, random name), removed
//! with everything in it when dropped: where secret files and agent
//! sockets wait to be bound into a sandbox.
//!
//! Its name holds the creating process's id, so that the directories of
//! a `bk` that was killed before it could clean up are removed by the
//! next one that makes a directory with the same prefix.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// See the module documentation.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// A new private directory under `/dev/shm` when it is usable (a
    /// tmpfs: secrets never reach a disk), else under the temporary
    /// directory. Both keep paths short, as Unix socket paths must be.
    pub fn new(prefix: &str) -> io::Result<PrivateDir> {
        let shm = Path::new("/dev/shm");
        let writable = nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok();
        if shm.is_dir() && writable {
            if let Ok(dir) = PrivateDir::new_in(shm, prefix) {
                return Ok(dir);
            }
        }
        PrivateDir::new_in(&std::env::temp_dir(), prefix)
    }

    /// A new private directory `<parent>/<prefix><random>`.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<PrivateDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        remove_orphans(parent, prefix);
        let pid = std::process::id();
        let mut last = None;
        for _ in 0..16 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u32(pid);
            let path = parent.join(format!("{prefix}{pid}-{:016x}", h.finish()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes `<parent>/<prefix><pid>-…` directories whose process is gone.
/// Best effort: other users' directories cannot be removed, and are not
/// ours to report on.
fn remove_orphans(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone && pid > 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // Nothing to report to: the directory lives in a temporary file
        // system and holds only what this process put there.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_and_removed() {
        let dir = PrivateDir::new("bk-test-").unwrap();
        let path = dir.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_process_leftovers_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum never names a live process.
        let dead = parent.path().join("bk-x-2147483000-abc");
        let alive = parent
            .path()
            .join(format!("bk-x-{}-abc", std::process::id()));
        let other = parent.path().join("unrelated-1-abc");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir(d).unwrap();
        }
        let _new = PrivateDir::new_in(parent.path(), "bk-x-").unwrap();
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }
}
