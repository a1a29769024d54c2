//! File-system wrappers whose errors name the path they failed on, an
//! atomic write (temp file in the same directory, then rename) so that a
//! crash never leaves a half-written file behind, and the byte copy
//! between open files that the copying layers share.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An I/O failure together with the path and the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} `{}`", path.display())]
pub struct FsError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The underlying I/O error kind, for callers that branch on it.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}

pub type Result<T> = std::result::Result<T, FsError>;

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// Opens (creating it 0600 if missing) a file that is only ever
/// `flock`ed: never through a symlink, closed on exec.
pub fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a directory and its parents.
pub fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| FsError::new("create directory", path, e))
}

/// Writes `contents` to `path` atomically: the bytes go to a temporary file
/// beside the target, are flushed to disk, and the file is renamed over the
/// target. Readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| FsError::new("create", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| FsError::new("write", &tmp, e))?;
        file.sync_all().map_err(|e| FsError::new("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| FsError::new("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Files up to this size are copied through one userspace buffer.
const SMALL_FILE: u64 = 64 * 1024;

/// Copies the rest of `from` into `to` and returns the bytes copied; `len`
/// is the size the caller saw, only a hint (the copy always runs to end of
/// file). A small file goes through a buffer: for a few bytes that costs
/// what `copy_file_range` does, without the two `fstat`s `io::copy` makes
/// to pick its method. Anything larger goes through `io::copy` and so
/// through `copy_file_range`, which keeps the bytes in the kernel (and
/// shares extents on file systems that reflink). The caller names the
/// paths in its error, as only it knows which side failed.
pub fn copy_data(
    from: &mut std::fs::File,
    to: &mut std::fs::File,
    len: u64,
) -> std::io::Result<u64> {
    use std::io::Read;
    if len > SMALL_FILE {
        return std::io::copy(from, to);
    }
    // Sized to the file, so a tiny one does not pay for zeroing 64 KiB.
    let mut buf = vec![0u8; len.saturating_add(1).clamp(512, SMALL_FILE) as usize];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_names_the_path() {
        let err = read(Path::new("/nonexistent/bk-test-file")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to read `/nonexistent/bk-test-file`"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
    }

    #[test]
    fn copy_data_copies_to_the_end_whatever_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        for (len, hint) in [(0usize, 0u64), (52, 52), (70_000, 10), (200_000, 200_000)] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
            std::fs::write(&src, &data).unwrap();
            let mut from = std::fs::File::open(&src).unwrap();
            let mut to = std::fs::File::create(&dst).unwrap();
            assert_eq!(copy_data(&mut from, &mut to, hint).unwrap(), len as u64);
            drop(to);
            assert_eq!(
                std::fs::read(&dst).unwrap(),
                data,
                "{len} bytes, hint {hint}"
            );
        }
    }
}
