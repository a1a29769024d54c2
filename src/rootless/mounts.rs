//! The sandbox's mount table as data: [`plan`] lists every step for a
//! [`Launch`] (the root bound onto itself, `/proc`, a minimal `/dev`, a
//! read-only `/sys`, runc's masked and read-only paths, then the
//! generated `/etc` files and the spec's mounts in order), and [`apply`]
//! performs them. The options follow BuildKit's OCI spec (runc's
//! defaults for `/proc`, `/dev`, `/dev/pts`, `/dev/shm`, `/dev/mqueue`
//! and `/sys`; `rbind` for binds, `ro` and `nosuid,nodev,noexec` as each
//! mount asks). Keeping the list pure lets unit tests check it exactly
//! without root; only `apply` touches the kernel.
//!
//! Used by [`super::sandbox`] in pid 1 of the new namespaces, before
//! `pivot_root`; every target is a host path under the root file system.

use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::statvfs::{statvfs, FsFlags};

use super::sandbox::Launch;
use super::spec::{MountKind, Restrict};

/// Host devices bound into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// runc's default masked paths under `/proc` (and two under `/sys`).
const MASKED_PROC: [&str; 9] = [
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
const MASKED_SYS: [&str; 2] = ["firmware", "devices/virtual/powercap"];
/// runc's default read-only paths under `/proc`.
const READONLY_PROC: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// One step of the sandbox's mount setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mount {
        source: PathBuf,
        target: PathBuf,
        /// `None`: a bind mount.
        fstype: Option<&'static str>,
        flags: MsFlags,
        data: Option<String>,
    },
    /// Remount the bind mount at `target` with `flags` (`MS_RDONLY`,
    /// `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`) added to the flags it has;
    /// see [`remount_flags`].
    Remount {
        target: PathBuf,
        flags: MsFlags,
    },
    /// `/dev/mqueue`: a fresh mqueue (`nosuid,nodev,noexec`) for the
    /// sandbox's IPC namespace; where the kernel refuses it, the host's
    /// `/dev/mqueue` bound instead (as rootless runc does), and nothing
    /// when the host has none.
    Mqueue(PathBuf),
    /// sysfs, read-only; where the kernel refuses it (not root and no
    /// network namespace of our own), the host's `/sys` bound read-only,
    /// as rootless runc does.
    Sys(PathBuf),
    /// An empty file (mode 0666) to bind a device onto.
    File(PathBuf),
    Dir(PathBuf),
    Symlink {
        target: &'static str,
        link: PathBuf,
    },
    /// If it exists: an empty read-only tmpfs over a directory,
    /// `/dev/null` over anything else.
    Mask(PathBuf),
    /// If it exists: bound onto itself read-only.
    Readonly(PathBuf),
    /// A spec mount's target under the sandbox's `/dev`, whose stub in
    /// the root file system the `/dev` tmpfs hides (a `#!` heredoc's
    /// `/dev/pipes/`): created inside that tmpfs if missing, as a
    /// directory, or an empty file when `like` is not a directory.
    MountPoint {
        path: PathBuf,
        like: Option<PathBuf>,
    },
}

fn mount(
    source: impl Into<PathBuf>,
    target: impl Into<PathBuf>,
    fstype: Option<&'static str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Step {
    Step::Mount {
        source: source.into(),
        target: target.into(),
        fstype,
        flags,
        data: data.map(str::to_string),
    }
}

