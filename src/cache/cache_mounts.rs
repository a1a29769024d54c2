//! Housekeeping of `RUN --mount=type=cache` directories for `bk du` and
//! `bk cache prune --all`. The layout is the one the exec op writes (see
//! `solver::ops::exec_mounts::cache`, which this module must not import):
//! `<root>/cache-mounts/<key hash>/` holds instances `0/`, `1/`, … with
//! lock files `<n>.lock`, and a `lock` file held while a user chooses an
//! instance. An instance is removed only while both that `lock` and the
//! instance's lock are held exclusively here, i.e. when no build uses it
//! and none is choosing one; it leaves by a rename first, so no build
//! ever sees half of it.
//!
//! Imports `snapshot::fsx`, `util` and its siblings.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::snapshot::fsx;

/// One cache-mount instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// `<key hash>/<n>`.
    pub id: String,
    /// Allocated bytes.
    pub size: u64,
}

fn base(root: &Path) -> PathBuf {
    root.join("cache-mounts")
}

/// Every instance directory.
fn instances(root: &Path) -> Vec<(PathBuf, String, u64)> {
    let mut out = Vec::new();
    let Ok(caches) = fs::read_dir(base(root)) else {
        return out;
    };
    for cache in caches.flatten() {
        let Ok(entries) = fs::read_dir(cache.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push((
                    cache.path(),
                    format!("{}/{n}", cache.file_name().to_string_lossy()),
                    n,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Allocated bytes of a tree, each inode once.
fn tree_bytes(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(m) = fs::symlink_metadata(&d) {
            total += m.blocks() * 512;
        }
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// The cache-mount instances and their sizes.
pub fn cache_mounts(root: &Path) -> Vec<CacheMount> {
    instances(root)
        .into_iter()
        .map(|(cache, id, n)| CacheMount {
            size: tree_bytes(&cache.join(n.to_string())),
            id,
        })
        .collect()
}

fn try_lock(path: &Path) -> Option<Flock<File>> {
    let file = crate::util::fs::open_lock_file(path).ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// Removes every instance no build holds; returns what it removed.
pub fn prune_cache_mounts(root: &Path) -> Vec<CacheMount> {
    let mut removed = Vec::new();
    for (cache, id, n) in instances(root) {
        let Some(_choosing) = try_lock(&cache.join("lock")) else {
            continue;
        };
        let Some(_held) = try_lock(&cache.join(format!("{n}.lock"))) else {
            continue;
        };
        let dir = cache.join(n.to_string());
        let size = tree_bytes(&dir);
        // `tmp-*` is what the exec op clears as a crashed run's leftover.
        let grave = cache.join(format!("tmp-{}", fsx::random_hex(8)));
        if fs::rename(&dir, &grave).is_ok() {
            let _ = fsx::remove_tree(&grave);
            removed.push(CacheMount { id, size });
        }
    }
    removed
}
