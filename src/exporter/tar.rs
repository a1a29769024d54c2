//! The tar exporter: one POSIX tar archive of a tree, byte-for-byte the
//! same for the same tree, in the shape BuildKit's (Go `archive/tar`)
//! writes: entries in depth-first order with each directory's names
//! sorted bytewise; names relative, `/`-separated, directories ending in
//! `/`, no root entry, never absolute and never with `..` (they come from
//! directory listings); numeric uid/gid only (no user or group names);
//! permission bits and whole-second mtimes as stored; symlinks as
//! symlinks; a non-directory met again under another name (same inode in
//! the tree) as a hardlink to the first name; fifos and devices as such;
//! sockets skipped (counted). A ustar header carries what fits; a PAX
//! extended header carries the rest (long or non-ASCII names and link
//! targets, big ids and sizes, out-of-range times) and every xattr as
//! `SCHILY.xattr.<name>`, as Go does. Access times are never written, so
//! reading the tree does not change the archive.
//!
//! A file destination is written to a temporary file beside it, flushed
//! and renamed into place; standard output is streamed.
//!
//! Imports `crate::snapshot::fsx` and `crate::util` only.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{ExportError, ExportStats};
use crate::snapshot::fsx;
use crate::util::fs::FsError;

/// Where the archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A file, replaced atomically.
    Path(PathBuf),
    /// Standard output (`dest=-`), streamed.
    Stdout,
}

/// One tree of an archive: at the archive's root, or below a top-level
/// directory `sub` (a platform's, in a multi-platform archive).
#[derive(Debug, Clone, Copy)]
pub struct Tree<'a> {
    pub sub: Option<&'a str>,
    pub dir: &'a Path,
}

/// Writes the tree at `snapshot_dir` as a tar archive to `dest`.
pub fn export(snapshot_dir: &Path, dest: Dest) -> Result<ExportStats, ExportError> {
    export_trees(
        &[Tree {
            sub: None,
            dir: snapshot_dir,
        }],
        dest,
    )
}

