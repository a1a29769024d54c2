//! ADD's archive handling: deciding whether a local source is a tar
//! archive (plain, gzip, bzip2, xz or zstd, told apart by magic bytes as
//! moby's `compression.Detect` does) and extracting it into a directory
//! with the semantics BuildKit gets from `chrootarchive.Untar`.
//!
//! BuildKit extracts inside a `chroot` of the destination directory, so
//! every entry name, hard-link target and symlink along the way resolves
//! *inside* that directory: `../../x` lands at `<dest>/x`, and a symlink
//! to `/etc` makes `link/passwd` land at `<dest>/etc/passwd`. This module
//! reproduces that containment with [`root::resolve`] instead of a chroot.
//! Beyond BuildKit, a hard link in the archive that points at a file the
//! archive did not create is materialised as a copy, because linking and
//! then chmod-ing it would modify an inode that may be shared with another
//! snapshot.
//!
//! It must not import the copy engine or anything above `fileop`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::EntryType;

use super::meta;
use super::owner::{Ids, Privilege};
use super::root::{self, NewDirs, RootError};
use crate::util::fs::FsError;

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    OpenArchive(FsError),
    #[error("failed to read archive `{}`", archive.display())]
    ReadArchive {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to place archive entry `{name}`")]
    ResolveEntry {
        name: String,
        #[source]
        source: RootError,
    },
    #[error(transparent)]
    WriteEntry(FsError),
    /// A non-directory entry whose cleaned name is the extraction
    /// directory itself.
    #[error("archive entry `{name}` would replace the extraction directory")]
    ReplaceRoot { name: String },
    #[error("archive entry `{name}` is a hard link to `{target}`, which does not exist")]
    LinkEntry { name: String, target: String },
    #[error("archive entry `{name}` has unhandled tar type {kind}")]
    HandleEntry { name: String, kind: u8 },
}

/// The compression moby recognises by magic bytes; anything else is read
/// as a plain tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// moby's `compression.Detect`, in its order.
pub(crate) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x42, 0x5A, 0x68]) {
        Compression::Bzip2
    } else if head.starts_with(&[0x1F, 0x8B, 0x08]) {
        Compression::Gzip
    } else if head.starts_with(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) || is_zstd_skippable(head) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A zstd skippable frame: magic 0x184D2A50..=0x184D2A5F, little endian.
fn is_zstd_skippable(head: &[u8]) -> bool {
    match head.get(..4) {
        Some(&[a, b, c, d]) if head.len() >= 8 => {
            u32::from_le_bytes([a, b, c, d]) & 0xFFFF_FFF0 == 0x184D_2A50
        }
        _ => false,
    }
}

