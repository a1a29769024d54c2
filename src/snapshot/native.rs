//! The native backend's commit: a private copy of the parent was written
//! in place, and before it is published every file that is still what
//! the parent has at the same path becomes a hard link to the parent's
//! inode again. [`diff`](super::diff) treats "same inode as the parent"
//! as unchanged, so afterwards it reports exactly what the step changed,
//! and the snapshot shares the parent's storage as a link clone would.
//!
//! A copy that was never touched is recognised from the [`CopyRecord`]
//! (same inode, same ctime, same size/mode/owner/mtime as the parent's
//! file), without reading it. Anything else with a single link is
//! compared with the parent's file in full (metadata, xattrs, bytes).
//! Relinking a name adds and renames entries in its directory, so the
//! directory's times are put back afterwards.
//!
//! Imports `clone`, `fsx`, `upper` and `crate::util` only.

use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::clone::CopyRecord;
use super::fsx;
use super::upper::same_node;
use crate::util::fs::FsError;

/// A copy whose ctime is this close to the end of the copy is compared
/// in full: the kernel stamps times from a clock that ticks every few
/// milliseconds, so a write right after the copy could keep the ctime.
const CTIME_MARGIN_NS: i128 = 50_000_000;

/// How many names the relink pass turned back into parent links.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relinked {
    pub by_record: u64,
    pub by_content: u64,
}

/// Relinks, in the private copy `child`, every unchanged file to the
/// same path in `parent`. `copied_until` is when the copy finished, as
/// (seconds, nanoseconds) since the epoch.
pub(crate) fn relink_unchanged(
    parent: &Path,
    child: &Path,
    record: &CopyRecord,
    copied_until: (i64, i64),
) -> Result<Relinked, FsError> {
    let mut done = Relinked::default();
    let limit =
        i128::from(copied_until.0) * 1_000_000_000 + i128::from(copied_until.1) - CTIME_MARGIN_NS;
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pdir, cdir) = (parent.join(&rel), child.join(&rel));
        match fs::symlink_metadata(&pdir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(FsError::new("inspect", &pdir, e)),
        }
        let dir_meta =
            fs::symlink_metadata(&cdir).map_err(|e| FsError::new("inspect", &cdir, e))?;
        let mut touched = false;
        let entries = fsx::read_dir_sorted(&cdir).map_err(|e| FsError::new("read", &cdir, e))?;
        for (name, ft) in entries {
            if ft.is_dir() {
                stack.push(rel.join(&name));
                continue;
            }
            if !(ft.is_file() || ft.is_symlink()) {
                continue;
            }
            let (ppath, cpath) = (pdir.join(&name), cdir.join(&name));
            let pm = match fs::symlink_metadata(&ppath) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::new("inspect", &ppath, e)),
            };
            let cm =
                fs::symlink_metadata(&cpath).map_err(|e| FsError::new("inspect", &cpath, e))?;
            if (pm.dev(), pm.ino()) == (cm.dev(), cm.ino()) {
                continue;
            }
            let by_record = untouched(record, &pm, &cm, limit);
            let same = by_record || (cm.nlink() == 1 && same_node(&ppath, &pm, &cpath, &cm)?);
            if !same {
                continue;
            }
            if relink(&ppath, &cpath)? {
                touched = true;
                if by_record {
                    done.by_record += 1;
                } else {
                    done.by_content += 1;
                }
            }
        }
        if touched {
            fsx::set_times(&cdir, &dir_meta)
                .map_err(|e| FsError::new("set the times of", &cdir, e))?;
        }
    }
    Ok(done)
}

/// Whether `cm` is a copy of `pm` that nothing changed since it was made.
fn untouched(record: &CopyRecord, pm: &Metadata, cm: &Metadata, limit: i128) -> bool {
    let Some(copied) = record.inodes.get(&cm.ino()) else {
        return false;
    };
    let ctime = i128::from(cm.ctime()) * 1_000_000_000 + i128::from(cm.ctime_nsec());
    let key = |m: &Metadata| {
        (
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
        )
    };
    copied.source == (pm.dev(), pm.ino())
        && copied.ctime == (cm.ctime(), cm.ctime_nsec())
        && ctime < limit
        && key(pm) == key(cm)
}

/// Replaces `child` by a hard link to `parent`: linked under a temporary
/// name, then renamed over. `false` when the parent's inode is at the
/// link limit (the copy stays).
fn relink(parent: &Path, child: &Path) -> Result<bool, FsError> {
    let dir = child.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".bk-relink-{}", fsx::random_hex(8)));
    match fs::hard_link(parent, &tmp) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => return Ok(false),
        Err(e) => return Err(FsError::new("hard-link", parent, e)),
    }
    if let Err(e) = fs::rename(&tmp, child) {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("rename a link over", child, e));
    }
    Ok(true)
}