/// Writes several trees as one tar archive to `dest`, in the order
/// given; each tree below its `sub` directory (mode 0755, owner root,
/// zero mtime) gets hardlinks only within itself, as BuildKit's
/// multi-platform tar output has them.
pub fn export_trees(trees: &[Tree<'_>], dest: Dest) -> Result<ExportStats, ExportError> {
    match dest {
        Dest::Stdout => write_trees_to(trees, io::stdout().lock()),
        Dest::Path(path) => export_file(trees, &path),
    }
}

/// Writes the tree at `snapshot_dir` as a tar archive to `out`.
pub fn write_to<W: Write>(snapshot_dir: &Path, out: W) -> Result<ExportStats, ExportError> {
    write_trees_to(
        &[Tree {
            sub: None,
            dir: snapshot_dir,
        }],
        out,
    )
}

fn write_trees_to<W: Write>(trees: &[Tree<'_>], out: W) -> Result<ExportStats, ExportError> {
    let mut out = BufWriter::new(out);
    let stats = write_archive(trees, &mut out).map_err(|f| match f {
        Failure::Read(e) => ExportError::ReadTree(e),
        Failure::Write(e) => ExportError::WriteStream(e),
    })?;
    out.flush().map_err(ExportError::WriteStream)?;
    Ok(stats)
}

fn export_file(trees: &[Tree<'_>], dest: &Path) -> Result<ExportStats, ExportError> {
    let fail = |source| ExportError::WriteTar {
        dest: dest.to_path_buf(),
        source,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut name = dest.file_name().map(|n| n.to_os_string()).ok_or_else(|| {
        fail(FsError::new(
            "name",
            dest,
            io::Error::from(io::ErrorKind::InvalidInput),
        ))
    })?;
    name.push(format!(".{}.tmp", fsx::random_hex(8)));
    let tmp = dir.join(name);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&tmp)
        .map_err(|e| fail(FsError::new("create", &tmp, e)))?;
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let mut out = BufWriter::new(file);
    let stats = write_archive(trees, &mut out).map_err(|f| match f {
        Failure::Read(e) => ExportError::ReadTree(e),
        Failure::Write(e) => fail(FsError::new("write", &tmp, e)),
    })?;
    let file = out
        .into_inner()
        .map_err(|e| fail(FsError::new("write", &tmp, e.into_error())))?;
    file.sync_all()
        .map_err(|e| fail(FsError::new("flush", &tmp, e)))?;
    fs::rename(&tmp, dest).map_err(|e| fail(FsError::new("rename into place", dest, e)))?;
    guard.disarm();
    Ok(stats)
}

/// Removes the temporary archive unless it was renamed into place.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Reading the tree and writing the archive fail differently: the first
/// names a source path, the second the destination.
pub(crate) enum Failure {
    Read(FsError),
    Write(io::Error),
}

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal header field (7 digits).
const MAX_ID: u64 = 0o7777777;
/// Largest value of a 12-byte octal header field (11 digits).
const MAX_SIZE: u64 = 0o77777777777;

fn write_archive<W: Write>(trees: &[Tree<'_>], out: &mut W) -> Result<ExportStats, Failure> {
    let mut stats = ExportStats::default();
    for tree in trees {
        let prefix = match tree.sub {
            Some(sub) => {
                write_dir_entry(sub, out).map_err(Failure::Write)?;
                stats.entries += 1;
                format!("{sub}/").into_bytes()
            }
            None => Vec::new(),
        };
        write_tree(tree.dir, &prefix, out, &mut stats)?;
    }
    write_end(out).map_err(Failure::Write)?;
    Ok(stats)
}

/// Writes the entries of the tree at `root`, named with `prefix` first.
fn write_tree<W: Write>(
    root: &Path,
    prefix: &[u8],
    out: &mut W,
    stats: &mut ExportStats,
) -> Result<(), Failure> {
    let read = |op, path: &Path, e| Failure::Read(FsError::new(op, path, e));
    let mut links = Links::new();
    // Names (relative to root) still to write; popped from the end, so
    // each listing is pushed in reverse.
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let push_listing = |pending: &mut Vec<Vec<u8>>, rel: &[u8]| {
        let dir = root.join(Path::new(std::ffi::OsStr::from_bytes(rel)));
        let entries = fsx::read_dir_sorted(&dir).map_err(|e| read("read directory", &dir, e))?;
        for (name, _) in entries.into_iter().rev() {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            pending.push(child);
        }
        Ok::<(), Failure>(())
    };
    push_listing(&mut pending, b"")?;
    while let Some(rel) = pending.pop() {
        if write_named_node(root, &rel, prefix, &mut links, out, stats, None)? == Some(true) {
            push_listing(&mut pending, &rel)?;
        }
    }
    Ok(())
}

/// Writes an empty whiteout entry `.wh.<name>` beside `rel`, the OCI
/// layer's way of saying "`rel` is deleted". Owner root, mode 0 and a zero
/// mtime, so that the layer does not depend on when it was written.
pub(crate) fn write_whiteout<W: Write>(rel: &[u8], out: &mut W) -> io::Result<()> {
    let (dir, base) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    };
    let mut name = dir.to_vec();
    name.extend_from_slice(b".wh.");
    name.extend_from_slice(base);
    let entry = Entry {
        name,
        kind: EntryType::Regular,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        link: Vec::new(),
        dev: None,
        xattrs: Vec::new(),
    };
    entry.write_header(out)
}

/// Writes a regular-file entry holding `data` (for the files of an image
/// layout archive: `index.json`, blobs read into memory), mode 0644,
/// owner root and a zero mtime, so that the archive depends only on the
/// content.
pub(crate) fn write_file_entry<W: Write>(name: &str, data: &[u8], out: &mut W) -> io::Result<()> {
    write_file_header(name, data.len() as u64, out)?;
    out.write_all(data)?;
    pad(data.len() as u64, out)
}

/// Writes the header of a regular file (mode 0644, owner root, zero
/// mtime) of `size` bytes; the caller writes the data then [`pad`]s it.
pub(crate) fn write_file_header<W: Write>(name: &str, size: u64, out: &mut W) -> io::Result<()> {
    Entry {
        name: name.as_bytes().to_vec(),
        kind: EntryType::Regular,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size,
        link: Vec::new(),
        dev: None,
        xattrs: Vec::new(),
    }
    .write_header(out)
}

/// Writes a directory entry `name/` (mode 0755, owner root, zero mtime).
pub(crate) fn write_dir_entry<W: Write>(name: &str, out: &mut W) -> io::Result<()> {
    Entry {
        name: format!("{name}/").into_bytes(),
        kind: EntryType::Directory,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        link: Vec::new(),
        dev: None,
        xattrs: Vec::new(),
    }
    .write_header(out)
}

/// Pads `size` bytes of entry data to a whole block.
pub(crate) fn pad<W: Write>(size: u64, out: &mut W) -> io::Result<()> {
    let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad])
}

/// The end-of-archive marker: two zero blocks (no padding to a record
/// size, as Go's writer).
pub(crate) fn write_end<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// Hardlinks seen so far: (device, inode) → the first name written.
pub(crate) type Links = HashMap<(u64, u64), Vec<u8>>;

/// Writes the entry of the node at `rel` below `root` (its header, and
/// its data for a regular file) without descending into a directory:
/// `Ok(Some(is_dir))` when written, `Ok(None)` for a skipped socket. A
/// non-directory whose inode is in `links` becomes a hardlink to the
/// name recorded there. Shared by the whole-tree archive and layers. An
/// mtime later than `clamp_mtime` is written as `clamp_mtime`
/// (`rewrite-timestamp`).
pub(crate) fn write_node<W: Write>(
    root: &Path,
    rel: &[u8],
    links: &mut Links,
    out: &mut W,
    stats: &mut ExportStats,
    clamp_mtime: Option<i64>,
) -> Result<Option<bool>, Failure> {
    write_named_node(root, rel, b"", links, out, stats, clamp_mtime)
}

/// [`write_node`] with the entry named `prefix` + `rel`.
fn write_named_node<W: Write>(
    root: &Path,
    rel: &[u8],
    prefix: &[u8],
    links: &mut Links,
    out: &mut W,
    stats: &mut ExportStats,
    clamp_mtime: Option<i64>,
) -> Result<Option<bool>, Failure> {
    let named = |rel: &[u8]| [prefix, rel].concat();
    let read = |op, path: &Path, e| Failure::Read(FsError::new(op, path, e));
    let path = root.join(Path::new(std::ffi::OsStr::from_bytes(rel)));
    let meta = fs::symlink_metadata(&path).map_err(|e| read("inspect", &path, e))?;
    let ft = meta.file_type();
    if ft.is_socket() {
        stats.skipped += 1;
        return Ok(None);
    }
    let mut entry = Entry::new(&meta);
    if let Some(limit) = clamp_mtime {
        entry.mtime = entry.mtime.min(limit);
    }
    if ft.is_dir() {
        let mut name = named(rel);
        name.push(b'/');
        entry.name = name;
        entry.kind = EntryType::Directory;
    } else {
        entry.name = named(rel);
        let key = (meta.dev(), meta.ino());
        let first = if meta.nlink() > 1 {
            links.get(&key).cloned()
        } else {
            None
        };
        if let Some(first) = first {
            entry.kind = EntryType::Link;
            entry.link = first;
        } else {
            if meta.nlink() > 1 {
                links.insert(key, named(rel));
            }
            if ft.is_file() {
                entry.kind = EntryType::Regular;
                entry.size = meta.len();
            } else if ft.is_symlink() {
                entry.kind = EntryType::Symlink;
                let target = fs::read_link(&path).map_err(|e| read("read link", &path, e))?;
                entry.link = target.into_os_string().into_vec();
            } else {
                entry.kind = if ft.is_fifo() {
                    EntryType::Fifo
                } else if ft.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let rdev = meta.rdev();
                let (major, minor) = (
                    u32::try_from(nix::sys::stat::major(rdev)),
                    u32::try_from(nix::sys::stat::minor(rdev)),
                );
                let (Ok(major), Ok(minor)) = (major, minor) else {
                    let e = io::Error::new(
                        io::ErrorKind::InvalidData,
                        "device number too large for a tar header",
                    );
                    return Err(read("archive", &path, e));
                };
                entry.dev = Some((major, minor));
            }
        }
    }
    entry.xattrs = fsx::list_xattrs(&path)
        .map_err(|e| read("read xattrs of", &path, e))?
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect();
    entry.write_header(out).map_err(Failure::Write)?;
    if entry.kind == EntryType::Regular {
        copy_data(&path, entry.size, out)?;
        stats.bytes += entry.size;
    }
    stats.entries += 1;
    Ok(Some(ft.is_dir()))
}

/// Copies exactly `size` bytes of `path` and pads them to a block. A file
/// that changed size since it was measured would corrupt the archive, so
/// that is an error (committed snapshots do not change).
fn copy_data<W: Write>(path: &Path, size: u64, out: &mut W) -> Result<(), Failure> {
    let read = |op, e| Failure::Read(FsError::new(op, path, e));
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| read("open", e))?;
    // A plain loop rather than io::copy, so that a failure is blamed on
    // the side (source file or archive) where it happened.
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(read(
                    "read",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while archived"),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read("read", e)),
        };
        out.write_all(&buf[..n]).map_err(Failure::Write)?;
        left -= n as u64;
    }
    let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad]).map_err(Failure::Write)
}

