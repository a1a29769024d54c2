//! What `bk du` reports: the disk space of every cache record, measured
//! from the snapshot trees themselves.
//!
//! Snapshots are whole trees in which every unchanged file is a hard link
//! to its parent's inode, so "the size of a record" has two honest
//! meanings. This module measures, for each snapshot, the bytes of the
//! inodes that appear in no other snapshot (**private**: what removing the
//! snapshot frees) and the bytes of inodes it shares with at least one
//! other snapshot (**shared**). Each inode is counted once per tree and
//! once in the totals, so `Private + Shared` is exactly the space the
//! snapshot trees occupy on disk (allocated blocks). A record's SIZE is
//! its snapshot's private bytes; SHARED is the rest of its tree. Several
//! rows may name one snapshot (an image's top layer is cached under the
//! image and under the layer): the most recently created row carries the
//! bytes, the others show 0. Rows with no snapshot (`source.local`) are 0.
//!
//! Imports `snapshot` (the store's trees), `util`, and its siblings.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::db::{CacheDb, CachedResult};
use super::lease::LiveProcesses;
use super::CacheError;
use crate::snapshot::{fsx, SnapshotId, Store};
use crate::util::fs::FsError;

/// One record with its measured sizes.
#[derive(Debug, Clone)]
pub struct RecordUsage {
    pub record: CachedResult,
    /// Bytes only this record's snapshot holds (what pruning it frees).
    pub size: u64,
    /// Bytes of its tree that other snapshots share.
    pub shared: u64,
    /// A live build leases its snapshot.
    pub in_use: bool,
}

impl RecordUsage {
    /// Pruning it now would free its bytes.
    pub fn reclaimable(&self) -> bool {
        !self.in_use
    }
}

/// The whole store, measured.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Least recently used first.
    pub records: Vec<RecordUsage>,
    /// Bytes of inodes in two or more snapshots, counted once.
    pub shared: u64,
    /// Bytes of inodes in exactly one snapshot.
    pub private: u64,
    /// Private bytes of snapshots no live build leases.
    pub reclaimable: u64,
    /// Snapshot directories no row names (a crashed or running build's
    /// just-committed result), with their private bytes.
    pub unrecorded: Vec<(SnapshotId, u64)>,
    /// Bytes of committed blobs in the content store.
    pub blobs: u64,
    /// Which inodes each snapshot holds, for working out what removing a
    /// set of snapshots frees.
    pub(super) inodes: InodeMap,
}

impl Usage {
    /// Everything the store holds on disk, metadata aside.
    pub fn total(&self) -> u64 {
        self.shared + self.private + self.blobs
    }
}

/// Every inode of every snapshot: its bytes and how many snapshots hold
/// it, and per snapshot (by id) its inodes and its directories' bytes.
#[derive(Debug, Clone, Default)]
pub(super) struct InodeMap {
    bytes: Vec<u64>,
    holders: Vec<u32>,
    trees: HashMap<String, (Vec<u32>, u64)>,
}

impl InodeMap {
    /// Forgets snapshot `id` and returns the bytes that frees (inodes no
    /// other remaining snapshot holds, and its directories).
    pub(super) fn release(&mut self, id: &str) -> u64 {
        let Some((inodes, dir_bytes)) = self.trees.remove(id) else {
            return 0;
        };
        let mut freed = dir_bytes;
        for i in inodes {
            let h = &mut self.holders[i as usize];
            *h = h.saturating_sub(1);
            if *h == 0 {
                freed += self.bytes[i as usize];
            }
        }
        freed
    }
}

