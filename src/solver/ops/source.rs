//! Source ops: filesystems from outside the graph. The local build
//! context (and named local contexts) is read here; registry images and
//! OCI layouts in [`super::image`]; HTTP downloads in the solver with
//! [`crate::source::http`]; git repositories in the solver with
//! [`crate::source::git`].
//!
//! The context is read in place: a source vertex walks it with its own
//! include and exclude patterns plus `.dockerignore`, checksums exactly
//! the entries the walk selects (that checksum is what its cache key
//! covers), and hands its consumers a [`Selection`]. A consumer reads the
//! context directory itself when the filters hid nothing below what the
//! vertex selects; otherwise it reads a private copy of just the selected
//! entries ([`Selection::dir`]), so a COPY can never see a file that
//! `.dockerignore` or `--exclude` removed.
//!
//! Imports `llb`, `source`, `cache`, `snapshot`, `util` and the solver's
//! errors; never `cli` or `dockerfile`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::cache::{CacheDb, Digest};
use crate::llb::{attr, SourceOp};
use crate::snapshot::{Active, SnapshotError, Store};
use crate::solver::VertexError;
use crate::source::{Entry, EntryKind, LocalContext, SourceError};
use crate::util::fs::FsError;

/// Why reading a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceOpError {
    /// An attribute that must hold a JSON array of strings does not.
    #[error("invalid {key} on {identifier}: expected a JSON array of strings")]
    ParseAttr {
        identifier: String,
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The graph reads a build context the build was not given.
    #[error("{identifier} is read but no build context was given")]
    NoContext { identifier: String },
    /// Walking or checksumming the context failed.
    #[error("failed to read the build context")]
    ReadContext(#[source] SourceError),
    /// Making the private copy of the selected entries failed.
    #[error("failed to prepare the selected build-context files")]
    PrepareSelection(#[source] SnapshotError),
    /// Copying one selected entry into the private copy failed.
    #[error("failed to copy the selected build-context files")]
    CopySelection(#[source] FsError),
}

/// The context a build reads, as the CLI opened it.
pub const MAIN_CONTEXT: &str = "local://context";

/// Refuses sources bk cannot read yet, naming them; `Ok` for the main
/// build context.
pub fn check_supported(op: &SourceOp) -> Result<(), VertexError> {
    let id = op.identifier.as_str();
    let unsupported = |what: &str, why: &str| VertexError::NotSupported {
        what: what.into(),
        detail: format!("{id}: {why}"),
    };
    let scheme = id.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        // Named contexts are the CLI's; one it did not open fails when read.
        "local" => Ok(()),
        "docker-image" => Ok(()),
        "git" => Ok(()),
        "http" | "https" => Ok(()),
        "oci-layout" => Ok(()),
        _ => Err(unsupported("this source kind", "unknown scheme")),
    }
}

/// A JSON-array attribute (absent: empty).
fn list_attr(op: &SourceOp, key: &'static str) -> Result<Vec<String>, SourceOpError> {
    match op.attrs.get(key) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|source| SourceOpError::ParseAttr {
            identifier: op.identifier.clone(),
            key,
            source,
        }),
    }
}

/// What one context source vertex selected.
#[derive(Debug)]
pub struct Selection {
    context: Arc<LocalContext>,
    include: Vec<String>,
    exclude: Vec<String>,
    entries: Vec<Entry>,
    /// The private copy, made by the first consumer that needs it and kept
    /// (an uncommitted snapshot, removed when dropped) until the build ends.
    copy: Mutex<Option<Active>>,
}

/// A context source's result: the selection and its content checksum.
pub struct Read {
    pub selection: Arc<Selection>,
    pub checksum: Digest,
}

/// Walks and checksums what `op` selects of `context`. Blocking.
pub fn read(
    op: &SourceOp,
    context: Option<&Arc<LocalContext>>,
    db: &CacheDb,
) -> Result<Read, SourceOpError> {
    let context = context.ok_or_else(|| SourceOpError::NoContext {
        identifier: op.identifier.clone(),
    })?;
    let include = list_attr(op, attr::LOCAL_INCLUDE_PATTERNS)?;
    let exclude = list_attr(op, attr::LOCAL_EXCLUDE_PATTERNS)?;
    let entries = context
        .walk(&include, &exclude, &[])
        .map_err(SourceOpError::ReadContext)?;
    let checksum = context
        .checksum(&entries, db)
        .map_err(SourceOpError::ReadContext)?;
    Ok(Read {
        selection: Arc::new(Selection {
            context: context.clone(),
            include,
            exclude,
            entries,
            copy: Mutex::new(None),
        }),
        checksum,
    })
}

