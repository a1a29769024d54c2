//! `--chown` values: parsing them as BuildKit's `llb.WithUser` does,
//! turning names into numeric ids through an [`IdResolver`] (the default,
//! [`PasswdResolver`], reads `/etc/passwd` and `/etc/group` inside a root
//! directory the way BuildKit's `readUser` does), and deciding whether
//! this process may apply the result: root may (in bk's user namespace
//! too, for the ids it maps), anyone else only its own ids.
//!
//! It owns no filesystem writes. It must not import the copy engine; the
//! engine imports it.

use std::io::{self, Read};
use std::path::PathBuf;

use super::root;
use crate::util::fs::FsError;

/// BuildKit refuses user database files larger than this.
const MAX_USER_FILE_BYTES: u64 = 10 << 20;

/// Numeric owner of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// One half of a `--chown` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSpec {
    Id(u32),
    Name(String),
}

/// A parsed `--chown=user[:group]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: IdSpec,
    pub group: Option<IdSpec>,
}

impl Owner {
    /// Parses `user[:group]` as BuildKit's `llb.WithUser`: each part is a
    /// number (a 32-bit signed decimal, so `-1` wraps as Go's conversion
    /// does), `root` (always 0, never looked up), or a name. An empty part
    /// means id 0, which is what BuildKit's marshalling makes of an empty
    /// name (so `app:` is group 0, not app's primary group).
    pub fn parse(value: &str) -> Owner {
        let (user, group) = match value.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (value, None),
        };
        Owner {
            user: parse_part(user),
            group: group.map(parse_part),
        }
    }
}

fn parse_part(part: &str) -> IdSpec {
    if part == "root" || part.is_empty() {
        return IdSpec::Id(0);
    }
    match part.parse::<i32>() {
        // Go's `uint32(int)` conversion: negative values wrap.
        Ok(n) => IdSpec::Id(n as u32),
        Err(_) => IdSpec::Name(part.to_string()),
    }
}

/// Why an owner could not be determined or applied.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("unable to find user {name}: no matching entries in passwd file")]
    LookupUser { name: String },
    #[error("unable to find group {name}: no matching entries in group file")]
    LookupGroup { name: String },
    /// Opening or reading `/etc/passwd` or `/etc/group` failed.
    #[error(transparent)]
    ReadUserFile(FsError),
    #[error("failed to resolve `{file}` in the destination")]
    ResolveUserFile {
        file: &'static str,
        #[source]
        source: root::RootError,
    },
    #[error("`{}` is not a regular file", path.display())]
    CheckUserFile { path: PathBuf },
    #[error("`{}` exceeds {MAX_USER_FILE_BYTES} bytes", path.display())]
    SizeUserFile { path: PathBuf },
    /// Not running as root (not even in bk's user namespace: bk was
    /// started with `--sandbox=none`), and the ids asked for are not our
    /// own.
    #[error(
        "--chown to {uid}:{gid} needs root: without its user namespace \
         (--sandbox=none) bk can only create files owned by you"
    )]
    ChownNeedsRoot { uid: u32, gid: u32 },
    /// Root in a user namespace that does not map the ids asked for.
    #[error(
        "--chown to {uid}:{gid}: the id is not mapped in bk's user namespace; give your user \
         a subordinate id range in /etc/subuid and /etc/subgid"
    )]
    ChownUnmapped { uid: u32, gid: u32 },
}

/// Turns user and group names into ids.
pub trait IdResolver {
    /// The uid and primary gid of user `name`, `None` if there is none.
    fn user(&self, name: &str) -> Result<Option<Ids>, OwnerError>;
    /// The gid of group `name`, `None` if there is none.
    fn group(&self, name: &str) -> Result<Option<u32>, OwnerError>;
}

/// Resolves an [`Owner`] with BuildKit's rules: a numeric user sets both
/// uid and gid to that number; a named user takes its uid and primary
/// gid from the passwd file; a group, when given, then replaces the gid.
///
/// BuildKit silently falls back to 0 for names it cannot find (and for a
/// missing passwd file); this is an error here instead, naming the name,
/// because a file quietly owned by root is a security surprise.
pub fn resolve_owner(owner: &Owner, ids: &dyn IdResolver) -> Result<Ids, OwnerError> {
    let mut out = match &owner.user {
        IdSpec::Id(n) => Ids { uid: *n, gid: *n },
        IdSpec::Name(name) => ids
            .user(name)?
            .ok_or_else(|| OwnerError::LookupUser { name: name.clone() })?,
    };
    match &owner.group {
        None => {}
        Some(IdSpec::Id(n)) => out.gid = *n,
        Some(IdSpec::Name(name)) => {
            out.gid = ids
                .group(name)?
                .ok_or_else(|| OwnerError::LookupGroup { name: name.clone() })?;
        }
    }
    Ok(out)
}

/// Reads `/etc/passwd` and `/etc/group` inside `root` (symlinks resolved
/// inside it), as BuildKit reads them from the destination's filesystem.
#[derive(Debug, Clone)]
pub struct PasswdResolver {
    root: PathBuf,
}

