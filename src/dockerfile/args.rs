//! ARG scoping as BuildKit implements it: the platform and target-stage
//! defaults every Dockerfile sees, the global ("meta") ARGs before the first
//! FROM evaluated in order against earlier ones, `--build-arg` overrides,
//! the value a stage-level `ARG` takes, the proxy variables that need no
//! declaration, and which build args nobody consumed.
//!
//! Pure: values in, values out. It expands words with the shell lexer but
//! must not import the instruction types (callers hand it names and
//! defaults), and never touches I/O, the solver, snapshots or the runner.

use std::collections::BTreeSet;

use super::error::{Error, Result};
use super::location::Range;
use super::shell::{EnvGetter, EnvList, Lex};
use crate::image::Platform;

/// Variables that may be passed with `--build-arg` without an `ARG`: the
/// runner gives them to RUN, in both cases, and they are kept out of the
/// image config and history.
pub const PROXY_ARGS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The ARGs BuildKit defines before reading the Dockerfile, in its order.
pub const DEFAULT_ARGS: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// ARGs BuildKit reads for itself: they set stage behaviour (SBOM scans)
/// but are never put in a RUN's environment.
pub const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// `--build-arg` values: a key given twice keeps its last value, as in
/// BuildKit's map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildArgs {
    values: Vec<(String, String)>,
}

impl BuildArgs {
    pub fn new(pairs: &[(String, String)]) -> Self {
        let mut values: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            values.retain(|(key, _)| key != k);
            values.push((k.clone(), v.clone()));
        }
        BuildArgs { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(k, _)| k.as_str())
    }

    /// Removes a key (used when SOURCE_DATE_EPOCH is normalised away).
    pub fn set(&mut self, key: &str, value: Option<String>) {
        self.values.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.values.push((key.to_string(), v));
        }
    }
}

/// The defaults: build and target platform pieces and the target stage's
/// name (`default` when the target stage has none). A `--build-arg` with
/// the same name replaces a default even without an `ARG`.
pub fn default_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
    overrides: &BuildArgs,
) -> EnvList {
    let target_stage = if target_stage.is_empty() {
        "default"
    } else {
        target_stage
    };
    let values = [
        build.to_string(),
        build.os.clone(),
        String::new(),
        build.architecture.clone(),
        build.variant.clone().unwrap_or_default(),
        target.to_string(),
        target.os.clone(),
        String::new(),
        target.architecture.clone(),
        target.variant.clone().unwrap_or_default(),
        target_stage.to_string(),
    ];
    let mut env = EnvList::new();
    for (key, value) in DEFAULT_ARGS.iter().zip(values) {
        let value = overrides.get(key).map(str::to_string).unwrap_or(value);
        env.set(*key, value);
    }
    env
}

/// One name of a global `ARG` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArg {
    pub key: String,
    pub default: Option<String>,
    /// The ARG instruction's lines.
    pub location: Range,
}

/// A global ARG after evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArgValue {
    pub key: String,
    /// `None` for `ARG X` with neither default nor build arg.
    pub value: Option<String>,
    pub location: Range,
}

/// Evaluates the global ARGs in order: a build arg wins; otherwise the
/// default is expanded against the defaults and the global ARGs before it
/// (so `${X:?msg}` fails here, at the ARG's line). An ARG with no value
/// adds nothing. Returns the environment FROM lines and stage ARGs see,
/// and each ARG's outcome.
pub fn eval_meta_args(
    defaults: EnvList,
    lex: &Lex,
    args: &[MetaArg],
    build_args: &BuildArgs,
) -> Result<(EnvList, Vec<MetaArgValue>)> {
    let mut env = defaults;
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let value = match (build_args.get(&arg.key), &arg.default) {
            (Some(v), _) => Some(v.to_string()),
            (None, Some(default)) => Some(
                lex.process_word(default, &env)
                    .map_err(|e| Error::new(e, arg.location))?,
            ),
            (None, None) => None,
        };
        if let Some(v) = &value {
            env.set(arg.key.clone(), v.clone());
        }
        out.push(MetaArgValue {
            key: arg.key.clone(),
            value,
            location: arg.location,
        });
    }
    Ok((env, out))
}

