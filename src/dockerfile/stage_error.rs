//! Why a Dockerfile that parsed is still not buildable: stage structure,
//! targets, FROM resolution, dependencies, ONBUILD triggers and the values
//! instructions put into the image config. One variant per failed rule,
//! with BuildKit's message text where BuildKit has one.
//!
//! Only data: it must not import the planner, the lexer or anything with
//! I/O. Where the error happened is carried by the surrounding
//! [`crate::dockerfile::Error`] (the instruction first, then its stage).

use super::config_values::PortError;
use super::error::ErrorKind;
use super::node::go_quote;
use crate::image::reference::ReferenceError;

/// A semantic error found while planning the stages.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context")]
    NoStage,
    #[error("duplicate stage name {}, stage names should be unique", go_quote(.0))]
    DuplicateName(String),
    /// `scratch` and `context` name things other than stages.
    #[error("stage name should not use the same name as reserved stage {}", go_quote(.0))]
    ReservedName(String),
    #[error("target stage {} could not be found{}", go_quote(.name), hint(.suggestion))]
    TargetNotFound {
        name: String,
        suggestion: Option<String>,
    },

    /// FROM's image expanded to nothing; holds the text as written.
    #[error("base name ({0}) should not be blank")]
    BlankBaseName(String),
    #[error("failed to parse stage name {}: {reason}", go_quote(.name))]
    InvalidBaseName {
        name: String,
        reason: ReferenceError,
    },
    #[error("failed to process arguments for platform {expression}: {reason}")]
    PlatformExpansion {
        expression: String,
        // Boxed: a lexer error is large and this variant is rare.
        reason: Box<super::shell::ShellError>,
    },
    #[error("empty platform value from expression {0}")]
    EmptyPlatform(String),
    #[error("failed to parse platform {expression}: {reason}")]
    InvalidPlatform {
        expression: String,
        reason: crate::image::platform::PlatformError,
    },

    #[error("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")]
    FromVariable,
    #[error("invalid stage index {0}")]
    InvalidStageIndex(i64),
    #[error("circular dependency detected on stage: {0}")]
    CircularDependency(String),
    #[error("cannot copy from stage {}, it needs to be defined before current stage {}", go_quote(.from), go_quote(.stage))]
    CopyFromLaterStage { from: String, stage: String },
    #[error("cannot mount from stage {} to {}, stage needs to be defined before current command", go_quote(.from), go_quote(.target))]
    MountFromLaterStage { from: String, target: String },

    #[error("onbuild trigger should be a single expression")]
    OnbuildNotSingle,
    /// A base image's trigger failed to parse or to apply.
    #[error("ONBUILD {trigger}: {source}")]
    OnbuildTrigger {
        trigger: String,
        source: Box<ErrorKind>,
    },

    #[error("source can't be a URL for COPY")]
    CopyUrl,
    #[error("source can't be a git ref for COPY")]
    CopyGit,
    #[error("parsing produced an invalid run command: {0}")]
    InvalidRunCommand(String),
    #[error(transparent)]
    Expose(#[from] PortError),
    /// STOPSIGNAL's value; the text is moby's.
    #[error("{0}")]
    StopSignal(String),
    /// `--build-context NAME=target:STAGE` naming no stage defined
    /// before its use.
    #[error("build context {}: stage {} is not defined before it is used", go_quote(.context), go_quote(.stage))]
    ContextStage { context: String, stage: String },
    #[error("invalid SOURCE_DATE_EPOCH: {0}")]
    SourceDateEpoch(String),
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}