impl PasswdResolver {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PasswdResolver { root: root.into() }
    }

    /// The file's lines, or `None` when it does not exist (which BuildKit
    /// treats as "no such entry").
    fn read(&self, file: &'static str) -> Result<Option<String>, OwnerError> {
        let resolved = root::resolve(&self.root, file.as_bytes())
            .map_err(|source| OwnerError::ResolveUserFile { file, source })?;
        let path = resolved.host(&self.root);
        let handle = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(OwnerError::ReadUserFile(FsError::new("open", path, e))),
        };
        let meta = handle
            .metadata()
            .map_err(|e| OwnerError::ReadUserFile(FsError::new("inspect", &path, e)))?;
        if !meta.is_file() {
            return Err(OwnerError::CheckUserFile { path });
        }
        let mut bytes = Vec::new();
        handle
            .take(MAX_USER_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OwnerError::ReadUserFile(FsError::new("read", &path, e)))?;
        if bytes.len() as u64 > MAX_USER_FILE_BYTES {
            return Err(OwnerError::SizeUserFile { path });
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// The `:`-separated fields of each non-blank line, trimmed as moby's
/// parser trims them. Numbers that do not parse count as 0 there, and so
/// they do here.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').collect())
}

fn number(field: Option<&&str>) -> u32 {
    field.and_then(|f| f.parse::<u32>().ok()).unwrap_or(0)
}

impl IdResolver for PasswdResolver {
    fn user(&self, name: &str) -> Result<Option<Ids>, OwnerError> {
        let Some(text) = self.read("/etc/passwd")? else {
            return Ok(None);
        };
        // name:password:uid:gid:gecos:home:shell; the first match wins.
        let found = records(&text)
            .find(|f| f.first() == Some(&name))
            .map(|f| Ids {
                uid: number(f.get(2)),
                gid: number(f.get(3)),
            });
        Ok(found)
    }

    fn group(&self, name: &str) -> Result<Option<u32>, OwnerError> {
        let Some(text) = self.read("/etc/group")? else {
            return Ok(None);
        };
        // name:password:gid:members
        let found = records(&text)
            .find(|f| f.first() == Some(&name))
            .map(|f| number(f.get(2)));
        Ok(found)
    }
}

/// What this process may do about ownership.
#[derive(Debug, Clone)]
pub(crate) struct Privilege {
    /// Effective uid 0: every `lchown` to a mapped id is allowed.
    pub root: bool,
    pub uid: u32,
    /// Effective and supplementary groups.
    pub groups: Vec<u32>,
    /// The ids that exist in this process's user namespace, as
    /// `(first, count)` ranges; `None` means all of them.
    pub uids: Option<Vec<(u32, u32)>>,
    pub gids: Option<Vec<(u32, u32)>>,
}

impl Privilege {
    pub fn current() -> Privilege {
        let uid = nix::unistd::geteuid().as_raw();
        let mut groups = vec![nix::unistd::getegid().as_raw()];
        if let Ok(more) = nix::unistd::getgroups() {
            groups.extend(more.into_iter().map(|g| g.as_raw()));
        }
        Privilege {
            root: uid == 0,
            uid,
            groups,
            uids: id_map("/proc/self/uid_map"),
            gids: id_map("/proc/self/gid_map"),
        }
    }

    /// An explicitly requested owner must be applied exactly. Root (also
    /// root in bk's user namespace) may give files any id its namespace
    /// maps; anyone else only its own uid and one of its groups (what
    /// `chown(2)` allows an unprivileged owner). Anything else is
    /// refused up front rather than silently ignored.
    pub fn check_requested(&self, ids: Ids) -> Result<(), OwnerError> {
        let mapped = |map: &Option<Vec<(u32, u32)>>, id: u32| {
            map.as_ref().is_none_or(|ranges| {
                ranges.iter().any(|&(first, count)| {
                    id >= first && u64::from(id) < u64::from(first) + u64::from(count)
                })
            })
        };
        if self.root {
            if mapped(&self.uids, ids.uid) && mapped(&self.gids, ids.gid) {
                return Ok(());
            }
            return Err(OwnerError::ChownUnmapped {
                uid: ids.uid,
                gid: ids.gid,
            });
        }
        if ids.uid == self.uid && self.groups.contains(&ids.gid) {
            Ok(())
        } else {
            Err(OwnerError::ChownNeedsRoot {
                uid: ids.uid,
                gid: ids.gid,
            })
        }
    }
}

