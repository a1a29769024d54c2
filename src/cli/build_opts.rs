//! Typed build options: each `bk build` flag value parsed and validated
//! once, so that nothing below the CLI ever sees a raw flag string.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use super::csv::{self, CsvError};
use crate::session;

/// Why a flag value was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("missing type in {0:?} (expected type=local|tar|oci|docker|image|registry|cacheonly)")]
    OutputMissingType(String),
    #[error("unknown output type {0:?} (expected local, tar, oci, docker, image, registry or cacheonly)")]
    OutputUnknownType(String),
    #[error("output type={kind} needs dest=PATH")]
    OutputMissingDest { kind: &'static str },
    #[error("unknown attribute {key:?} for {what} type={kind}")]
    UnknownAttribute {
        what: &'static str,
        kind: String,
        key: String,
    },
    #[error("attribute {key}={value:?} must be true or false")]
    NotBool { key: String, value: String },
    #[error("compression={0:?} is not one of gzip, zstd, uncompressed")]
    Compression(String),
    #[error("compression-level={0:?} is not a whole number from 0 to 22")]
    CompressionLevel(String),
    #[error("unknown cache type {0:?} (expected registry, local or inline)")]
    CacheUnknownType(String),
    #[error("cache type={kind} needs {key}=…")]
    CacheMissing { kind: String, key: &'static str },
    #[error("cache mode={0:?} is not min or max")]
    CacheMode(String),
    #[error("invalid secret {0:?}: id=… is required")]
    SecretMissingId(String),
    #[error("invalid secret type {0:?} (expected file or env)")]
    SecretType(String),
    #[error("invalid ssh spec {0:?}: expected default|ID[=PATH[,PATH]]")]
    Ssh(String),
    #[error("invalid {what} {value:?}: expected KEY=VALUE")]
    KeyValue { what: &'static str, value: String },
    #[error("invalid network mode {0:?} (expected default, none or host)")]
    Network(String),
    #[error("invalid entitlement {0:?} (expected security.insecure or network.host)")]
    Entitlement(String),
    #[error("invalid sandbox {0:?} (expected default or none)")]
    Sandbox(String),
    #[error("invalid progress mode {0:?} (expected auto, tty, plain, rawjson or quiet)")]
    Progress(String),
    #[error("invalid tag {tag:?}: {why}")]
    Tag { tag: String, why: &'static str },
}

type Result<T> = std::result::Result<T, OptError>;

/// Where an output goes: a path, or standard output for `dest=-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Path(PathBuf),
    Stdout,
}

impl Dest {
    fn parse(value: &str) -> Dest {
        if value == "-" {
            Dest::Stdout
        } else {
            Dest::Path(PathBuf::from(value))
        }
    }
}

/// The exporter an `--output` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Local,
    Tar,
    Oci,
    Docker,
    Image,
    CacheOnly,
}

impl OutputKind {
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Local => "local",
            OutputKind::Tar => "tar",
            OutputKind::Oci => "oci",
            OutputKind::Docker => "docker",
            OutputKind::Image => "image",
            OutputKind::CacheOnly => "cacheonly",
        }
    }

    /// Attributes BuildKit's exporter of this kind understands, besides
    /// `type` and `dest` (and `annotation*`, allowed on image formats).
    fn known_attributes(self) -> &'static [&'static str] {
        const IMAGE_FORMAT: &[&str] = &[
            "name",
            "compression",
            "compression-level",
            "force-compression",
            "oci-mediatypes",
            "rewrite-timestamp",
            "buildinfo",
            "buildinfo-attrs",
        ];
        match self {
            OutputKind::Local | OutputKind::Tar => &["platform-split", "rewrite-timestamp"],
            OutputKind::Oci | OutputKind::Docker => IMAGE_FORMAT,
            OutputKind::Image => &[
                "name",
                "push",
                "push-by-digest",
                "insecure",
                "registry.insecure",
                "unpack",
                "store",
                "dangling-name-prefix",
                "name-canonical",
                "compression",
                "compression-level",
                "force-compression",
                "oci-mediatypes",
                "rewrite-timestamp",
                "buildinfo",
                "buildinfo-attrs",
            ],
            OutputKind::CacheOnly => &[],
        }
    }

    fn takes_annotations(self) -> bool {
        matches!(
            self,
            OutputKind::Oci | OutputKind::Docker | OutputKind::Image
        )
    }
}

