//! Applies one image layer (a tar, gzip- or zstd-compressed or plain)
//! onto a directory that already holds the layers below it.
//!
//! The directory is a fresh snapshot whose files are hardlinks shared
//! with the parent snapshot, so nothing is ever written through an
//! existing inode: an entry replaces whatever was at its path (unlink,
//! then create). OCI whiteouts are applied: `.wh.<name>` deletes
//! `<name>`, `.wh..wh..opq` empties its directory of lower-layer entries.
//!
//! A layer is untrusted input: entries whose names climb out of the root
//! with `..` (absolute names are taken relative to the root, as containerd
//! does), entries that would be written through a symlink, and hard
//! links to such places are refused with an error naming the entry.
//!
//! Imports `util` only.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::util::fs::FsError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Why applying a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The compressed stream or the tar framing is broken.
    #[error("cannot read the layer archive")]
    ReadArchive(#[source] io::Error),
    /// An entry's name climbs out of the root with `..`.
    #[error("refusing layer entry {entry:?}: its path leaves the root")]
    UnsafePath { entry: String },
    /// An entry would be written through a symlink in the tree.
    #[error("refusing layer entry {entry:?}: {through:?} is a symlink")]
    ThroughSymlink { entry: String, through: String },
    /// A hard link's target climbs out or is a directory.
    #[error(
        "refusing hard link {entry:?} to {target:?}: the target is outside the root or missing"
    )]
    BadHardlink { entry: String, target: String },
    /// Writing an entry failed.
    #[error("cannot write layer entry {entry:?}")]
    Write {
        entry: String,
        #[source]
        source: FsError,
    },
    /// The uncompressed layer does not match the config's diff_id.
    #[error("layer content does not match its diff_id {expected}: got {actual}")]
    DiffId { expected: String, actual: String },
}

/// What applying a layer could not reproduce, for a warning.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Device nodes skipped because creating them needs root.
    pub skipped_devices: Vec<String>,
}