/// The inside ranges of a `/proc/self/{uid,gid}_map`; `None` when it
/// cannot be read or maps every id (the initial namespace).
fn id_map(path: &str) -> Option<Vec<(u32, u32)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let ranges: Vec<(u32, u32)> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0] as u32, f[2].min(u64::from(u32::MAX)) as u32))
        })
        .collect();
    let everything = ranges
        .iter()
        .any(|&(first, count)| first == 0 && count == u32::MAX);
    (!everything).then_some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_matches_with_user() {
        let o = Owner::parse;
        assert_eq!(
            o("1000:nobody"),
            Owner {
                user: IdSpec::Id(1000),
                group: Some(IdSpec::Name("nobody".into()))
            }
        );
        assert_eq!(o("daemon").user, IdSpec::Name("daemon".into()));
        assert_eq!(o("daemon").group, None);
        assert_eq!(o("root:root").user, IdSpec::Id(0));
        assert_eq!(o("root:root").group, Some(IdSpec::Id(0)));
        assert_eq!(o(":5").user, IdSpec::Id(0));
        assert_eq!(o(":5").group, Some(IdSpec::Id(5)));
        assert_eq!(o("app:").group, Some(IdSpec::Id(0)));
        assert_eq!(o("").user, IdSpec::Id(0));
        assert_eq!(o("-1").user, IdSpec::Id(u32::MAX));
        assert_eq!(o("+7").user, IdSpec::Id(7));
        assert_eq!(o("a:b:c").group, Some(IdSpec::Name("b:c".into())));
        assert_eq!(o("99999999999").user, IdSpec::Name("99999999999".into()));
    }

    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\n  app:x:1001:1002::/home/app:/bin/sh  \nodd:x:abc:7\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        dir
    }

    #[test]
    fn names_resolve_through_the_roots_database() {
        let dir = fake_root();
        let r = PasswdResolver::new(dir.path());
        let res = |s: &str| resolve_owner(&Owner::parse(s), &r);
        assert_eq!(
            res("app").unwrap(),
            Ids {
                uid: 1001,
                gid: 1002
            }
        );
        assert_eq!(res("app:staff").unwrap(), Ids { uid: 1001, gid: 50 });
        assert_eq!(res("app:9").unwrap(), Ids { uid: 1001, gid: 9 });
        assert_eq!(res("42").unwrap(), Ids { uid: 42, gid: 42 });
        assert_eq!(res("42:staff").unwrap(), Ids { uid: 42, gid: 50 });
        assert_eq!(res("odd").unwrap(), Ids { uid: 0, gid: 7 });
        assert_eq!(
            res("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            res("app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }

    #[test]
    fn missing_database_means_unknown_name() {
        let dir = tempfile::tempdir().unwrap();
        let r = PasswdResolver::new(dir.path());
        assert!(matches!(
            resolve_owner(&Owner::parse("app"), &r),
            Err(OwnerError::LookupUser { .. })
        ));
        // Numbers never need the database.
        assert_eq!(
            resolve_owner(&Owner::parse("5:6"), &r).unwrap(),
            Ids { uid: 5, gid: 6 }
        );
    }

    #[test]
    fn database_symlink_stays_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/passwd"), "inroot:x:7:8::/:/bin/sh\n").unwrap();
        // Absolute target: must resolve to <root>/real/passwd, not the
        // host's file.
        std::os::unix::fs::symlink("/real/passwd", dir.path().join("etc/passwd")).unwrap();
        let r = PasswdResolver::new(dir.path());
        assert_eq!(r.user("inroot").unwrap(), Some(Ids { uid: 7, gid: 8 }));
        assert_eq!(r.user("root").unwrap(), None);
    }

    #[test]
    fn chown_is_refused_unless_the_ids_can_be_applied() {
        let p = Privilege {
            root: false,
            uid: 1000,
            groups: vec![1000, 27],
            uids: None,
            gids: None,
        };
        assert!(p
            .check_requested(Ids {
                uid: 1000,
                gid: 1000
            })
            .is_ok());
        assert!(p.check_requested(Ids { uid: 1000, gid: 27 }).is_ok());
        let err = p.check_requested(Ids { uid: 0, gid: 0 }).unwrap_err();
        assert!(
            err.to_string().contains("--chown to 0:0 needs root"),
            "{err}"
        );
        let root = Privilege {
            root: true,
            uid: 0,
            groups: vec![0],
            uids: None,
            gids: None,
        };
        assert!(root.check_requested(Ids { uid: 5, gid: 6 }).is_ok());
        // Root of a user namespace with a single-id map.
        let single = Privilege {
            uids: Some(vec![(0, 1)]),
            gids: Some(vec![(0, 1)]),
            ..root.clone()
        };
        assert!(single.check_requested(Ids { uid: 0, gid: 0 }).is_ok());
        let err = single.check_requested(Ids { uid: 5, gid: 0 }).unwrap_err();
        assert!(
            err.to_string()
                .contains("not mapped in bk's user namespace"),
            "{err}"
        );
        let full = Privilege {
            uids: Some(vec![(0, 1), (1, 65536)]),
            gids: Some(vec![(0, 1), (1, 65536)]),
            ..root
        };
        assert!(full.check_requested(Ids { uid: 123, gid: 456 }).is_ok());
        assert!(full.check_requested(Ids { uid: 70000, gid: 0 }).is_err());
    }
}
