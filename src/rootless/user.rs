//! `USER` inside the root file system: `name`, `uid`, `name:group`,
//! `uid:gid` resolved against its `/etc/passwd` and `/etc/group` the way
//! runc's `GetExecUser` does for BuildKit — a known name or uid takes the
//! entry's primary group and home, a bare unknown number is used as is
//! with group 0, and without an explicit group the supplementary groups
//! are every group that lists the user as a member. As in BuildKit,
//! `uid:gid` in numbers skips the group file, and the primary group is
//! always one of the groups.
//!
//! Reads the files through `fileop`'s in-root resolution (symlinks stay
//! inside the root).

use std::path::Path;

use crate::fileop::{self, RootError};

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (may include `gid`).
    pub groups: Vec<u32>,
    /// The passwd entry's home, `/` when there is none.
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("failed to read {file} in the root file system")]
    Read {
        file: &'static str,
        #[source]
        source: ReadError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Resolve(#[from] RootError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Resolves `user` (as `USER` wrote it; empty means root) in `rootfs`.
pub fn resolve(rootfs: &Path, user: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read(rootfs, "/etc/passwd")?;
    let home_of = |uid: u32| {
        passwd
            .as_deref()
            .and_then(|text| {
                records(text)
                    .find(|f| f.get(2).and_then(|n| n.parse().ok()) == Some(uid))
                    .and_then(|f| f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string()))
            })
            .unwrap_or_else(|| "/".to_string())
    };
    // BuildKit's fast path: both numbers, no lookups.
    if let (Ok(uid), Some(Ok(gid))) = (
        user_part.parse::<u32>(),
        group_part.map(|g| g.parse::<u32>()),
    ) {
        return Ok(ExecUser {
            uid,
            gid,
            groups: vec![gid],
            home: home_of(uid),
        });
    }
    let numeric = user_part.parse::<u32>().ok();
    let entry = passwd.as_deref().and_then(|text| {
        records(text).find(|f| {
            f.first() == Some(&user_part)
                || (numeric.is_some() && f.get(2).and_then(|n| n.parse().ok()) == numeric)
        })
    });
    let (uid, mut gid, name, home) = match (&entry, numeric) {
        (Some(f), _) => (
            number(f.get(2)),
            number(f.get(3)),
            f.first().map(|s| s.to_string()),
            f.get(5)
                .filter(|h| !h.is_empty())
                .map_or("/".to_string(), |h| h.to_string()),
        ),
        (None, Some(n)) => (n, 0, None, "/".to_string()),
        (None, None) => return Err(UserError::NoUser(user_part.to_string())),
    };
    let group_text = read(rootfs, "/etc/group")?;
    let groups_file: Vec<Vec<&str>> = group_text
        .as_deref()
        .map(|t| records(t).collect())
        .unwrap_or_default();
    let mut groups = Vec::new();
    match group_part {
        Some(g) => {
            let g_numeric = g.parse::<u32>().ok();
            let found = groups_file.iter().find(|f| {
                f.first() == Some(&g)
                    || (g_numeric.is_some() && f.get(2).and_then(|n| n.parse().ok()) == g_numeric)
            });
            gid = match (found, g_numeric) {
                (Some(f), _) => number(f.get(2)),
                (None, Some(n)) => n,
                (None, None) => return Err(UserError::NoGroup(g.to_string())),
            };
        }
        None => {
            if let Some(name) = &name {
                for f in &groups_file {
                    let members = f.get(3).copied().unwrap_or("");
                    if members.split(',').any(|m| m.trim() == name) {
                        let g = number(f.get(2));
                        if !groups.contains(&g) {
                            groups.push(g);
                        }
                    }
                }
            }
        }
    }
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

fn read(rootfs: &Path, file: &'static str) -> Result<Option<String>, UserError> {
    let err = |source: ReadError| UserError::Read { file, source };
    let path = fileop::resolve_in_root(rootfs, file).map_err(|e| err(e.into()))?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(err(e.into())),
    }
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn number(field: Option<&&str>) -> u32 {
    field.and_then(|f| f.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\nnohome:x:7:7:::\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1002:\nstaff:x:50:app,other\nwheel:x:10:root\nextra:x:60:other, app\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn users_resolve_like_runc() {
        let dir = root();
        let r = |u: &str| resolve(dir.path(), u);
        assert_eq!(
            r("").unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                groups: vec![0, 10],
                home: "/root".into()
            }
        );
        assert_eq!(
            r("app").unwrap(),
            ExecUser {
                uid: 1001,
                gid: 1002,
                groups: vec![1002, 50, 60],
                home: "/home/app".into()
            }
        );
        // A uid finds its entry too.
        assert_eq!(r("1001").unwrap().groups, vec![1002, 50, 60]);
        // An explicit group replaces the primary one and drops the rest.
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1001, 50, vec![50]));
        // Numbers on both sides skip the files (the home is still found).
        let u = r("1001:60").unwrap();
        assert_eq!(
            (u.gid, u.groups, u.home.as_str()),
            (60, vec![60], "/home/app")
        );
        assert_eq!(r("app:77").unwrap().gid, 77);
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert_eq!(r("4242:4343").unwrap().gid, 4343);
        assert_eq!(r("nohome").unwrap().home, "/");
        assert_eq!(
            r("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }

    #[test]
    fn missing_files_allow_numbers_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(dir.path(), "5:6").unwrap().gid, 6);
        assert!(resolve(dir.path(), "app").is_err());
    }
}
