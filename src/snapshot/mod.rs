//! The snapshot store: build states kept as plain directory trees.
//!
//! A snapshot is the *whole* root file system of a build state, stored at
//! `<root>/snapshots/<id>/`. Committed snapshots are immutable. A new one
//! starts as a hardlink clone of an optional parent (directories
//! recreated, every other node hard-linked to the parent's inode), is
//! written to in `<root>/tmp/new-<rand>/`, and appears under `snapshots/`
//! only when committed, by one `rename(2)`:
//!
//! ```no_run
//! # fn main() -> Result<(), bk::snapshot::SnapshotError> {
//! # let store = bk::snapshot::Store::open(std::path::Path::new("/var/lib/bk"))?;
//! # let parent = bk::snapshot::SnapshotId::new("ab12")?;
//! let active = store.prepare(Some(&parent))?;
//! /* write under active.path(), following the rule below */
//! let id = active.commit()?;
//! # Ok(()) }
//! ```
//!
//! Dropping (or [`Active::discard`]ing) an uncommitted snapshot removes
//! its directory; a crashed run's leftovers are removed by the next
//! [`Store::open`].
//!
//! # The copy-on-write rule
//!
//! Right after [`Store::prepare`], every file in the active tree *is* the
//! parent's file (same inode). So every writer must follow one rule:
//! **never modify an existing inode in place.** Before changing a file's
//! content, mode, owner, times or xattrs, call [`break_link`] on it, which
//! swaps in a private copy; or build the new content with
//! [`replace_file`], which writes a new inode and renames it over the old
//! name. Creating, renaming and unlinking names is always fine (it changes
//! only the active snapshot's own directories, which the clone recreated).
//! A writer that opens an existing file for writing without doing this
//! silently corrupts the parent and every snapshot that shares it.
//!
//! One consequence, shared with overlayfs: two names hard-linked to each
//! other in the tree stop being linked once one of them is written to.
//!
//! [`diff`] relies on the same rule: a non-directory whose inode is the
//! parent's at the same path is unchanged.
//!
//! # Writable snapshots
//!
//! A `RUN` process cannot follow that rule, so it gets a [`Mounted`]
//! snapshot from [`Store::prepare_mounted`] instead: a root it may change
//! freely (an overlay over the parent's tree, or a private copy, per
//! [`Backend`]), which [`Mounted::commit`] turns into an ordinary
//! committed snapshot that follows the rule. The backend is detected
//! once per store or chosen with `--snapshotter` ([`Selection`]).
//!
//! This module imports only `crate::util`; it must not import the
//! exporters, the solver or the CLI (they build on it, not it on them).

mod backend;
mod clone;
mod cow;
mod diff;
pub(crate) mod fsx;
mod id;
mod mounted;
mod native;
mod overlay;
mod store;
mod upper;

pub use backend::{Backend, Privilege, Selection, UnknownSnapshotter};
pub use clone::CloneReport;
pub use cow::{break_link, replace_file};
pub use diff::{diff, Change, ChangeKind};
pub use fsx::EntryKind;
pub use id::SnapshotId;
pub use mounted::Mounted;
pub use store::{Active, Store};

use crate::util::fs::FsError;

/// Why a snapshot operation failed. Each variant names the operation; the
/// [`FsError`] inside names the path and the system call's error.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A snapshot id that is not 1–64 lowercase hex digits.
    #[error("invalid snapshot id {0:?}: expected 1 to 64 lowercase hex digits")]
    InvalidId(String),
    /// Creating the store's directories or clearing a crashed run's
    /// leftovers failed.
    #[error("cannot open the snapshot store")]
    Open(#[source] FsError),
    /// Making a new active snapshot (or cloning its parent) failed.
    #[error("cannot prepare a new snapshot")]
    Prepare(#[source] FsError),
    /// Mounting the overlay of a writable snapshot failed.
    #[error("cannot mount the writable snapshot")]
    Mount(#[source] FsError),
    /// Unmounting a writable snapshot failed (for a commit: it is still
    /// in use).
    #[error("cannot unmount the writable snapshot")]
    Unmount(#[source] FsError),
    /// Flushing or renaming an active snapshot into `snapshots/` failed.
    #[error("cannot commit the snapshot")]
    Commit(#[source] FsError),
    /// Removing an uncommitted snapshot's directory failed.
    #[error("cannot discard the uncommitted snapshot")]
    Discard(#[source] FsError),
    /// Removing a committed snapshot failed.
    #[error("cannot remove snapshot {id}")]
    Remove {
        id: SnapshotId,
        #[source]
        source: FsError,
    },
    /// Listing the committed snapshots failed.
    #[error("cannot list snapshots")]
    List(#[source] FsError),
    /// Measuring a snapshot failed.
    #[error("cannot measure snapshot {id}")]
    Size {
        id: SnapshotId,
        #[source]
        source: FsError,
    },
    /// Comparing two trees failed.
    #[error("cannot compare snapshots")]
    Diff(#[source] FsError),
    /// Making a private copy of a shared file failed.
    #[error("cannot make a private copy of a shared file")]
    BreakLink(#[source] FsError),
    /// Writing a replacement file failed.
    #[error("cannot replace a file")]
    ReplaceFile(#[source] FsError),
}
