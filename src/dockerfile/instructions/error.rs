//! Why an instruction was rejected, one variant per failed rule, with
//! BuildKit's message text so users see the same words.
//!
//! Only data: it must not import the parser or the lexer. The instruction's
//! location is carried by the surrounding [`crate::dockerfile::Error`].

use crate::dockerfile::flags::FlagError;
use crate::dockerfile::node::go_quote;
use crate::dockerfile::suggest::hint;

/// An instruction that does not follow BuildKit's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    /// A `--flag` the instruction does not accept, or a malformed one.
    #[error(transparent)]
    Flag(#[from] FlagError),

    #[error("unknown instruction: {instruction}{}", hint(.suggestion))]
    UnknownInstruction {
        instruction: String,
        suggestion: Option<String>,
    },
    /// `parse_command` was handed a FROM, which starts a stage instead.
    #[error("{0} is not a command type")]
    NotACommand(String),

    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(&'static str),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(&'static str),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    /// ENV/LABEL words that are not key/value/separator triples.
    #[error("Bad input to {0}, too many arguments")]
    TooManyArguments(&'static str),
    #[error("{0} requires the arguments to be in JSON form")]
    NotJson(&'static str),

    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error("invalid name for build stage: {}, name can't start with a number or contain symbols", go_quote(.0))]
    InvalidStageName(String),

    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChained,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),

    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,

    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    #[error("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(.0))]
    HealthcheckType(String),
    /// A value Go's `time.ParseDuration` rejects; the message is Go's.
    #[error("{0}")]
    InvalidDuration(String),
    #[error("Interval {} cannot be less than 1ms", go_quote(.0))]
    IntervalTooShort(String),
    /// A `--retries` value `strconv.ParseInt` rejects; the message is Go's.
    #[error("{0}")]
    InvalidRetries(String),
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),

    #[error("invalid network mode {}", go_quote(.0))]
    InvalidNetwork(String),
    #[error("security {} is not valid", go_quote(.0))]
    InvalidSecurity(String),

    #[error("failed to parse csv mounts: {0}")]
    MountCsv(String),
    #[error("failed to parse csv devices: {0}")]
    DeviceCsv(String),
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    KeyNotForMountType { key: String, mount_type: String },
    #[error("unexpected key '{key}' in '{field}'{}", hint(.suggestion))]
    UnknownKey {
        key: String,
        field: String,
        suggestion: Option<String>,
    },
    #[error("invalid value for {key}: {value}")]
    InvalidValue { key: String, value: String },
    /// `mode`, `uid` or `gid` that is not a number of the right base.
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("unsupported mount type {}{}", go_quote(.value), hint(.suggestion))]
    MountType {
        value: String,
        suggestion: Option<String>,
    },
    #[error("unsupported sharing value {}{}", go_quote(.value), hint(.suggestion))]
    Sharing {
        value: String,
        suggestion: Option<String>,
    },
    #[error("'{0}' doesn't support variable expansion, define alias stage instead")]
    MountFromVariable(String),
    /// `mode`/`uid`/`gid` on a mount type that creates no files.
    #[error("{option} not allowed for {} type mounts", go_quote(.mount_type))]
    FileInfoNotAllowed {
        option: &'static str,
        mount_type: String,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(String),
    #[error("device name already set to {0}")]
    DeviceNameTwice(String),

    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    ChmodNotOctal(String),
    /// A symbolic `--chmod` (like `u+x`) that does not follow chmod(1).
    #[error("invalid syntax")]
    ChmodSyntax(String),
    #[error("checksum can't be specified for multiple sources")]
    ChecksumMultipleSources,
    #[error("checksum requires HTTP(S) or Git sources")]
    ChecksumSource,
    #[error("inconsistent keep-git-dir configuration")]
    KeepGitDirConflict,
}
