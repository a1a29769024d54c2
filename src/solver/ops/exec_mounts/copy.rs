//! A private byte copy of a tree, for directories a sandboxed process may
//! write to in place (a writable bind's throwaway copy, a new cache
//! seeded from a stage): hard links, as snapshots use, would let those
//! writes reach the snapshot the tree came from.

use std::fs;
use std::io;
use std::path::Path;

use crate::snapshot::fsx::{self, MetaOpts};
use crate::util::fs::FsError;

const META: MetaOpts = MetaOpts {
    owner: true,
    xattrs: true,
    strict: false,
};

/// Copies `src` (a directory, file or symlink) to `dst`, which must not
/// exist: contents, modes, owners (when permitted), xattrs and times.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    if meta.is_dir() {
        fs::create_dir(dst).map_err(|e| FsError::new("create directory", dst, e))?;
        let entries = fsx::read_dir_sorted(src).map_err(|e| FsError::new("read", src, e))?;
        for (name, _) in entries {
            copy_tree(&src.join(&name), &dst.join(&name))?;
        }
    } else {
        fsx::copy_node(src, dst, &meta).map_err(|e| FsError::new("copy", src, e))?;
    }
    // Directory times last, after their entries changed them.
    fsx::apply_metadata(src, dst, &meta, META)
        .map(drop)
        .map_err(|e: io::Error| FsError::new("copy metadata to", dst, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn copies_bytes_not_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), b"data").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("sub/f")).unwrap(), b"data");
        let (a, b) = (
            fs::metadata(src.join("sub/f")).unwrap(),
            fs::metadata(dst.join("sub/f")).unwrap(),
        );
        assert_ne!(a.ino(), b.ino());
        assert_eq!(b.mode() & 0o7777, 0o751);
        assert_eq!(a.mtime(), b.mtime());
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("sub/f"));
        assert!(
            copy_tree(&src, &dst).is_err(),
            "the destination must be new"
        );
    }
}
