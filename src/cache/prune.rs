//! Pruning: which records to remove (filters, `--all`, keep-storage,
//! keep-duration; least recently used first, cache mounts last) and
//! removing them without hurting a build that runs at the same time.
//!
//! Safety rests on three rules. A row is deleted only in the same write
//! transaction that checks that no live process leases its snapshot (see
//! [`CacheDb::remove_unleased`]); a snapshot directory is removed only
//! after no row names it any more; and a snapshot directory no row names
//! at all (a build that crashed between committing it and recording it,
//! or one doing so right now) is removed only if it was renamed into the
//! store before the oldest live process started, so it cannot be a live
//! build's result waiting for its row.
//!
//! Imports `snapshot`, `util` and its siblings.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::db::{CacheDb, CachedResult};
use super::lease::{clean_key_locks, live_processes, LiveProcesses};
use super::record_type::{RecordType, UnknownRecordType};
use super::units::{parse_duration, UnitError};
use super::usage::{leased_snapshots, measure, RecordUsage, Usage};
use super::CacheError;
use crate::snapshot::{SnapshotId, Store};

/// A `--filter` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("invalid filter `{0}`: expected KEY=VALUE or description~=TEXT")]
    Syntax(String),
    #[error("unknown filter key `{0}` (expected type, id, description, until)")]
    Key(String),
    #[error(transparent)]
    Type(#[from] UnknownRecordType),
    #[error(transparent)]
    Until(#[from] UnitError),
}

/// `--filter` values, ANDed across keys and ORed within one key, as
/// BuildKit combines them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub types: Vec<RecordType>,
    /// Record ids (cache keys), or prefixes of them (with or without the
    /// `sha256:`).
    pub ids: Vec<String>,
    /// `description=` (exact) and `description~=` (substring).
    pub descriptions: Vec<(String, bool)>,
    /// `until=DUR`: records not used for at least DUR.
    pub until: Option<Duration>,
}