/// Where a stage-level ARG's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgSource {
    /// `--build-arg`.
    BuildArg,
    /// The default written after `=`, expanded.
    Default,
    /// No default and no build arg: the global value (a global ARG or a
    /// platform default) of the same name.
    Global,
    /// Declared only: the ARG has no value.
    Unset,
}

/// The value `ARG key[=default]` takes inside a stage: a build arg first,
/// then the default expanded against the stage's environment, then the
/// global value. Expansion errors surface only when the default is used
/// (a build arg hides a default's `${X:?}`), as in BuildKit.
pub fn stage_arg_value(
    key: &str,
    default: Option<&str>,
    build_args: &BuildArgs,
    globals: &EnvList,
    stage_env: &dyn EnvGetter,
    lex: &Lex,
) -> std::result::Result<(Option<String>, ArgSource), super::shell::ShellError> {
    if let Some(v) = build_args.get(key) {
        return Ok((Some(v.to_string()), ArgSource::BuildArg));
    }
    match default {
        Some(default) => Ok((
            Some(lex.process_word(default, stage_env)?),
            ArgSource::Default,
        )),
        None => match globals.get(key) {
            Some(v) => Ok((Some(v.to_string()), ArgSource::Global)),
            None => Ok((None, ArgSource::Unset)),
        },
    }
}

/// Proxy settings taken from build args, matched case-insensitively. When
/// both cases are given, the one sorting last (lower case) wins, as keys
/// are visited in sorted order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub ftp_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub all_proxy: Option<String>,
}

impl ProxyEnv {
    /// `None` when no proxy build arg was given.
    pub fn from_build_args(build_args: &BuildArgs) -> Option<ProxyEnv> {
        let mut keys: Vec<&str> = build_args.keys().collect();
        keys.sort_unstable();
        let mut proxy = ProxyEnv::default();
        let mut any = false;
        for key in keys {
            let slot = match key.to_ascii_uppercase().as_str() {
                "HTTP_PROXY" => &mut proxy.http_proxy,
                "HTTPS_PROXY" => &mut proxy.https_proxy,
                "FTP_PROXY" => &mut proxy.ftp_proxy,
                "NO_PROXY" => &mut proxy.no_proxy,
                "ALL_PROXY" => &mut proxy.all_proxy,
                _ => continue,
            };
            *slot = build_args.get(key).map(str::to_string);
            any = true;
        }
        any.then_some(proxy)
    }

    /// The variables a RUN gets: each non-empty setting in upper and lower
    /// case.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in PROXY_ARGS.iter().zip([
            &self.http_proxy,
            &self.https_proxy,
            &self.ftp_proxy,
            &self.no_proxy,
            &self.all_proxy,
        ]) {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                out.push((name.to_string(), v.to_string()));
                out.push((name.to_lowercase(), v.to_string()));
            }
        }
        out
    }
}

/// Whether a build arg is consumed without any `ARG` naming it: proxies,
/// the platform/stage defaults it overrides, and BuildKit's own settings.
pub fn is_builtin_arg(key: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(key))
        || DEFAULT_ARGS.contains(&key)
        || key.starts_with("BUILDKIT_")
        || key == "SOURCE_DATE_EPOCH"
}

