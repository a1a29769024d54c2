//! Which ids bk's user namespace maps: the caller's own id becomes 0
//! and, when `/etc/subuid` and `/etc/subgid` grant the caller a range,
//! ids 1.. map onto that range (what `newuidmap`/`newgidmap` write for
//! us). Without a range only id 0 exists inside.
//!
//! Pure data and file parsing; the paths are parameters so tests point
//! them at a temporary directory. Imports `util` only.

use std::path::Path;

use crate::util::fs::FsError;

/// One `start:count` range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIds {
    pub start: u32,
    pub count: u32,
}

/// The mapping of one kind of id (users or groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// The caller's id outside, mapped to 0 inside.
    pub own: u32,
    /// Mapped to 1.. inside, when the caller has a range.
    pub sub: Option<SubIds>,
}

impl IdMap {
    /// The arguments `newuidmap PID …` / `newgidmap PID …` take after the
    /// pid: triples `inside outside count`.
    pub fn helper_args(&self) -> Vec<String> {
        let mut args = vec!["0".to_string(), self.own.to_string(), "1".to_string()];
        if let Some(sub) = self.sub {
            args.extend([
                "1".to_string(),
                sub.start.to_string(),
                sub.count.to_string(),
            ]);
        }
        args
    }

    /// The content of `/proc/PID/{uid,gid}_map` for the single-id map a
    /// process may write itself.
    pub fn single_line(&self) -> String {
        format!("0 {} 1\n", self.own)
    }
}

/// The first range `/etc/subuid`-style file `path` grants the user
/// `name` (or its numeric `id`, which the file may use instead). A
/// missing file means no range; lines that do not parse are skipped, as
/// shadow-utils skips them.
pub fn sub_ids(path: &Path, name: Option<&str>, id: u32) -> Result<Option<SubIds>, FsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::new("read", path, e)),
    };
    let id = id.to_string();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(owner), Some(start), Some(count)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if owner != id && Some(owner) != name {
            continue;
        }
        if let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) {
            if count > 0 {
                return Ok(Some(SubIds { start, count }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subuid");
        std::fs::write(
            &path,
            "# comment\nother:100000:65536\nbad line\nalice:x:1\nalice:200000:0\nalice:300000:65536\n1001:400000:1000\n",
        )
        .unwrap();
        assert_eq!(
            sub_ids(&path, Some("alice"), 1000).unwrap(),
            Some(SubIds {
                start: 300000,
                count: 65536
            })
        );
        assert_eq!(
            sub_ids(&path, Some("bob"), 1001).unwrap(),
            Some(SubIds {
                start: 400000,
                count: 1000
            })
        );
        assert_eq!(sub_ids(&path, None, 5).unwrap(), None);
        assert_eq!(sub_ids(&dir.path().join("missing"), None, 5).unwrap(), None);
    }

    #[test]
    fn helper_arguments_map_own_id_to_root_and_the_range_above() {
        let map = IdMap {
            own: 1000,
            sub: Some(SubIds {
                start: 100000,
                count: 65536,
            }),
        };
        assert_eq!(
            map.helper_args(),
            ["0", "1000", "1", "1", "100000", "65536"]
        );
        let single = IdMap {
            own: 1000,
            sub: None,
        };
        assert_eq!(single.helper_args(), ["0", "1000", "1"]);
        assert_eq!(single.single_line(), "0 1000 1\n");
    }
}