impl Filters {
    pub fn parse(list: &[String]) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        for item in list {
            let (key, value, fuzzy) = match item.split_once("~=") {
                Some((k, v)) => (k, v, true),
                None => match item.split_once('=') {
                    Some((k, v)) => (k, v, false),
                    None => return Err(FilterError::Syntax(item.clone())),
                },
            };
            match (key.trim(), fuzzy) {
                ("type", false) => f.types.push(value.parse()?),
                ("id", false) => f.ids.push(value.to_string()),
                ("description", _) => f.descriptions.push((value.to_string(), fuzzy)),
                ("until", false) => f.until = Some(parse_duration(value)?),
                (k, _) => return Err(FilterError::Key(k.to_string())),
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    pub fn matches(&self, r: &CachedResult, now: SystemTime) -> bool {
        let id = r.key.as_str();
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        (self.types.is_empty() || self.types.contains(&r.kind))
            && (self.ids.is_empty()
                || self.ids.iter().any(|p| {
                    !p.is_empty() && (id.starts_with(p.as_str()) || hex.starts_with(p.as_str()))
                }))
            && (self.descriptions.is_empty()
                || self.descriptions.iter().any(|(d, fuzzy)| {
                    if *fuzzy {
                        r.description.contains(d.as_str())
                    } else {
                        r.description == *d
                    }
                }))
            && self.until.is_none_or(|d| unused_for(r, now) >= d)
    }
}

fn unused_for(r: &CachedResult, now: SystemTime) -> Duration {
    now.duration_since(r.last_used_at).unwrap_or_default()
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Cache mounts too (otherwise they are kept).
    pub all: bool,
    /// Stop once the snapshots take no more than this.
    pub keep_storage: Option<u64>,
    /// Keep records used within this long.
    pub keep_duration: Option<Duration>,
    pub filters: Filters,
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Removed records with the bytes each freed.
    pub removed: Vec<RecordUsage>,
    /// Removed snapshot directories that no record named.
    pub unrecorded: Vec<(SnapshotId, u64)>,
    /// Records that matched but a running build uses.
    pub skipped_in_use: usize,
}

impl Pruned {
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|r| r.size).sum::<u64>()
            + self.unrecorded.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// Measures the store and removes what `opts` selects. Returns what was
/// removed and the usage measured before.
pub fn prune(
    store: &Store,
    db: &CacheDb,
    opts: &PruneOptions,
) -> Result<(Pruned, Usage), CacheError> {
    let live = live_processes(store.root())?;
    let leased = leased_snapshots(db, &live)?;
    let usage = measure(store, db, &leased)?;
    let now = SystemTime::now();
    let mut candidates: Vec<&RecordUsage> = usage
        .records
        .iter()
        .filter(|r| opts.all || r.record.kind != RecordType::ExecCacheMount)
        .filter(|r| opts.filters.matches(&r.record, now))
        .filter(|r| {
            opts.keep_duration
                .is_none_or(|keep| unused_for(&r.record, now) >= keep)
        })
        .collect();
    // Least recently used first; cache mounts only after every other
    // record (they are slow to refill and small per build).
    candidates.sort_by_key(|r| {
        (
            r.record.kind == RecordType::ExecCacheMount,
            r.record.last_used_at,
        )
    });
    let mut pruned = Pruned::default();
    let mut remaining = usage.shared + usage.private;
    // How many rows still name each snapshot: a snapshot frees its bytes
    // only with the last of them.
    let mut names: HashMap<&str, usize> = HashMap::new();
    for r in &usage.records {
        *names.entry(r.record.snapshot_id.as_str()).or_default() += 1;
    }
    let mut inodes = usage.inodes.clone();
    let mut chosen = Vec::new();
    for r in candidates {
        if opts.keep_storage.is_some_and(|keep| remaining <= keep) {
            break;
        }
        if r.in_use {
            pruned.skipped_in_use += 1;
            continue;
        }
        let left = names.entry(r.record.snapshot_id.as_str()).or_default();
        *left = left.saturating_sub(1);
        let frees = if *left == 0 {
            inodes.release(&r.record.snapshot_id)
        } else {
            0
        };
        remaining = remaining.saturating_sub(frees);
        chosen.push((r, frees));
    }
    let keys: Vec<_> = chosen.iter().map(|(r, _)| r.record.key.clone()).collect();
    let (removed, freed) = db.remove_unleased(&keys, &live.owners)?;
    let removed_keys: HashSet<_> = removed.iter().map(|r| r.key.clone()).collect();
    let mut gone = HashSet::new();
    for id in &freed {
        let Ok(id) = SnapshotId::new(id.clone()) else {
            continue;
        };
        // Busy (being cloned by a build that looked it up before the row
        // went): it stays as an unrecorded snapshot for a later prune.
        if store.remove(&id).is_ok() {
            gone.insert(id.as_str().to_string());
        }
    }
    for (r, frees) in chosen {
        if removed_keys.contains(&r.record.key) {
            // What it freed, given everything removed before it.
            let mut r = r.clone();
            r.size = if gone.contains(&r.record.snapshot_id) {
                frees
            } else {
                0
            };
            pruned.removed.push(r);
        }
    }
    if opts.filters.is_empty() && opts.keep_storage.is_none_or(|keep| remaining > keep) {
        pruned.unrecorded = remove_unrecorded(store, &usage, &leased, &live);
    }
    clean_key_locks(store.root());
    Ok((pruned, usage))
}

/// Removes snapshot directories no row names that no live process can
/// still be about to record.
fn remove_unrecorded(
    store: &Store,
    usage: &Usage,
    leased: &HashSet<String>,
    live: &LiveProcesses,
) -> Vec<(SnapshotId, u64)> {
    let mut out = Vec::new();
    for (id, bytes) in &usage.unrecorded {
        if leased.contains(id.as_str()) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(store.path(id)) else {
            continue;
        };
        let renamed = UNIX_EPOCH
            + Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        // Both times come from the kernel's coarse clock (a few ms
        // apart at most for the same instant): a small margin suffices.
        // Whole seconds kept an orphan renamed just before this prune
        // started, so `prune --all` could leave one behind.
        let old_enough = live
            .oldest_start
            .is_none_or(|start| renamed + Duration::from_millis(20) < start);
        if old_enough && store.remove(id).is_ok() {
            out.push((id.clone(), *bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn filters_parse_and_reject_unknown_keys() {
        let f = Filters::parse(&s(&["type=regular", "description~=COPY", "until=1h"])).unwrap();
        assert_eq!(f.types, [RecordType::Regular]);
        assert_eq!(f.descriptions, [("COPY".to_string(), true)]);
        assert_eq!(f.until, Some(Duration::from_secs(3600)));
        assert!(Filters::parse(&s(&["color=red"])).is_err());
        assert!(Filters::parse(&s(&["type=weird"])).is_err());
        assert!(Filters::parse(&s(&["nonsense"])).is_err());
    }
}