/// Every mount step for `launch`, in order.
pub fn plan(launch: &Launch) -> Vec<Step> {
    use MsFlags as F;
    let root = &launch.rootfs;
    let dev = &launch.dev_dir;
    let mut steps = vec![
        mount(root, root, None, F::MS_BIND | F::MS_REC, None),
        mount(
            "proc",
            &launch.proc_dir,
            Some("proc"),
            F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC,
            None,
        ),
        mount(
            "tmpfs",
            dev,
            Some("tmpfs"),
            F::MS_NOSUID | F::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    ];
    for name in DEVICES {
        steps.push(Step::File(dev.join(name)));
        steps.push(mount(
            Path::new("/dev").join(name),
            dev.join(name),
            None,
            F::MS_BIND,
            None,
        ));
    }
    steps.extend([
        Step::Dir(dev.join("pts")),
        mount(
            "devpts",
            dev.join("pts"),
            Some("devpts"),
            F::MS_NOSUID | F::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        Step::Dir(dev.join("mqueue")),
        Step::Mqueue(dev.join("mqueue")),
        Step::Dir(dev.join("shm")),
        mount(
            "shm",
            dev.join("shm"),
            Some("tmpfs"),
            F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        ),
    ]);
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target,
            link: dev.join(link),
        });
    }
    steps.push(Step::Sys(launch.sys_dir.clone()));
    // `--security=insecure` sees everything, as in BuildKit.
    if !launch.all_caps {
        steps.extend(
            MASKED_PROC
                .iter()
                .map(|p| Step::Mask(launch.proc_dir.join(p))),
        );
        steps.extend(
            MASKED_SYS
                .iter()
                .map(|p| Step::Mask(launch.sys_dir.join(p))),
        );
        steps.extend(
            READONLY_PROC
                .iter()
                .map(|p| Step::Readonly(launch.proc_dir.join(p))),
        );
    }
    for m in &launch.mounts {
        if m.target.starts_with(&launch.dev_dir) {
            steps.push(Step::MountPoint {
                path: m.target.clone(),
                like: match &m.kind {
                    MountKind::Bind { source, .. } => Some(source.clone()),
                    MountKind::Tmpfs { .. } => None,
                },
            });
        }
        match &m.kind {
            MountKind::Bind {
                source,
                readonly,
                restrict,
            } => {
                steps.push(mount(source, &m.target, None, F::MS_BIND | F::MS_REC, None));
                let flags = bind_flags(*readonly, *restrict);
                if !flags.is_empty() {
                    steps.push(Step::Remount {
                        target: m.target.clone(),
                        flags,
                    });
                }
            }
            MountKind::Tmpfs { size, readonly } => {
                let data = size.map(|s| format!("size={s}"));
                let mut flags = F::MS_NOSUID;
                flags.set(F::MS_RDONLY, *readonly);
                steps.push(mount(
                    "tmpfs",
                    &m.target,
                    Some("tmpfs"),
                    flags,
                    data.as_deref(),
                ));
            }
        }
    }
    if launch.readonly_rootfs {
        steps.push(Step::Remount {
            target: root.clone(),
            flags: F::MS_RDONLY,
        });
    }
    steps
}

/// The flags a bind mount's remount adds: a bind mount takes none of
/// its options on the first mount(2), only on a remount.
pub fn bind_flags(readonly: bool, restrict: Restrict) -> MsFlags {
    let mut flags = MsFlags::empty();
    flags.set(MsFlags::MS_RDONLY, readonly);
    flags.set(MsFlags::MS_NOSUID, restrict.nosuid);
    flags.set(MsFlags::MS_NODEV, restrict.nodev);
    flags.set(MsFlags::MS_NOEXEC, restrict.noexec);
    flags
}

/// The full flags for remounting a bind mount that has `current`
/// (statvfs) with `wanted` added. A remount replaces every per-mount
/// flag, and in a user namespace the kernel refuses (`EPERM`) to clear
/// those it locked when the mount came from a more privileged namespace
/// (`nosuid`, `nodev`, `noexec`, `ro`, the atime mode), so each one the
/// mount has is carried over.
pub fn remount_flags(wanted: MsFlags, current: FsFlags) -> MsFlags {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | wanted;
    let keep = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (has, set) in keep {
        if current.contains(has) {
            flags |= set;
        }
    }
    flags
}

/// Performs `steps` in order; the error names the step that failed.
pub fn apply(steps: &[Step]) -> Result<(), String> {
    steps.iter().try_for_each(apply_one)
}

fn apply_one(step: &Step) -> Result<(), String> {
    match step {
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => do_mount(source, target, *fstype, *flags, data.as_deref()),
        Step::Remount { target, flags } => remount(target, *flags),
        Step::Mqueue(target) => {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if do_mount(Path::new("mqueue"), target, Some("mqueue"), flags, None).is_ok() {
                return Ok(());
            }
            let host = Path::new("/dev/mqueue");
            if !host.is_dir() {
                return Ok(());
            }
            do_mount(host, target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            remount(target, flags)
        }
        Step::Sys(target) => {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if do_mount(
                Path::new("sysfs"),
                target,
                Some("sysfs"),
                flags | MsFlags::MS_RDONLY,
                None,
            )
            .is_ok()
            {
                return Ok(());
            }
            do_mount(
                Path::new("/sys"),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            remount(target, flags | MsFlags::MS_RDONLY)
        }
        Step::File(path) => std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o666)
            .open(path)
            .map(drop)
            .map_err(|e| format!("create {}: {e}", path.display())),
        Step::Dir(path) => {
            std::fs::create_dir(path).map_err(|e| format!("create {}: {e}", path.display()))
        }
        Step::Symlink { target, link } => {
            symlink(target, link).map_err(|e| format!("create {}: {e}", link.display()))
        }
        Step::Mask(path) => match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => do_mount(
                Path::new("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            Ok(_) => do_mount(Path::new("/dev/null"), path, None, MsFlags::MS_BIND, None),
            Err(_) => Ok(()),
        },
        Step::MountPoint { path, like } => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Ok(());
            }
            let made = match like {
                Some(source) if !source.is_dir() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("create {}: {e}", parent.display()))?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(path)
                        .map(drop)
                }
                _ => std::fs::create_dir_all(path),
            };
            made.map_err(|e| format!("create mount point {}: {e}", path.display()))
        }
        Step::Readonly(path) => {
            if !path.exists() {
                return Ok(());
            }
            do_mount(path, path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            remount(path, MsFlags::MS_RDONLY)
        }
    }
}

