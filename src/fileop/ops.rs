//! BuildKit's other file actions on a plain directory: `FileActionMkdir`
//! (WORKDIR), `FileActionMkfile` (heredoc sources of COPY) and
//! `FileActionRm`, each resolving its path inside the root.
//!
//! Like the copy engine, mkfile never writes through an existing inode:
//! the new content is written beside the target and renamed over it.
//! It must not import anything above `fileop`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use super::glob;
use super::meta;
use super::owner::{resolve_owner, IdResolver, Ids, Owner, Privilege};
use super::root::{self, NewDirs};
use super::{Error, Result};
use crate::util::fs::FsError;

/// `FileActionMkdir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MkdirRequest {
    /// Absolute in-root path; symlinks along it (the last included) are
    /// followed inside the root.
    pub path: String,
    /// Permission bits (`& 0o777`).
    pub mode: u32,
    /// `mkdir -p`: create missing parents (each with `mode`), and accept
    /// an existing directory.
    pub make_parents: bool,
    pub owner: Option<Owner>,
    /// atime/mtime of the directories created; `None` leaves "now".
    pub timestamp: Option<SystemTime>,
}

/// `FileActionMkfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MkfileRequest {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
    pub owner: Option<Owner>,
    pub timestamp: Option<SystemTime>,
}

/// `FileActionRm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RmRequest {
    pub path: String,
    /// A missing path is not an error.
    pub allow_not_found: bool,
    /// `path` may be a wildcard pattern; matching nothing is not an error.
    pub allow_wildcard: bool,
}

fn owner_ids(owner: Option<&Owner>, ids: &dyn IdResolver) -> Result<Option<Ids>> {
    let Some(owner) = owner else {
        return Ok(None);
    };
    let resolved = resolve_owner(owner, ids)?;
    Privilege::current().check_requested(resolved)?;
    Ok(Some(resolved))
}

/// Creates a directory. Without `make_parents` an existing entry of any
/// kind is accepted silently and left alone, and a missing parent is an
/// error — BuildKit's behaviour.
pub fn mkdir(req: &MkdirRequest, root_dir: &Path, ids: &dyn IdResolver) -> Result<()> {
    let owner = owner_ids(req.owner.as_ref(), ids)?;
    let path = root::resolve(root_dir, req.path.as_bytes())?.host(root_dir);
    let mode = req.mode & 0o777;
    if req.make_parents {
        let created = root::mkdir_all(
            root_dir,
            &path,
            NewDirs {
                mode,
                owner,
                timestamp: req.timestamp,
            },
        )?;
        root::finish_dirs(&created)?;
        return Ok(());
    }
    if path == root_dir {
        return Ok(());
    }
    match fs::create_dir(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(Error::WriteDestination(FsError::new(
                "create directory",
                path,
                e,
            )))
        }
    }
    let w = Error::WriteDestination;
    // Explicit, so the process umask does not decide.
    meta::set_mode(&path, mode).map_err(w)?;
    if let Some(ids) = owner {
        meta::set_owner(&path, ids).map_err(w)?;
    }
    if let Some(ts) = req.timestamp {
        meta::set_times_to(&path, ts).map_err(w)?;
    }
    Ok(())
}

/// Writes a file with `data`. The parent must exist. An existing regular
/// file is replaced by rename, but keeps its mode (and, without an
/// owner, its owner) as BuildKit's in-place `os.WriteFile` would; an
/// existing directory is an error.
pub fn mkfile(req: &MkfileRequest, root_dir: &Path, ids: &dyn IdResolver) -> Result<()> {
    let owner = owner_ids(req.owner.as_ref(), ids)?;
    let path = root::resolve(root_dir, req.path.as_bytes())?.host(root_dir);
    let w = Error::WriteDestination;
    if path == root_dir {
        return Err(Error::ReplaceDirectory {
            path: req.path.clone(),
        });
    }
    let parent = path.parent().unwrap_or(root_dir);
    match fs::symlink_metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(w(FsError::new(
                "write into",
                parent,
                io::Error::from_raw_os_error(libc::ENOTDIR),
            )))
        }
        Err(e) => return Err(w(FsError::new("write into", parent, e))),
    }
    let mut mode = req.mode & 0o777;
    let mut keep_owner = None;
    if let Some(existing) = meta::lstat(&path).map_err(w)? {
        if existing.is_dir() {
            return Err(Error::ReplaceDirectory {
                path: req.path.clone(),
            });
        }
        if existing.is_file() {
            use std::os::unix::fs::MetadataExt;
            mode = existing.mode() & 0o7777;
            keep_owner = Some(meta::ids_of(&existing));
        }
    }
    let (tmp, mut file) = meta::create_temp_file(parent).map_err(w)?;
    let result = (|| {
        file.write_all(&req.data)
            .map_err(|e| FsError::new("write", &tmp, e))?;
        drop(file);
        let privileged = Privilege::current().root;
        match (owner, keep_owner) {
            (Some(ids), _) => meta::set_owner(&tmp, ids)?,
            (None, Some(ids)) if privileged => meta::set_owner(&tmp, ids)?,
            _ => {}
        }
        meta::set_mode(&tmp, mode)?;
        if let Some(ts) = req.timestamp {
            meta::set_times_to(&tmp, ts)?;
        }
        meta::rename_into_place(&tmp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(w)
}

/// Removes a path (a directory with everything in it; a symlink itself,
/// never its target). With wildcards, every match is removed and no match
/// is fine.
pub fn rm(req: &RmRequest, root_dir: &Path) -> Result<()> {
    if req.allow_wildcard {
        let pattern = root::clean_keep_trailing(req.path.as_bytes());
        for found in glob::resolve_wildcards(root_dir, &pattern, false)? {
            rm_path(root_dir, &found, req.allow_not_found)?;
        }
        return Ok(());
    }
    rm_path(root_dir, req.path.as_bytes(), req.allow_not_found)
}

/// BuildKit's `rmPath`: the parent is resolved inside the root, the last
/// component is removed as it is.
fn rm_path(root_dir: &Path, path: &[u8], allow_not_found: bool) -> Result<()> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let abs = root::clean_abs(path);
    let (dir, base) = root::split(&abs);
    if base.is_empty() {
        return Err(Error::RemoveRoot { path: shown });
    }
    let target = root::resolve(root_dir, dir)?
        .host(root_dir)
        .join(root::from_bytes(base));
    if !allow_not_found {
        // BuildKit stats the path (following a final symlink); following
        // it inside the root keeps the check from looking at the host.
        let followed = root::resolve(root_dir, &abs)?.host(root_dir);
        if meta::lstat(&followed)
            .map_err(Error::WriteDestination)?
            .is_none()
        {
            return Err(Error::FindRemoveTarget { path: shown });
        }
    }
    meta::remove_all(&target).map_err(Error::WriteDestination)
}
