//! The options of every mount a `RUN` sees, read from
//! `/proc/self/mountinfo` inside the step, as root and as an
//! unprivileged user (in a user namespace, where read-only remounts must
//! keep the flags the kernel locked): they are BuildKit's. Secrets are
//! `ro,nosuid,nodev` and `noexec` unless their mode executes, so a
//! script in a default secret cannot run; binds are read-only by
//! default; tmpfs is `nosuid` with its size; `/etc/hosts` and
//! `/etc/resolv.conf` are read-only and restricted; `/dev/shm`,
//! `/dev/mqueue`, `/proc` and `/sys` have runc's options.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use crate::run::{image, modes, Case};
use crate::util::describe;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug)]
struct MountLine {
    /// Per-mount options (`ro`, `nosuid`, ...).
    options: BTreeSet<String>,
    fstype: String,
    /// Options of the file system itself (`size=...`).
    super_options: String,
}

/// The last (topmost) mount at `point` in a mountinfo text.
fn mount_at(mountinfo: &str, point: &str) -> MountLine {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split_whitespace().collect();
            if fields.get(4) != Some(&point) {
                return None;
            }
            let mut right = right.split_whitespace();
            let fstype = right.next()?.to_string();
            let _source = right.next();
            Some(MountLine {
                options: fields.get(5)?.split(',').map(str::to_string).collect(),
                fstype,
                super_options: right.next().unwrap_or_default().to_string(),
            })
        })
        .next_back()
        .unwrap_or_else(|| panic!("no mount at {point} in:\n{mountinfo}"))
}

fn assert_options(mountinfo: &str, point: &str, has: &[&str], lacks: &[&str]) -> MountLine {
    let m = mount_at(mountinfo, point);
    for o in has {
        assert!(m.options.contains(*o), "{point} lacks {o}: {m:?}");
    }
    for o in lacks {
        assert!(!m.options.contains(*o), "{point} has {o}: {m:?}");
    }
    m
}

#[test]
fn run_mounts_have_buildkits_options_as_root_and_rootless() {
    let dockerfile = format!(
        "FROM {}\n\
         RUN --mount=type=secret,id=x,target=/run/secrets/x \\\n\
             --mount=type=secret,id=x,target=/run/secrets/xs,mode=0755 \\\n\
             --mount=type=tmpfs,target=/t,size=1048576 \\\n\
             --mount=type=bind,source=sub,target=/b \\\n\
             --mount=type=bind,source=sub,target=/w,rw \\\n\
             cat /proc/self/mountinfo > /mountinfo; \\\n\
             (/run/secrets/x; echo rc=$?) > /exec 2>&1; \\\n\
             (/run/secrets/xs; echo rc=$?) > /exec-script 2>&1; \\\n\
             (echo > /b/new; echo rc=$?) > /bind-write 2>&1; \\\n\
             (echo > /etc/hosts; echo rc=$?) > /hosts-write 2>&1; true\n",
        image()
    );
    for who in modes() {
        let case = Case::new(who, &dockerfile);
        // A context subdirectory to bind (the context's root holds the
        // store).
        std::fs::create_dir(case.path().join("sub")).unwrap();
        std::fs::write(case.path().join("sub/file"), "x").unwrap();
        let script = case.path().join("secret.sh");
        std::fs::write(&script, "#!/bin/sh\necho secret-ran\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let secret = format!("id=x,src={}", script.display());
        let out = case.build(&["--secret", &secret, "-o", "out"]);
        assert!(out.status.success(), "{who:?}: {}", describe(&out));
        let dir = case.path().join("out");
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{who:?}: read {name}: {e}"))
        };
        let info = read("mountinfo");

        let restricted = ["ro", "nosuid", "nodev", "noexec"];
        assert_options(&info, "/run/secrets/x", &restricted, &[]);
        let exec = read("exec");
        assert!(
            exec.contains("Permission denied") && exec.contains("rc=126"),
            "{who:?}: a default secret must not execute: {exec}"
        );
        // BuildKit leaves out noexec when the secret's mode executes.
        assert_options(
            &info,
            "/run/secrets/xs",
            &["ro", "nosuid", "nodev"],
            &["noexec"],
        );
        let ran = read("exec-script");
        assert!(
            ran.contains("secret-ran") && ran.contains("rc=0"),
            "{who:?}: {ran}"
        );

        let tmpfs = assert_options(&info, "/t", &["rw", "nosuid"], &["noexec"]);
        assert_eq!(tmpfs.fstype, "tmpfs", "{who:?}");
        assert!(
            tmpfs.super_options.contains("size=1024k"),
            "{who:?}: {tmpfs:?}"
        );

        assert_options(&info, "/b", &["ro"], &[]);
        assert!(
            read("bind-write").contains("Read-only file system"),
            "{who:?}: {}",
            read("bind-write")
        );
        assert_options(&info, "/w", &["rw"], &["noexec"]);

        for generated in ["/etc/hosts", "/etc/resolv.conf"] {
            assert_options(&info, generated, &restricted, &[]);
        }
        assert!(
            read("hosts-write").contains("Read-only file system"),
            "{who:?}: {}",
            read("hosts-write")
        );

        let shm = assert_options(&info, "/dev/shm", &["rw", "nosuid", "nodev", "noexec"], &[]);
        assert_eq!(shm.fstype, "tmpfs", "{who:?}");
        let mqueue = assert_options(&info, "/dev/mqueue", &["nosuid", "nodev", "noexec"], &[]);
        assert_eq!(mqueue.fstype, "mqueue", "{who:?}");
        let proc = assert_options(&info, "/proc", &["nosuid", "nodev", "noexec"], &[]);
        assert_eq!(proc.fstype, "proc", "{who:?}");
        assert_options(&info, "/sys", &restricted, &[]);
        assert_options(&info, "/dev", &["nosuid"], &[]);
        assert_options(&info, "/dev/pts", &["nosuid", "noexec"], &[]);
    }
}
