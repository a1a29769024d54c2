//! Dockerfile checks (BuildKit's linter): rules that flag legal but
//! doubtful Dockerfiles, configured by the `# check=` directive or the
//! `BUILDKIT_DOCKERFILE_CHECK` build arg.
//!
//! [`check`] takes the parsed file, the planner's options and, when the
//! build was planned, the [`Plan`] (for the base images' configs and the
//! stages the build evaluates), and returns a [`Report`]: the findings in
//! file order, each once, and whether they must fail the build
//! (`error=true`). The rule table is in [`rules`], the option grammar in
//! [`config`], when each rule fires in `checks.rs`.
//!
//! Duplicate and reserved stage names are errors in bk (the planner
//! refuses them), so they are not findings here. Like the rest of the
//! frontend it reads no files and contacts nothing.

mod checks;
pub mod config;
pub mod rules;
#[cfg(test)]
mod tests;

pub use config::{CheckConfig, ConfigError, CHECK_BUILD_ARG};
pub use rules::Rule;

use super::location::Range;
use super::node::Ast;
use super::stages::{Plan, PlanOptions};
use crate::image::{Image, Platform};

/// One finding of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// The rule's text for this place, e.g. `Stage name 'Build' should be
    /// lowercase`.
    pub message: String,
    pub location: Range,
}

/// The outcome of checking a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// `error=true` was asked for.
    pub error_on_warning: bool,
}

impl Report {
    /// BuildKit's error for a build that must fail on its findings:
    /// `lint violation found for rules: A, B` (rules in order of first
    /// finding).
    pub fn violation(&self) -> Option<String> {
        if !self.error_on_warning || self.findings.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !names.contains(&f.rule.name) {
                names.push(f.rule.name);
            }
        }
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// What the checks need to know of the build.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    pub build_args: &'a [(String, String)],
    pub target: Option<&'a str>,
    pub build_platform: &'a Platform,
    pub target_platform: Option<&'a Platform>,
    /// Per stage (file order): the base image's config, when resolved.
    pub base_images: Option<&'a [Option<Image>]>,
    /// Per stage: whether the build evaluates it (`None`: all).
    pub needed: Option<&'a [bool]>,
    /// Check every stage, as a static check without `--target` does.
    pub all_stages: bool,
}

/// Checks `ast`. The configuration comes from `BUILDKIT_DOCKERFILE_CHECK`
/// in the build args or else the `# check=` directive; a malformed one is
/// an error. `plan` (when planning succeeded) gives the evaluated stages
/// and, for a build, the base images' configs. A `static_check` resolved
/// no base image (their configs are placeholders) and, without a target,
/// covers every stage, as `build --check` does.
pub fn check(
    ast: &Ast,
    opts: &PlanOptions,
    plan: Option<&Plan>,
    static_check: bool,
) -> Result<Report, ConfigError> {
    let directive = ast.directives.check.as_ref().map(|(v, _)| v.as_str());
    let config = CheckConfig::for_build(directive, &opts.build_args)?;
    let base_images: Option<Vec<Option<Image>>> = plan
        .filter(|_| !static_check)
        .map(|p| p.stages.iter().map(|s| s.base_image.clone()).collect());
    let needed: Option<Vec<bool>> = plan.map(|p| p.stages.iter().map(|s| s.needed).collect());
    let input = LintInput {
        build_args: &opts.build_args,
        target: opts.target.as_deref(),
        build_platform: &opts.build_platform,
        target_platform: opts.target_platform.as_ref(),
        base_images: base_images.as_deref(),
        needed: needed.as_deref(),
        all_stages: (static_check && opts.target.is_none()) || plan.is_none(),
    };
    Ok(check_with(ast, &input, &config))
}

/// Checks `ast` with an explicit configuration.
pub fn check_with(ast: &Ast, input: &LintInput<'_>, config: &CheckConfig) -> Report {
    let mut findings = checks::run(ast, input, config);
    // Each once, in file order (stable: same line keeps finding order).
    let mut seen = Vec::new();
    findings.retain(|f| {
        let key = (f.rule.name, f.message.clone(), f.location);
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    findings.sort_by_key(|f| f.location.start.line);
    Report {
        findings,
        error_on_warning: config.error,
    }
}
