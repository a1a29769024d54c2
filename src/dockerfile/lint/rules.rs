//! The lint rules bk knows: each rule's BuildKit name, its one-line
//! description, its documentation address, and the text of a finding.
//!
//! Names, descriptions and finding texts are what users see and match on
//! (`# check=skip=StageNameCasing`), so they follow BuildKit's rule table.
//! Nothing here decides when a rule fires: see `checks.rs`.

/// One lint rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// The name used in output and in `skip=` lists.
    pub name: &'static str,
    pub description: &'static str,
    /// The rule's documentation page (empty when it has none).
    pub url: &'static str,
}

macro_rules! rules {
    ($($ident:ident: $name:literal, $kebab:literal, $description:literal;)*) => {
        $(
            pub const $ident: Rule = Rule {
                name: $name,
                description: $description,
                url: concat!("https://docs.docker.com/go/dockerfile/rule/", $kebab, "/"),
            };
        )*
        /// Every rule bk checks, by name.
        pub const ALL: &[&Rule] = &[$(&$ident),*];
    };
}

rules! {
    STAGE_NAME_CASING: "StageNameCasing", "stage-name-casing",
        "Stage names should be lowercase";
    FROM_AS_CASING: "FromAsCasing", "from-as-casing",
        "The 'as' keyword should match the case of the 'from' keyword";
    NO_EMPTY_CONTINUATION: "NoEmptyContinuation", "no-empty-continuation",
        "Empty continuation lines will become errors in a future release";
    CONSISTENT_INSTRUCTION_CASING: "ConsistentInstructionCasing", "consistent-instruction-casing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)";
    JSON_ARGS_RECOMMENDED: "JSONArgsRecommended", "json-args-recommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals";
    MAINTAINER_DEPRECATED: "MaintainerDeprecated", "maintainer-deprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author";
    UNDEFINED_ARG_IN_FROM: "UndefinedArgInFrom", "undefined-arg-in-from",
        "FROM command must use declared ARGs";
    WORKDIR_RELATIVE_PATH: "WorkdirRelativePath", "workdir-relative-path",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes";
    UNDEFINED_VAR: "UndefinedVar", "undefined-var",
        "Variables should be defined before their use";
    MULTIPLE_INSTRUCTIONS_DISALLOWED: "MultipleInstructionsDisallowed", "multiple-instructions-disallowed",
        "Multiple instructions of the same type should not be used in the same stage";
    LEGACY_KEY_VALUE_FORMAT: "LegacyKeyValueFormat", "legacy-key-value-format",
        "Legacy key/value format with whitespace separator should not be used";
    REDUNDANT_TARGET_PLATFORM: "RedundantTargetPlatform", "redundant-target-platform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
    SECRETS_USED_IN_ARG_OR_ENV: "SecretsUsedInArgOrEnv", "secrets-used-in-arg-or-env",
        "Sensitive data should not be used in the ARG or ENV commands";
    INVALID_DEFAULT_ARG_IN_FROM: "InvalidDefaultArgInFrom", "invalid-default-arg-in-from",
        "Default value for global ARG results in an empty or invalid base image name";
    FROM_PLATFORM_FLAG_CONST_DISALLOWED: "FromPlatformFlagConstDisallowed", "from-platform-flag-const-disallowed",
        "FROM --platform flag should not use a constant value";
    EXPOSE_PROTO_CASING: "ExposeProtoCasing", "expose-proto-casing",
        "Protocol in EXPOSE instruction should be lowercase";
    EXPOSE_INVALID_FORMAT: "ExposeInvalidFormat", "expose-invalid-format",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release";
}

// The texts of findings, one function per rule that has parameters.

pub fn stage_name_casing(name: &str) -> String {
    format!("Stage name '{name}' should be lowercase")
}

pub fn from_as_casing(from: &str, as_word: &str) -> String {
    format!("'{as_word}' and '{from}' keywords' casing do not match")
}

pub const EMPTY_CONTINUATION: &str = "Empty continuation line";

pub fn consistent_instruction_casing(keyword: &str, casing: &str) -> String {
    format!("Command '{keyword}' should match the case of the command majority ({casing})")
}

pub fn json_args_recommended(instruction: &str) -> String {
    format!(
        "JSON arguments recommended for {instruction} to prevent unintended behavior related to OS signals"
    )
}

pub const MAINTAINER: &str = "Maintainer instruction is deprecated in favor of using label";

pub fn undefined_arg_in_from(arg: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("FROM argument '{arg}' is not declared (did you mean {s}?)"),
        None => format!("FROM argument '{arg}' is not declared"),
    }
}

pub fn workdir_relative_path(path: &str) -> String {
    format!(
        "Relative workdir {} can have unexpected results if the base image changes",
        go_quote(path)
    )
}

pub fn undefined_var(var: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("Usage of undefined variable '${var}' (did you mean ${s}?)"),
        None => format!("Usage of undefined variable '${var}'"),
    }
}

pub fn multiple_instructions(instruction: &str) -> String {
    format!(
        "Multiple {instruction} instructions should not be used in the same stage because only the last one will be used"
    )
}

pub fn legacy_key_value(instruction: &str) -> String {
    format!(
        "\"{instruction} key=value\" should be used instead of legacy \"{instruction} key value\" format"
    )
}

pub fn redundant_target_platform(platform: &str) -> String {
    format!(
        "Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"
    )
}

pub fn secrets_used(instruction: &str, key: &str) -> String {
    format!(
        "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
        go_quote(key)
    )
}

pub fn invalid_default_arg_in_from(base: &str) -> String {
    format!("Default value for ARG {base} results in empty or invalid base image name")
}

pub fn from_platform_const(platform: &str) -> String {
    format!(
        "FROM --platform flag should not use constant value {}",
        go_quote(platform)
    )
}

pub fn expose_proto_casing(port: &str) -> String {
    format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase")
}

pub fn expose_invalid_format(port: &str) -> String {
    format!(
        "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
    )
}

/// Go's `%q` for the texts above.
fn go_quote(s: &str) -> String {
    crate::dockerfile::node::go_quote(s)
}

/// The rule called `name`, matched exactly as BuildKit does.
pub fn by_name(name: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.name == name)
}
