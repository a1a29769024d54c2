//! The kernel's binfmt_misc handlers, read from their directory
//! (`/proc/sys/fs/binfmt_misc`): which registered interpreter the
//! kernel hands a file to, given the file's first bytes.
//!
//! Each entry file is the kernel's rendering of one registration:
//!
//! ```text
//! enabled
//! interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
//! flags: PF
//! offset 0
//! magic 7f454c460201010000000000000000000200b700
//! mask ffffffffffffff00fffffffffffffffffeffffff
//! ```
//!
//! or `extension .jar` in place of offset/magic/mask. An entry matches a
//! file when, from `offset`, every byte of the file ANDed with `mask`
//! equals `magic` ANDed with `mask` (the kernel stores `magic` already
//! masked). The `status` file says whether binfmt_misc is enabled at all.
//!
//! The directory is a parameter, so tests read sample entries from a
//! temporary directory. Imports nothing project-internal.

use std::path::{Path, PathBuf};

/// Where binfmt_misc is mounted on a normal system.
pub const DEFAULT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Why the handlers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// No `status` file: the file system is not mounted there.
    #[error("binfmt_misc is not mounted at {}", dir.display())]
    NotMounted { dir: PathBuf },
    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binfmt_misc entry `{}` is malformed: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
}

type Result<T> = std::result::Result<T, BinfmtError>;

/// How an entry recognises files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Bytes at `offset` compared under `mask` (all ones when absent).
    Magic {
        offset: usize,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (without the dot); never matches by content.
    Extension(String),
}

/// One registered handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's file name (`qemu-aarch64`).
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// The flag letters (`P`, `O`, `C`, `F`).
    pub flags: String,
    pub matcher: Matcher,
}

impl Entry {
    /// Parses the kernel's text for entry `name`; `path` only names the
    /// file in errors.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Entry> {
        let bad = |detail: String| BinfmtError::Parse {
            path: path.to_path_buf(),
            detail,
        };
        let mut lines = text.lines();
        let enabled = match lines.next().map(str::trim) {
            Some("enabled") => true,
            Some("disabled") => false,
            other => return Err(bad(format!("expected enabled or disabled, got {other:?}"))),
        };
        let (mut interpreter, mut flags, mut offset, mut magic, mut mask, mut extension) =
            (None, String::new(), 0usize, None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            match key {
                "interpreter" => interpreter = Some(PathBuf::from(value)),
                "flags:" => flags = value.to_string(),
                "offset" => {
                    offset = value
                        .parse()
                        .map_err(|_| bad(format!("offset {value:?} is not a number")))?
                }
                "magic" => {
                    magic = Some(
                        unhex(value).ok_or_else(|| bad(format!("magic {value:?} is not hex")))?,
                    )
                }
                "mask" => {
                    mask = Some(
                        unhex(value).ok_or_else(|| bad(format!("mask {value:?} is not hex")))?,
                    )
                }
                "extension" => extension = Some(value.trim_start_matches('.').to_string()),
                // Lines a newer kernel may add.
                _ => {}
            }
        }
        let interpreter = interpreter.ok_or_else(|| bad("no interpreter line".into()))?;
        let matcher = match (magic, extension) {
            (Some(magic), None) => {
                if mask
                    .as_ref()
                    .is_some_and(|m: &Vec<u8>| m.len() != magic.len())
                {
                    return Err(bad("mask and magic differ in length".into()));
                }
                Matcher::Magic {
                    offset,
                    magic,
                    mask,
                }
            }
            (None, Some(ext)) => Matcher::Extension(ext),
            _ => return Err(bad("expected either a magic or an extension line".into())),
        };
        Ok(Entry {
            name: name.to_string(),
            enabled,
            interpreter,
            flags,
            matcher,
        })
    }

    /// Whether the kernel would hand a file starting with `header` to
    /// this entry (enabled or not).
    pub fn matches(&self, header: &[u8]) -> bool {
        let Matcher::Magic {
            offset,
            magic,
            mask,
        } = &self.matcher
        else {
            return false;
        };
        let Some(bytes) = header.get(*offset..offset + magic.len()) else {
            return false;
        };
        bytes.iter().zip(magic).enumerate().all(|(i, (b, m))| {
            let k = mask.as_ref().map_or(0xff, |mask| mask[i]);
            b & k == m & k
        })
    }

    /// `F` (fix-binary): the interpreter was opened when the entry was
    /// registered, so it is found from inside any root file system.
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }
}

/// What the directory holds: whether binfmt_misc is enabled, and its
/// entries in file name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handlers {
    pub dir: PathBuf,
    pub enabled: bool,
    pub entries: Vec<Entry>,
}

