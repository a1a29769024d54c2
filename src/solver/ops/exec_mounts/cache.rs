//! `RUN --mount=type=cache`: persistent directories under
//! `<store>/cache-mounts/`, outside every snapshot, layer and cache key.
//!
//! A cache is named by its key: the mount's `id`, plus — when it is
//! seeded `from` a stage, image or the context — the identity of that
//! source and the path selected in it (BuildKit keys a seeded cache by
//! id and source ref the same way). Its directory,
//! `cache-mounts/<sha256 of key>/`, holds numbered instances `0/`, `1/`,
//! …, each with a lock file `<n>.lock`, and a `lock` file that serialises
//! choosing and creating instances. All locks are `flock`s on files each
//! user opens itself, so they order threads of one `bk` as well as
//! separate `bk` processes, and vanish with a crashed process.
//!
//! `sharing` decides which instance a user gets:
//! - `shared`: any instance nobody holds exclusively, locked shared, so
//!   concurrent shared users see one directory;
//! - `private`: an instance nobody holds at all, locked exclusively; if
//!   every instance is busy, a new one;
//! - `locked`: like private, but if every instance is busy, wait for
//!   instance 0.
//!
//! A new instance is made as `tmp-<rand>/`, seeded, then renamed into
//! place, so an instance directory is always complete; leftovers of a
//! crash are removed by the next user of the same cache.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::llb::CacheSharing;
use crate::snapshot::fsx;
use crate::util::fs::FsError;

/// Why a cache directory could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum CacheMountError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("failed to lock cache mount `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Seeding a new instance failed.
    #[error("failed to fill cache mount {id:?} from its source")]
    Seed {
        id: String,
        #[source]
        source: SeedError,
    },
}

type Result<T> = std::result::Result<T, CacheMountError>;

/// What filling a new instance may fail with.
pub type SeedError = Box<dyn std::error::Error + Send + Sync>;

/// Fills a new instance at the path it is given (which does not exist).
pub type Seed<'a> = &'a dyn Fn(&Path) -> std::result::Result<(), SeedError>;

/// The cache-mount directories of one store.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    dir: PathBuf,
}

/// An instance in use: its directory, and the lock that keeps other
/// users to the sharing rules until this is dropped.
#[derive(Debug)]
pub struct CacheLease {
    path: PathBuf,
    _lock: Flock<File>,
}

impl CacheLease {
    /// The instance's directory, to bind into the sandbox.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CacheMounts {
    /// The cache mounts of the store rooted at `store_root`.
    pub fn new(store_root: &Path) -> CacheMounts {
        CacheMounts {
            dir: store_root.join("cache-mounts"),
        }
    }

    /// Where the instances of the cache named `key` live.
    pub fn dir_of(&self, key: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// An instance of the cache named `key` under the rules of `sharing`
    /// (see the module documentation). A new instance is filled by
    /// `seed`, given a directory path that does not exist yet; without a
    /// seed it is an empty directory with mode 0755. Blocking: `locked`
    /// waits for the instance's holder.
    pub fn acquire(
        &self,
        id: &str,
        key: &str,
        sharing: CacheSharing,
        seed: Option<Seed<'_>>,
    ) -> Result<CacheLease> {
        let base = self.dir_of(key);
        fs::create_dir_all(&base).map_err(|e| FsError::new("create directory", &base, e))?;
        let guard = lock_wait(&base.join("lock"))?;
        remove_leftovers(&base)?;
        let instances = instances(&base)?;
        let try_arg = match sharing {
            CacheSharing::Shared => FlockArg::LockSharedNonblock,
            CacheSharing::Private | CacheSharing::Locked => FlockArg::LockExclusiveNonblock,
        };
        for &n in &instances {
            if let Some(lock) = lock(&lock_path(&base, n), try_arg)? {
                return Ok(CacheLease {
                    path: base.join(n.to_string()),
                    _lock: lock,
                });
            }
        }
        if sharing == CacheSharing::Locked && !instances.is_empty() {
            // Wait for the first instance without blocking the others'
            // choice of an instance meanwhile.
            drop(guard);
            let n = instances[0];
            let lock = lock_wait(&lock_path(&base, n))?;
            return Ok(CacheLease {
                path: base.join(n.to_string()),
                _lock: lock,
            });
        }
        let n = instances.last().map_or(0, |n| n + 1);
        let tmp = base.join(format!("tmp-{}", fsx::random_hex(8)));
        match seed {
            Some(seed) => {
                if let Err(source) = seed(&tmp) {
                    let _ = fsx::remove_tree(&tmp);
                    return Err(CacheMountError::Seed {
                        id: id.to_string(),
                        source,
                    });
                }
            }
            None => {
                fs::create_dir(&tmp).map_err(|e| FsError::new("create directory", &tmp, e))?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                    .map_err(|e| FsError::new("set permissions of", &tmp, e))?;
            }
        }
        let arg = match sharing {
            CacheSharing::Shared => FlockArg::LockSharedNonblock,
            _ => FlockArg::LockExclusiveNonblock,
        };
        // Nobody else knows instance n yet: the lock is free.
        let lock = lock(&lock_path(&base, n), arg)?.ok_or_else(|| CacheMountError::Lock {
            path: lock_path(&base, n),
            source: io::Error::from(io::ErrorKind::WouldBlock),
        })?;
        let path = base.join(n.to_string());
        fs::rename(&tmp, &path).map_err(|e| FsError::new("rename", &tmp, e))?;
        drop(guard);
        Ok(CacheLease { path, _lock: lock })
    }
}

fn lock_path(base: &Path, n: u64) -> PathBuf {
    base.join(format!("{n}.lock"))
}

/// `flock`s the file at `path` (created if missing); `None` when a
/// non-blocking lock is taken by someone else.
fn lock(path: &Path, arg: FlockArg) -> Result<Option<Flock<File>>> {
    let file = crate::util::fs::open_lock_file(path).map_err(|e| FsError::new("open", path, e))?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(CacheMountError::Lock {
            path: path.to_path_buf(),
            source: errno.into(),
        }),
    }
}

