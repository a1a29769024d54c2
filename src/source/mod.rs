//! Build inputs that come from outside the cache: the local build context
//! ([`local`]), read in place, filtered the way BuildKit's context
//! transfer filters it, and checksummed over exactly the files an
//! operation reads; and base images ([`image`]), from the local image
//! store or a registry.
//!
//! This module may use `cache` (the file-checksum store), the frontend's
//! ignore-file and pattern matcher (`dockerfile::dockerignore`,
//! `dockerfile::pattern`), `registry`, `imagestore`, `content`, `image`
//! and `util`. It must not import the solver,
//! snapshotter, executor or CLI: they call it, not the other way round.

pub mod dockerignore;
mod follow;
pub mod git;
pub mod http;
pub mod image;
pub mod local;
#[cfg(test)]
mod local_tests;
pub mod oci_layout;

use std::path::PathBuf;

pub use local::{ChecksumStats, Entry, EntryKind, LocalContext};

use crate::cache::CacheError;
use crate::pattern::PatternError;
use crate::util::fs::FsError;

/// Why reading or checksumming a local context failed. File-system
/// failures carry an [`FsError`] naming the path.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The context directory could not be resolved.
    #[error("failed to open the build context")]
    OpenContext(#[source] FsError),
    #[error("build context `{}` is not a directory", path.display())]
    ContextNotDirectory { path: PathBuf },
    /// An include pattern (a `COPY` source) that Docker's matcher rejects.
    #[error("invalid include pattern `{pattern}`")]
    IncludePattern {
        pattern: String,
        #[source]
        source: PatternError,
    },
    /// An `--exclude` pattern that Docker's matcher rejects.
    #[error("invalid exclude pattern `{pattern}`")]
    ExcludePattern {
        pattern: String,
        #[source]
        source: PatternError,
    },
    /// Looking at the symlinks on a follow path failed.
    #[error("failed to resolve the build context's follow paths")]
    FollowPaths(#[source] FsError),
    #[error("failed to walk the build context")]
    ReadDir(#[source] FsError),
    #[error("failed to inspect a build-context file")]
    Stat(#[source] FsError),
    #[error("failed to read a build-context symlink")]
    ReadLink(#[source] FsError),
    #[error("failed to open a build-context file")]
    OpenFile(#[source] FsError),
    #[error("failed to read a build-context file")]
    ReadFile(#[source] FsError),
    /// A file differs from what the walk saw (or changed while it was
    /// hashed). Hashing it anyway would pair one version's metadata with
    /// another's contents and cache the mix.
    #[error("`{}` changed while the build was reading it; run the build again", path.display())]
    FileChanged { path: PathBuf },
    #[error("failed to look up cached context checksums")]
    LookupChecksums(#[source] CacheError),
    #[error("failed to record context checksums")]
    RecordChecksums(#[source] CacheError),
}