/// One `--output` (`-o`) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputKind,
    pub dest: Option<Dest>,
    /// Remaining attributes, keys validated for the kind and values for the
    /// attributes that have a fixed form (booleans, compression).
    pub attrs: BTreeMap<String, String>,
}

const BOOL_ATTRS: &[&str] = &[
    "push",
    "push-by-digest",
    "insecure",
    "registry.insecure",
    "unpack",
    "store",
    "force-compression",
    "oci-mediatypes",
    "rewrite-timestamp",
    "platform-split",
    "name-canonical",
    "buildinfo",
];

fn check_bool(key: &str, value: &str) -> Result<()> {
    match value {
        "true" | "false" | "1" | "0" | "" => Ok(()),
        _ => Err(OptError::NotBool {
            key: key.into(),
            value: value.into(),
        }),
    }
}

fn check_compression(attrs: &BTreeMap<String, String>) -> Result<()> {
    if let Some(c) = attrs.get("compression") {
        if !matches!(c.as_str(), "gzip" | "zstd" | "uncompressed") {
            return Err(OptError::Compression(c.clone()));
        }
    }
    if let Some(level) = attrs.get("compression-level") {
        match level.parse::<u8>() {
            Ok(l) if l <= 22 => {}
            _ => return Err(OptError::CompressionLevel(level.clone())),
        }
    }
    Ok(())
}

impl FromStr for Output {
    type Err = OptError;

    fn from_str(spec: &str) -> Result<Self> {
        // buildx: a value without `=` is a local directory, `-` a tarball
        // on standard output.
        if !spec.contains('=') {
            return Ok(if spec == "-" {
                Output {
                    kind: OutputKind::Tar,
                    dest: Some(Dest::Stdout),
                    attrs: BTreeMap::new(),
                }
            } else {
                Output {
                    kind: OutputKind::Local,
                    dest: Some(Dest::Path(PathBuf::from(spec))),
                    attrs: BTreeMap::new(),
                }
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in csv::parse_pairs(spec)? {
            match key.as_str() {
                "type" => kind = Some(value),
                "dest" => dest = Some(Dest::parse(&value)),
                // `name=a,name=b` names the image twice, as `"name=a,b"`.
                "name" if attrs.contains_key("name") => {
                    if let Some(names) = attrs.get_mut("name") {
                        names.push(',');
                        names.push_str(&value);
                    }
                }
                _ => {
                    attrs.insert(key, value);
                }
            }
        }
        let kind_name = kind.ok_or_else(|| OptError::OutputMissingType(spec.to_string()))?;
        let kind = match kind_name.as_str() {
            "local" => OutputKind::Local,
            "tar" => OutputKind::Tar,
            "oci" => OutputKind::Oci,
            "docker" => OutputKind::Docker,
            "image" => OutputKind::Image,
            // `type=registry` is buildx's shorthand for a pushed image.
            "registry" => {
                attrs.insert("push".into(), "true".into());
                OutputKind::Image
            }
            "cacheonly" => OutputKind::CacheOnly,
            _ => return Err(OptError::OutputUnknownType(kind_name)),
        };
        for (key, value) in &attrs {
            // `annotation[<platform>].k` too; the exact form is checked
            // by `cli::build::annotations`.
            let annotation = ["annotation.", "annotation-", "annotation["]
                .iter()
                .any(|p| key.starts_with(p));
            if !(kind.known_attributes().contains(&key.as_str())
                || annotation && kind.takes_annotations())
            {
                return Err(OptError::UnknownAttribute {
                    what: "--output",
                    kind: kind.name().into(),
                    key: key.clone(),
                });
            }
            if BOOL_ATTRS.contains(&key.as_str()) {
                check_bool(key, value)?;
            }
        }
        check_compression(&attrs)?;
        if matches!(kind, OutputKind::Local | OutputKind::Tar) && dest.is_none() {
            return Err(OptError::OutputMissingDest { kind: kind.name() });
        }
        Ok(Output { kind, dest, attrs })
    }
}

/// Where `--cache-from` / `--cache-to` read or write build cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Registry,
    Local,
    Inline,
}

/// One `--cache-from` or `--cache-to` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub kind: CacheKind,
    pub attrs: BTreeMap<String, String>,
}

impl FromStr for CacheSpec {
    type Err = OptError;

