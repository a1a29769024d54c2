//! `RUN --mount=type=…,key=value,…`: the CSV option grammar of bind, cache,
//! tmpfs, secret and ssh mounts, with BuildKit's defaults and checks.
//!
//! As in BuildKit a spec is read twice: at parse time without an expander,
//! when only `from` is taken (so the stage layer can see which stages a RUN
//! depends on) and variables in it are refused; and when dispatched, with
//! the stage's expander, when every value is expanded and checked. It must
//! not import the lexer: expansion is the caller's callback.

use super::go::{parse_bool, parse_u32, ram_in_bytes};
use super::{locate, Expander, InstructionError};
use crate::dockerfile::error::{Error, Result};
use crate::dockerfile::location::Range;
use crate::dockerfile::suggest::suggest;

/// What is mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MountType {
    /// Files from the build context or another stage (read-only unless asked).
    #[default]
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty in-memory directory.
    Tmpfs,
    /// A build secret as a file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    pub const ALL: [MountType; 5] = [
        MountType::Bind,
        MountType::Cache,
        MountType::Tmpfs,
        MountType::Secret,
        MountType::Ssh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }

    /// Secret and ssh mounts may be marked `required`.
    fn allows_required(self) -> bool {
        matches!(self, MountType::Secret | MountType::Ssh)
    }

    /// Mount types that create files may set their mode and owner.
    fn allows_file_info(self) -> bool {
        matches!(self, MountType::Secret | MountType::Ssh | MountType::Cache)
    }
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl Sharing {
    pub const ALL: [Sharing; 3] = [Sharing::Shared, Sharing::Private, Sharing::Locked];

    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }
}

/// One `--mount` of a RUN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub mount_type: MountType,
    /// Stage or image to take files from; empty for the build context.
    pub from: String,
    /// Path inside `from` (bind/cache) or the secret's id (secret).
    pub source: String,
    /// Where it appears in the container.
    pub target: String,
    /// Read-only; defaults to true except for cache and tmpfs.
    pub read_only: bool,
    /// tmpfs size in bytes (0: unlimited).
    pub size_limit: i64,
    /// Cache id, or secret/ssh id.
    pub cache_id: String,
    /// Cache sharing mode; `None` leaves the default to the solver.
    pub sharing: Option<Sharing>,
    /// Secret/ssh: fail when the secret or agent is missing.
    pub required: bool,
    /// Secret: the environment variable to expose it as.
    pub env: Option<String>,
    /// File mode (octal in the spec).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Option keys, in the order BuildKit lists them for hints.
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Parses one `--mount` value. Without an expander only `from` is read
/// (and must not contain a variable); with one, every value is expanded
/// first and all options are checked. Errors carry `location`.
pub fn parse_mount(
    spec: &str,
    mut expand: Option<&mut Expander<'_>>,
    location: Range,
) -> Result<Mount> {
    let fail = |e: InstructionError| Error::new(e, location);
    let fields = csv_fields(spec).map_err(|e| fail(InstructionError::MountCsv(e)))?;
    let mut m = Mount::default();
    // Whether the default read-only setting still applies.
    let mut read_only_auto = true;

    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(value) = value else {
            // Value-less options are only understood on the second reading.
            if expand.is_none() {
                continue;
            }
            match key.as_str() {
                "readonly" | "ro" => m.read_only = true,
                "readwrite" | "rw" => m.read_only = false,
                "required" if m.mount_type.allows_required() => m.required = true,
                "required" => return Err(fail(key_not_for_type(&key, m.mount_type))),
                _ => return Err(fail(InstructionError::NotKeyValue(field.clone()))),
            }
            if key != "required" {
                read_only_auto = false;
            }
            continue;
        };

        let value = match expand.as_mut() {
            Some(f) => f(value).map_err(|e| locate(e, location))?,
            None if key == "from" => {
                // A variable cannot name a stage, since stage dependencies
                // are fixed before anything is expanded; a lone trailing
                // `$` is literal.
                if value.find('$').is_some_and(|i| i != value.len() - 1) {
                    return Err(fail(InstructionError::MountFromVariable(key)));
                }
                value.to_string()
            }
            None => continue,
        };

        let invalid = || {
            fail(InstructionError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
            })
        };
        match key.as_str() {
            "type" => {
                let lower = value.to_lowercase();
                m.mount_type = MountType::ALL
                    .into_iter()
                    .find(|t| t.as_str() == lower)
                    .ok_or_else(|| {
                        let names = MountType::ALL.map(MountType::as_str);
                        fail(InstructionError::MountType {
                            suggestion: suggest(&value, &names, true),
                            value: value.clone(),
                        })
                    })?;
            }
            "from" => m.from = value,
            "source" | "src" => m.source = value,
            "target" | "dst" | "destination" => m.target = value,
            "readonly" | "ro" => {
                m.read_only = parse_bool(&value).ok_or_else(invalid)?;
                read_only_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&value).ok_or_else(invalid)?;
                read_only_auto = false;
            }
            "required" if m.mount_type.allows_required() => {
                m.required = parse_bool(&value).ok_or_else(invalid)?;
            }
            "size" if m.mount_type == MountType::Tmpfs => {
                m.size_limit = ram_in_bytes(&value).ok_or_else(invalid)?;
            }
            "required" | "size" => return Err(fail(key_not_for_type(&key, m.mount_type))),
            "id" => m.cache_id = value,
            "sharing" => {
                let lower = value.to_lowercase();
                m.sharing = Some(
                    Sharing::ALL
                        .into_iter()
                        .find(|s| s.as_str() == lower)
                        .ok_or_else(|| {
                            let names = Sharing::ALL.map(Sharing::as_str);
                            fail(InstructionError::Sharing {
                                suggestion: suggest(&value, &names, true),
                                value: value.clone(),
                            })
                        })?,
                );
            }
            "mode" => m.mode = Some(number("mode", &value, 8).map_err(fail)?),
            "uid" => m.uid = Some(number("uid", &value, 10).map_err(fail)?),
            "gid" => m.gid = Some(number("gid", &value, 10).map_err(fail)?),
            "env" => m.env = Some(value),
            _ => {
                return Err(fail(InstructionError::UnknownKey {
                    suggestion: suggest(&key, &KEYS, true),
                    key: key.clone(),
                    field: field.clone(),
                }))
            }
        }
    }

    check(&mut m, read_only_auto).map_err(fail)?;
    Ok(m)
}