/// The file's contents, decompressed according to its magic bytes.
fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
    let file = meta::open_source(path).map_err(|e| io::Error::new(e.kind(), e))?;
    let mut reader = BufReader::new(file);
    let compression = detect(reader.fill_buf()?);
    Ok(match compression {
        Compression::None => Box::new(reader),
        // Go's readers continue across concatenated members and so do
        // these.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// BuildKit's `isArchivePath`: a regular file (not a symlink) that
/// decompresses and whose first tar header reads. Anything unreadable is
/// simply "not an archive", to be copied as a file.
pub(crate) fn is_archive(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return false,
    }
    let Ok(reader) = open_decompressed(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// What to do about ownership while extracting.
pub(crate) struct UnpackOptions<'a> {
    /// `--chown`: every entry gets these ids instead of the archive's.
    pub owner: Option<Ids>,
    pub privilege: &'a Privilege,
}

/// A directory whose mode and times are applied after everything inside
/// it has been written (creating entries moves a directory's mtime).
struct PendingDir {
    path: PathBuf,
    mode: u32,
    atime: SystemTime,
    mtime: SystemTime,
}

/// Extracts `archive` into `dest`, a real directory (already resolved
/// inside the destination root and created).
pub(crate) fn unpack(
    archive: &Path,
    dest: &Path,
    opts: &UnpackOptions<'_>,
) -> Result<(), UnpackError> {
    let read_err = |source: io::Error| UnpackError::ReadArchive {
        archive: archive.to_path_buf(),
        source,
    };
    let reader = open_decompressed(archive).map_err(read_err)?;
    let mut tar = tar::Archive::new(reader);
    let mut state = Extraction {
        dest,
        opts,
        dirs: Vec::new(),
        created: HashSet::new(),
    };
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        state.entry(&mut entry).map_err(|e| match e {
            EntryFailure::Read(source) => read_err(source),
            EntryFailure::Other(e) => e,
        })?;
    }
    // Deepest last in archive order is not guaranteed, so go in reverse:
    // children listed after their parents get their final mode first.
    for dir in state.dirs.iter().rev() {
        meta::set_mode(&dir.path, dir.mode).map_err(UnpackError::WriteEntry)?;
        filetime::set_symlink_file_times(
            &dir.path,
            filetime::FileTime::from_system_time(dir.atime),
            filetime::FileTime::from_system_time(dir.mtime),
        )
        .map_err(|e| UnpackError::WriteEntry(FsError::new("set times of", &dir.path, e)))?;
    }
    Ok(())
}

/// A per-entry failure: reading the archive (reported against the
/// archive) or anything else.
enum EntryFailure {
    Read(io::Error),
    Other(UnpackError),
}

impl From<UnpackError> for EntryFailure {
    fn from(e: UnpackError) -> Self {
        EntryFailure::Other(e)
    }
}

impl From<FsError> for EntryFailure {
    fn from(e: FsError) -> Self {
        EntryFailure::Other(UnpackError::WriteEntry(e))
    }
}

/// The header fields extraction needs, with PAX records applied.
struct Header {
    kind: EntryType,
    mode: u32,
    ids: Ids,
    atime: SystemTime,
    mtime: SystemTime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Extraction<'a> {
    dest: &'a Path,
    opts: &'a UnpackOptions<'a>,
    dirs: Vec<PendingDir>,
    /// Inodes this extraction created: the only ones a hard link may
    /// share.
    created: HashSet<(u64, u64)>,
}

impl Extraction<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), EntryFailure> {
        let header = read_header(entry).map_err(EntryFailure::Read)?;
        if header.kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let place_err = |source| UnpackError::ResolveEntry {
            name: name.clone(),
            source,
        };
        // In BuildKit's chroot the destination is `/`, so the name is
        // cleaned as an absolute path: `..` cannot leave it.
        let cleaned = root::clean(&raw_name);
        let abs = root::clean_abs(&raw_name);
        if abs == b"/" {
            // `.` entries are skipped as moby skips them; a directory
            // named `/` or `..` re-applies its metadata to the root.
            if header.kind != EntryType::Directory {
                return Err(UnpackError::ReplaceRoot { name }.into());
            }
            if cleaned != b"." {
                self.apply_owner_and_xattrs(self.dest, &header)?;
                self.dirs.push(PendingDir {
                    path: self.dest.to_path_buf(),
                    mode: header.mode,
                    atime: header.atime,
                    mtime: header.mtime,
                });
            }
            return Ok(());
        }
        let (parent, base) = root::split(&abs);
        let parent_host = root::resolve(self.dest, parent)
            .map_err(place_err)?
            .host(self.dest);
        // Implied parents: 0755, owned by the (unmapped) root, only when
        // new; an explicit directory entry later overrides that.
        let implied_owner = self.opts.privilege.root.then_some(Ids { uid: 0, gid: 0 });
        let created = root::mkdir_all(
            self.dest,
            &parent_host,
            NewDirs {
                mode: 0o755,
                owner: implied_owner,
                timestamp: None,
            },
        )
        .map_err(place_err)?;
        root::finish_dirs(&created).map_err(place_err)?;
        let target = parent_host.join(root::from_bytes(base));