impl Selection {
    /// The context directory.
    pub fn root(&self) -> &Path {
        self.context.root()
    }

    /// How many entries the walk selected.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A directory holding exactly the selected entries at their context
    /// paths: the context itself when no filter hid anything there, else
    /// a private copy. Blocking.
    pub fn dir(&self, store: &Store) -> Result<PathBuf, SourceOpError> {
        let mut copy = self.copy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(active) = copy.as_ref() {
            return Ok(active.path().to_path_buf());
        }
        if !self.filtered()? {
            return Ok(self.root().to_path_buf());
        }
        let active = store
            .prepare(None)
            .map_err(SourceOpError::PrepareSelection)?;
        self.copy_into(active.path())
            .map_err(SourceOpError::CopySelection)?;
        let path = active.path().to_path_buf();
        *copy = Some(active);
        Ok(path)
    }

    /// Whether `.dockerignore` or the exclude patterns hid anything the
    /// include patterns would otherwise select: the same walk without
    /// them lists more.
    fn filtered(&self) -> Result<bool, SourceOpError> {
        if self.context.dockerignore().file().is_none() && self.exclude.is_empty() {
            return Ok(false);
        }
        // `Default` is the empty ignore file (named by inference, so this
        // layer never imports the frontend).
        let unfiltered = LocalContext::open(self.root(), Default::default())
            .and_then(|all| all.walk(&self.include, &[], &[]))
            .map_err(SourceOpError::ReadContext)?;
        Ok(unfiltered.len() != self.entries.len())
    }