/// Hashes what is read through it (the uncompressed layer, for diff_id).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The decompressed stream of `blob`, chosen by its first bytes (a media
/// type may say `tar` of a gzip blob in old images; magic does not lie).
pub fn decompress<'a>(blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, blob);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// Applies the layer in `blob` onto `root`. When `diff_id` is given, the
/// uncompressed bytes must hash to it.
pub fn apply(
    root: &Path,
    blob: impl Read,
    diff_id: Option<&str>,
) -> Result<UnpackReport, UnpackError> {
    let mut hashing = Hashing {
        inner: decompress(blob).map_err(UnpackError::ReadArchive)?,
        hasher: Sha256::new(),
    };
    let report = {
        let mut archive = tar::Archive::new(&mut hashing);
        Applier::new(root).run(&mut archive)?
    };
    // The tar reader stops at the end-of-archive blocks; the rest of the
    // stream is padding that is still part of the diff_id.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::ReadArchive)?;
    if let Some(expected) = diff_id {
        let actual = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        if actual != expected {
            return Err(UnpackError::DiffId {
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(report)
}

struct Applier<'a> {
    root: &'a Path,
    is_root: bool,
    /// Paths this layer wrote: an opaque marker keeps them.
    written: HashSet<PathBuf>,
    /// Directories and their times, set last (creating entries in a
    /// directory changes its mtime).
    dir_times: Vec<(PathBuf, filetime::FileTime)>,
    report: UnpackReport,
}

/// `name` as a relative path of normal components, resolved lexically
/// as containerd does: a leading `/` means the root (image tools such as
/// umoci write `/` and `/etc`), `.` is dropped, `..` steps back, and
/// `None` if it would step above the root.
fn clean(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl<'a> Applier<'a> {
    fn new(root: &'a Path) -> Self {
        Applier {
            root,
            is_root: nix::unistd::geteuid().is_root(),
            written: HashSet::new(),
            dir_times: Vec::new(),
            report: UnpackReport::default(),
        }
    }

    fn run<R: Read>(mut self, archive: &mut tar::Archive<R>) -> Result<UnpackReport, UnpackError> {
        for entry in archive.entries().map_err(UnpackError::ReadArchive)? {
            let mut entry = entry.map_err(UnpackError::ReadArchive)?;
            self.entry(&mut entry)?;
        }
        // Deepest first, so a parent's time is set after its children's.
        for (dir, mtime) in self.dir_times.iter().rev() {
            filetime::set_file_mtime(dir, *mtime).map_err(|e| UnpackError::Write {
                entry: dir.display().to_string(),
                source: FsError::new("set times of", dir, e),
            })?;
        }
        Ok(self.report)
    }

    /// Refuses `rel` if any of its parents inside the root is a symlink
    /// (writing there would land outside the snapshot); creates missing
    /// parents.
    fn parents(&self, entry: &str, rel: &Path) -> Result<(), UnpackError> {
        let mut at = self.root.to_path_buf();
        let mut shown = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for part in parent.components() {
            at.push(part);
            shown.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::ThroughSymlink {
                        entry: entry.into(),
                        through: shown.display().to_string(),
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    // A file where the layer needs a directory: replaced,
                    // as the layer's content wins.
                    remove(&at).map_err(|e| write_err(entry, "remove", &at, e))?;
                    mkdir(&at, 0o755).map_err(|e| write_err(entry, "create directory", &at, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    mkdir(&at, 0o755).map_err(|e| write_err(entry, "create directory", &at, e))?;
                }
                Err(e) => return Err(write_err(entry, "inspect", &at, e)),
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path().map_err(UnpackError::ReadArchive)?.into_owned();
        let name = raw.display().to_string();
        let rel = clean(&raw).ok_or_else(|| UnpackError::UnsafePath {
            entry: name.clone(),
        })?;
        if rel.as_os_str().is_empty() {
            // The root itself (`./`): its metadata stays the snapshot's.
            return Ok(());
        }
        self.parents(&name, &rel)?;
        let path = self.root.join(&rel);
        let file_name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if file_name == OPAQUE {
            let dir = path.parent().unwrap_or(self.root).to_path_buf();
            return self.opaque(&name, &dir);
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            let target = path.with_file_name(hidden);
            return match fs::symlink_metadata(&target) {
                Ok(_) => remove(&target).map_err(|e| write_err(&name, "remove", &target, e)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(write_err(&name, "inspect", &target, e)),
            };
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::ReadArchive)? & 0o7777;
        let mtime = header.mtime().map_err(UnpackError::ReadArchive)?;
        let uid = header.uid().map_err(UnpackError::ReadArchive)?;
        let gid = header.gid().map_err(UnpackError::ReadArchive)?;
        let existing = fs::symlink_metadata(&path).ok();
        // Whatever is at the path is replaced, never written into, except
        // a directory that stays a directory (its entries are merged).
        match (&existing, kind) {
            (Some(m), tar::EntryType::Directory) if m.is_dir() => {}
            (Some(_), _) => remove(&path).map_err(|e| write_err(&name, "remove", &path, e))?,
            (None, _) => {}
        }
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    mkdir(&path, 0o755)
                        .map_err(|e| write_err(&name, "create directory", &path, e))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file =
                    fs::File::create(&path).map_err(|e| write_err(&name, "create", &path, e))?;
                io::copy(entry, &mut file).map_err(|e| write_err(&name, "write", &path, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::ReadArchive)?
                    .unwrap_or_default()
                    .into_owned();
                // A symlink may point anywhere: it is resolved inside the
                // container. Writes through it are what `parents` refuses.
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| write_err(&name, "create symlink", &path, e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::ReadArchive)?
                    .unwrap_or_default()
                    .into_owned();
                let bad = || UnpackError::BadHardlink {
                    entry: name.clone(),
                    target: target.display().to_string(),
                };
                let target_rel = clean(&target).ok_or_else(bad)?;
                self.parents(&name, &target_rel)?;
                let source = self.root.join(&target_rel);
                if fs::symlink_metadata(&source).is_ok_and(|m| m.is_dir()) {
                    return Err(bad());
                }
                fs::hard_link(&source, &path).map_err(|e| write_err(&name, "link", &path, e))?;
                // A hard link shares the target's inode: its metadata is
                // the target's, so nothing more is set.
                self.written.insert(rel);
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !self.is_root && kind != tar::EntryType::Fifo {
                    self.report.skipped_devices.push(name);
                    return Ok(());
                }
                let sflag = match kind {
                    tar::EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                    tar::EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let major = header
                    .device_major()
                    .map_err(UnpackError::ReadArchive)?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(UnpackError::ReadArchive)?
                    .unwrap_or(0);
                nix::sys::stat::mknod(
                    &path,
                    sflag,
                    nix::sys::stat::Mode::from_bits_truncate(mode),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(|e| write_err(&name, "create node", &path, e.into()))?;
            }
            // PAX and GNU metadata records are consumed by the reader;
            // anything else (sockets cannot be archived) is skipped.
            _ => return Ok(()),
        }
        if self.is_root {
            std::os::unix::fs::lchown(&path, u32::try_from(uid).ok(), u32::try_from(gid).ok())
                .map_err(|e| write_err(&name, "set owner of", &path, e))?;
        }
        let time = filetime::FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(0), 0);
        if kind == tar::EntryType::Symlink {
            filetime::set_symlink_file_times(&path, time, time)
                .map_err(|e| write_err(&name, "set times of", &path, e))?;
        } else {
            // After chown: changing the owner clears set-id bits.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| write_err(&name, "set permissions of", &path, e))?;
            if kind == tar::EntryType::Directory {
                self.dir_times.push((path, time));
            } else {
                filetime::set_file_times(&path, time, time)
                    .map_err(|e| write_err(&name, "set times of", &path, e))?;
            }
        }
        self.written.insert(rel);
        Ok(())
    }

    /// Removes every entry of `dir` that this layer did not write.
    fn opaque(&mut self, name: &str, dir: &Path) -> Result<(), UnpackError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(write_err(name, "read directory", dir, e)),
        };
        for child in entries {
            let child = child.map_err(|e| write_err(name, "read directory", dir, e))?;
            let path = child.path();
            let rel = path.strip_prefix(self.root).unwrap_or(&path).to_path_buf();
            if !self.written.contains(&rel) {
                remove(&path).map_err(|e| write_err(name, "remove", &path, e))?;
            }
        }
        Ok(())
    }
}

fn write_err(entry: &str, op: &'static str, path: &Path, e: io::Error) -> UnpackError {
    UnpackError::Write {
        entry: entry.into(),
        source: FsError::new(op, path, e),
    }
}

fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)
}

/// Removes a file, symlink or whole directory tree at `path`.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with raw names (the `tar` builder refuses `..`, so names are
    /// written into the header bytes directly).
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_old();
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_entry_type(*kind);
            header.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_mtime(1_000_000);
            header.set_uid(0);
            header.set_gid(0);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    header.set_link_name(data).unwrap();
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, io::empty()).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, data.as_bytes()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};

    #[test]
    fn files_links_and_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        apply(
            root,
            &tar_of(&[
                ("etc/", D, ""),
                ("etc/a", F, "A"),
                ("etc/gone", F, "G"),
                ("opq/", D, ""),
                ("opq/old", F, "O"),
                ("bin/sh", S, "/bin/busybox"),
            ])[..],
            None,
        )
        .unwrap();
        // A lower file shared by hardlink must not change when replaced.
        let outside = dir.path().join("../lower-a");
        let _ = fs::remove_file(&outside);
        fs::hard_link(root.join("etc/a"), &outside).unwrap();
        let layer2 = tar_of(&[
            ("etc/a", F, "A2"),
            ("etc/.wh.gone", F, ""),
            ("opq/new", F, "N"),
            ("opq/.wh..wh..opq", F, ""),
            ("etc/b", L, "etc/a"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &layer2).unwrap();
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer2)));
        apply(root, &gz.finish().unwrap()[..], Some(&diff_id)).unwrap();
        assert_eq!(fs::read_to_string(root.join("etc/a")).unwrap(), "A2");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "A");
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "A2");
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("opq/old").exists());
        assert!(root.join("opq/new").exists());
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let _ = fs::remove_file(&outside);
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let err = apply(&root, &tar_of(&[("../escape", F, "x")])[..], None).unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
        assert!(!dir.path().join("escape").exists());
        let err = apply(&root, &tar_of(&[("a/../../up", F, "x")])[..], None).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err}");
        // Absolute names are inside the root, not on the host.
        apply(&root, &tar_of(&[("/", D, ""), ("/abs", F, "x")])[..], None).unwrap();
        assert!(root.join("abs").is_file());
        let err = apply(
            &root,
            &tar_of(&[("link", S, "/tmp"), ("link/x", F, "x")])[..],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
        let err = apply(&root, &tar_of(&[("h", L, "../../etc/passwd")])[..], None).unwrap_err();
        assert!(matches!(err, UnpackError::BadHardlink { .. }), "{err}");
        let err = apply(&root, &tar_of(&[("ok", F, "x")])[..], Some("sha256:00")).unwrap_err();
        assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    }
}
