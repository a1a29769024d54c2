//! The operations a vertex can perform, after BuildKit's `ops.proto`:
//! sources, process execution, file actions, merges and diffs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a vertex does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Source(SourceOp),
    Exec(ExecOp),
    File(FileOp),
    Merge(MergeOp),
    Diff(DiffOp),
}

impl Op {
    /// The op's kind as `dump-llb` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
            Op::Diff(_) => "diff",
        }
    }
}

/// A filesystem from outside the graph. `identifier` uses BuildKit's
/// schemes: `local://context`, `docker-image://docker.io/library/alpine:latest`,
/// `git://…`, `https://…`, `oci-layout://…`; `attrs` carry the scheme's
/// options (see [`super::attr`] for the keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOp {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

/// Runs a process (RUN) with its mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    pub meta: ExecMeta,
    pub mounts: Vec<Mount>,
    pub network: NetMode,
    pub security: SecurityMode,
}

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMeta {
    pub args: Vec<String>,
    /// `KEY=value`, in order.
    pub env: Vec<String>,
    pub cwd: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Proxy variables: passed to the process but, as in BuildKit, kept out
    /// of the cache key (the solver clears them before hashing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_env: Vec<String>,
}

/// One mount of an exec. `input` indexes the vertex's inputs (None for
/// scratch, tmpfs, secrets and cache mounts without `from`); `output`
/// numbers the mounts whose changes the exec produces (`/` is output 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub input: Option<u32>,
    /// Path inside the input to mount (`source=` of a bind mount).
    pub selector: String,
    pub dest: String,
    pub output: Option<u32>,
    pub readonly: bool,
    pub kind: MountKind,
}

/// The kind of a mount and its kind-specific options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Cache {
        id: String,
        sharing: CacheSharing,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    Tmpfs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    Secret(SecretOpt),
    Ssh(SshOpt),
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A secret mounted as a file (or exposed as an environment variable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretOpt {
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// An SSH agent socket forwarded into the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshOpt {
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub optional: bool,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    #[default]
    Sandbox,
    Host,
    None,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// A sequence of file actions. Each action works on the result of the
/// previous one (`input: None` on the first means scratch) and may read
/// from a secondary input (the source of a copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

/// One file action. `input` is the vertex input the action starts from
/// (only meaningful for the first action; later actions continue from the
/// previous action's result); `secondary_input` is where a copy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAction {
    pub input: Option<u32>,
    pub secondary_input: Option<u32>,
    pub action: FileActionKind,
}

/// The file actions BuildKit defines. Paths are absolute; `timestamp`s
/// are seconds since the Unix epoch (None: the time of the action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileActionKind {
    Copy(CopyAction),
    Mkfile {
        path: String,
        mode: u32,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<ChownOpt>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<i64>,
    },
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<ChownOpt>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestamp: Option<i64>,
    },
    Rm {
        path: String,
        allow_not_found: bool,
        allow_wildcard: bool,
    },
}

/// Copy from the secondary input into the current state (COPY / ADD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ChownOpt>,
    /// Octal (`0755`, always four digits, so equal modes give equal
    /// digests) or symbolic (`u+x`) as written in `--chmod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub follow_symlink: bool,
    pub dir_copy_contents: bool,
    /// ADD: extract local archives.
    pub attempt_unpack: bool,
    pub create_dest_path: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_patterns: Vec<String>,
    /// Paths under `src` that must exist even though wildcards may match
    /// nothing (`COPY --parents` of a literal path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_paths: Vec<String>,
    /// `COPY --parents`: `src` is the pivot directory and
    /// `include_patterns` select what is copied, keeping each match's path
    /// below the pivot.
    pub parents: bool,
    pub always_replace_existing_dest: bool,
    /// Modification time for the copied files, in seconds since the Unix
    /// epoch; None keeps the sources' times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// `--chown=user:group`: names are resolved in the destination's
/// `/etc/passwd` and `/etc/group` when the action runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChownOpt {
    pub user: UserOpt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<UserOpt>,
}

/// A user or group given by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserOpt {
    Id(u32),
    Name(String),
}

/// Layers the inputs on top of each other, later ones winning
/// (`COPY --link` results are merged onto their stage this way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOp {
    pub inputs: Vec<u32>,
}

/// The changes that turn `lower` into `upper` (either may be scratch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffOp {
    pub lower: Option<u32>,
    pub upper: Option<u32>,
}
