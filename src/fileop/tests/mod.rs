//! Tests of the file operations on real temporary directories: Docker
//! COPY/ADD semantics case by case, the containment of every path inside
//! its root, and mkdir/mkfile/rm. Shared helpers live here; each file
//! covers one area. Nothing here is used outside tests.

mod archive;
mod copy_cases;
mod copy_features;
mod escape;
mod ops;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{copy, CopyRequest, PasswdResolver, Result};

/// A source root, a destination root and, beside them (outside both), a
/// secret file and a directory that no operation may read or touch.
pub(super) struct Fx {
    _tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub dest: PathBuf,
    pub secret: PathBuf,
    pub outside: PathBuf,
}

pub(super) const SECRET: &str = "top secret, outside every root";

impl Fx {
    pub fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dest = tmp.path().join("dest");
        let outside = tmp.path().join("outside");
        let secret = tmp.path().join("secret");
        for d in [&src, &dest, &outside] {
            fs::create_dir(d).unwrap();
        }
        fs::write(&secret, SECRET).unwrap();
        Fx {
            _tmp: tmp,
            src,
            dest,
            secret,
            outside,
        }
    }

    /// Runs a copy with the destination's own user database.
    pub fn copy(&self, req: &CopyRequest) -> Result<()> {
        copy(req, &self.src, &self.dest, &PasswdResolver::new(&self.dest))
    }

    /// The outside world is as it was: secret unchanged, outside dir
    /// empty.
    pub fn assert_outside_untouched(&self) {
        assert_eq!(fs::read_to_string(&self.secret).unwrap(), SECRET);
        assert_eq!(
            fs::read_dir(&self.outside).unwrap().count(),
            0,
            "something was written outside the roots"
        );
    }
}

/// Creates a file (and its parents) with content and mode.
pub(super) fn put(root: &Path, rel: &str, content: &str, mode: u32) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn put_dir(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn put_link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    symlink(target, p).unwrap();
}

pub(super) fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub(super) fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

pub(super) fn mode(root: &Path, rel: &str) -> u32 {
    fs::symlink_metadata(root.join(rel)).unwrap().mode() & 0o7777
}

pub(super) fn owner(root: &Path, rel: &str) -> (u32, u32) {
    let m = fs::symlink_metadata(root.join(rel)).unwrap();
    (m.uid(), m.gid())
}

pub(super) fn link_target(root: &Path, rel: &str) -> String {
    fs::read_link(root.join(rel))
        .unwrap_or_else(|e| panic!("readlink {rel}: {e}"))
        .to_string_lossy()
        .into_owned()
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Every entry below `root`, relative and sorted, directories with a `/`.
pub(super) fn tree(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// No temporary entry of ours is left anywhere below `root`.
pub(super) fn assert_no_temp_files(root: &Path) {
    let leftovers: Vec<_> = tree(root)
        .into_iter()
        .filter(|p| p.contains(".bk-tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
