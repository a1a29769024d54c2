//! Exporters: what `--output` does with a finished build. [`local`]
//! copies its tree into a directory on the host, [`tar`] writes it as one
//! deterministic POSIX tar archive, and [`platform_split`] lays several
//! platforms' trees side by side in `dest/<os>_<arch>[_<variant>]/` as
//! BuildKit's multi-platform local output does ([`platform_merge`]: all
//! in one tree, `platform-split=false`). [`layer`] turns one build
//! step into an image layer blob and [`image`] assembles layers, config
//! and manifest into `type=oci` / `type=docker` archives (and into the
//! content store, from where `registry::push` sends them). [`metadata`]
//! writes `--metadata-file`.
//!
//! They read snapshot directories and never write into them, and none
//! leaves a half-written file where the user looks: output is built
//! under a temporary name and lands by `rename(2)`.
//!
//! Imports `crate::snapshot` (its low-level file helpers), `crate::cache`
//! (remembered layer blobs), `crate::content`,
//! `crate::image` and `crate::util`; it must not import the solver or the
//! CLI.

pub mod image;
pub mod layer;
pub mod local;
pub mod metadata;
pub mod tar;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::util::fs::FsError;

/// Why an export failed. Each variant names the step that failed; the
/// [`FsError`] inside names the path and the system call's error.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Creating the destination's parents or the temporary directory
    /// failed, or the destination is not a directory. Nothing was written.
    #[error("cannot prepare output directory `{}`", dest.display())]
    Prepare {
        dest: PathBuf,
        #[source]
        source: FsError,
    },
    /// Copying the tree into the temporary directory failed. Nothing was
    /// written to the destination.
    #[error("cannot copy the build result for `{}`", dest.display())]
    Copy {
        dest: PathBuf,
        #[source]
        source: FsError,
    },
    /// Moving the copied entries into the destination failed; entries
    /// moved before the failure are in place and complete.
    #[error("cannot move the build result into `{}`", dest.display())]
    Move {
        dest: PathBuf,
        #[source]
        source: FsError,
    },
    /// Reading the tree being archived failed.
    #[error("cannot read the tree to archive")]
    ReadTree(#[source] FsError),
    /// Creating, writing or renaming the archive file failed; the
    /// destination was not touched.
    #[error("cannot write tar archive `{}`", dest.display())]
    WriteTar {
        dest: PathBuf,
        #[source]
        source: FsError,
    },
    /// Writing the archive to a stream (standard output) failed.
    #[error("cannot write the tar stream")]
    WriteStream(#[source] std::io::Error),
    /// A platform that cannot name a directory (empty, or `.`/`..` once
    /// `/` is replaced).
    #[error("invalid platform {0:?} for a per-platform output directory")]
    InvalidPlatform(String),
    /// Two trees for the same platform directory.
    #[error("platform {0:?} given more than once")]
    DuplicatePlatform(String),
    /// `platform-split=false`: two platforms' trees have a file at the
    /// same path (BuildKit's wording). Nothing was written.
    #[error("cannot overwrite {path} from {first} with {second} when split option is disabled")]
    PlatformConflict {
        path: String,
        first: String,
        second: String,
    },
}

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportStats {
    /// Entries written below the root (directories, files, links, nodes).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Entries left out: sockets always, devices when the user may not
    /// create them.
    pub skipped: u64,
}

/// The directory name BuildKit gives a platform's tree in a split
/// output: the platform string with every `/` replaced by `_`
/// (`linux/arm/v7` → `linux_arm_v7`). The string is used as given; the
/// caller passes normalised platforms, as BuildKit's exporter gets them.
pub fn platform_dir_name(platform: &str) -> Result<String, ExportError> {
    let name = platform.replace('/', "_");
    if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
        return Err(ExportError::InvalidPlatform(platform.to_string()));
    }
    Ok(name)
}

/// Exports each `(platform, tree)` into `dest/<platform dir name>/`, all
/// in one local export (same landing rules as [`local::export`]). Each
/// platform directory gets mode 0755 and a zero mtime, as BuildKit gives
/// it when no `SOURCE_DATE_EPOCH` is set. Hardlinks are kept only within
/// one platform's tree, so editing one platform's output never changes
/// another's.
pub fn platform_split(parts: &[(&str, &Path)], dest: &Path) -> Result<ExportStats, ExportError> {
    let mut seen = HashSet::new();
    let mut roots = Vec::with_capacity(parts.len());
    for (platform, dir) in parts {
        let name = platform_dir_name(platform)?;
        if !seen.insert(name.clone()) {
            return Err(ExportError::DuplicatePlatform(platform.to_string()));
        }
        roots.push(local::Root {
            sub: Some(OsString::from(name)),
            dir,
        });
    }
    local::export_roots(&roots, dest)
}

