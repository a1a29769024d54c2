//! `.dockerignore` files: choosing which one applies to a build, reading
//! it into patterns the way Docker does (`ignorefile.ReadAll`), and the
//! resulting verdicts for context paths. The matching itself lives in
//! [`crate::pattern`]; this module adds the file format, line numbers for
//! errors, and BuildKit's per-Dockerfile lookup.

use std::path::{Path, PathBuf};

use crate::pattern::{MatchInfo, Pattern, PatternError, PatternMatcher};
use crate::util::fs::{self, FsError};

/// The context-wide ignore file's name.
pub const DEFAULT_NAME: &str = ".dockerignore";

/// Go's `bufio.Scanner` gives up on a line that does not fit its 64 KiB
/// buffer; Docker then fails the build, and so do we.
const MAX_LINE: usize = 64 * 1024 - 1;

/// Why an ignore file could not be found, read or understood.
#[derive(Debug, thiserror::Error)]
pub enum DockerignoreError {
    /// Looking for or reading the file failed (the path is in the error).
    #[error(transparent)]
    Access(#[from] FsError),
    /// A line longer than Docker's reader accepts.
    #[error("line {line} of `{}` is longer than {MAX_LINE} bytes", file.display())]
    LineTooLong { file: PathBuf, line: usize },
    /// A pattern Docker would reject.
    #[error("invalid pattern on line {line} of `{}`", file.display())]
    InvalidPattern {
        file: PathBuf,
        line: usize,
        #[source]
        source: PatternError,
    },
}

/// One pattern as read from the file, before it is compiled: cleaned, a
/// leading `/` dropped, `!` kept in front for exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub pattern: Vec<u8>,
}

/// Reads ignore-file text into patterns, as `ignorefile.ReadAll` does:
/// a UTF-8 byte-order mark is dropped from the first line; a line whose
/// first byte is `#` is a comment (so `  # x` is a pattern); lines are
/// trimmed and blank ones skipped; `!` and the pattern after it are trimmed
/// separately; the path is cleaned and one leading `/` removed, so `/a`,
/// `a/` and `./a` all mean `a`. `file` only names the file in errors.
pub fn read_patterns(file: &Path, content: &[u8]) -> Result<Vec<IgnoreLine>, DockerignoreError> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    // Text ending in a newline has no further (empty) line.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (index, raw) in lines.into_iter().enumerate() {
        let line = index + 1;
        if raw.len() > MAX_LINE {
            return Err(DockerignoreError::LineTooLong {
                file: file.to_path_buf(),
                line,
            });
        }
        let mut text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line == 1 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        if text.starts_with(b"#") {
            continue;
        }
        let text = crate::pattern::trim_space(text);
        if text.is_empty() {
            continue;
        }
        let (invert, body) = match text.split_first() {
            Some((b'!', rest)) => (true, crate::pattern::trim_space(rest)),
            _ => (false, text),
        };
        let mut pattern = Vec::with_capacity(body.len() + 1);
        if invert {
            pattern.push(b'!');
        }
        if !body.is_empty() {
            let cleaned = crate::pattern::clean(body);
            // `/` alone stays: Docker only strips a slash that has
            // something after it.
            let relative = match cleaned.split_first() {
                Some((b'/', rest)) if !rest.is_empty() => rest,
                _ => &cleaned,
            };
            pattern.extend_from_slice(relative);
        }
        out.push(IgnoreLine { line, pattern });
    }
    Ok(out)
}

/// A parsed ignore file: which file it was (if any) and its patterns.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    file: Option<PathBuf>,
    /// Line number of each pattern in `matcher`, for messages.
    lines: Vec<usize>,
    matcher: PatternMatcher,
}

impl Dockerignore {
    /// No ignore file: nothing is excluded.
    pub fn none() -> Dockerignore {
        Dockerignore::default()
    }

    /// Parses ignore-file text; `file` names it in errors and is recorded
    /// as [`Self::file`].
    pub fn parse(file: &Path, content: &[u8]) -> Result<Dockerignore, DockerignoreError> {
        let mut lines = Vec::new();
        let mut patterns = Vec::new();
        for entry in read_patterns(file, content)? {
            let pattern = Pattern::new(&entry.pattern).map_err(|source| {
                DockerignoreError::InvalidPattern {
                    file: file.to_path_buf(),
                    line: entry.line,
                    source,
                }
            })?;
            lines.push(entry.line);
            patterns.push(pattern);
        }
        Ok(Dockerignore {
            file: Some(file.to_path_buf()),
            lines,
            matcher: PatternMatcher::from_patterns(patterns),
        })
    }