/// An exclusive `flock` on `path`, waiting for its holder.
fn lock_wait(path: &Path) -> Result<Flock<File>> {
    lock(path, FlockArg::LockExclusive)?.ok_or_else(|| CacheMountError::Lock {
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::WouldBlock),
    })
}

/// The numbers of the complete instances in `base`, ascending.
fn instances(base: &Path) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = fsx::read_dir_sorted(base)
        .map_err(|e| FsError::new("read", base, e))?
        .into_iter()
        .filter(|(_, ft)| ft.is_dir())
        .filter_map(|(name, _)| name.to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Half-made instances of a crashed run. Only called under the `lock`
/// file, which every creator holds until its rename: any `tmp-` seen
/// then is nobody's.
fn remove_leftovers(base: &Path) -> Result<()> {
    for (name, _) in fsx::read_dir_sorted(base).map_err(|e| FsError::new("read", base, e))? {
        if name.to_str().is_some_and(|n| n.starts_with("tmp-")) {
            let path = base.join(&name);
            fsx::remove_tree(&path).map_err(|e| FsError::new("remove leftover", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;

    fn mounts() -> (tempfile::TempDir, CacheMounts) {
        let dir = tempfile::tempdir().unwrap();
        let m = CacheMounts::new(dir.path());
        (dir, m)
    }

    #[test]
    fn persists_and_is_shared() {
        let (_d, m) = mounts();
        let a = m.acquire("/c", "/c", CacheSharing::Shared, None).unwrap();
        fs::write(a.path().join("f"), b"1").unwrap();
        let b = m.acquire("/c", "/c", CacheSharing::Shared, None).unwrap();
        assert_eq!(a.path(), b.path(), "concurrent shared users share");
        drop((a, b));
        let c = m.acquire("/c", "/c", CacheSharing::Shared, None).unwrap();
        assert_eq!(fs::read(c.path().join("f")).unwrap(), b"1");
        let mode = fs::metadata(c.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        let other = m.acquire("/d", "/d", CacheSharing::Shared, None).unwrap();
        assert_ne!(other.path(), c.path());
    }

    #[test]
    fn private_gets_its_own_instance_when_busy() {
        let (_d, m) = mounts();
        let a = m.acquire("p", "p", CacheSharing::Private, None).unwrap();
        let b = m.acquire("p", "p", CacheSharing::Private, None).unwrap();
        assert_ne!(a.path(), b.path());
        // A shared user does not take an instance held privately.
        let s = m.acquire("p", "p", CacheSharing::Shared, None).unwrap();
        assert_ne!(s.path(), a.path());
        assert_ne!(s.path(), b.path());
        let first = a.path().to_path_buf();
        drop(a);
        let c = m.acquire("p", "p", CacheSharing::Private, None).unwrap();
        assert_eq!(c.path(), first, "a free instance is reused");
    }

    #[test]
    fn locked_waits_for_the_holder() {
        let (_d, m) = mounts();
        let a = m.acquire("l", "l", CacheSharing::Locked, None).unwrap();
        let path = a.path().to_path_buf();
        let barrier = Arc::new(Barrier::new(2));
        let (m2, b2) = (m.clone(), barrier.clone());
        let waiter = std::thread::spawn(move || {
            b2.wait();
            let lease = m2.acquire("l", "l", CacheSharing::Locked, None).unwrap();
            // The holder wrote this before releasing.
            fs::read(lease.path().join("done")).unwrap()
        });
        barrier.wait();
        std::thread::sleep(Duration::from_millis(100));
        fs::write(path.join("done"), b"yes").unwrap();
        drop(a);
        assert_eq!(waiter.join().unwrap(), b"yes");
    }

    #[test]
    fn seeded_once_then_kept() {
        let (_d, m) = mounts();
        let seed = |dst: &Path| -> std::result::Result<(), SeedError> {
            fs::create_dir(dst)?;
            fs::write(dst.join("seed"), b"s")?;
            Ok(())
        };
        let a = m
            .acquire("s", "s:k", CacheSharing::Shared, Some(&seed))
            .unwrap();
        assert_eq!(fs::read(a.path().join("seed")).unwrap(), b"s");
        fs::write(a.path().join("seed"), b"changed").unwrap();
        drop(a);
        let fail =
            |_: &Path| -> std::result::Result<(), SeedError> { Err("must not be called".into()) };
        let b = m
            .acquire("s", "s:k", CacheSharing::Shared, Some(&fail))
            .unwrap();
        assert_eq!(fs::read(b.path().join("seed")).unwrap(), b"changed");
        // A failed seed leaves nothing behind.
        let err = m
            .acquire("t", "t:k", CacheSharing::Shared, Some(&fail))
            .unwrap_err();
        assert!(err.to_string().contains("\"t\""), "{err}");
        assert!(instances(&m.dir_of("t:k")).unwrap().is_empty());
    }
}
