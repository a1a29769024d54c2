//! Which mechanism gives a `RUN` process a writable root file system
//! ([`Backend`]), how the user asks for one ([`Selection`], from
//! `--snapshotter` / `BK_SNAPSHOTTER`), and the probe that picks one
//! automatically.
//!
//! Auto-detection tries, in order: kernel overlayfs (with `userxattr`
//! inside a user namespace), fuse-overlayfs, and a native copy. The probe
//! mounts a tiny overlay in a temporary directory of the store, writes
//! and deletes through it and unmounts it. Its answer is recorded in
//! `<root>/snapshotter` together with what it depends on (the kernel
//! release and whether bk runs as root, in a user namespace, or as a
//! plain user), so later runs in the same situation skip the probe.
//!
//! Imports `overlay` and `crate::util` only; the store runs the probe
//! mounts.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::overlay::{self, Layout};

/// Mounts a test overlay of the given layout; the store provides it.
pub(crate) type Probe<'a> = &'a dyn Fn(Layout) -> std::io::Result<()>;
use crate::util::fs as ufs;

/// How writable snapshots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Kernel overlayfs over the parent's full tree.
    Overlay,
    /// The same layout served by the `fuse-overlayfs` program.
    FuseOverlay,
    /// A private copy of the parent (reflinked where the file system can).
    Native,
}

impl Backend {
    /// The name `--snapshotter` uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Overlay => "overlayfs",
            Backend::FuseOverlay => "fuse-overlayfs",
            Backend::Native => "native",
        }
    }

    fn from_name(name: &str) -> Option<Backend> {
        match name {
            "overlayfs" => Some(Backend::Overlay),
            "fuse-overlayfs" => Some(Backend::FuseOverlay),
            "native" => Some(Backend::Native),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a backend, or detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    #[default]
    Auto,
    Only(Backend),
}

/// A `--snapshotter` value that names no snapshotter.
#[derive(Debug, thiserror::Error)]
#[error("unknown snapshotter {0:?}: expected auto, overlayfs, fuse-overlayfs or native")]
pub struct UnknownSnapshotter(String);

impl FromStr for Selection {
    type Err = UnknownSnapshotter;

    fn from_str(s: &str) -> Result<Selection, UnknownSnapshotter> {
        match s {
            "auto" | "" => Ok(Selection::Auto),
            // containerd and BuildKit call the kernel one "overlayfs";
            // "overlay" is the file system's own name.
            "overlay" => Ok(Selection::Only(Backend::Overlay)),
            other => Backend::from_name(other)
                .map(Selection::Only)
                .ok_or_else(|| UnknownSnapshotter(s.to_string())),
        }
    }
}

/// The backend chosen for a store, and why others were passed over (one
/// line each, for the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub backend: Backend,
    pub notes: Vec<String>,
}

/// Where bk runs, as far as mounting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Root in the initial user namespace: plain overlay, `trusted.*`
    /// xattrs.
    Root,
    /// Inside a user namespace that is not the initial one (rootless):
    /// overlay needs `userxattr`.
    UserNamespace,
    /// An unprivileged user in the initial namespace: no mounts at all.
    User,
}

impl Privilege {
    /// Reads `/proc/self/uid_map`: the initial namespace maps all 2³²−1
    /// ids onto themselves.
    pub fn current() -> Privilege {
        Privilege::from_uid_map(
            std::fs::read_to_string("/proc/self/uid_map")
                .ok()
                .as_deref(),
            nix::unistd::geteuid().is_root(),
        )
    }

    fn from_uid_map(map: Option<&str>, root: bool) -> Privilege {
        let initial = match map {
            Some(text) => {
                let fields: Vec<&str> = text.split_whitespace().collect();
                fields == ["0", "0", "4294967295"]
            }
            // No /proc: assume the common case.
            None => true,
        };
        match (initial, root) {
            (false, _) => Privilege::UserNamespace,
            (true, true) => Privilege::Root,
            (true, false) => Privilege::User,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Privilege::Root => "root",
            Privilege::UserNamespace => "userns",
            Privilege::User => "user",
        }
    }
}

/// The name of the file that records the probe's answer.
const RECORD: &str = "snapshotter";

/// What the recorded answer depends on: the privilege and the kernel.
fn situation(privilege: Privilege) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    format!("{} {release}", privilege.name())
}

/// Resolves `selection` for the store at `root`, running `probe` when
/// nothing is recorded. Never fails: a backend that cannot work falls
/// back to the next one, with a note saying why.
pub(crate) fn choose(root: &Path, selection: Selection, probe: Probe<'_>) -> Choice {
    let privilege = Privilege::current();
    match selection {
        Selection::Only(Backend::Native) => Choice {
            backend: Backend::Native,
            notes: Vec::new(),
        },
        // The user asked for it: mounting errors surface when a snapshot
        // is prepared, naming what failed.
        Selection::Only(Backend::Overlay) => Choice {
            backend: Backend::Overlay,
            notes: Vec::new(),
        },
        Selection::Only(Backend::FuseOverlay) => match overlay::fuse_unavailable() {
            None => Choice {
                backend: Backend::FuseOverlay,
                notes: Vec::new(),
            },
            Some(why) => Choice {
                backend: Backend::Native,
                notes: vec![format!(
                    "RUN steps use the native snapshotter (fuse-overlayfs is not usable: {why})"
                )],
            },
        },
        Selection::Auto => {
            let key = situation(privilege);
            let record = root.join(RECORD);
            if let Some(backend) = read_record(&record, &key) {
                return Choice {
                    backend,
                    notes: Vec::new(),
                };
            }
            let choice = detect(privilege, probe);
            // Only a cache: a store we cannot write to probes again next time.
            let _ = ufs::write_atomic(&record, format!("{}\n{key}\n", choice.backend).as_bytes());
            choice
        }
    }
}