/// Measures every snapshot and record. `leased` is the set of snapshot
/// ids live processes lease.
pub fn measure(store: &Store, db: &CacheDb, leased: &HashSet<String>) -> Result<Usage, CacheError> {
    let ids = store.list().map_err(CacheError::Measure)?;
    let mut index: HashMap<(u64, u64), u32> = HashMap::new();
    let mut map = InodeMap::default();
    let mut tree_inodes = Vec::with_capacity(ids.len());
    for id in &ids {
        let (inodes, dir_bytes) = walk(&store.path(id), &mut index, &mut map)?;
        tree_inodes.push((inodes, dir_bytes));
    }
    let mut usage = Usage::default();
    let mut trees = vec![Tree::default(); ids.len()];
    for (n, (inodes, dir_bytes)) in tree_inodes.iter().enumerate() {
        // Directories are never shared: a clone recreates them.
        trees[n].total = *dir_bytes;
        trees[n].private = *dir_bytes;
        usage.private += dir_bytes;
        for &i in inodes {
            let bytes = map.bytes[i as usize];
            trees[n].total += bytes;
            if map.holders[i as usize] == 1 {
                trees[n].private += bytes;
                usage.private += bytes;
            }
        }
    }
    usage.shared = map
        .bytes
        .iter()
        .zip(&map.holders)
        .filter(|(_, &h)| h > 1)
        .map(|(b, _)| b)
        .sum();
    map.trees = ids
        .iter()
        .map(|id| id.as_str().to_string())
        .zip(tree_inodes)
        .collect();
    usage.inodes = map;
    let by_id: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.as_str(), n))
        .collect();
    let rows = db.list()?;
    // The row that carries a snapshot's bytes: the newest one naming it.
    let mut carrier: HashMap<&str, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let e = carrier.entry(row.snapshot_id.as_str()).or_insert(i);
        if row.created_at > rows[*e].created_at {
            *e = i;
        }
    }
    let mut named = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let tree = by_id.get(row.snapshot_id.as_str()).map(|&n| trees[n]);
        let carries = carrier.get(row.snapshot_id.as_str()) == Some(&i);
        let (size, shared) = match tree {
            Some(t) if carries => (t.private, t.total.saturating_sub(t.private)),
            Some(t) => (0, t.total),
            None => (0, 0),
        };
        if tree.is_some() {
            named.insert(row.snapshot_id.as_str());
        }
        let in_use = leased.contains(&row.snapshot_id);
        if !in_use && carries {
            usage.reclaimable += size;
        }
        usage.records.push(RecordUsage {
            record: row.clone(),
            size,
            shared,
            in_use,
        });
    }
    for (n, id) in ids.iter().enumerate() {
        if !named.contains(id.as_str()) {
            usage.unrecorded.push((id.clone(), trees[n].private));
        }
    }
    usage.blobs = blob_bytes(&store.root().join("content/blobs/sha256"))?;
    Ok(usage)
}

#[derive(Default, Clone, Copy)]
struct Tree {
    total: u64,
    private: u64,
}

/// Walks one tree, adding its inodes to `map`; returns the indices of
/// its inodes (each once) and the bytes of its directories.
fn walk(
    root: &Path,
    index: &mut HashMap<(u64, u64), u32>,
    map: &mut InodeMap,
) -> Result<(Vec<u32>, u64), CacheError> {
    let fail = |op, path: &Path, e| CacheError::Walk(FsError::new(op, path, e));
    let mut dir_bytes = 0;
    let mut seen = HashSet::new();
    let mut inodes = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            // Removed by a concurrent prune: it holds nothing any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                return Ok((Vec::new(), 0))
            }
            Err(e) => return Err(fail("inspect", &dir, e)),
        };
        dir_bytes += meta.blocks() * 512;
        let entries = match fsx::read_dir_sorted(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                return Ok((Vec::new(), 0))
            }
            Err(e) => return Err(fail("read", &dir, e)),
        };
        for (name, ft) in entries {
            let path = dir.join(name);
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|e| fail("inspect", &path, e))?;
            let key = (meta.dev(), meta.ino());
            if !seen.insert(key) {
                continue;
            }
            let i = *index.entry(key).or_insert_with(|| {
                map.bytes.push(meta.blocks() * 512);
                map.holders.push(0);
                (map.bytes.len() - 1) as u32
            });
            map.holders[i as usize] += 1;
            inodes.push(i);
        }
    }
    Ok((inodes, dir_bytes))
}

fn blob_bytes(dir: &Path) -> Result<u64, CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(CacheError::Walk(FsError::new("read", dir, e))),
    };
    let mut total = 0;
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Live owners' leased snapshots, after dropping dead owners' leases.
pub fn leased_snapshots(db: &CacheDb, live: &LiveProcesses) -> Result<HashSet<String>, CacheError> {
    for owner in db.lease_owners()? {
        if !live.owners.contains(&owner) {
            db.release_leases(&owner)?;
        }
    }
    db.leased_snapshots(&live.owners)
}