    /// Reads and parses the ignore file at `file`.
    pub fn read(file: &Path) -> Result<Dockerignore, DockerignoreError> {
        let content = fs::read(file)?;
        Dockerignore::parse(file, &content)
    }

    /// Finds the ignore file for a build ([`find`]) and reads it; no file
    /// gives [`Dockerignore::none`].
    pub fn load(
        context: &Path,
        dockerfile: Option<&Path>,
    ) -> Result<Dockerignore, DockerignoreError> {
        match find(context, dockerfile)? {
            Some(file) => Dockerignore::read(&file),
            None => Ok(Dockerignore::none()),
        }
    }

    /// The file the patterns came from; `None` when there was none.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn matcher(&self) -> &PatternMatcher {
        &self.matcher
    }

    /// The patterns with the line each came from.
    pub fn patterns(&self) -> impl Iterator<Item = (usize, &Pattern)> {
        self.lines.iter().copied().zip(self.matcher.patterns())
    }

    /// Whether the context path (slash-separated, relative to the context
    /// root) is left out of the build context.
    pub fn is_excluded(&self, path: impl AsRef<[u8]>) -> bool {
        self.matcher.matches_or_parent_matches(path)
    }

    /// [`PatternMatcher::matches_using_parent_results`], for walkers.
    pub fn is_excluded_using_parent(
        &self,
        path: impl AsRef<[u8]>,
        parent: &MatchInfo,
    ) -> (bool, MatchInfo) {
        self.matcher.matches_using_parent_results(path, parent)
    }

    /// [`PatternMatcher::must_walk`]: whether an excluded directory still
    /// has to be descended into for `!` exceptions.
    pub fn must_walk(&self, dir: impl AsRef<[u8]>) -> bool {
        self.matcher.must_walk(dir)
    }
}

/// Picks the ignore file for a build the way BuildKit does: the file named
/// after the Dockerfile with `.dockerignore` appended, in the Dockerfile's
/// own directory (`build.Dockerfile` → `build.Dockerfile.dockerignore`),
/// then `<context>/.dockerignore`, else none. `dockerfile` is `None` when
/// the Dockerfile does not come from a file (stdin), and is used as given:
/// a relative path is relative to the current directory, as for `-f`.
///
/// The name is derived from the path asked for, so a build of `Dockerfile`
/// that falls back to a lower-case `dockerfile` still looks for
/// `Dockerfile.dockerignore`. An existing file wins even when empty, which
/// disables the context's `.dockerignore`. A directory of that name counts
/// as absent (BuildKit fails to read it and moves on); any other failure to
/// look is an error rather than a silently unfiltered context.
pub fn find(
    context: &Path,
    dockerfile: Option<&Path>,
) -> Result<Option<PathBuf>, DockerignoreError> {
    if let Some(dockerfile) = dockerfile {
        let mut name = dockerfile.as_os_str().to_os_string();
        name.push(DEFAULT_NAME);
        let candidate = PathBuf::from(name);
        if is_readable_file(&candidate)? {
            return Ok(Some(candidate));
        }
    }
    let candidate = context.join(DEFAULT_NAME);
    if is_readable_file(&candidate)? {
        return Ok(Some(candidate));
    }
    Ok(None)
}