fn read_record(record: &Path, key: &str) -> Option<Backend> {
    let text = std::fs::read_to_string(record).ok()?;
    let mut lines = text.lines();
    let backend = Backend::from_name(lines.next()?)?;
    (lines.next()? == key).then_some(backend)
}

/// Probes overlayfs, then fuse-overlayfs; native always works. A
/// fallback comes with one note naming the backend used and why each
/// one before it was passed over.
fn detect(privilege: Privilege, probe: Probe<'_>) -> Choice {
    let mut passed_over = Vec::new();
    if privilege == Privilege::User {
        passed_over.push("overlayfs needs root or a user namespace".to_string());
    } else {
        match probe(Layout::Kernel(privilege == Privilege::UserNamespace)) {
            Ok(()) => return fallback(Backend::Overlay, &passed_over),
            Err(e) => passed_over.push(format!("overlayfs failed: {e}")),
        }
    }
    match overlay::fuse_unavailable() {
        Some(why) => passed_over.push(format!("fuse-overlayfs is not usable: {why}")),
        None => match probe(Layout::Fuse) {
            Ok(()) => return fallback(Backend::FuseOverlay, &passed_over),
            Err(e) => passed_over.push(format!("fuse-overlayfs failed: {e}")),
        },
    }
    fallback(Backend::Native, &passed_over)
}

fn fallback(backend: Backend, passed_over: &[String]) -> Choice {
    let notes = if passed_over.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "RUN steps use the {backend} snapshotter ({})",
            passed_over.join("; ")
        )]
    };
    Choice { backend, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_parses_every_name() {
        let parse = |s: &str| s.parse::<Selection>().unwrap();
        assert_eq!(parse("auto"), Selection::Auto);
        assert_eq!(parse("overlayfs"), Selection::Only(Backend::Overlay));
        assert_eq!(parse("overlay"), Selection::Only(Backend::Overlay));
        assert_eq!(
            parse("fuse-overlayfs"),
            Selection::Only(Backend::FuseOverlay)
        );
        assert_eq!(parse("native"), Selection::Only(Backend::Native));
        let err = "btrfs".parse::<Selection>().unwrap_err();
        assert!(err.to_string().contains("\"btrfs\""), "{err}");
    }

    #[test]
    fn privilege_comes_from_the_uid_map() {
        let initial = "         0          0 4294967295\n";
        assert_eq!(
            Privilege::from_uid_map(Some(initial), true),
            Privilege::Root
        );
        assert_eq!(
            Privilege::from_uid_map(Some(initial), false),
            Privilege::User
        );
        let userns = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(
            Privilege::from_uid_map(Some(userns), true),
            Privilege::UserNamespace
        );
        assert_eq!(
            Privilege::from_uid_map(Some("0 0 1000\n"), true),
            Privilege::UserNamespace
        );
    }

    #[test]
    fn the_record_is_used_only_in_the_same_situation() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(RECORD);
        std::fs::write(&record, "fuse-overlayfs\nroot 6.1\n").unwrap();
        assert_eq!(read_record(&record, "root 6.1"), Some(Backend::FuseOverlay));
        assert_eq!(read_record(&record, "userns 6.1"), None);
        std::fs::write(&record, "zfs\nroot 6.1\n").unwrap();
        assert_eq!(read_record(&record, "root 6.1"), None);
    }

    #[test]
    fn auto_detection_is_recorded_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let calls = std::cell::Cell::new(0);
        let works = |layout: Layout| {
            calls.set(calls.get() + 1);
            match layout {
                Layout::Kernel(_) => Err(std::io::Error::other("no overlay in this test")),
                Layout::Fuse => Ok(()),
            }
        };
        let first = choose(dir.path(), Selection::Auto, &works);
        let key = situation(Privilege::current());
        if overlay::fuse_unavailable().is_none() && Privilege::current() != Privilege::User {
            assert_eq!(first.backend, Backend::FuseOverlay, "{:?}", first.notes);
            assert_eq!(first.notes.len(), 1, "one line");
            assert!(first.notes[0].contains("no overlay in this test"));
            assert!(first.notes[0].contains("fuse-overlayfs snapshotter"));
        }
        assert_eq!(
            read_record(&dir.path().join(RECORD), &key),
            Some(first.backend)
        );
        // A recorded answer wins over probing.
        let probes = calls.get();
        ufs::write_atomic(
            &dir.path().join(RECORD),
            format!("native\n{key}\n").as_bytes(),
        )
        .unwrap();
        let again = choose(dir.path(), Selection::Auto, &works);
        assert_eq!(again.backend, Backend::Native);
        assert!(again.notes.is_empty());
        assert_eq!(calls.get(), probes);
        // An explicit choice is not probed.
        let asked = choose(dir.path(), Selection::Only(Backend::Overlay), &works);
        assert_eq!(asked.backend, Backend::Overlay);
        assert_eq!(calls.get(), probes);
    }
}