        // moby replaces whatever is in the way except a directory met by a
        // directory, which is merged. Non-directories are replaced by the
        // rename that publishes the new entry; only what rename cannot
        // replace is removed first.
        let is_dir_entry = header.kind == EntryType::Directory;
        let mut merge_dir = false;
        if let Some(existing) = meta::lstat(&target)? {
            if existing.is_dir() && is_dir_entry {
                merge_dir = true;
            } else if existing.is_dir() || is_dir_entry {
                meta::remove_all(&target)?;
            }
        }

        match header.kind {
            EntryType::Directory => {
                if !merge_dir {
                    meta::create_dir(&target, 0o700)?;
                }
                self.apply_owner_and_xattrs(&target, &header)?;
                self.dirs.push(PendingDir {
                    path: target,
                    mode: header.mode,
                    atime: header.atime,
                    mtime: header.mtime,
                });
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let (tmp, mut file) = meta::create_temp_file(&parent_host)?;
                let copied = io::copy(entry, &mut file);
                drop(file);
                if let Err(e) = copied {
                    let _ = fs::remove_file(&tmp);
                    return Err(EntryFailure::Read(e));
                }
                self.finish(&tmp, &target, &header, true)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let tmp = meta::create_temp(&parent_host, "create symlink", |p| {
                    symlink(root::from_bytes(&link), p)
                })?;
                self.finish(&tmp, &target, &header, false)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                self.hard_link(&name, &link, &parent_host, &target, &header)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if header.kind != EntryType::Fifo && !self.opts.privilege.root {
                    // As moby does inside a user namespace: devices cannot
                    // be created without privilege, so they are skipped.
                    return Ok(());
                }
                let dev = nix::sys::stat::makedev(
                    u64::from(entry.header().device_major().ok().flatten().unwrap_or(0)),
                    u64::from(entry.header().device_minor().ok().flatten().unwrap_or(0)),
                );
                let kind = match header.kind {
                    EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                    EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let tmp = meta::create_temp(&parent_host, "create special file", |p| {
                    nix::sys::stat::mknod(
                        p,
                        kind,
                        nix::sys::stat::Mode::from_bits_truncate(0o600),
                        dev,
                    )
                    .map_err(io::Error::from)
                })?;
                self.finish(&tmp, &target, &header, true)?;
            }
            other => {
                return Err(UnpackError::HandleEntry {
                    name,
                    kind: other.as_byte(),
                }
                .into())
            }
        }
        Ok(())
    }