fn do_mount(
    source: &Path,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    nix::mount::mount(Some(source), target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {} ({}): {e}",
            source.display(),
            target.display(),
            fstype.unwrap_or("bind"),
        )
    })
}

/// Remounts the bind mount at `target` with `wanted` added, keeping the
/// flags it has (see [`remount_flags`]).
fn remount(target: &Path, wanted: MsFlags) -> Result<(), String> {
    let st = statvfs(target).map_err(|e| format!("statvfs {}: {e}", target.display()))?;
    let flags = remount_flags(wanted, st.flags());
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remount {} ({flags:?}): {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootless::sandbox::HostMount;
    use crate::rootless::spec::Network;

    fn launch() -> Launch {
        Launch {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: vec![0],
            hostname: "h".into(),
            network: Network::Host,
            rootfs: "/r".into(),
            readonly_rootfs: false,
            proc_dir: "/r/proc".into(),
            dev_dir: "/r/dev".into(),
            sys_dir: "/r/sys".into(),
            mounts: vec![
                HostMount {
                    target: "/r/etc/hosts".into(),
                    kind: MountKind::Bind {
                        source: "/tmp/x/hosts".into(),
                        readonly: true,
                        restrict: Restrict::ALL,
                    },
                },
                HostMount {
                    target: "/r/src".into(),
                    kind: MountKind::Bind {
                        source: "/ctx".into(),
                        readonly: true,
                        restrict: Restrict::default(),
                    },
                },
                HostMount {
                    target: "/r/scratch".into(),
                    kind: MountKind::Tmpfs {
                        size: Some(4096),
                        readonly: false,
                    },
                },
            ],
            isolated: true,
            all_caps: false,
        }
    }

    fn target(step: &Step) -> &Path {
        match step {
            Step::Mount { target, .. } => target,
            Step::Remount { target: p, .. }
            | Step::Mqueue(p)
            | Step::Sys(p)
            | Step::File(p)
            | Step::Dir(p)
            | Step::Mask(p)
            | Step::Readonly(p) => p,
            Step::Symlink { link, .. } => link,
            Step::MountPoint { path, .. } => path,
        }
    }

    #[test]
    fn mount_points_under_dev_are_made_inside_its_tmpfs() {
        let mut l = launch();
        l.mounts.push(HostMount {
            target: "/r/dev/pipes".into(),
            kind: MountKind::Bind {
                source: "/s/script".into(),
                readonly: true,
                restrict: Restrict::default(),
            },
        });
        let steps = plan(&l);
        let at = steps
            .iter()
            .position(|s| matches!(s, Step::MountPoint { .. }))
            .expect("a mount point step");
        assert_eq!(
            steps[at],
            Step::MountPoint {
                path: "/r/dev/pipes".into(),
                like: Some("/s/script".into())
            }
        );
        assert_eq!(target(&steps[at + 1]), Path::new("/r/dev/pipes"));
        let dev = steps
            .iter()
            .position(|s| target(s) == Path::new("/r/dev"))
            .unwrap();
        assert!(dev < at, "after the /dev tmpfs");
        // Targets elsewhere keep the stubs made in the root file system.
        assert_eq!(
            plan(&launch())
                .iter()
                .filter(|s| matches!(s, Step::MountPoint { .. }))
                .count(),
            0
        );
    }

    #[test]
    fn the_root_comes_first_then_proc_and_dev() {
        let steps = plan(&launch());
        assert_eq!(
            steps[0],
            mount("/r", "/r", None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
        );
        assert!(
            matches!(&steps[1], Step::Mount { fstype: Some("proc"), target, .. } if target == Path::new("/r/proc"))
        );
        assert!(
            matches!(&steps[2], Step::Mount { fstype: Some("tmpfs"), target, .. } if target == Path::new("/r/dev"))
        );
        for dev in DEVICES {
            let bind = mount(
                Path::new("/dev").join(dev),
                Path::new("/r/dev").join(dev),
                None,
                MsFlags::MS_BIND,
                None,
            );
            let at = steps.iter().position(|s| *s == bind).expect(dev);
            assert_eq!(steps[at - 1], Step::File(Path::new("/r/dev").join(dev)));
        }
        // Nothing is mounted outside the root.
        assert!(steps.iter().all(|s| target(s).starts_with("/r")));
    }

    #[test]
    fn kernel_knobs_are_masked_unless_insecure() {
        let steps = plan(&launch());
        assert!(steps.contains(&Step::Readonly("/r/proc/sysrq-trigger".into())));
        assert!(steps.contains(&Step::Readonly("/r/proc/sys".into())));
        assert!(steps.contains(&Step::Mask("/r/proc/kcore".into())));
        assert!(steps.contains(&Step::Mask("/r/sys/firmware".into())));
        let insecure = plan(&Launch {
            all_caps: true,
            ..launch()
        });
        assert!(!insecure
            .iter()
            .any(|s| matches!(s, Step::Mask(_) | Step::Readonly(_))));
    }

    #[test]
    fn spec_mounts_follow_in_order_and_read_only_ones_are_remounted() {
        let steps = plan(&launch());
        let tail: Vec<&Step> = steps.iter().rev().take(5).rev().collect();
        assert_eq!(
            tail,
            [
                &mount(
                    "/tmp/x/hosts",
                    "/r/etc/hosts",
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None
                ),
                &Step::Remount {
                    target: "/r/etc/hosts".into(),
                    flags: MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC
                },
                &mount(
                    "/ctx",
                    "/r/src",
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None
                ),
                &Step::Remount {
                    target: "/r/src".into(),
                    flags: MsFlags::MS_RDONLY
                },
                &mount(
                    "tmpfs",
                    "/r/scratch",
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID,
                    Some("size=4096")
                ),
            ]
        );
        let ro = plan(&Launch {
            readonly_rootfs: true,
            ..launch()
        });
        assert_eq!(
            ro.last(),
            Some(&Step::Remount {
                target: "/r".into(),
                flags: MsFlags::MS_RDONLY
            })
        );
    }

    #[test]
    fn read_only_tmpfs_is_mounted_read_only() {
        let mut l = launch();
        l.mounts = vec![HostMount {
            target: "/r/t".into(),
            kind: MountKind::Tmpfs {
                size: None,
                readonly: true,
            },
        }];
        assert_eq!(
            plan(&l).last(),
            Some(&mount(
                "tmpfs",
                "/r/t",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_RDONLY,
                None
            ))
        );
    }

    #[test]
    fn a_writable_bind_without_restrictions_is_not_remounted() {
        let mut l = launch();
        l.mounts = vec![HostMount {
            target: "/r/w".into(),
            kind: MountKind::Bind {
                source: "/w".into(),
                readonly: false,
                restrict: Restrict::default(),
            },
        }];
        assert!(matches!(plan(&l).last(), Some(Step::Mount { .. })));
        assert_eq!(bind_flags(false, Restrict::default()), MsFlags::empty());
    }

    #[test]
    fn dev_has_shm_and_mqueue_with_runc_options() {
        let steps = plan(&launch());
        assert!(steps.contains(&Step::Mqueue("/r/dev/mqueue".into())));
        assert!(steps.contains(&mount(
            "shm",
            "/r/dev/shm",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k")
        )));
    }

    #[test]
    fn remounts_keep_the_flags_the_mount_already_has() {
        // A mount from the host that is nosuid,nodev and relatime, as the
        // kernel locks it in a user namespace: a read-only remount must
        // repeat all three or it fails with EPERM.
        let current = FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RELATIME;
        assert_eq!(
            remount_flags(MsFlags::MS_RDONLY, current),
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_RELATIME
        );
        // Restrictions asked for are added to a mount that has none.
        assert_eq!(
            remount_flags(bind_flags(true, Restrict::ALL), FsFlags::empty()),
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
        );
        // A read-only source stays read-only.
        assert!(remount_flags(MsFlags::MS_NOEXEC, FsFlags::ST_RDONLY).contains(MsFlags::MS_RDONLY));
    }
}
