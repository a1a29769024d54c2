//! The file-operation engine: BuildKit's FileOp actions (copy, mkdir,
//! mkfile, rm) executed as pure functions over plain directories — a
//! source root and a destination root, no mounts, no daemon. The solver
//! maps LLB file actions onto the request structs here and checksums
//! what [`selected_paths`] reports.
//!
//! Every path an operation is given is resolved *inside* its root, the
//! way a `chroot`ed process would see it ([`root`]): `..` and symlinks,
//! absolute or relative, never lead outside. Nothing is ever written
//! through an existing destination inode — a file replacing an entry is
//! written under a temporary name in its final directory and renamed over
//! it, a new one is created exclusively — because destination trees may
//! share inodes with other snapshots by hard links. (Directories are
//! changed in place: they cannot be hard-linked.)
//!
//! Layering: this module sits below the solver and uses only the leaves
//! `pattern` (BuildKit's include/exclude language) and `util` (fs
//! wrappers, `--chmod` values). It must not import the Dockerfile
//! frontend, the CLI, or anything that runs processes or touches the
//! network.

mod copy;
mod glob;
mod meta;
mod mode;
mod ops;
mod owner;
pub(crate) mod root;
mod unpack;

#[cfg(test)]
mod tests;

pub use crate::util::chmod::Chmod;
pub use copy::{copy, selected_paths, CopyRequest};
pub use glob::GlobError;
pub use mode::ModeError;
pub use ops::{mkdir, mkfile, rm, MkdirRequest, MkfileRequest, RmRequest};
pub use owner::{resolve_owner, IdResolver, IdSpec, Ids, Owner, OwnerError, PasswdResolver};
pub use root::RootError;
pub use unpack::UnpackError;

/// The host path of in-root path `path` (absolute or not), every symlink
/// on the way followed inside `root` (the last component too); missing
/// components are taken literally. What a process `chroot`ed into
/// `root` would open, for callers outside this module (the runner's
/// mount points, `USER` lookups).
pub fn resolve_in_root(
    root: &std::path::Path,
    path: &str,
) -> std::result::Result<std::path::PathBuf, RootError> {
    root::resolve(root, path.as_bytes()).map(|r| r.host(root))
}

use crate::pattern::PatternError;
use crate::util::fs::FsError;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    ParseChmod(#[from] ModeError),
    #[error("invalid {which} patterns")]
    ParsePatterns {
        which: &'static str,
        #[source]
        source: PatternError,
    },
    #[error(transparent)]
    ResolveOwner(#[from] OwnerError),
    /// Resolving a path inside a root, or creating directories along it.
    #[error(transparent)]
    ResolvePath(#[from] RootError),
    #[error(transparent)]
    MatchWildcard(#[from] GlobError),
    /// A wildcard source matched nothing (and that was not allowed).
    #[error("{pattern} not found")]
    MatchSource { pattern: String },
    /// A source path (or a `--parents` path) does not exist.
    #[error("\"{path}\": not found")]
    FindSource { path: String },
    /// Without `create_dest_path`, the destination's parent must exist.
    #[error("failed to stat {dest}")]
    CheckDestination {
        dest: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "When using COPY with more than one source file, the destination must be a directory \
         and end with a /"
    )]
    CheckSeveralSources,
    /// A non-directory would replace a directory.
    #[error("cannot replace to directory {path} with file")]
    ReplaceDirectory { path: String },
    /// A directory would be copied onto a non-directory.
    #[error("cannot copy to non-directory: {path}")]
    CopyOntoNonDirectory { path: String },
    /// Reading the source tree failed.
    #[error(transparent)]
    ReadSource(FsError),
    /// Writing the destination tree failed.
    #[error(transparent)]
    WriteDestination(FsError),
    #[error("failed to unpack {archive}")]
    Unpack {
        archive: String,
        #[source]
        source: UnpackError,
    },
    /// `rm` of `/` (or something that cleans to it).
    #[error("cannot remove {path}: it is the root directory")]
    RemoveRoot { path: String },
    #[error("cannot remove {path}: no such file or directory")]
    FindRemoveTarget { path: String },
}

pub type Result<T> = std::result::Result<T, Error>;