    fn from_str(spec: &str) -> Result<Self> {
        // buildx: a bare value is a registry reference.
        if !spec.contains('=') {
            return Ok(CacheSpec {
                kind: CacheKind::Registry,
                attrs: BTreeMap::from([("ref".to_string(), spec.to_string())]),
            });
        }
        let mut attrs: BTreeMap<String, String> = csv::parse_pairs(spec)?.into_iter().collect();
        let kind_name = attrs.remove("type").unwrap_or_else(|| "registry".into());
        let (kind, known, required): (_, &[&str], Option<&'static str>) = match kind_name.as_str() {
            "registry" => (
                CacheKind::Registry,
                &[
                    "ref",
                    "mode",
                    "image-manifest",
                    "oci-mediatypes",
                    "compression",
                    "compression-level",
                    "force-compression",
                    "ignore-error",
                    "registry.insecure",
                ],
                Some("ref"),
            ),
            "local" => (
                CacheKind::Local,
                &[
                    "src",
                    "dest",
                    "digest",
                    "tag",
                    "mode",
                    "image-manifest",
                    "oci-mediatypes",
                    "compression",
                    "compression-level",
                    "force-compression",
                    "ignore-error",
                ],
                None,
            ),
            "inline" => (CacheKind::Inline, &[], None),
            _ => return Err(OptError::CacheUnknownType(kind_name)),
        };
        for key in attrs.keys() {
            if !known.contains(&key.as_str()) {
                return Err(OptError::UnknownAttribute {
                    what: "cache",
                    kind: kind_name.clone(),
                    key: key.clone(),
                });
            }
        }
        if let Some(req) = required {
            if attrs.get(req).is_none_or(|v| v.is_empty()) {
                return Err(OptError::CacheMissing {
                    kind: kind_name,
                    key: req,
                });
            }
        }
        if kind == CacheKind::Local && !attrs.contains_key("src") && !attrs.contains_key("dest") {
            return Err(OptError::CacheMissing {
                kind: kind_name,
                key: "src or dest",
            });
        }
        if let Some(mode) = attrs.get("mode") {
            if !matches!(mode.as_str(), "min" | "max") {
                return Err(OptError::CacheMode(mode.clone()));
            }
        }
        for key in [
            "ignore-error",
            "image-manifest",
            "oci-mediatypes",
            "force-compression",
        ] {
            if let Some(v) = attrs.get(key) {
                check_bool(key, v)?;
            }
        }
        check_compression(&attrs)?;
        Ok(CacheSpec { kind, attrs })
    }
}

/// Where a `--secret` takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// Neither `src=` nor `env=`: the environment variable named like the
    /// id when it is set, else the file named like the id (BuildKit's
    /// secret store decides when the build starts).
    EnvOrFile,
}

/// One `--secret id=…,src=…|env=…` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub source: SecretSource,
}

impl FromStr for Secret {
    type Err = OptError;

    /// buildx's parsing: `type=` only matters for `type=env`, where `src=`
    /// names the variable; `env=` wins over `src=`.
    fn from_str(spec: &str) -> Result<Self> {
        let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
        for (key, value) in csv::parse_pairs(spec)? {
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value),
                "type" => kind = Some(value),
                "src" | "source" => src = Some(value),
                "env" => env = Some(value),
                _ => {
                    return Err(OptError::UnknownAttribute {
                        what: "--secret",
                        kind: kind.clone().unwrap_or_else(|| "file".into()),
                        key,
                    })
                }
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| OptError::SecretMissingId(spec.into()))?;
        match kind.as_deref() {
            None | Some("file") => {}
            Some("env") => {
                if env.as_deref().unwrap_or("").is_empty() {
                    env = src.take();
                }
            }
            Some(other) => return Err(OptError::SecretType(other.into())),
        }
        let env = env.filter(|e| !e.is_empty());
        let src = src.filter(|s| !s.is_empty());
        let source = match (env, src) {
            (Some(env), _) => SecretSource::Env(env),
            (None, Some(src)) => SecretSource::File(PathBuf::from(src)),
            (None, None) => SecretSource::EnvOrFile,
        };
        Ok(Secret { id, source })
    }
}