/// One archive entry's header data.
struct Entry {
    name: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Vec<u8>,
    dev: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn new(meta: &Metadata) -> Entry {
        Entry {
            name: Vec::new(),
            kind: EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime(),
            size: 0,
            link: Vec::new(),
            dev: None,
            xattrs: Vec::new(),
        }
    }

    /// Writes the PAX header (when needed) and the ustar header.
    fn write_header<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut header = Header::new_ustar();
        header.set_entry_type(self.kind);
        header.set_mode(self.mode);

        let (name, prefix) = split_ustar_name(&self.name).unwrap_or_else(|| {
            pax.push((b"path".to_vec(), self.name.clone()));
            (truncate(&self.name, 100), Vec::new())
        });
        if !self.link.is_empty() {
            if self.link.len() <= 100 && self.link.is_ascii() {
                header.set_link_name_literal(&self.link)?;
            } else {
                pax.push((b"linkpath".to_vec(), self.link.clone()));
                header.set_link_name_literal(truncate(&self.link, 100))?;
            }
        }
        for (key, value, set) in [
            ("uid", self.uid, Header::set_uid as fn(&mut Header, u64)),
            ("gid", self.gid, Header::set_gid),
        ] {
            if value > MAX_ID {
                pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
                set(&mut header, 0);
            } else {
                set(&mut header, value);
            }
        }
        if self.size > MAX_SIZE {
            pax.push((b"size".to_vec(), self.size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(self.size);
        }
        match u64::try_from(self.mtime) {
            Ok(t) if t <= MAX_SIZE => header.set_mtime(t),
            _ => {
                pax.push((b"mtime".to_vec(), self.mtime.to_string().into_bytes()));
                header.set_mtime(0);
            }
        }
        if let Some((major, minor)) = self.dev {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        for (key, value) in &self.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax.push((k, value.clone()));
        }
        let ustar = header
            .as_ustar_mut()
            .ok_or_else(|| io::Error::other("tar header is not ustar"))?;
        ustar.name = [0; 100];
        ustar.name[..name.len()].copy_from_slice(&name);
        ustar.prefix = [0; 155];
        ustar.prefix[..prefix.len()].copy_from_slice(&prefix);
        header.set_cksum();

        if !pax.is_empty() {
            write_pax(out, &self.name, &pax)?;
        }
        out.write_all(header.as_bytes())
    }
}

/// `name` as ustar's (name, prefix) fields, or `None` if it needs a PAX
/// record: longer than the fields allow or not ASCII (ustar has no
/// encoding; PAX paths are UTF-8).
fn split_ustar_name(name: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some((name.to_vec(), Vec::new()));
    }
    // Split at a `/` leaving at most 100 bytes after it and at most 155
    // before it; the earliest such `/` keeps the prefix shortest.
    let first_allowed = name.len().saturating_sub(101);
    let at = (first_allowed..name.len())
        .find(|&i| name[i] == b'/')
        .filter(|&i| i <= 155 && i + 1 < name.len())?;
    Some((name[at + 1..].to_vec(), name[..at].to_vec()))
}