/// `platform-split=false`: exports every `(platform, tree)` into `dest`
/// itself, merged, as BuildKit's local exporter does; a non-directory
/// path that two platforms both have is an error, found before anything
/// is written.
pub fn platform_merge(parts: &[(&str, &Path)], dest: &Path) -> Result<ExportStats, ExportError> {
    let mut owners: std::collections::HashMap<PathBuf, &str> = std::collections::HashMap::new();
    for (platform, dir) in parts {
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let here = dir.join(&rel);
            let entries = crate::snapshot::fsx::read_dir_sorted(&here)
                .map_err(|e| ExportError::ReadTree(FsError::new("read directory", &here, e)))?;
            for (name, ft) in entries {
                let rel = rel.join(&name);
                if ft.is_dir() {
                    stack.push(rel);
                    continue;
                }
                if let Some(first) = owners.insert(rel.clone(), platform) {
                    return Err(ExportError::PlatformConflict {
                        path: rel.display().to_string(),
                        first: first.to_string(),
                        second: platform.to_string(),
                    });
                }
            }
        }
    }
    let roots: Vec<local::Root<'_>> = parts
        .iter()
        .map(|(_, dir)| local::Root { sub: None, dir })
        .collect();
    local::export_roots(&roots, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn platform_names_follow_buildkit() {
        assert_eq!(platform_dir_name("linux/amd64").unwrap(), "linux_amd64");
        assert_eq!(platform_dir_name("linux/arm/v7").unwrap(), "linux_arm_v7");
        for bad in ["", ".", ".."] {
            assert!(matches!(
                platform_dir_name(bad),
                Err(ExportError::InvalidPlatform(_))
            ));
        }
    }

    #[test]
    fn split_puts_each_platform_in_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let amd = dir.path().join("amd");
        let arm = dir.path().join("arm");
        fs::create_dir_all(amd.join("bin")).unwrap();
        fs::create_dir_all(arm.join("bin")).unwrap();
        fs::write(amd.join("bin/app"), b"x86").unwrap();
        fs::write(arm.join("bin/app"), b"arm").unwrap();
        // The same inode in both trees, as snapshots sharing a base have.
        fs::write(amd.join("shared"), b"s").unwrap();
        fs::hard_link(amd.join("shared"), arm.join("shared")).unwrap();

        let out = dir.path().join("out");
        let stats = platform_split(&[("linux/amd64", &amd), ("linux/arm/v7", &arm)], &out).unwrap();
        assert_eq!(stats.entries, 8);
        assert_eq!(fs::read(out.join("linux_amd64/bin/app")).unwrap(), b"x86");
        assert_eq!(fs::read(out.join("linux_arm_v7/bin/app")).unwrap(), b"arm");
        let a = fs::metadata(out.join("linux_amd64/shared")).unwrap();
        let b = fs::metadata(out.join("linux_arm_v7/shared")).unwrap();
        assert_ne!(a.ino(), b.ino(), "no hardlinks across platforms");
        let pd = fs::metadata(out.join("linux_amd64")).unwrap();
        assert_eq!(pd.mode() & 0o7777, 0o755);
        assert_eq!(pd.mtime(), 0);
        let mut names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["linux_amd64", "linux_arm_v7"]);
    }

    #[test]
    fn merge_puts_all_platforms_in_one_tree_and_refuses_clashes() {
        let dir = tempfile::tempdir().unwrap();
        let amd = dir.path().join("amd");
        let arm = dir.path().join("arm");
        fs::create_dir_all(amd.join("bin")).unwrap();
        fs::create_dir_all(arm.join("bin")).unwrap();
        fs::write(amd.join("bin/app-amd64"), b"x86").unwrap();
        fs::write(arm.join("bin/app-arm64"), b"arm").unwrap();
        let out = dir.path().join("out");
        platform_merge(&[("linux/amd64", &amd), ("linux/arm64", &arm)], &out).unwrap();
        assert_eq!(fs::read(out.join("bin/app-amd64")).unwrap(), b"x86");
        assert_eq!(fs::read(out.join("bin/app-arm64")).unwrap(), b"arm");

        fs::write(amd.join("bin/same"), b"1").unwrap();
        fs::write(arm.join("bin/same"), b"2").unwrap();
        let out2 = dir.path().join("out2");
        let err =
            platform_merge(&[("linux/amd64", &amd), ("linux/arm64", &arm)], &out2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot overwrite bin/same from linux/amd64 with linux/arm64 when split option is disabled"
        );
        assert!(!out2.exists());
    }

    #[test]
    fn split_refuses_duplicates_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = platform_split(
            &[("linux/amd64", dir.path()), ("linux/amd64", dir.path())],
            &out,
        )
        .unwrap_err();
        assert!(matches!(err, ExportError::DuplicatePlatform(_)));
        assert!(!out.exists());
    }
}