impl Handlers {
    /// Reads every entry of binfmt_misc mounted at `dir`.
    pub fn read(dir: &Path) -> Result<Handlers> {
        let status_path = dir.join("status");
        let status = match std::fs::read_to_string(&status_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BinfmtError::NotMounted {
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(BinfmtError::Read {
                    path: status_path,
                    source,
                })
            }
        };
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BinfmtError::Read { path, source }
        };
        let mut names = Vec::new();
        for item in std::fs::read_dir(dir).map_err(read_err(dir))? {
            let item = item.map_err(read_err(dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name != "status" && name != "register" {
                names.push(name);
            }
        }
        names.sort();
        let mut entries = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Unregistered between listing and reading.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(BinfmtError::Read { path, source }),
            };
            entries.push(Entry::parse(&name, &path, &text)?);
        }
        Ok(Handlers {
            dir: dir.to_path_buf(),
            enabled: status.trim() == "enabled",
            entries,
        })
    }

    /// The entries that would take a file starting with `header`, enabled
    /// or not (the kernel picks the most recently registered enabled one,
    /// an order this directory does not show).
    pub fn matching<'a>(&'a self, header: &'a [u8]) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.matches(header))
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's text for Debian's qemu-aarch64 registration.
    pub(crate) const AARCH64: &str = "enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
";

    const JAR: &str = "enabled
interpreter /usr/bin/jexec
flags: 
offset 0
magic 504b0304
";

    const EXTENSION: &str = "disabled
interpreter /usr/bin/wine
flags: 
extension .exe
";

    fn parse(name: &str, text: &str) -> Entry {
        Entry::parse(name, Path::new(name), text).unwrap()
    }

    #[test]
    fn parses_a_qemu_entry() {
        let e = parse("qemu-aarch64", AARCH64);
        assert!(e.enabled);
        assert!(e.fix_binary());
        assert_eq!(e.flags, "PF");
        assert_eq!(
            e.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        let Matcher::Magic {
            offset,
            magic,
            mask,
        } = &e.matcher
        else {
            panic!("not a magic entry: {e:?}")
        };
        assert_eq!(*offset, 0);
        assert_eq!(magic.len(), 20);
        assert_eq!(mask.as_ref().map(Vec::len), Some(20));
    }

    #[test]
    fn parses_entries_without_flags_mask_or_magic() {
        let e = parse("jar", JAR);
        assert_eq!(e.flags, "");
        assert!(!e.fix_binary());
        assert_eq!(
            e.matcher,
            Matcher::Magic {
                offset: 0,
                magic: vec![0x50, 0x4b, 3, 4],
                mask: None
            }
        );
        let e = parse("wine", EXTENSION);
        assert!(!e.enabled);
        assert_eq!(e.matcher, Matcher::Extension("exe".into()));
        assert!(!e.matches(b"MZ\x90\x00"));
    }

    #[test]
    fn matches_under_the_mask() {
        let e = parse("qemu-aarch64", AARCH64);
        let mut header = *b"\x7fELF\x02\x01\x01\x00\0\0\0\0\0\0\0\0\x02\x00\xb7\x00";
        assert!(e.matches(&header));
        // e_type 3 (ET_DYN, a PIE) is masked into ET_EXEC's class.
        header[16] = 3;
        assert!(e.matches(&header));
        // The OS ABI byte is masked out.
        header[7] = 3;
        assert!(e.matches(&header));
        // Another machine (x86-64) is not.
        header[18] = 0x3e;
        assert!(!e.matches(&header));
        // Nor a header too short to hold the magic.
        assert!(!e.matches(&header[..10]));
        let jar = parse("jar", JAR);
        assert!(jar.matches(b"PK\x03\x04rest"));
        assert!(!jar.matches(b"PK\x03\x05rest"));
    }

    #[test]
    fn rejects_malformed_entries_naming_the_file() {
        for text in [
            "",
            "maybe\ninterpreter /x\nmagic 00\n",
            "enabled\nmagic 00\n",
            "enabled\ninterpreter /x\nmagic 0g\n",
            "enabled\ninterpreter /x\nmagic 0011\nmask ff\n",
            "enabled\ninterpreter /x\noffset x\nmagic 00\n",
            "enabled\ninterpreter /x\n",
        ] {
            let err = Entry::parse("e", Path::new("/b/e"), text).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("binfmt_misc entry `/b/e` is malformed"),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_a_directory_and_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let err = Handlers::read(&dir.path().join("none")).unwrap_err();
        assert!(matches!(err, BinfmtError::NotMounted { .. }), "{err}");
        std::fs::write(dir.path().join("status"), "disabled\n").unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(dir.path().join("qemu-aarch64"), AARCH64).unwrap();
        std::fs::write(dir.path().join("jar"), JAR).unwrap();
        let handlers = Handlers::read(dir.path()).unwrap();
        assert!(!handlers.enabled);
        let names: Vec<_> = handlers.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["jar", "qemu-aarch64"]);
        let header = b"\x7fELF\x02\x01\x01\x00\0\0\0\0\0\0\0\0\x02\x00\xb7\x00";
        let found: Vec<_> = handlers.matching(header).map(|e| &e.name).collect();
        assert_eq!(found, ["qemu-aarch64"]);
    }
}