fn key_not_for_type(key: &str, mount_type: MountType) -> InstructionError {
    InstructionError::KeyNotForMountType {
        key: key.to_string(),
        mount_type: mount_type.to_string(),
    }
}

fn number(
    key: &'static str,
    value: &str,
    radix: u32,
) -> std::result::Result<u32, InstructionError> {
    parse_u32(value, radix).ok_or_else(|| InstructionError::InvalidNumber {
        key,
        value: value.to_string(),
    })
}

/// The checks that need the whole spec, and the read-only default.
fn check(m: &mut Mount, read_only_auto: bool) -> std::result::Result<(), InstructionError> {
    if !m.mount_type.allows_file_info() {
        let given = [("mode", m.mode), ("uid", m.uid), ("gid", m.gid)];
        if let Some((option, _)) = given.iter().find(|(_, v)| v.is_some()) {
            return Err(InstructionError::FileInfoNotAllowed {
                option,
                mount_type: m.mount_type.to_string(),
            });
        }
    }
    if read_only_auto {
        m.read_only = !matches!(m.mount_type, MountType::Cache | MountType::Tmpfs);
    }
    if m.mount_type == MountType::Secret {
        if !m.from.is_empty() {
            return Err(InstructionError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(InstructionError::SecretSharing);
        }
        if m.source.is_empty() && m.target.is_empty() && m.cache_id.is_empty() {
            return Err(InstructionError::SecretTarget);
        }
        if !m.source.is_empty() && !m.cache_id.is_empty() {
            return Err(InstructionError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.mount_type != MountType::Cache {
        return Err(InstructionError::SharingNotCache(m.mount_type.to_string()));
    }
    Ok(())
}

/// Splits a one-line CSV value as BuildKit's `csvvalue` does: `,`
/// separates, `"…"` quotes (with `""` for a quote), bare quotes inside an
/// unquoted field are an error. Errors read like Go's `csv.ParseError`.
pub(crate) fn csv_fields(line: &str) -> std::result::Result<Vec<String>, String> {
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    if line.is_empty() {
        return Err("EOF".to_string());
    }
    let err = |column: usize, what: &str| format!("parse error on line 1, column {column}: {what}");
    let bare = "bare \" in non-quoted-field";
    let extraneous = "extraneous or missing \" in quoted-field";

    let mut fields: Vec<String> = Vec::new();
    let mut rest = line;
    let mut pos = 0; // byte offset of `rest` in `line`
    'field: loop {
        if !rest.starts_with('"') {
            let (field, more) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            if let Some(j) = field.find('"') {
                return Err(err(pos + j + 1, bare));
            }
            fields.push(field.to_string());
            match more {
                Some(i) => {
                    rest = &rest[i + 1..];
                    pos += i + 1;
                    continue 'field;
                }
                None => break 'field,
            }
        }
        rest = &rest[1..];
        pos += 1;
        let mut field = String::new();
        loop {
            let Some(i) = rest.find('"') else {
                return Err(err(pos + 1, extraneous));
            };
            field.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            pos += i + 1;
            if let Some(after) = rest.strip_prefix('"') {
                // `""` inside quotes is one literal quote.
                field.push('"');
                rest = after;
                pos += 1;
            } else if let Some(after) = rest.strip_prefix(',') {
                fields.push(field);
                rest = after;
                pos += 1;
                continue 'field;
            } else if rest.is_empty() {
                fields.push(field);
                break 'field;
            } else {
                return Err(err(pos, extraneous));
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Range = Range {
        start: crate::dockerfile::location::Position {
            line: 7,
            character: 0,
        },
        end: crate::dockerfile::location::Position {
            line: 7,
            character: 0,
        },
    };

    /// Parses with an identity expander: the dispatch-time reading.
    fn full(spec: &str) -> Result<Mount> {
        let mut id = |w: &str| Ok(w.to_string());
        parse_mount(spec, Some(&mut id), AT)
    }

    fn full_err(spec: &str) -> String {
        let err = full(spec).expect_err(spec);
        assert_eq!(err.line(), Some(7));
        err.to_string()
    }

    #[test]
    fn csv_splits_and_unquotes() {
        assert_eq!(csv_fields("a,b=c").unwrap(), ["a", "b=c"]);
        assert_eq!(csv_fields("a,").unwrap(), ["a", ""]);
        assert_eq!(csv_fields(",").unwrap(), ["", ""]);
        assert_eq!(csv_fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(csv_fields("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(csv_fields("\"\"").unwrap(), [""]);
        assert_eq!(csv_fields("a\n").unwrap(), ["a"]);
        assert_eq!(csv_fields("a\r\n").unwrap(), ["a"]);
    }

    #[test]
    fn csv_errors_read_like_go() {
        assert_eq!(csv_fields("").unwrap_err(), "EOF");
        assert_eq!(
            csv_fields("ab\"c").unwrap_err(),
            "parse error on line 1, column 3: bare \" in non-quoted-field"
        );
        assert_eq!(
            csv_fields("x,\"abc").unwrap_err(),
            "parse error on line 1, column 4: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            csv_fields("\"ab\"c").unwrap_err(),
            "parse error on line 1, column 4: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            full_err("target=\"x"),
            "failed to parse csv mounts: parse error on line 1, column 8: bare \" in non-quoted-field"
        );
        assert_eq!(full_err(""), "failed to parse csv mounts: EOF");
    }

    #[test]
    fn bind_is_the_read_only_default() {
        let m = full("target=/src").unwrap();
        assert_eq!(m.mount_type, MountType::Bind);
        assert_eq!(m.target, "/src");
        assert!(m.read_only);
        let m = full("type=bind,source=/a,from=builder,target=/b,rw").unwrap();
        assert_eq!((m.source.as_str(), m.from.as_str()), ("/a", "builder"));
        assert!(!m.read_only);
    }

    #[test]
    fn cache_and_tmpfs_default_to_writable() {
        for t in ["cache", "tmpfs", "CACHE"] {
            assert!(
                !full(&format!("type={t},target=/c")).unwrap().read_only,
                "{t}"
            );
        }
        for t in ["secret,id=x", "ssh", "bind"] {
            assert!(
                full(&format!("type={t},target=/c")).unwrap().read_only,
                "{t}"
            );
        }
        assert!(full("type=cache,target=/c,ro").unwrap().read_only);
    }

    #[test]
    fn key_aliases_and_case() {
        for spec in [
            "dst=/t,src=/s",
            "destination=/t,source=/s",
            "TARGET=/t,Source=/s",
        ] {
            let m = full(spec).unwrap();
            assert_eq!(
                (m.target.as_str(), m.source.as_str()),
                ("/t", "/s"),
                "{spec}"
            );
        }
    }

    #[test]
    fn read_only_forms() {
        for (spec, ro) in [
            ("ro", true),
            ("readonly", true),
            ("rw", false),
            ("readwrite", false),
            ("ro=true", true),
            ("ro=false", false),
            ("readonly=0", false),
            ("rw=1", false),
            ("rw=false", true),
            ("readwrite=F", true),
        ] {
            let m = full(&format!("type=cache,target=/c,{spec}")).unwrap();
            assert_eq!(m.read_only, ro, "{spec}");
        }
        assert_eq!(full_err("ro=yes"), "invalid value for ro: yes");
        assert_eq!(full_err("readwrite=2"), "invalid value for readwrite: 2");
    }

    #[test]
    fn cache_options() {
        let m =
            full("type=cache,target=/root/.cache,id=go,sharing=LOCKED,mode=0700,uid=1000,gid=1001")
                .unwrap();
        assert_eq!(m.cache_id, "go");
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(
            (m.mode, m.uid, m.gid),
            (Some(0o700), Some(1000), Some(1001))
        );
        for s in ["shared", "private", "locked"] {
            assert!(full(&format!("type=cache,target=/c,sharing={s}")).is_ok());
        }
        assert_eq!(
            full_err("type=cache,target=/c,sharing=lockd"),
            "unsupported sharing value \"lockd\" (did you mean locked?)"
        );
        assert_eq!(
            full_err("type=cache,target=/c,sharing=nope"),
            "unsupported sharing value \"nope\""
        );
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(
            full_err("type=cache,mode=999"),
            "invalid value 999 for mode"
        );
        assert_eq!(full_err("type=cache,mode=+7"), "invalid value +7 for mode");
        assert_eq!(full_err("type=cache,uid=-1"), "invalid value -1 for uid");
        assert_eq!(full_err("type=cache,gid=x"), "invalid value x for gid");
        assert_eq!(
            full_err("type=cache,uid=4294967296"),
            "invalid value 4294967296 for uid"
        );
    }

    #[test]
    fn file_info_only_for_cache_secret_ssh() {
        assert_eq!(
            full_err("type=bind,mode=0644"),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            full_err("type=tmpfs,uid=1"),
            "uid not allowed for \"tmpfs\" type mounts"
        );
        assert_eq!(
            full_err("gid=1"),
            "gid not allowed for \"bind\" type mounts"
        );
        assert!(full("type=ssh,mode=0600,uid=1,gid=1").is_ok());
        assert!(full("type=secret,id=a,mode=0600").is_ok());
    }

    #[test]
    fn tmpfs_size() {
        assert_eq!(
            full("type=tmpfs,target=/t,size=64m").unwrap().size_limit,
            64 << 20
        );
        assert_eq!(full("type=tmpfs,size=1024").unwrap().size_limit, 1024);
        assert_eq!(
            full_err("type=tmpfs,size=lots"),
            "invalid value for size: lots"
        );
        assert_eq!(
            full_err("type=cache,size=1m"),
            "unexpected key 'size' for mount type 'cache'"
        );
        // The type must come before type-specific keys.
        assert_eq!(
            full_err("size=1m,type=tmpfs"),
            "unexpected key 'size' for mount type 'bind'"
        );
    }

    #[test]
    fn secret_mounts() {
        let m = full("type=secret,id=token,env=TOKEN,required").unwrap();
        assert_eq!(m.mount_type, MountType::Secret);
        assert_eq!(m.cache_id, "token");
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        assert!(m.required && m.read_only);
        assert!(
            !full("type=secret,target=/run/s,required=false")
                .unwrap()
                .required
        );
        assert!(full("type=secret,source=a").is_ok());
        assert_eq!(
            full_err("type=secret"),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(
            full_err("type=secret,id=a,from=x"),
            "secret mount should not have a from"
        );
        assert_eq!(
            full_err("type=secret,id=a,sharing=shared"),
            "secret mount should not define sharing"
        );
        assert_eq!(
            full_err("type=secret,id=a,src=b"),
            "both source and id can't be set"
        );
        assert_eq!(
            full_err("type=secret,id=a,required=maybe"),
            "invalid value for required: maybe"
        );
    }

    #[test]
    fn ssh_mounts() {
        let m = full("type=ssh,id=default,required=true").unwrap();
        assert_eq!(m.mount_type, MountType::Ssh);
        assert!(m.required);
        assert!(full("type=ssh,required").unwrap().required);
    }

    #[test]
    fn required_only_for_secret_and_ssh() {
        assert_eq!(
            full_err("type=cache,required"),
            "unexpected key 'required' for mount type 'cache'"
        );
        assert_eq!(
            full_err("type=bind,required=true"),
            "unexpected key 'required' for mount type 'bind'"
        );
    }

    #[test]
    fn sharing_only_for_cache() {
        assert_eq!(
            full_err("type=tmpfs,sharing=shared"),
            "invalid cache sharing set for tmpfs mount"
        );
    }

    #[test]
    fn unknown_types_and_keys() {
        assert_eq!(
            full_err("type=cahce"),
            "unsupported mount type \"cahce\" (did you mean cache?)"
        );
        assert_eq!(full_err("type=volume"), "unsupported mount type \"volume\"");
        assert_eq!(
            full_err("type=tmp,target=/t"),
            "unsupported mount type \"tmp\" (did you mean tmpfs?)"
        );
        assert_eq!(
            full_err("typ=cache"),
            "unexpected key 'typ' in 'typ=cache' (did you mean type?)"
        );
        assert_eq!(
            full_err("target=/a,trget=/b"),
            "unexpected key 'trget' in 'trget=/b' (did you mean target?)"
        );
        assert_eq!(
            full_err("banana=1"),
            "unexpected key 'banana' in 'banana=1'"
        );
        assert_eq!(
            full_err("target=/a,oops"),
            "invalid field 'oops' must be a key=value pair"
        );
        assert_eq!(
            full_err("target=/a,"),
            "invalid field '' must be a key=value pair"
        );
    }

    #[test]
    fn quoted_fields_may_hold_commas() {
        let m = full("\"target=/a,b\",type=cache").unwrap();
        assert_eq!(m.target, "/a,b");
    }

    #[test]
    fn values_are_expanded_when_dispatched() {
        let mut f = |w: &str| Ok(w.replace("$T", "cache").replace("$D", "/x"));
        let m = parse_mount("type=$T,target=$D,id=$D", Some(&mut f), AT).unwrap();
        assert_eq!(m.mount_type, MountType::Cache);
        assert_eq!(m.target, "/x");
        assert_eq!(m.cache_id, "/x");
    }

    #[test]
    fn expander_errors_pass_through_located() {
        let mut f = |_: &str| Err(Error::unlocated(InstructionError::FromArguments));
        let err = parse_mount("target=$X", Some(&mut f), AT).unwrap_err();
        assert_eq!(err.line(), Some(7));
        assert_eq!(
            err.to_string(),
            "FROM requires either one or three arguments"
        );
    }

    #[test]
    fn first_reading_takes_only_from() {
        let m = parse_mount("type=cache,from=builder,target=/x,bogus,mode=9", None, AT).unwrap();
        assert_eq!(m.from, "builder");
        assert_eq!(m.mount_type, MountType::Bind);
        assert_eq!(m.target, "");
        assert!(m.read_only);
    }

    #[test]
    fn first_reading_refuses_variables_in_from() {
        for ok in ["stage", "a$", "$"] {
            assert!(parse_mount(&format!("from={ok}"), None, AT).is_ok(), "{ok}");
        }
        for bad in ["$STAGE", "${S}", "a$b", "a$$"] {
            let err = parse_mount(&format!("from={bad}"), None, AT).unwrap_err();
            assert_eq!(
                err.to_string(),
                "'from' doesn't support variable expansion, define alias stage instead",
                "{bad}"
            );
        }
        assert!(parse_mount("a\"b", None, AT).is_err());
    }
}