fn truncate(bytes: &[u8], len: usize) -> Vec<u8> {
    bytes[..bytes.len().min(len)].to_vec()
}

/// Writes a PAX extended header (`x`) with `records`, sorted by key so
/// that the archive is deterministic.
fn write_pax<W: Write>(out: &mut W, name: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    let mut records = records.to_vec();
    records.sort();
    let mut data = Vec::new();
    for (key, value) in &records {
        // "<len> <key>=<value>\n", where <len> counts its own digits.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() != rest.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(len.to_string().as_bytes());
        data.push(b' ');
        data.extend_from_slice(key);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    // Go names it "PaxHeaders.0/<base name>"; readers ignore the name.
    let base = name
        .strip_suffix(b"/")
        .unwrap_or(name)
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or(b"");
    let mut pax_name = b"PaxHeaders.0/".to_vec();
    pax_name.extend_from_slice(base);
    let pax_name = truncate(&pax_name, 100);
    let ustar = header
        .as_ustar_mut()
        .ok_or_else(|| io::Error::other("tar header is not ustar"))?;
    ustar.name = [0; 100];
    ustar.name[..pax_name.len()].copy_from_slice(&pax_name);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(&data)?;
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.write_all(&[0u8; BLOCK][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::Command;

    const LONG_DIR: &str = "a-directory-name-that-is-quite-long-on-purpose-to-need-a-prefix";

    fn long_name() -> String {
        // 64 + 1 + 64 + 1 + 10 bytes: over 100, splittable into ustar's
        // prefix and name fields.
        format!("{LONG_DIR}/{LONG_DIR}/file.txt")
    }

    fn very_long_name() -> String {
        // One 200-byte component: needs a PAX path record.
        "v".repeat(200)
    }

    #[test]
    fn trees_land_in_their_platform_directories_with_links_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let amd = dir.path().join("amd");
        let arm = dir.path().join("arm");
        fs::create_dir_all(&amd).unwrap();
        fs::create_dir_all(&arm).unwrap();
        fs::write(amd.join("file"), b"amd").unwrap();
        fs::write(arm.join("file"), b"arm").unwrap();
        // One inode in both trees: each tree writes it in full.
        fs::write(amd.join("shared"), b"s").unwrap();
        fs::hard_link(amd.join("shared"), arm.join("shared")).unwrap();
        let dest = dir.path().join("out.tar");
        let trees = [
            Tree {
                sub: Some("linux_amd64"),
                dir: &amd,
            },
            Tree {
                sub: Some("linux_arm64"),
                dir: &arm,
            },
        ];
        let stats = export_trees(&trees, Dest::Path(dest.clone())).unwrap();
        assert_eq!(stats.entries, 6);
        let mut archive = ::tar::Archive::new(fs::File::open(&dest).unwrap());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            let mut text = String::new();
            if kind == EntryType::Regular {
                entry.read_to_string(&mut text).unwrap();
            }
            seen.push((name, kind, text));
        }
        let want = |n: &str, k, t: &str| (n.to_string(), k, t.to_string());
        assert_eq!(
            seen,
            vec![
                want("linux_amd64/", EntryType::Directory, ""),
                want("linux_amd64/file", EntryType::Regular, "amd"),
                want("linux_amd64/shared", EntryType::Regular, "s"),
                want("linux_arm64/", EntryType::Directory, ""),
                want("linux_arm64/file", EntryType::Regular, "arm"),
                want("linux_arm64/shared", EntryType::Regular, "s"),
            ]
        );
    }

    /// A tree with every kind of entry the archive must describe.
    fn tree(root: &Path) -> PathBuf {
        let src = root.join("snap");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::create_dir_all(src.join("empty")).unwrap();
        fs::create_dir_all(src.join(format!("{LONG_DIR}/{LONG_DIR}"))).unwrap();
        fs::write(src.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::set_permissions(src.join("etc/passwd"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(src.join("tool"), vec![b'x'; 1000]).unwrap();
        fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("tool"), src.join("zz-tool-link")).unwrap();
        symlink("/etc/passwd", src.join("abs")).unwrap();
        symlink("../nowhere", src.join("dangling")).unwrap();
        fs::write(src.join(long_name()), b"long").unwrap();
        fs::write(src.join(very_long_name()), b"very long").unwrap();
        fs::write(src.join("caf\u{e9}"), b"utf8 name").unwrap();
        nix::unistd::mkfifo(
            &src.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let t = filetime::FileTime::from_unix_time(1_600_000_000, 999_999_999);
        let mut all = vec![PathBuf::new()];
        let mut i = 0;
        while i < all.len() {
            let p = src.join(&all[i]);
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                for (n, _) in fsx::read_dir_sorted(&p).unwrap() {
                    all.push(all[i].join(n));
                }
            }
            i += 1;
        }
        for rel in all.iter().rev() {
            filetime::set_symlink_file_times(src.join(rel), t, t).unwrap();
        }
        src
    }

    fn export_bytes(src: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_to(src, &mut out).unwrap();
        out
    }

    #[test]
    fn reads_back_with_the_tar_crate() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        let bytes = export_bytes(&src);
        assert_eq!(bytes.len() % BLOCK, 0);
        let meta = fs::metadata(&src).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            assert!(!name.starts_with('/') && !name.split('/').any(|c| c == ".."));
            let h = entry.header().clone();
            assert_eq!(h.mtime().unwrap(), 1_600_000_000, "{name}");
            assert_eq!(h.uid().unwrap(), u64::from(meta.uid()));
            assert_eq!(h.gid().unwrap(), u64::from(meta.gid()));
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            let ty = h.entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            match name.as_str() {
                "etc/" | "empty/" => assert!(ty.is_dir()),
                "etc/passwd" => {
                    assert!(ty.is_file());
                    assert_eq!(h.mode().unwrap(), 0o644);
                    assert_eq!(data, b"root:x:0:0::/root:/bin/sh\n");
                }
                "tool" => {
                    assert_eq!(h.mode().unwrap(), 0o4755);
                    assert_eq!(data.len(), 1000);
                }
                "zz-tool-link" => {
                    assert!(ty.is_hard_link());
                    assert_eq!(link.as_deref(), Some("tool"));
                    assert!(data.is_empty());
                }
                "abs" => {
                    assert!(ty.is_symlink());
                    assert_eq!(link.as_deref(), Some("/etc/passwd"));
                }
                "dangling" => assert_eq!(link.as_deref(), Some("../nowhere")),
                "pipe" => assert!(ty.is_fifo()),
                "caf\u{e9}" => assert_eq!(data, b"utf8 name"),
                n if n == long_name() => assert_eq!(data, b"long"),
                n if n == very_long_name() => assert_eq!(data, b"very long"),
                _ => {}
            }
            seen.push(name);
        }
        // Depth first, each directory's names in byte order.
        let d = format!("{LONG_DIR}/");
        let dd = format!("{LONG_DIR}/{LONG_DIR}/");
        let want = [
            d.as_str(),
            dd.as_str(),
            long_name().as_str(),
            "abs",
            "caf\u{e9}",
            "dangling",
            "empty/",
            "etc/",
            "etc/passwd",
            "pipe",
            "tool",
            very_long_name().as_str(),
            "zz-tool-link",
        ]
        .map(String::from);
        assert_eq!(seen, want);
    }

    #[test]
    fn gnu_tar_lists_and_extracts_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        let archive = dir.path().join("out.tar");
        export(&src, Dest::Path(archive.clone())).unwrap();

        let listing = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&archive)
            .output()
            .expect("the system tar runs");
        assert!(listing.status.success(), "{listing:?}");
        assert!(
            listing.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        let text = String::from_utf8(listing.stdout).unwrap();
        let uid = fs::metadata(&src).unwrap().uid();
        let line = |suffix: &str| {
            text.lines()
                .find(|l| l.ends_with(suffix))
                .unwrap_or_else(|| panic!("no line ending {suffix:?} in\n{text}"))
                .to_string()
        };
        assert!(line(" etc/passwd").starts_with(&format!("-rw-r--r-- {uid}/")));
        assert!(line(" tool").starts_with("-rwsr-xr-x"));
        assert!(line(" zz-tool-link link to tool").starts_with("hrwsr-xr-x"));
        assert!(line(" abs -> /etc/passwd").starts_with('l'));
        assert!(line(" pipe").starts_with("prw-------"));
        assert!(line(" empty/").starts_with('d'));
        assert!(line(&very_long_name()).contains("2020-09-13"));
        assert_eq!(text.lines().count(), 13, "{text}");

        let out = dir.path().join("x");
        fs::create_dir(&out).unwrap();
        let extract = Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&out)
            .output()
            .unwrap();
        assert!(extract.status.success(), "{extract:?}");
        assert_eq!(fs::read(out.join(long_name())).unwrap(), b"long");
        assert_eq!(fs::read(out.join(very_long_name())).unwrap(), b"very long");
        assert_eq!(
            fs::metadata(out.join("tool")).unwrap().ino(),
            fs::metadata(out.join("zz-tool-link")).unwrap().ino()
        );
    }

    #[test]
    fn archives_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        let first = export_bytes(&src);
        // Reading files (atime) and a copy of the tree at another path
        // with other directory inodes change nothing.
        let _ = fs::read(src.join("tool")).unwrap();
        assert_eq!(export_bytes(&src), first);
        let copy = dir.path().join("copy");
        crate::exporter::local::export(&src, &copy).unwrap();
        assert_eq!(export_bytes(&copy), first);
        // And a change shows.
        fs::set_permissions(copy.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(export_bytes(&copy), first);
    }

    #[test]
    fn xattrs_travel_as_schily_records() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), b"").unwrap();
        let name = std::ffi::CString::new("user.bk.k").unwrap();
        match fsx::set_xattr(&src.join("f"), &name, b"value") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return,
            r => r.unwrap(),
        }
        let bytes = export_bytes(&src);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let records: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key().unwrap().to_string(), r.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            records,
            [("SCHILY.xattr.user.bk.k".to_string(), b"value".to_vec())]
        );
    }

    #[test]
    fn a_file_destination_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let src = tree(dir.path());
        let dest = dir.path().join("out.tar");
        fs::write(&dest, b"previous").unwrap();
        let err = export(&dir.path().join("missing"), Dest::Path(dest.clone())).unwrap_err();
        assert!(matches!(err, ExportError::ReadTree(_)), "{err:?}");
        assert_eq!(fs::read(&dest).unwrap(), b"previous");
        let stats = export(&src, Dest::Path(dest.clone())).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), export_bytes(&src));
        assert_eq!(stats.entries, 13);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["out.tar", "snap"]);
        let err = export(&src, Dest::Path(dir.path().join("no/such/dir.tar"))).unwrap_err();
        assert!(matches!(err, ExportError::WriteTar { .. }), "{err:?}");
    }

    #[test]
    fn ustar_names_split_at_a_slash() {
        let name = long_name();
        let (n, p) = split_ustar_name(name.as_bytes()).unwrap();
        assert_eq!(p, LONG_DIR.as_bytes());
        assert_eq!(n, format!("{LONG_DIR}/file.txt").as_bytes());
        assert!(split_ustar_name(very_long_name().as_bytes()).is_none());
        assert!(split_ustar_name("caf\u{e9}".as_bytes()).is_none());
    }
}