fn is_readable_file(path: &Path) -> Result<bool, FsError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(!meta.is_dir()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::new("look for ignore file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::GlobProblem;

    fn lines(content: &str) -> Vec<(usize, String)> {
        read_patterns(Path::new(".dockerignore"), content.as_bytes())
            .unwrap()
            .into_iter()
            .map(|l| (l.line, String::from_utf8(l.pattern).unwrap()))
            .collect()
    }

    fn owned(v: &[(usize, &str)]) -> Vec<(usize, String)> {
        v.iter().map(|&(n, s)| (n, s.to_string())).collect()
    }

    #[test]
    fn reader_skips_comments_and_blank_lines() {
        let text = "# comment\n\nnode_modules\n   \n  # indented: a pattern\n*.log\n";
        assert_eq!(
            lines(text),
            owned(&[
                (3, "node_modules"),
                (5, "# indented: a pattern"),
                (6, "*.log")
            ])
        );
    }

    #[test]
    fn reader_trims_cleans_and_drops_the_leading_slash() {
        let text = "  /build/  \n./a/../b\n//c//d\n/\n\t!  /keep/me/ \n!!x\n../up\n";
        assert_eq!(
            lines(text),
            owned(&[
                (1, "build"),
                (2, "b"),
                (3, "c/d"),
                (4, "/"),
                (5, "!keep/me"),
                (6, "!!x"),
                (7, "../up"),
            ])
        );
    }

    #[test]
    fn reader_handles_bom_crlf_and_missing_final_newline() {
        assert_eq!(lines("\u{FEFF}a\r\n#c\r\nb"), owned(&[(1, "a"), (3, "b")]));
        // Only the first line loses a byte-order mark.
        assert_eq!(
            lines("a\n\u{FEFF}b\n"),
            owned(&[(1, "a"), (2, "\u{FEFF}b")])
        );
        // A byte-order mark before `#` still makes a comment.
        assert_eq!(lines("\u{FEFF}# c\nx"), owned(&[(2, "x")]));
        assert!(lines("").is_empty());
        assert!(lines("\n\n").is_empty());
    }

    #[test]
    fn reader_keeps_backslashes_for_the_matcher() {
        assert_eq!(lines("a\\*b\n\\#x\n"), owned(&[(1, "a\\*b"), (2, "\\#x")]));
        let ignore = Dockerignore::parse(Path::new("x"), b"\\#x\na\\*b").unwrap();
        assert!(ignore.is_excluded("#x"));
        assert!(ignore.is_excluded("a*b"));
        assert!(!ignore.is_excluded("axb"));
    }

    #[test]
    fn reader_rejects_overlong_lines() {
        let ok = "a".repeat(MAX_LINE);
        assert_eq!(lines(&ok).len(), 1);
        let long = format!("x\n{}\n", "a".repeat(MAX_LINE + 1));
        let err = read_patterns(Path::new("/c/.dockerignore"), long.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            DockerignoreError::LineTooLong { line: 2, .. }
        ));
        assert_eq!(
            err.to_string(),
            "line 2 of `/c/.dockerignore` is longer than 65535 bytes"
        );
    }

    #[test]
    fn invalid_patterns_name_file_line_and_pattern() {
        let file = Path::new("/ctx/.dockerignore");
        let err = Dockerignore::parse(file, b"# x\nok\n\n  src/[a  \n").unwrap_err();
        let DockerignoreError::InvalidPattern { line, source, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*line, 4);
        assert_eq!(
            *source,
            PatternError::Syntax {
                pattern: "src/[a".into(),
                problem: GlobProblem::UnterminatedClass
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid pattern on line 4 of `/ctx/.dockerignore`"
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("`src/[a`"), "{cause}");
    }

    #[test]
    fn lone_exclamation_is_an_error() {
        for text in ["a\n!\n", "a\n!   \n", "a\n!/\n"] {
            let err = Dockerignore::parse(Path::new("f"), text.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    err,
                    DockerignoreError::InvalidPattern {
                        line: 2,
                        source: PatternError::LoneExclamation,
                        ..
                    }
                ),
                "{text:?}: {err:?}"
            );
        }
    }

    #[test]
    fn parsed_file_excludes_and_reincludes() {
        let text = "# build outputs\n/target\n*.log\n!keep.log\nsecrets/**\n!secrets/public\n";
        let ignore = Dockerignore::parse(Path::new(".dockerignore"), text.as_bytes()).unwrap();
        assert_eq!(ignore.file(), Some(Path::new(".dockerignore")));
        let numbered: Vec<(usize, String)> =
            ignore.patterns().map(|(n, p)| (n, p.to_string())).collect();
        assert_eq!(
            numbered,
            owned(&[
                (2, "target"),
                (3, "*.log"),
                (4, "!keep.log"),
                (5, "secrets/**"),
                (6, "!secrets/public"),
            ])
        );
        assert!(ignore.is_excluded("target"));
        assert!(ignore.is_excluded("target/debug/bk"));
        assert!(!ignore.is_excluded("src/target"));
        assert!(ignore.is_excluded("x.log"));
        assert!(!ignore.is_excluded("keep.log"));
        assert!(!ignore.is_excluded("secrets"));
        assert!(ignore.is_excluded("secrets/key"));
        assert!(!ignore.is_excluded("secrets/public/cert.pem"));
        assert!(!ignore.must_walk("target"));
        assert!(ignore.must_walk("secrets"));
        let (hit, info) = ignore.is_excluded_using_parent("secrets/public", &MatchInfo::default());
        assert!(!hit);
        let (hit, _) = ignore.is_excluded_using_parent("secrets/public/cert.pem", &info);
        assert!(!hit);
        let none = Dockerignore::none();
        assert!(none.file().is_none());
        assert!(!none.is_excluded("anything"));
    }

    fn write(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn lookup_prefers_the_dockerfile_specific_file() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        write(&ctx.join(".dockerignore"), "from-context\n");
        write(&ctx.join("Dockerfile"), "FROM scratch\n");
        let dockerfile = ctx.join("Dockerfile");

        // Only the context file exists.
        assert_eq!(
            find(ctx, Some(&dockerfile)).unwrap(),
            Some(ctx.join(".dockerignore"))
        );
        let ignore = Dockerignore::load(ctx, Some(&dockerfile)).unwrap();
        assert!(ignore.is_excluded("from-context"));

        // `<Dockerfile>.dockerignore` beside it wins.
        write(&ctx.join("Dockerfile.dockerignore"), "from-dockerfile\n");
        assert_eq!(
            find(ctx, Some(&dockerfile)).unwrap(),
            Some(ctx.join("Dockerfile.dockerignore"))
        );
        let ignore = Dockerignore::load(ctx, Some(&dockerfile)).unwrap();
        assert!(ignore.is_excluded("from-dockerfile"));
        assert!(!ignore.is_excluded("from-context"));

        // Without a Dockerfile file (stdin) only the context counts.
        assert_eq!(find(ctx, None).unwrap(), Some(ctx.join(".dockerignore")));
    }

    #[test]
    fn lookup_uses_the_dockerfile_name_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        let df_dir = dir.path().join("docker");
        write(&ctx.join(".dockerignore"), "ctx\n");
        let dockerfile = df_dir.join("build.Dockerfile");
        write(&dockerfile, "FROM scratch\n");
        // A file named for another Dockerfile does not apply.
        write(&df_dir.join("Dockerfile.dockerignore"), "other\n");
        assert_eq!(
            find(&ctx, Some(&dockerfile)).unwrap(),
            Some(ctx.join(".dockerignore"))
        );
        write(&df_dir.join("build.Dockerfile.dockerignore"), "mine\n");
        assert_eq!(
            find(&ctx, Some(&dockerfile)).unwrap(),
            Some(df_dir.join("build.Dockerfile.dockerignore"))
        );
        // The name follows the path asked for, not a lower-case fallback.
        let lower = df_dir.join("dockerfile");
        write(&lower, "FROM scratch\n");
        write(&df_dir.join("dockerfile.dockerignore"), "lower\n");
        assert_eq!(
            find(&ctx, Some(&df_dir.join("Dockerfile"))).unwrap(),
            Some(df_dir.join("Dockerfile.dockerignore"))
        );
    }

    #[test]
    fn lookup_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        let dockerfile = ctx.join("Dockerfile");
        // Nothing at all.
        assert_eq!(find(ctx, Some(&dockerfile)).unwrap(), None);
        let ignore = Dockerignore::load(ctx, Some(&dockerfile)).unwrap();
        assert!(ignore.file().is_none());
        assert!(ignore.matcher().is_empty());

        // An empty Dockerfile-specific file still disables the context's.
        write(&ctx.join(".dockerignore"), "*\n");
        write(&ctx.join("Dockerfile.dockerignore"), "");
        let ignore = Dockerignore::load(ctx, Some(&dockerfile)).unwrap();
        assert_eq!(
            ignore.file(),
            Some(ctx.join("Dockerfile.dockerignore").as_path())
        );
        assert!(!ignore.is_excluded("anything"));

        // A directory of that name counts as absent.
        std::fs::remove_file(ctx.join("Dockerfile.dockerignore")).unwrap();
        std::fs::create_dir(ctx.join("Dockerfile.dockerignore")).unwrap();
        assert_eq!(
            find(ctx, Some(&dockerfile)).unwrap(),
            Some(ctx.join(".dockerignore"))
        );
        std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
        std::fs::create_dir(ctx.join(".dockerignore")).unwrap();
        assert_eq!(find(ctx, Some(&dockerfile)).unwrap(), None);
    }

    #[test]
    fn fs_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A context that is a file: looking inside it fails, not "absent".
        let not_a_dir = dir.path().join("file");
        write(&not_a_dir, "x");
        let err = find(&not_a_dir, None).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("{}", not_a_dir.join(".dockerignore").display())),
            "{shown}"
        );

        let missing = dir.path().join("missing.dockerignore");
        let err = Dockerignore::read(&missing).unwrap_err();
        assert!(
            matches!(&err, DockerignoreError::Access(e) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(
            err.to_string(),
            format!("failed to read `{}`", missing.display())
        );
    }
}