    /// Copies the selected entries (parents come before children in walk
    /// order) into the empty directory `dest`: bytes, not links, because
    /// the user may edit the context while the build reads the copy.
    fn copy_into(&self, dest: &Path) -> Result<(), FsError> {
        let root = self.root();
        for entry in &self.entries {
            let from = root.join(entry.path());
            let to = dest.join(entry.path());
            match entry.kind() {
                EntryKind::Dir => {
                    std::fs::create_dir_all(&to)
                        .map_err(|e| FsError::new("create directory", &to, e))?;
                }
                EntryKind::File => {
                    std::fs::copy(&from, &to).map_err(|e| FsError::new("copy", &from, e))?;
                }
                EntryKind::Symlink => {
                    let target = entry.link_target().unwrap_or(Path::new(""));
                    std::os::unix::fs::symlink(target, &to)
                        .map_err(|e| FsError::new("create symlink", &to, e))?;
                }
                // Nodes a COPY cannot carry anyway: fifos, sockets and
                // devices are skipped, as BuildKit's context transfer does.
                _ => continue,
            }
            if entry.kind() != EntryKind::Symlink {
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode()))
                    .map_err(|e| FsError::new("set permissions of", &to, e))?;
            }
            let mtime = filetime::FileTime::from_unix_time(
                entry.mtime_ns().div_euclid(1_000_000_000),
                // In range by construction: rem_euclid of 1e9 fits u32.
                u32::try_from(entry.mtime_ns().rem_euclid(1_000_000_000)).unwrap_or(0),
            );
            filetime::set_symlink_file_times(&to, mtime, mtime)
                .map_err(|e| FsError::new("set times of", &to, e))?;
        }
        // Directory times last: creating entries inside changed them.
        for entry in self
            .entries
            .iter()
            .rev()
            .filter(|e| e.kind() == EntryKind::Dir)
        {
            let to = dest.join(entry.path());
            let mtime = filetime::FileTime::from_unix_time(
                entry.mtime_ns().div_euclid(1_000_000_000),
                u32::try_from(entry.mtime_ns().rem_euclid(1_000_000_000)).unwrap_or(0),
            );
            filetime::set_file_times(&to, mtime, mtime)
                .map_err(|e| FsError::new("set times of", &to, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::source::dockerignore::Dockerignore;

    fn source(id: &str, attrs: &[(&str, &str)]) -> SourceOp {
        SourceOp {
            identifier: id.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn unsupported_sources_are_named() {
        assert!(check_supported(&source("local://context", &[])).is_ok());
        assert!(check_supported(&source("local://other", &[])).is_ok());
        assert!(
            check_supported(&source("docker-image://docker.io/library/alpine:3.20", &[])).is_ok()
        );
        for id in [
            "https://example.com/a.tgz",
            "oci-layout:///l:t",
            "git://github.com/moby/buildkit",
        ] {
            assert!(check_supported(&source(id, &[])).is_ok(), "{id}");
        }
        let id = "ftp://example.com/a";
        let err = check_supported(&source(id, &[])).unwrap_err().to_string();
        assert!(err.contains(id), "{err}");
    }

    fn setup(
        files: &[(&str, &str)],
        ignore: Option<&str>,
    ) -> (tempfile::TempDir, Arc<LocalContext>, CacheDb, Store) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        for (name, text) in files {
            let path = ctx.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&ctx).unwrap();
        let ignore = match ignore {
            Some(text) => Dockerignore::parse(Path::new(".dockerignore"), text.as_bytes()).unwrap(),
            None => Dockerignore::none(),
        };
        let context = Arc::new(LocalContext::open(&ctx, ignore).unwrap());
        let db = CacheDb::open(&dir.path().join("root")).unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        (dir, context, db, store)
    }

    #[test]
    fn unfiltered_selections_are_read_in_place() {
        let (_dir, context, db, store) = setup(&[("a", "A"), ("b", "B")], None);
        let op = source(MAIN_CONTEXT, &[(attr::LOCAL_INCLUDE_PATTERNS, r#"["a"]"#)]);
        let read = read(&op, Some(&context), &db).unwrap();
        assert_eq!(read.selection.len(), 1);
        assert_eq!(read.selection.dir(&store).unwrap(), context.root());
    }

    #[test]
    fn ignored_files_are_not_in_the_directory_consumers_read() {
        let (_dir, context, db, store) = setup(
            &[("keep/a", "A"), ("keep/x.log", "L"), ("other", "O")],
            Some("*.log\nkeep/*.log\n"),
        );
        let op = source(
            MAIN_CONTEXT,
            &[(attr::LOCAL_INCLUDE_PATTERNS, r#"["keep"]"#)],
        );
        let read = read(&op, Some(&context), &db).unwrap();
        let dir = read.selection.dir(&store).unwrap();
        assert_ne!(dir, context.root());
        assert_eq!(std::fs::read_to_string(dir.join("keep/a")).unwrap(), "A");
        assert!(!dir.join("keep/x.log").exists());
        assert!(!dir.join("other").exists());
        // The copy is made once and shared.
        assert_eq!(read.selection.dir(&store).unwrap(), dir);
    }

    #[test]
    fn checksums_follow_selected_content_only() {
        let (dir, context, db, _store) = setup(&[("a", "A"), ("b", "B")], None);
        let op = source(MAIN_CONTEXT, &[(attr::LOCAL_INCLUDE_PATTERNS, r#"["a"]"#)]);
        let before = read(&op, Some(&context), &db).unwrap().checksum;
        std::fs::write(dir.path().join("ctx/b"), "B2").unwrap();
        assert_eq!(read(&op, Some(&context), &db).unwrap().checksum, before);
        std::fs::write(dir.path().join("ctx/a"), "A2").unwrap();
        assert_ne!(read(&op, Some(&context), &db).unwrap().checksum, before);
    }

    #[test]
    fn malformed_attributes_are_named() {
        let (_dir, context, db, _store) = setup(&[], None);
        let op = source(MAIN_CONTEXT, &[(attr::LOCAL_INCLUDE_PATTERNS, "a")]);
        let err = read(&op, Some(&context), &db).err().unwrap();
        assert!(err.to_string().contains("local.includepatterns"), "{err}");
        assert!(matches!(
            read(&op, None, &db),
            Err(SourceOpError::NoContext { .. })
        ));
    }
}
