//! What the user asked of the checks: `# check=skip=A,B;error=true` at
//! the top of the Dockerfile, the `BUILDKIT_DOCKERFILE_CHECK` build arg
//! (which replaces the directive), and `# check=` comments right above an
//! instruction (which add to the skip list for that instruction only).
//!
//! The option grammar is BuildKit's: up to three `;`-separated `key=value`
//! parts, keys `skip` (a comma list or `all`), `error` (a Go boolean) and
//! `experimental` (accepted; bk has no experimental rules). Unknown rule
//! names in `skip` are ignored.

use std::collections::BTreeSet;

use thiserror::Error;

use super::super::directives::match_directive;
use crate::dockerfile::instructions::go::parse_bool;

/// The build arg that overrides the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid check option {0:?}")]
    InvalidOption(String),
    #[error("failed to parse check option {option:?}: strconv.ParseBool: parsing {value:?}: invalid syntax")]
    InvalidBool { option: String, value: String },
    /// The directive's value did not parse.
    #[error("failed to parse check options: {0}")]
    Directive(#[source] Box<ConfigError>),
    /// The build arg's value did not parse.
    #[error("failed to parse build-arg:{CHECK_BUILD_ARG}: {0}")]
    BuildArg(#[source] Box<ConfigError>),
}

/// Which rules run and what a finding means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    /// `error=true`: a build with findings fails.
    pub error: bool,
}

impl CheckConfig {
    /// Parses an option string such as `skip=A,B;error=true`.
    pub fn parse(text: &str) -> Result<CheckConfig, ConfigError> {
        let text = text.trim();
        let mut config = CheckConfig::default();
        if text.is_empty() {
            return Ok(config);
        }
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConfigError::InvalidOption(part.to_string()));
            };
            let value = value.trim();
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip = value.split(',').map(|r| r.trim().to_string()).collect(),
                // No rule of bk's is experimental: nothing to enable.
                "experimental" => {}
                "error" => {
                    config.error = parse_bool(value).ok_or_else(|| ConfigError::InvalidBool {
                        option: part.to_string(),
                        value: value.to_string(),
                    })?;
                }
                other => return Err(ConfigError::InvalidOption(other.to_string())),
            }
        }
        Ok(config)
    }

    /// The configuration of a build: the build arg when given, else the
    /// directive, else everything on.
    pub fn for_build(
        directive: Option<&str>,
        build_args: &[(String, String)],
    ) -> Result<CheckConfig, ConfigError> {
        let arg = build_args
            .iter()
            .rev()
            .find(|(k, _)| k == CHECK_BUILD_ARG)
            .map(|(_, v)| v);
        match (arg, directive) {
            (Some(v), _) => CheckConfig::parse(v).map_err(|e| ConfigError::BuildArg(Box::new(e))),
            (None, Some(d)) => {
                CheckConfig::parse(d).map_err(|e| ConfigError::Directive(Box::new(e)))
            }
            (None, None) => Ok(CheckConfig::default()),
        }
    }

    /// This configuration with the first `check=` among an instruction's
    /// comments merged in (its skips added; `error` stays the build's).
    /// A comment that does not parse changes nothing.
    pub fn with_comments(&self, comments: &[String]) -> CheckConfig {
        let found = comments
            .iter()
            .filter_map(|c| match_directive(c.trim_start()))
            .find(|(key, _)| key.eq_ignore_ascii_case("check"));
        let Some((_, value)) = found else {
            return self.clone();
        };
        let value = value.split(' ').next().unwrap_or_default();
        let Ok(other) = CheckConfig::parse(value) else {
            return self.clone();
        };
        let mut merged = self.clone();
        merged.skip_all |= other.skip_all;
        merged.skip.extend(other.skip);
        merged
    }

    /// Whether findings of `rule` are reported.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.contains(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_like_buildkit() {
        let c = CheckConfig::parse(" skip = A, B ;error=true").unwrap();
        assert_eq!(c.skip, BTreeSet::from(["A".into(), "B".into()]));
        assert!(c.error && !c.skip_all);
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(!CheckConfig::parse("error=0").unwrap().error);
        assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
        assert!(CheckConfig::parse("experimental=all").is_ok());
        assert_eq!(
            CheckConfig::parse("skip").unwrap_err().to_string(),
            "invalid check option \"skip\""
        );
        assert_eq!(
            CheckConfig::parse("foo=bar").unwrap_err().to_string(),
            "invalid check option \"foo\""
        );
        assert!(CheckConfig::parse("error=maybe").is_err());
        // Unknown rule names are kept but match nothing.
        assert!(CheckConfig::parse("skip=NoSuchRule")
            .unwrap()
            .enabled("StageNameCasing"));
    }

    #[test]
    fn the_build_arg_replaces_the_directive() {
        let args = vec![(CHECK_BUILD_ARG.to_string(), "skip=A".to_string())];
        let c = CheckConfig::for_build(Some("error=true"), &args).unwrap();
        assert!(!c.error && !c.enabled("A"));
        let c = CheckConfig::for_build(Some("error=true"), &[]).unwrap();
        assert!(c.error);
        let err = CheckConfig::for_build(Some("bad"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to parse check options: invalid check option \"bad\""
        );
        let args = vec![(CHECK_BUILD_ARG.to_string(), "x=y".to_string())];
        assert_eq!(
            CheckConfig::for_build(None, &args).unwrap_err().to_string(),
            "failed to parse build-arg:BUILDKIT_DOCKERFILE_CHECK: invalid check option \"x\""
        );
    }

    #[test]
    fn comments_add_skips_for_one_instruction() {
        let base = CheckConfig::parse("skip=A;error=true").unwrap();
        let c = base.with_comments(&["a note".into(), "check=skip=B other".into()]);
        assert!(!c.enabled("A") && !c.enabled("B") && c.error);
        assert!(base.with_comments(&["check=skip=all".into()]).skip_all);
        assert_eq!(base.with_comments(&["check=nonsense".into()]), base);
    }
}
