//! The build graph as plain data, modeled on BuildKit's LLB
//! (`solver/pb/ops.proto`): vertices are operations, edges are inputs.
//!
//! A leaf: no I/O, no async, nothing project-internal but `image` value
//! types. The frontend (`dockerfile::lower`) builds a [`Definition`]; the
//! solver walks it; `bk debug dump-llb` prints it.
//!
//! Every vertex has a stable [`Digest`]: sha256 over a canonical JSON
//! serialisation of its op, its inputs' digests and its platform. Struct
//! fields serialise in declaration order and maps are `BTreeMap`s, so the
//! same graph always yields the same bytes. Progress names and cache
//! directives live in [`Metadata`], outside the digest, as in BuildKit.

pub mod attr;
mod definition;
mod dump;
mod op;

pub use definition::{Definition, DefinitionError, Digest, Input, Metadata, Vertex};
pub use dump::{to_dot, to_json_lines};
pub use op::{
    CacheSharing, ChownOpt, CopyAction, DiffOp, ExecMeta, ExecOp, FileAction, FileActionKind,
    FileOp, MergeOp, Mount, MountKind, NetMode, Op, SecretOpt, SecurityMode, SourceOp, SshOpt,
    UserOpt,
};