/// The build's session from `--secret` and `--ssh`: secret files are
/// checked (exist, not too big) and agent sources classified now, so a
/// typo fails the build before anything runs. `env` reads this
/// process's environment (`$SSH_AUTH_SOCK`, ids without a source).
pub fn session(
    secrets: &[Secret],
    ssh: &[SshSpec],
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> std::result::Result<session::Session, session::SessionError> {
    let sources = secrets.iter().map(|s| {
        let source = match &s.source {
            SecretSource::File(path) => session::SecretSource::File(path.clone()),
            SecretSource::Env(var) => session::SecretSource::Env(var.clone()),
            SecretSource::EnvOrFile if env(&s.id).is_some() => {
                session::SecretSource::Env(s.id.clone())
            }
            SecretSource::EnvOrFile => session::SecretSource::File(PathBuf::from(&s.id)),
        };
        (s.id.clone(), source)
    });
    let secrets = session::Secrets::new(sources)?;
    let agents = session::SshAgents::new(
        ssh.iter().map(|s| (s.id.clone(), s.paths.clone())),
        env("SSH_AUTH_SOCK").map(PathBuf::from),
    )?;
    Ok(session::Session {
        secrets,
        ssh: agents,
    })
}

/// One `--ssh default|ID[=PATH[,PATH…]]` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub id: String,
    /// Agent socket or key files; empty means `$SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

impl FromStr for SshSpec {
    type Err = OptError;

    fn from_str(spec: &str) -> Result<Self> {
        let fields = csv::split_fields(spec)?;
        let (first, rest) = fields
            .split_first()
            .ok_or_else(|| OptError::Ssh(spec.into()))?;
        let (id, first_path) = match first.split_once('=') {
            Some((id, path)) => (id, Some(path)),
            None => (first.as_str(), None),
        };
        if id.is_empty() || first_path == Some("") || rest.iter().any(String::is_empty) {
            return Err(OptError::Ssh(spec.into()));
        }
        let paths = first_path
            .into_iter()
            .chain(rest.iter().map(String::as_str))
            .map(PathBuf::from)
            .collect();
        Ok(SshSpec {
            id: id.to_string(),
            paths,
        })
    }
}

/// Splits `KEY=VALUE`, with a named error for the flag it came from.
pub fn key_value(what: &'static str, value: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(OptError::KeyValue {
            what,
            value: value.into(),
        }),
    }
}

/// `--build-arg KEY=VALUE`, or `KEY` alone to take the value from the
/// environment (dropped when the variable is unset), as buildx does.
pub fn build_arg(
    value: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>> {
    if value.contains('=') {
        return key_value("build argument", value).map(Some);
    }
    if value.trim().is_empty() {
        return Err(OptError::KeyValue {
            what: "build argument",
            value: value.into(),
        });
    }
    Ok(env(value).map(|v| (value.to_string(), v)))
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

impl FromStr for Network {
    type Err = OptError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" | "" => Ok(Network::Default),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => Err(OptError::Network(s.into())),
        }
    }
}

/// One `--allow` entitlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entitlement {
    SecurityInsecure,
    NetworkHost,
}

impl FromStr for Entitlement {
    type Err = OptError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            "network.host" => Ok(Entitlement::NetworkHost),
            _ => Err(OptError::Entitlement(s.into())),
        }
    }
}

/// `--sandbox`: how RUN steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sandbox {
    /// Namespaces (a user namespace when not root).
    #[default]
    Default,
    /// None at all: `chroot` as root, straight on the host otherwise.
    None,
}

impl FromStr for Sandbox {
    type Err = OptError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" | "" => Ok(Sandbox::Default),
            "none" => Ok(Sandbox::None),
            _ => Err(OptError::Sandbox(s.into())),
        }
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    #[default]
    Auto,
    Tty,
    Plain,
    RawJson,
    Quiet,
}

impl FromStr for Progress {
    type Err = OptError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Progress::Auto),
            "tty" => Ok(Progress::Tty),
            "plain" => Ok(Progress::Plain),
            "rawjson" => Ok(Progress::RawJson),
            "quiet" => Ok(Progress::Quiet),
            _ => Err(OptError::Progress(s.into())),
        }
    }
}

/// The flag names the renderer the progress module draws with.
impl From<Progress> for crate::progress::Mode {
    fn from(p: Progress) -> Self {
        use crate::progress::Mode;
        match p {
            Progress::Auto => Mode::Auto,
            Progress::Tty => Mode::Tty,
            Progress::Plain => Mode::Plain,
            Progress::RawJson => Mode::RawJson,
            Progress::Quiet => Mode::Quiet,
        }
    }
}

