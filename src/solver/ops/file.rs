//! File ops (COPY, ADD of local files, WORKDIR's mkdir, heredoc files):
//! a new snapshot cloned from the op's base input, then each action run
//! on it in order by `fileop`, then committed.
//!
//! Copies read from the action's secondary input: a committed snapshot's
//! directory, the build context (in place, or the private copy of what
//! its source selected; see `ops::source`), or an empty directory for
//! scratch. Owner names are resolved in the destination's `/etc/passwd`.
//!
//! Imports `llb`, `fileop`, `snapshot` and the context selection; never
//! `cli` or `dockerfile`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::source::SourceOpError;
use crate::fileop::{self, Chmod, IdSpec, Owner, PasswdResolver};
use crate::llb::{ChownOpt, FileActionKind, FileOp, UserOpt};
use crate::snapshot::{Active, SnapshotError, SnapshotId, Store};
use crate::solver::InputDir;

/// Why a file op failed. `fileop`'s errors are boxed: they are large, and
/// every result on the way up would carry their size.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The base input is not a filesystem a file op can start from.
    #[error("a file operation cannot start from {what}")]
    Base { what: &'static str },
    /// An action names an input the vertex does not have.
    #[error("action {action} reads input {input}, but the step has {count} inputs")]
    Input {
        action: usize,
        input: u32,
        count: usize,
    },
    /// Cloning the base into a new snapshot (or making an empty one)
    /// failed.
    #[error("cannot prepare the snapshot to write into")]
    Prepare(#[source] SnapshotError),
    /// Finding the selected build-context files failed.
    #[error(transparent)]
    ReadContext(#[from] SourceOpError),
    /// A copy failed; `src` and `dest` as the graph gives them.
    #[error("failed to copy {src} to {dest}")]
    Copy {
        src: String,
        dest: String,
        #[source]
        source: Box<fileop::Error>,
    },
    #[error("failed to create directory {path}")]
    Mkdir {
        path: String,
        #[source]
        source: Box<fileop::Error>,
    },
    #[error("failed to create file {path}")]
    Mkfile {
        path: String,
        #[source]
        source: Box<fileop::Error>,
    },
    #[error("failed to remove {path}")]
    Rm {
        path: String,
        #[source]
        source: Box<fileop::Error>,
    },
    /// Renaming the finished snapshot into place failed.
    #[error("cannot commit the snapshot")]
    Commit(#[source] SnapshotError),
}

/// Runs `op` over `inputs` into a new committed snapshot. Blocking.
pub(crate) fn run(
    store: &Store,
    op: &FileOp,
    inputs: &[InputDir],
) -> Result<SnapshotId, FileError> {
    let input = |action: usize, index: u32| {
        inputs.get(index as usize).ok_or(FileError::Input {
            action,
            input: index,
            count: inputs.len(),
        })
    };
    // Only the first action's input matters: later ones continue from
    // the previous action's result (see `llb::FileAction`).
    let base = match op.actions.first().and_then(|a| a.input) {
        None => None,
        Some(index) => match input(0, index)? {
            InputDir::Scratch => None,
            InputDir::Snapshot(id) => Some(id),
            InputDir::Context(_) => {
                return Err(FileError::Base {
                    what: "the build context itself",
                })
            }
        },
    };
    let active = store.prepare(base).map_err(FileError::Prepare)?;
    let dest = active.path().to_path_buf();
    // Owner names resolve in the tree being written, as BuildKit does.
    let ids = PasswdResolver::new(&dest);
    // Made on first use: the directory a copy from scratch reads.
    let mut empty: Option<Active> = None;
    let copies = op
        .actions
        .iter()
        .filter(|a| matches!(a.action, FileActionKind::Copy(_)))
        .count();
    for (n, action) in op.actions.iter().enumerate() {
        match &action.action {
            FileActionKind::Copy(copy) => {
                let mut from_context = false;
                let src_root: PathBuf = match action.secondary_input {
                    None => empty_dir(store, &mut empty)?,
                    Some(index) => match input(n, index)? {
                        InputDir::Scratch => empty_dir(store, &mut empty)?,
                        InputDir::Snapshot(id) => store.path(id),
                        InputDir::Context(selection) => {
                            from_context = true;
                            selection.dir(store)?
                        }
                    },
                };
                // buildx sends context files as 0:0 whoever owns them on the
                // host, so COPY without --chown yields root-owned files.
                // Without root the files stay the user's (the rootless
                // user namespace maps that user to 0).
                let chown = match &copy.owner {
                    Some(who) => Some(owner(who)),
                    None if from_context && nix::unistd::geteuid().is_root() => Some(Owner {
                        user: IdSpec::Id(0),
                        group: Some(IdSpec::Id(0)),
                    }),
                    None => None,
                };
                let req = fileop::CopyRequest {
                    src: copy.src.clone(),
                    dest: copy.dest.clone(),
                    follow_symlinks: copy.follow_symlink,
                    dir_copy_contents: copy.dir_copy_contents,
                    attempt_unpack: copy.attempt_unpack,
                    create_dest_path: copy.create_dest_path,
                    allow_wildcard: copy.allow_wildcard,
                    allow_empty_wildcard: copy.allow_empty_wildcard,
                    chown,
                    chmod: copy.mode.as_deref().map(chmod),
                    include_patterns: copy.include_patterns.clone(),
                    exclude_patterns: copy.exclude_patterns.clone(),
                    parents: copy.parents,
                    // The frontend emits one copy action per source.
                    several_sources: copies > 1,
                    always_replace_existing_dest: copy.always_replace_existing_dest,
                    timestamp: copy.timestamp.map(time),
                };
                fileop::copy(&req, &src_root, &dest, &ids).map_err(|source| FileError::Copy {
                    src: copy.src.clone(),
                    dest: copy.dest.clone(),
                    source: Box::new(source),
                })?;
            }
            FileActionKind::Mkdir {
                path,
                mode,
                make_parents,
                owner: who,
                timestamp,
            } => {
                let req = fileop::MkdirRequest {
                    path: path.clone(),
                    mode: *mode,
                    make_parents: *make_parents,
                    owner: who.as_ref().map(owner),
                    timestamp: timestamp.map(time),
                };
                fileop::mkdir(&req, &dest, &ids).map_err(|source| FileError::Mkdir {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            }
            FileActionKind::Mkfile {
                path,
                mode,
                data,
                owner: who,
                timestamp,
            } => {
                let req = fileop::MkfileRequest {
                    path: path.clone(),
                    mode: *mode,
                    data: data.as_bytes().to_vec(),
                    owner: who.as_ref().map(owner),
                    timestamp: timestamp.map(time),
                };
                fileop::mkfile(&req, &dest, &ids).map_err(|source| FileError::Mkfile {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            }
            FileActionKind::Rm {
                path,
                allow_not_found,
                allow_wildcard,
            } => {
                let req = fileop::RmRequest {
                    path: path.clone(),
                    allow_not_found: *allow_not_found,
                    allow_wildcard: *allow_wildcard,
                };
                fileop::rm(&req, &dest).map_err(|source| FileError::Rm {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            }
        }
    }
    active.commit().map_err(FileError::Commit)
}

/// An empty directory to copy from, made once per op (an uncommitted
/// snapshot, removed when the op ends).
fn empty_dir(store: &Store, empty: &mut Option<Active>) -> Result<PathBuf, FileError> {
    if empty.is_none() {
        *empty = Some(store.prepare(None).map_err(FileError::Prepare)?);
    }
    Ok(empty
        .as_ref()
        .map(|a| a.path().to_path_buf())
        .unwrap_or_default())
}

fn owner(chown: &ChownOpt) -> Owner {
    let spec = |u: &UserOpt| match u {
        UserOpt::Id(n) => IdSpec::Id(*n),
        UserOpt::Name(name) => IdSpec::Name(name.clone()),
    };
    Owner {
        user: spec(&chown.user),
        group: chown.group.as_ref().map(spec),
    }
}

/// `--chmod` as the graph carries it: octal digits, else a symbolic
/// expression (which `fileop` validates when it compiles it).
fn chmod(mode: &str) -> Chmod {
    match u32::from_str_radix(mode, 8) {
        Ok(bits) if !mode.is_empty() && mode.bytes().all(|b| b.is_ascii_digit()) => {
            Chmod::Octal(bits)
        }
        _ => Chmod::Symbolic(mode.to_string()),
    }
}

/// Seconds since the epoch (negative: before it) as a time.
fn time(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_values_map_to_octal_or_symbolic() {
        assert_eq!(chmod("0640"), Chmod::Octal(0o640));
        assert_eq!(chmod("755"), Chmod::Octal(0o755));
        assert_eq!(chmod("u+x"), Chmod::Symbolic("u+x".into()));
        assert_eq!(chmod("8"), Chmod::Symbolic("8".into()));
    }

    #[test]
    fn times_before_the_epoch_are_kept() {
        assert_eq!(time(10), UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(time(-10), UNIX_EPOCH - Duration::from_secs(10));
    }
}