/// The warning for build args no built stage declared (Docker's wording),
/// or `None` if every one was consumed.
pub fn unused_build_args_warning(
    build_args: &BuildArgs,
    declared: &BTreeSet<String>,
) -> Option<String> {
    let unused: BTreeSet<&str> = build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !is_builtin_arg(k))
        .collect();
    if unused.is_empty() {
        return None;
    }
    let list: Vec<&str> = unused.into_iter().collect();
    Some(format!(
        "One or more build-args [{}] were not consumed",
        list.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ba(pairs: &[(&str, &str)]) -> BuildArgs {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BuildArgs::new(&owned)
    }

    fn meta(key: &str, default: Option<&str>) -> MetaArg {
        MetaArg {
            key: key.into(),
            default: default.map(str::to_string),
            location: Range::lines(1, 1),
        }
    }

    fn get(env: &EnvList, key: &str) -> Option<String> {
        env.get(key).map(str::to_string)
    }

    #[test]
    fn defaults_describe_platforms_and_target() {
        let build: Platform = "linux/amd64".parse().unwrap();
        let target: Platform = "linux/arm/v7".parse().unwrap();
        let env = default_args(&build, &target, "", &ba(&[("TARGETOS", "freebsd")]));
        let want = [
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDOS", "linux"),
            ("BUILDARCH", "amd64"),
            ("BUILDVARIANT", ""),
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETOS", "freebsd"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
            ("TARGETSTAGE", "default"),
        ];
        for (k, v) in want {
            assert_eq!(get(&env, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(env.keys(), DEFAULT_ARGS);
    }

    #[test]
    fn meta_args_table() {
        // (meta ARGs, build args, expected values; None = not set)
        type Case<'a> = (
            &'a [(&'a str, Option<&'a str>)],
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, Option<&'a str>)],
        );
        let cases: &[Case] = &[
            // testGlobalArg: build arg replaces the default.
            (
                &[("tag", Some("nosuchtag"))],
                &[("tag", "latest")],
                &[("tag", Some("latest"))],
            ),
            // testMultiArgs / testQuotedMetaArgs: later defaults see earlier ones.
            (
                &[
                    ("a1", Some("foo bar")),
                    ("a2", Some("box")),
                    ("a3", Some("$a2-foo")),
                ],
                &[],
                &[("a1", Some("foo bar")), ("a3", Some("box-foo"))],
            ),
            // An override feeds later expansions.
            (
                &[("a2", Some("box")), ("a3", Some("$a2-foo"))],
                &[("a2", "x")],
                &[("a3", Some("x-foo"))],
            ),
            // testDefaultEnvWithArgs: modifiers work in meta defaults.
            (
                &[("image", Some("idlebox"))],
                &[],
                &[("image", Some("idlebox"))],
            ),
            // No default, no build arg: nothing is set.
            (&[("X", None)], &[], &[("X", None)]),
            (&[("X", None)], &[("X", "")], &[("X", Some(""))]),
            // Platform defaults are visible to meta defaults.
            (
                &[("P", Some("${TARGETOS}-x"))],
                &[],
                &[("P", Some("linux-x"))],
            ),
            // A build arg for an undeclared name sets nothing.
            (&[], &[("Y", "1")], &[("Y", None)]),
            // Redeclaring refers to the earlier value.
            (
                &[("A", Some("1")), ("A", Some("${A}2"))],
                &[],
                &[("A", Some("12"))],
            ),
        ];
        let host = Platform::host();
        let linux: Platform = "linux/amd64".parse().unwrap();
        for (metas, build, want) in cases {
            let build = ba(build);
            let defaults = default_args(&host, &linux, "", &build);
            let metas: Vec<MetaArg> = metas.iter().map(|(k, d)| meta(k, *d)).collect();
            let (env, _) = eval_meta_args(defaults, &Lex::new('\\'), &metas, &build).unwrap();
            for (k, v) in *want {
                assert_eq!(get(&env, k).as_deref(), *v, "{metas:?} {k}");
            }
        }
    }

    #[test]
    fn meta_arg_required_value_fails_at_its_line() {
        // testGlobalArgErrors
        let metas = [MetaArg {
            key: "FOO".into(),
            default: Some(r#"${FOO:?"custom error"}"#.into()),
            location: Range::lines(2, 2),
        }];
        let lex = Lex::new('\\');
        let err = eval_meta_args(EnvList::new(), &lex, &metas, &BuildArgs::default()).unwrap_err();
        assert!(err.to_string().contains("FOO: custom error"), "{err}");
        assert_eq!(err.line(), Some(2));
        let ok = eval_meta_args(EnvList::new(), &lex, &metas, &ba(&[("FOO", "bar")]));
        assert_eq!(get(&ok.unwrap().0, "FOO").as_deref(), Some("bar"));
    }

    #[test]
    fn stage_arg_table() {
        let lex = Lex::new('\\');
        let globals: EnvList = [("G", "global"), ("TARGETSTAGE", "foo")]
            .into_iter()
            .collect();
        let stage_env: EnvList = [("FOO", "123")].into_iter().collect();
        // (key, default, build args, value, source)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            ArgSource,
        );
        let cases: &[Case] = &[
            ("A", None, &[], None, ArgSource::Unset),
            ("A", Some(""), &[], Some(""), ArgSource::Default),
            (
                "A",
                Some("d"),
                &[("A", "b")],
                Some("b"),
                ArgSource::BuildArg,
            ),
            ("A", None, &[("A", "")], Some(""), ArgSource::BuildArg),
            ("G", None, &[], Some("global"), ArgSource::Global),
            ("G", Some("own"), &[], Some("own"), ArgSource::Default),
            ("TARGETSTAGE", None, &[], Some("foo"), ArgSource::Global),
            (
                "B",
                Some("${FOO}-x"),
                &[],
                Some("123-x"),
                ArgSource::Default,
            ),
            // testArgDefaultExpansion: a build arg hides the failing default.
            (
                "BAR",
                Some(r#"${MISSING:?"foo missing"}"#),
                &[("BAR", "1")],
                Some("1"),
                ArgSource::BuildArg,
            ),
        ];
        for (key, default, build, value, source) in cases {
            let got =
                stage_arg_value(key, *default, &ba(build), &globals, &stage_env, &lex).unwrap();
            assert_eq!(
                got,
                (value.map(str::to_string), source.clone()),
                "{key} {default:?}"
            );
        }
        let err = stage_arg_value(
            "BAR",
            Some(r#"${MISSING:?"foo missing"}"#),
            &BuildArgs::default(),
            &globals,
            &stage_env,
            &lex,
        )
        .unwrap_err();
        assert!(err.to_string().contains("MISSING: foo missing"), "{err}");
    }

    #[test]
    fn proxy_env_is_case_insensitive_and_deterministic() {
        let p = ProxyEnv::from_build_args(&ba(&[
            ("ALL_PROXY", "all-upper"),
            ("all_proxy", "all-lower"),
            ("HTTP_PROXY", "http-upper"),
            ("http_proxy", "http-lower"),
            ("NO_PROXY", "no-proxy"),
        ]))
        .unwrap();
        assert_eq!(p.http_proxy.as_deref(), Some("http-lower"));
        assert_eq!(p.all_proxy.as_deref(), Some("all-lower"));
        assert_eq!(p.no_proxy.as_deref(), Some("no-proxy"));
        assert_eq!(p.https_proxy, None);
        assert_eq!(
            p.to_env()[..2],
            [
                ("HTTP_PROXY".to_string(), "http-lower".to_string()),
                ("http_proxy".to_string(), "http-lower".to_string())
            ]
        );
        assert_eq!(ProxyEnv::from_build_args(&ba(&[("FOO", "bar")])), None);
    }

    #[test]
    fn unused_build_args() {
        let declared: BTreeSet<String> = ["A".to_string()].into();
        let args = ba(&[
            ("A", "1"),
            ("Z", "1"),
            ("B", "2"),
            ("http_proxy", "p"),
            ("TARGETARCH", "arm64"),
            ("BUILDKIT_INLINE_CACHE", "1"),
        ]);
        assert_eq!(
            unused_build_args_warning(&args, &declared).as_deref(),
            Some("One or more build-args [B Z] were not consumed")
        );
        assert_eq!(
            unused_build_args_warning(&ba(&[("A", "1")]), &declared),
            None
        );
    }

    #[test]
    fn later_build_arg_wins() {
        let args = ba(&[("A", "1"), ("A", "2")]);
        assert_eq!(args.get("A"), Some("2"));
        assert_eq!(args.keys().count(), 1);
    }
}