/// Checks a `-t` image name against the reference grammar's outline
/// (`[host[:port]/]path[:tag][@digest]`, lower-case path components). The
/// full grammar is applied where images are pushed.
pub fn tag(value: &str) -> Result<String> {
    let bad = |why| OptError::Tag {
        tag: value.into(),
        why,
    };
    if value.is_empty() {
        return Err(bad("empty name"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace"));
    }
    let name = value.split('@').next().unwrap_or(value);
    let (path, _tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    // The first component may be a registry host, which may have
    // upper-case letters and a port; the rest of the path may not.
    let mut parts = path.split('/');
    let first = parts.next().unwrap_or_default();
    let host_like =
        path.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo_parts: Vec<&str> = if host_like {
        parts.collect()
    } else {
        path.split('/').collect()
    };
    if repo_parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty path component"));
    }
    let valid = |p: &&str| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    };
    if !repo_parts.iter().all(valid) {
        return Err(bad(
            "repository name must be lowercase letters, digits and . _ -",
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> Result<Output> {
        s.parse()
    }

    #[test]
    fn output_local_dest() {
        let o = out("type=local,dest=out").unwrap();
        assert_eq!(o.kind, OutputKind::Local);
        assert_eq!(o.dest, Some(Dest::Path("out".into())));
    }

    #[test]
    fn output_shorthands() {
        assert_eq!(out("out").unwrap().kind, OutputKind::Local);
        let stdout = out("-").unwrap();
        assert_eq!(
            (stdout.kind, stdout.dest),
            (OutputKind::Tar, Some(Dest::Stdout))
        );
        let reg = out("type=registry,name=127.0.0.1:5000/a").unwrap();
        assert_eq!(reg.kind, OutputKind::Image);
        assert_eq!(reg.attrs.get("push").map(String::as_str), Some("true"));
    }

    #[test]
    fn output_names_repeat_or_list() {
        let twice = out("type=image,name=r/a,name=r/b:2,push=true").unwrap();
        assert_eq!(twice.attrs["name"], "r/a,r/b:2");
        let listed = out("type=image,\"name=r/a,r/b:2\",push=true").unwrap();
        assert_eq!(listed.attrs, twice.attrs);
    }

    #[test]
    fn output_rejects_bad_attrs() {
        assert_eq!(
            out("type=local"),
            Err(OptError::OutputMissingDest { kind: "local" })
        );
        assert_eq!(
            out("dest=x"),
            Err(OptError::OutputMissingType("dest=x".into()))
        );
        assert!(matches!(
            out("type=zip,dest=x"),
            Err(OptError::OutputUnknownType(_))
        ));
        assert!(matches!(
            out("type=local,dest=x,push=true"),
            Err(OptError::UnknownAttribute { .. })
        ));
        assert!(matches!(
            out("type=image,name=a,push=yes"),
            Err(OptError::NotBool { .. })
        ));
        assert!(matches!(
            out("type=oci,dest=a.tar,compression=lz4"),
            Err(OptError::Compression(_))
        ));
        assert!(matches!(
            out("type=oci,dest=a.tar,compression=zstd,compression-level=99"),
            Err(OptError::CompressionLevel(_))
        ));
        assert!(out("type=oci,dest=a.tar,annotation.org.x=y").is_ok());
        assert!(out("type=oci,dest=a.tar,annotation[linux/arm64].org.x=y").is_ok());
        assert!(out("type=local,dest=a,annotation.org.x=y").is_err());
    }

    #[test]
    fn cache_specs() {
        let bare: CacheSpec = "127.0.0.1:5000/cache".parse().unwrap();
        assert_eq!(bare.kind, CacheKind::Registry);
        assert_eq!(bare.attrs["ref"], "127.0.0.1:5000/cache");
        let local: CacheSpec = "type=local,dest=/tmp/c,mode=max".parse().unwrap();
        assert_eq!(local.kind, CacheKind::Local);
        assert!("type=local".parse::<CacheSpec>().is_err());
        assert!("type=registry,ref=a,mode=all".parse::<CacheSpec>().is_err());
        assert!("type=gha".parse::<CacheSpec>().is_err());
        assert_eq!(
            "type=inline".parse::<CacheSpec>().unwrap().kind,
            CacheKind::Inline
        );
    }

    #[test]
    fn secrets() {
        let s: Secret = "id=npm,src=/root/.npmrc".parse().unwrap();
        assert_eq!(s.source, SecretSource::File("/root/.npmrc".into()));
        let s: Secret = "id=aws,env=AWS_KEY".parse().unwrap();
        assert_eq!(s.source, SecretSource::Env("AWS_KEY".into()));
        let s: Secret = "id=TOKEN".parse().unwrap();
        assert_eq!(s.source, SecretSource::EnvOrFile);
        let s: Secret = "type=env,id=a,src=VAR".parse().unwrap();
        assert_eq!(s.source, SecretSource::Env("VAR".into()));
        let s: Secret = "type=file,id=a,src=/f,env=E".parse().unwrap();
        assert_eq!(s.source, SecretSource::Env("E".into()));
        let s: Secret = "ID=a,Source=/f".parse().unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("a", SecretSource::File("/f".into()))
        );
        assert!("src=/x".parse::<Secret>().is_err());
        assert!("id=a,type=vault".parse::<Secret>().is_err());
        assert!("id=a,color=red".parse::<Secret>().is_err());
    }

    #[test]
    fn session_from_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "v").unwrap();
        let secrets: Vec<Secret> = [
            format!("id=f,src={}", file.display()),
            "id=IN_ENV".to_string(),
            format!("id={}", file.display()),
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let env = |k: &str| (k == "IN_ENV").then(|| "x".into());
        let session = session(&secrets, &[], env).unwrap();
        assert!(session.secrets.get("f").unwrap().is_some());
        // A lone id names the file when no such variable is set.
        let by_path = session.secrets.get(&file.display().to_string());
        assert_eq!(by_path.unwrap().unwrap().bytes(), b"v");
        let missing: Secret = "id=nowhere-to-be-found".parse().unwrap();
        let err = super::session(&[missing], &[], env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("secret nowhere-to-be-found: failed to stat"),
            "{err}"
        );
        let ssh: SshSpec = "default".parse().unwrap();
        let err = super::session(&[], &[ssh], |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SSH_AUTH_SOCK"), "{err}");
    }

    #[test]
    fn ssh_specs() {
        let d: SshSpec = "default".parse().unwrap();
        assert_eq!((d.id.as_str(), d.paths.len()), ("default", 0));
        let k: SshSpec = "gh=/k1,/k2".parse().unwrap();
        assert_eq!(k.paths, vec![PathBuf::from("/k1"), PathBuf::from("/k2")]);
        assert!("=x".parse::<SshSpec>().is_err());
        assert!("a=".parse::<SshSpec>().is_err());
    }

    #[test]
    fn build_args_from_env() {
        let env = |k: &str| (k == "SET").then(|| "v".to_string());
        assert_eq!(
            build_arg("A=1", env).unwrap(),
            Some(("A".into(), "1".into()))
        );
        assert_eq!(build_arg("A=", env).unwrap(), Some(("A".into(), "".into())));
        assert_eq!(
            build_arg("SET", env).unwrap(),
            Some(("SET".into(), "v".into()))
        );
        assert_eq!(build_arg("UNSET", env).unwrap(), None);
        assert!(build_arg("=1", env).is_err());
    }

    #[test]
    fn network_and_progress() {
        assert_eq!("none".parse::<Network>(), Ok(Network::None));
        assert_eq!(
            "security.insecure".parse::<Entitlement>(),
            Ok(Entitlement::SecurityInsecure)
        );
        assert_eq!(
            "network.host".parse::<Entitlement>(),
            Ok(Entitlement::NetworkHost)
        );
        assert!("device".parse::<Entitlement>().is_err());
        assert_eq!("none".parse::<Sandbox>(), Ok(Sandbox::None));
        assert!("gvisor".parse::<Sandbox>().is_err());
        assert!("bridge".parse::<Network>().is_err());
        assert_eq!("rawjson".parse::<Progress>(), Ok(Progress::RawJson));
        assert!("fancy".parse::<Progress>().is_err());
    }

    #[test]
    fn progress_flag_maps_to_the_renderer_of_the_same_name() {
        use crate::progress::Mode;
        for (flag, mode) in [
            ("auto", Mode::Auto),
            ("tty", Mode::Tty),
            ("plain", Mode::Plain),
            ("rawjson", Mode::RawJson),
            ("quiet", Mode::Quiet),
        ] {
            assert_eq!(flag.parse::<Progress>().map(Mode::from), Ok(mode));
        }
    }

    #[test]
    fn tags() {
        assert!(tag("app").is_ok());
        assert!(tag("127.0.0.1:5000/team/app:1.0").is_ok());
        assert!(tag("localhost/app@sha256:abc").is_ok());
        assert!(tag("Registry.Example:5000/app").is_ok());
        assert!(tag("App").is_err());
        assert!(tag("a//b").is_err());
        assert!(tag("a b").is_err());
        assert!(tag("").is_err());
    }
}
