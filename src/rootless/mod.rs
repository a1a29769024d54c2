//! Running a `RUN` process without root and without a daemon.
//!
//! [`spec`] describes one sandboxed process: its root file system (a
//! directory the snapshotter prepared), extra mounts, user, environment,
//! working directory and network. [`run::run`] turns a [`spec::Spec`]
//! into a process in its own mount, pid, ipc and uts namespaces (and
//! network namespace for `--network=none`), streams its output and
//! returns how it ended.
//!
//! Two layers of isolation:
//!
//! - [`enter`], at the top of `main`: as root, a private mount
//!   namespace; otherwise bk re-executes itself in a new user namespace
//!   whose ids come from `/etc/subuid` and `/etc/subgid`, so the whole
//!   store is written as "root" with container ids (like `buildah
//!   unshare`). Without user namespaces it stops with a message naming
//!   the fix, or runs unisolated with `--sandbox=none`.
//! - [`sandbox`], per RUN: another re-execution of this binary (small,
//!   single-threaded, so `unshare` and `fork` are safe) that builds the
//!   sandbox from a launch plan and execs the command; see its docs.
//!
//! # Why a runner of our own
//!
//! youki's libcontainer insists on cgroups, which fail rootless on the
//! cgroup-v1 hosts bk must support, and leaves orphans behind when it
//! fails; runc and crun are separate binaries (crun refuses cgroup v1
//! here) that would need an OCI bundle written per step. The runner is
//! a few hundred lines on `nix`: two re-executions of this binary, no
//! daemon, no bundle, and the kernel (pid namespace init, parent-death
//! signals, mount namespaces) guarantees that nothing outlives bk.
//!
//! Measured with `bench/run.sh` (release build, 2-core VM shared with
//! parallel compiles, load 5–7, kernel 6.18, three runs of 20–40 steps):
//! one `RUN true` step — writable snapshot (overlayfs, with `userxattr`
//! rootless), sandbox, process, commit — costs 16–44 ms as root and
//! 28–58 ms rootless (the user namespace costs one more re-execution per
//! build, not per step).
//! `buildah run` of an already prepared container takes 540–610 ms with
//! runc and 360–490 ms with chroot isolation (no commit); a bare
//! `unshare -m -p -i -u -f chroot ROOT true` takes 8–19 ms: a whole bk
//! step costs about what starting one namespaced process does.
//!
//! [`emulation`] says whether the sandbox can run another
//! architecture's programs (natively, in the kernel's 32-bit mode, or
//! through a binfmt_misc handler such as qemu-user, read by [`binfmt`]).
//!
//! This module imports only `crate::util` and `crate::fileop` (in-root
//! path resolution for mount points and the `USER` lookup); the solver
//! builds on it.

pub mod binfmt;
pub mod emulation;
pub mod enter;
mod etc;
pub mod idmap;
mod mounts;
pub mod run;
pub mod sandbox;
pub mod spec;
mod user;

pub use enter::{enter, EnterError, Entered, Isolation, Mode};
pub use run::{run, Exit, RunError, Stream};
pub use user::UserError;