    /// Owner, then xattrs: `chown` would clear `security.capability`.
    fn apply_owner_and_xattrs(&self, path: &Path, header: &Header) -> Result<(), EntryFailure> {
        match self.opts.owner {
            Some(ids) => meta::set_owner(path, ids)?,
            None if self.opts.privilege.root => meta::set_owner(path, header.ids)?,
            // Unprivileged: the archive's owners cannot be applied; the
            // entry stays ours.
            None => {}
        }
        for (key, value) in &header.xattrs {
            if let Err(e) = meta::set_xattr(path, std::ffi::OsStr::from_bytes(key), value) {
                // moby's BestEffortXattrs: unsupported or forbidden
                // attributes are skipped, anything else fails.
                if !matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) {
                    return Err(FsError::new("set extended attribute on", path, e).into());
                }
            }
        }
        Ok(())
    }

    /// Applies metadata to a temporary entry and renames it into place.
    fn finish(
        &mut self,
        tmp: &Path,
        target: &Path,
        header: &Header,
        chmod: bool,
    ) -> Result<(), EntryFailure> {
        let result = (|| {
            self.apply_owner_and_xattrs(tmp, header)?;
            if chmod {
                meta::set_mode(tmp, header.mode)?;
            }
            filetime::set_symlink_file_times(
                tmp,
                filetime::FileTime::from_system_time(header.atime),
                filetime::FileTime::from_system_time(header.mtime),
            )
            .map_err(|e| FsError::new("set times of", tmp, e))?;
            let m = fs::symlink_metadata(tmp).map_err(|e| FsError::new("inspect", tmp, e))?;
            self.created.insert((m.dev(), m.ino()));
            meta::rename_into_place(tmp, target)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    fn hard_link(
        &mut self,
        name: &str,
        link: &[u8],
        parent_host: &Path,
        target: &Path,
        header: &Header,
    ) -> Result<(), EntryFailure> {
        let link_name = String::from_utf8_lossy(link).into_owned();
        // The link target is an archive path too, so it resolves inside the
        // destination; link(2) does not follow a final symlink.
        let source = root::resolve_parent(self.dest, link)
            .map_err(|source| UnpackError::ResolveEntry {
                name: name.to_string(),
                source,
            })?
            .host(self.dest);
        let Some(source_meta) = meta::lstat(&source)? else {
            return Err(UnpackError::LinkEntry {
                name: name.to_string(),
                target: link_name,
            }
            .into());
        };
        let ours = self
            .created
            .contains(&(source_meta.dev(), source_meta.ino()));
        if ours {
            let tmp = meta::create_temp(parent_host, "create hard link", |p| {
                fs::hard_link(&source, p)
            })?;
            // Same inode: its metadata was applied when it was created,
            // moby re-applies the link header's, which is normally equal.
            let is_link = source_meta.file_type().is_symlink();
            return self.finish(&tmp, target, header, !is_link);
        }
        if !source_meta.is_file() {
            // Linking a pre-existing non-file (a directory fails anyway,
            // a symlink or device is recreated) keeps moby's outcome
            // without touching the shared inode.
            return Err(UnpackError::LinkEntry {
                name: name.to_string(),
                target: link_name,
            }
            .into());
        }
        // A file from before this extraction: copy it so its inode, which
        // another snapshot may share, is never chmod-ed or chown-ed.
        let mut from = meta::open_source(&source)?;
        let (tmp, mut file) = meta::create_temp_file(parent_host)?;
        let copied = io::copy(&mut from, &mut file);
        drop(file);
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(FsError::new("copy", &source, e).into());
        }
        self.finish(&tmp, target, header, true)
    }
}

/// Reads what extraction needs from the entry's header and PAX records.
fn read_header<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Header> {
    let h = entry.header();
    let kind = h.entry_type();
    let mode = h.mode()? & 0o7777;
    let mut uid = u32::try_from(h.uid()?).unwrap_or(u32::MAX);
    let mut gid = u32::try_from(h.gid()?).unwrap_or(u32::MAX);
    let mut mtime = bound_time(UNIX_EPOCH.checked_add(Duration::from_secs(h.mtime()?)));
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for record in pax {
            let record = record?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            match key {
                b"uid" => uid = parse_decimal(value).unwrap_or(uid),
                b"gid" => gid = parse_decimal(value).unwrap_or(gid),
                b"mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
                b"atime" => atime = parse_pax_time(value),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    // moby sets atime to the later of atime and mtime.
    let atime = match atime {
        Some(a) if a > mtime => a,
        _ => mtime,
    };
    Ok(Header {
        kind,
        mode,
        ids: Ids { uid, gid },
        atime,
        mtime,
        xattrs,
    })
}

fn parse_decimal(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A PAX time, `seconds[.fraction]`; negative times are clamped to the
/// epoch as moby's `boundTime` does.
fn parse_pax_time(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    if text.starts_with('-') {
        return Some(UNIX_EPOCH);
    }
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        let padded = format!("{digits:0<9}");
        nanos = padded.parse().ok()?;
    }
    Some(bound_time(
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos)),
    ))
}

/// Times that do not fit are the epoch, as in moby.
fn bound_time(t: Option<SystemTime>) -> SystemTime {
    t.unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_magic_bytes() {
        assert_eq!(detect(&[0x1F, 0x8B, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            detect(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0]),
            Compression::Xz
        );
        assert_eq!(detect(&[0x28, 0xB5, 0x2F, 0xFD]), Compression::Zstd);
        assert_eq!(
            detect(&[0x5A, 0x2A, 0x4D, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(detect(&[0x5A, 0x2A, 0x4D, 0x18]), Compression::None);
        assert_eq!(detect(b"ustar"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(UNIX_EPOCH + Duration::new(12, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"-3.2"), Some(UNIX_EPOCH));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
