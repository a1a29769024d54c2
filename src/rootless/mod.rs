//! Running a `RUN` process without root and without a daemon.
//!
//! [`spec`] describes one sandboxed process: its root file system (a
//! directory the snapshotter prepared), extra mounts, user, environment,
//! working directory and network. The runner turns a [`spec::Spec`] into a
//! process in its own mount, pid, ipc and uts namespaces (and network
//! namespace for `--network=none`).
//!
//! This module imports only `crate::util` (and `crate::fileop` for the
//! `USER` lookup in the root file system); the solver builds on it.

pub mod spec;
