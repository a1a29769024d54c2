//! COPY and ADD: sources (paths, URLs, git refs, heredoc bodies) and a
//! destination, their flags, and the option checks BuildKit makes once the
//! values are expanded (`--chmod` syntax, `--checksum` sources,
//! `keep-git-dir` consistency).
//!
//! Heredoc markers are read with the parser's own reader, as BuildKit does.
//! It must not import the lexer (expansion is a callback), the filesystem
//! or any git/HTTP code: deciding what a source *is* belongs to the layer
//! that fetches it, which passes that knowledge into the checks here.

use super::{expand_all, locate, Expander, InstructionError, Meta, Request};
use crate::dockerfile::error::{Error, Result};
use crate::dockerfile::heredoc::{chomp_heredoc_content, must_parse_heredoc};
pub use crate::util::chmod::Chmod;
use crate::util::chmod::{self, ChmodError};

/// A heredoc body used as a source file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceContent {
    /// The file name it is copied as (the heredoc's delimiter).
    pub path: String,
    /// The body, chomped if `<<-` was used.
    pub data: String,
    /// The delimiter was unquoted: variables in `data` are expanded (by
    /// `expand_raw`).
    pub expand: bool,
}

/// `COPY [--from=…] [--chown=…] [--chmod=…] [--link] [--parents]
/// [--exclude=…] src… dest`. Empty strings mean "flag not given", as in
/// BuildKit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub meta: Meta,
    /// Source paths (not heredocs), unexpanded until `expand`.
    pub sources: Vec<String>,
    /// Heredoc sources, become inline files.
    pub heredocs: Vec<SourceContent>,
    pub dest: String,
    /// Stage, image or named context to copy from; expanded by the stage
    /// layer with global ARGs, not by `expand`.
    pub from: String,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    pub parents: bool,
    /// `--exclude` patterns, never expanded (as in BuildKit).
    pub exclude: Vec<String>,
}

/// `ADD [--chown=…] [--chmod=…] [--link] [--keep-git-dir[=bool]]
/// [--checksum=…] [--unpack[=bool]] [--exclude=…] src… dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub meta: Meta,
    pub sources: Vec<String>,
    pub heredocs: Vec<SourceContent>,
    pub dest: String,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    /// `None` when not given, so a git URL's own setting can apply.
    pub keep_git_dir: Option<bool>,
    pub checksum: String,
    /// `None` when not given: local archives are unpacked, remote not.
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

/// The split of COPY/ADD arguments into sources and destination.
struct SourcesAndDest {
    sources: Vec<String>,
    heredocs: Vec<SourceContent>,
    dest: String,
}

fn sources_and_dest(req: &Request, name: &'static str) -> Result<SourcesAndDest> {
    let Some((dest, sources)) = req.args.split_last() else {
        return Err(req.fail(InstructionError::NoDestination(name)));
    };
    if must_parse_heredoc(dest).is_some() {
        return Err(req.fail(InstructionError::HeredocDestination(name)));
    }
    let mut paths = Vec::new();
    let mut heredocs = Vec::new();
    for source in sources {
        let Some(word) = must_parse_heredoc(source) else {
            paths.push(source.clone());
            continue;
        };
        // Bodies are found by delimiter; with repeated delimiters the last
        // body wins, as BuildKit's lookup map does.
        let body = req
            .heredocs()
            .iter()
            .rev()
            .find(|h| h.name == word.name)
            .map(|h| h.content.as_str())
            .unwrap_or_default();
        heredocs.push(SourceContent {
            data: if word.chomp {
                chomp_heredoc_content(body)
            } else {
                body.to_string()
            },
            path: word.name,
            expand: word.expand,
        });
    }
    Ok(SourcesAndDest {
        sources: paths,
        heredocs,
        dest: dest.clone(),
    })
}

fn at_least_two(req: &Request, name: &'static str) -> Result<()> {
    if req.args.len() < 2 {
        return Err(req.fail(InstructionError::NoDestination(name)));
    }
    Ok(())
}

pub(crate) fn parse_copy(req: &mut Request) -> Result<Copy> {
    at_least_two(req, "COPY")?;
    let chown = req.flags.add_string("chown", "");
    let from = req.flags.add_string("from", "");
    let chmod = req.flags.add_string("chmod", "");
    let link = req.flags.add_bool("link", false);
    let exclude = req.flags.add_strings("exclude");
    let parents = req.flags.add_bool("parents", false);
    req.parse_flags()?;
    let parts = sources_and_dest(req, "COPY")?;
    let flags = &req.flags;
    Ok(Copy {
        meta: req.meta(),
        sources: parts.sources,
        heredocs: parts.heredocs,
        dest: parts.dest,
        from: flags.value(from).to_string(),
        chown: flags.value(chown).to_string(),
        chmod: flags.value(chmod).to_string(),
        link: flags.is_true(link),
        parents: flags.is_true(parents),
        exclude: flags.values(exclude).to_vec(),
    })
}

pub(crate) fn parse_add(req: &mut Request) -> Result<Add> {
    at_least_two(req, "ADD")?;
    let chown = req.flags.add_string("chown", "");
    let chmod = req.flags.add_string("chmod", "");
    let link = req.flags.add_bool("link", false);
    let keep_git_dir = req.flags.add_bool("keep-git-dir", false);
    let checksum = req.flags.add_string("checksum", "");
    let unpack = req.flags.add_bool("unpack", false);
    let exclude = req.flags.add_strings("exclude");
    req.parse_flags()?;
    let parts = sources_and_dest(req, "ADD")?;
    let flags = &req.flags;
    Ok(Add {
        meta: req.meta(),
        sources: parts.sources,
        heredocs: parts.heredocs,
        dest: parts.dest,
        chown: flags.value(chown).to_string(),
        chmod: flags.value(chmod).to_string(),
        link: flags.is_true(link),
        keep_git_dir: flags.bool_if_used(keep_git_dir),
        checksum: flags.value(checksum).to_string(),
        unpack: flags.bool_if_used(unpack),
        exclude: flags.values(exclude).to_vec(),
    })
}

/// Expands sources, then the destination.
fn expand_paths(sources: &mut [String], dest: &mut String, f: &mut Expander<'_>) -> Result<()> {
    expand_all(sources, f)?;
    *dest = f(dest)?;
    Ok(())
}

/// Expands the bodies of heredocs whose delimiter was unquoted.
fn expand_heredocs(heredocs: &mut [SourceContent], f: &mut Expander<'_>) -> Result<()> {
    for heredoc in heredocs.iter_mut().filter(|h| h.expand) {
        heredoc.data = f(&heredoc.data)?;
    }
    Ok(())
}

impl Copy {
    /// Expands `--chown`, `--chmod`, the sources and the destination.
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        let location = self.meta.location;
        (|| {
            self.chown = f(&self.chown)?;
            self.chmod = f(&self.chmod)?;
            expand_paths(&mut self.sources, &mut self.dest, f)
        })()
        .map_err(|e| locate(e, location))
    }

    /// Expands heredoc bodies (with a quote-preserving expander).
    pub fn expand_raw(&mut self, f: &mut Expander<'_>) -> Result<()> {
        expand_heredocs(&mut self.heredocs, f).map_err(|e| locate(e, self.meta.location))
    }

    /// The checks BuildKit makes on expanded options when it dispatches
    /// COPY: `--chmod` syntax.
    pub fn validate(&self) -> Result<Option<Chmod>> {
        optional_chmod(&self.chmod).map_err(|e| Error::new(e, self.meta.location))
    }
}

impl Add {
    /// Expands `--chown`, `--chmod`, `--checksum`, the sources and the
    /// destination.
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        let location = self.meta.location;
        (|| {
            self.chown = f(&self.chown)?;
            self.chmod = f(&self.chmod)?;
            self.checksum = f(&self.checksum)?;
            expand_paths(&mut self.sources, &mut self.dest, f)
        })()
        .map_err(|e| locate(e, location))
    }

    /// Expands heredoc bodies (with a quote-preserving expander).
    pub fn expand_raw(&mut self, f: &mut Expander<'_>) -> Result<()> {
        expand_heredocs(&mut self.heredocs, f).map_err(|e| locate(e, self.meta.location))
    }

    /// The checks BuildKit makes on expanded options when it dispatches ADD:
    /// `--chmod` syntax, and `--checksum` only for a single HTTP(S) or git
    /// source. What counts as a git source is decided by the caller's
    /// `is_git` (git reference parsing lives with the git fetcher); a
    /// source is HTTP when it starts with `http://`/`https://` and is not
    /// git.
    pub fn validate(&self, is_git: &dyn Fn(&str) -> bool) -> Result<Option<Chmod>> {
        let fail = |e| Error::new(e, self.meta.location);
        let chmod = optional_chmod(&self.chmod).map_err(fail)?;
        if !self.checksum.is_empty() {
            let [source] = self.sources.as_slice() else {
                return Err(fail(InstructionError::ChecksumMultipleSources));
            };
            let http = source.starts_with("http://") || source.starts_with("https://");
            if !http && !is_git(source) {
                return Err(fail(InstructionError::ChecksumSource));
            }
        }
        Ok(chmod)
    }
}

fn optional_chmod(value: &str) -> std::result::Result<Option<Chmod>, InstructionError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_chmod(value).map(Some)
}

/// Reads an expanded `--chmod` (see [`crate::util::chmod::parse`]) with
/// BuildKit's instruction error texts.
pub fn parse_chmod(value: &str) -> std::result::Result<Chmod, InstructionError> {
    chmod::parse(value).map_err(|e| match e {
        ChmodError::NotOctal(v) => InstructionError::ChmodNotOctal(v),
        ChmodError::Syntax(v) => InstructionError::ChmodSyntax(v),
    })
}

/// Combines `ADD --keep-git-dir` with the git URL's own `keep-git-dir`
/// query setting (parsed by the git layer): both may be given only if they
/// agree; the URL's wins otherwise.
pub fn merge_keep_git_dir(
    flag: Option<bool>,
    url: Option<bool>,
) -> std::result::Result<Option<bool>, InstructionError> {
    match (flag, url) {
        (Some(a), Some(b)) if a != b => Err(InstructionError::KeepGitDirConflict),
        (flag, None) => Ok(flag),
        (_, url) => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction};
    use super::*;
    use crate::dockerfile::node::{Heredoc, Node};

    fn copy(n: &Node) -> Copy {
        match parse_instruction(n).unwrap() {
            Instruction::Copy(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn add(n: &Node) -> Add {
        match parse_instruction(n).unwrap() {
            Instruction::Add(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
            ..Heredoc::default()
        }
    }

    fn content(path: &str, data: &str, expand: bool) -> SourceContent {
        SourceContent {
            path: path.into(),
            data: data.into(),
            expand,
        }
    }

    #[test]
    fn copy_sources_and_destination() {
        let c = copy(&node("copy", &[], &["a", "b", "/dst/"]));
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        assert!(c.heredocs.is_empty());
        assert_eq!(
            (c.from.as_str(), c.chown.as_str(), c.chmod.as_str()),
            ("", "", "")
        );
        assert!(!c.link && !c.parents && c.exclude.is_empty());
        let c = copy(&json_node("copy", &[], &["a b", "/d"]));
        assert_eq!(c.sources, ["a b"]);
    }

    #[test]
    fn copy_flags() {
        let c = copy(&node(
            "copy",
            &[
                "--from=build",
                "--chown=1:2",
                "--chmod=0755",
                "--link",
                "--parents",
                "--exclude=*.md",
                "--exclude=tmp",
            ],
            &["a", "/b"],
        ));
        assert_eq!(c.from, "build");
        assert_eq!(c.chown, "1:2");
        assert_eq!(c.chmod, "0755");
        assert!(c.link && c.parents);
        assert_eq!(c.exclude, ["*.md", "tmp"]);
    }

    #[test]
    fn copy_rejects_add_only_flags() {
        for flag in [
            "--checksum=sha256:x",
            "--keep-git-dir",
            "--unpack",
            "--platform=x",
        ] {
            let err = parse_err(&node("copy", &[flag], &["a", "/b"]));
            assert!(err.starts_with("unknown flag: --"), "{flag}: {err}");
        }
        assert_eq!(
            parse_err(&node("copy", &["--chmode=1"], &["a", "/b"])),
            "unknown flag: --chmode (did you mean chmod?)"
        );
    }

    #[test]
    fn add_flags() {
        let a = add(&node(
            "add",
            &[
                "--chown=app",
                "--chmod=u+x",
                "--link=true",
                "--keep-git-dir=false",
                "--checksum=sha256:abc",
                "--unpack",
                "--exclude=x",
            ],
            &["https://example.com/a.tar", "/b"],
        ));
        assert_eq!((a.chown.as_str(), a.chmod.as_str()), ("app", "u+x"));
        assert!(a.link);
        assert_eq!(a.keep_git_dir, Some(false));
        assert_eq!(a.checksum, "sha256:abc");
        assert_eq!(a.unpack, Some(true));
        assert_eq!(a.exclude, ["x"]);
        let a = add(&node("add", &[], &["a", "/b"]));
        assert_eq!((a.keep_git_dir, a.unpack), (None, None));
        assert_eq!(
            parse_err(&node("add", &["--from=x"], &["a", "/b"])),
            "unknown flag: --from"
        );
        assert_eq!(
            parse_err(&node("add", &["--parents"], &["a", "/b"])),
            "unknown flag: --parents"
        );
    }

    #[test]
    fn argument_count_checked_before_flags() {
        assert_eq!(
            parse_err(&node("copy", &["--bogus"], &["only"])),
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(
            parse_err(&node("add", &[], &[])),
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined"
        );
    }

    #[test]
    fn heredoc_destination_is_refused() {
        let mut n = node("copy", &[], &["/foo", "<<EOF"]);
        n.heredocs = vec![heredoc("EOF", "")];
        assert_eq!(
            parse_err(&n),
            "COPY cannot accept a heredoc as a destination"
        );
        let mut n = node("add", &[], &["/foo", "<<-'EOF'"]);
        n.heredocs = vec![heredoc("EOF", "")];
        assert_eq!(
            parse_err(&n),
            "ADD cannot accept a heredoc as a destination"
        );
    }

    #[test]
    fn heredoc_sources_become_inline_files() {
        let mut n = node("copy", &[], &["<<EOF", "/bar"]);
        n.heredocs = vec![heredoc("EOF", "")];
        assert_eq!(copy(&n).heredocs, [content("EOF", "", true)]);

        let mut n = node("copy", &[], &["<<EOF", "/bar"]);
        n.heredocs = vec![heredoc("EOF", "TESTING\n")];
        let c = copy(&n);
        assert_eq!(c.heredocs, [content("EOF", "TESTING\n", true)]);
        assert!(c.sources.is_empty());

        let mut n = node("copy", &[], &["<<-EOF", "/bar"]);
        n.heredocs = vec![heredoc("EOF", "\tTESTING\n")];
        assert_eq!(copy(&n).heredocs, [content("EOF", "TESTING\n", true)]);

        let mut n = node("copy", &[], &["<<'EOF'", "/bar"]);
        n.heredocs = vec![heredoc("EOF", "TESTING\n")];
        assert_eq!(copy(&n).heredocs, [content("EOF", "TESTING\n", false)]);

        let mut n = node("copy", &[], &["<<EOF1", "<<EOF2", "/bar"]);
        n.heredocs = vec![
            heredoc("EOF1", "this is the first file\n"),
            heredoc("EOF2", "this is the second file\n"),
        ];
        assert_eq!(
            copy(&n).heredocs,
            [
                content("EOF1", "this is the first file\n", true),
                content("EOF2", "this is the second file\n", true)
            ]
        );

        let mut n = node("add", &[], &["<<EOF", "foo.txt", "/bar"]);
        n.heredocs = vec![heredoc("EOF", "this is inline\n")];
        let a = add(&n);
        assert_eq!(a.sources, ["foo.txt"]);
        assert_eq!(a.heredocs, [content("EOF", "this is inline\n", true)]);

        let mut n = node("copy", &[], &["<<EOF", "/quotes"]);
        n.heredocs = vec![heredoc("EOF", "\"quotes\"\n")];
        assert_eq!(copy(&n).heredocs, [content("EOF", "\"quotes\"\n", true)]);
    }

    #[test]
    fn heredoc_without_body_is_empty() {
        let c = copy(&node("copy", &[], &["<<MISSING", "/bar"]));
        assert_eq!(c.heredocs, [content("MISSING", "", true)]);
    }

    #[test]
    fn expansion() {
        let mut n = node(
            "copy",
            &["--chown=$U", "--chmod=$M", "--from=$S", "--exclude=$E"],
            &["$A", "<<EOF", "/$D"],
        );
        n.heredocs = vec![heredoc("EOF", "hi $U\n")];
        let mut c = copy(&n);
        let table = &[
            ("U", "me"),
            ("M", "644"),
            ("A", "src"),
            ("D", "dst"),
            ("S", "x"),
            ("E", "y"),
        ];
        c.expand(&mut vars(table)).unwrap();
        assert_eq!((c.chown.as_str(), c.chmod.as_str()), ("me", "644"));
        assert_eq!(c.sources, ["src"]);
        assert_eq!(c.dest, "/dst");
        assert_eq!(c.from, "$S");
        assert_eq!(c.exclude, ["$E"]);
        assert_eq!(c.heredocs[0].data, "hi $U\n");
        c.expand_raw(&mut vars(table)).unwrap();
        assert_eq!(c.heredocs[0].data, "hi me\n");

        let mut n = node("add", &["--checksum=$C"], &["<<'EOF'", "/d"]);
        n.heredocs = vec![heredoc("EOF", "$C\n")];
        let mut a = add(&n);
        a.expand(&mut vars(&[("C", "sha256:1")])).unwrap();
        a.expand_raw(&mut vars(&[("C", "sha256:1")])).unwrap();
        assert_eq!(a.checksum, "sha256:1");
        assert_eq!(a.heredocs[0].data, "$C\n");
    }

    #[test]
    fn chmod_values() {
        assert_eq!(parse_chmod("755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(parse_chmod("0644"), Ok(Chmod::Octal(0o644)));
        assert_eq!(parse_chmod("7777"), Ok(Chmod::Octal(0o7777)));
        assert_eq!(parse_chmod("0"), Ok(Chmod::Octal(0)));
        for sym in [
            "u+x",
            "go-w",
            "a=rX",
            "u=rwx,g=rx,o=",
            "+x",
            "g=u",
            "u+s",
            "o+t",
            "ug+rw-x",
            "-",
            "=",
        ] {
            assert_eq!(parse_chmod(sym), Ok(Chmod::Symbolic(sym.into())), "{sym}");
        }
        let not_octal = |v: &str| {
            format!(
                "invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777"
            )
        };
        for bad in [
            "10000",
            "64a",
            "7778",
            "8",
            "9x",
            "0o7",
            "1_0",
            "77777777777",
        ] {
            assert_eq!(
                parse_chmod(bad).unwrap_err().to_string(),
                not_octal(bad),
                "{bad}"
            );
        }
        for bad in ["u", "x", "u+x,", ",u+x", "+7", "u+q", "rw", "a,b"] {
            assert_eq!(
                parse_chmod(bad).unwrap_err().to_string(),
                "invalid syntax",
                "{bad}"
            );
        }
    }

    #[test]
    fn validate_after_expansion() {
        let c = copy(&node("copy", &["--chmod=888"], &["a", "/b"]));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid chmod parameter"));
        assert_eq!(
            copy(&node("copy", &[], &["a", "/b"])).validate().unwrap(),
            None
        );

        let no_git = |_: &str| false;
        let git = |s: &str| s.ends_with(".git");
        let a = add(&node(
            "add",
            &["--checksum=sha256:x"],
            &["https://x/y.tar", "/b"],
        ));
        assert!(a.validate(&no_git).is_ok());
        let a = add(&node("add", &["--checksum=sha256:x"], &["a", "b", "/c"]));
        assert_eq!(
            a.validate(&no_git).unwrap_err().to_string(),
            "checksum can't be specified for multiple sources"
        );
        let a = add(&node("add", &["--checksum=abc"], &["git@host:r.git", "/c"]));
        assert_eq!(
            a.validate(&no_git).unwrap_err().to_string(),
            "checksum requires HTTP(S) or Git sources"
        );
        assert!(a.validate(&git).is_ok());
        let a = add(&node("add", &["--chmod=u+x"], &["a", "/c"]));
        assert_eq!(
            a.validate(&no_git).unwrap(),
            Some(Chmod::Symbolic("u+x".into()))
        );
    }

    #[test]
    fn keep_git_dir_merging() {
        assert_eq!(merge_keep_git_dir(None, None), Ok(None));
        assert_eq!(merge_keep_git_dir(Some(true), None), Ok(Some(true)));
        assert_eq!(merge_keep_git_dir(None, Some(false)), Ok(Some(false)));
        assert_eq!(merge_keep_git_dir(Some(true), Some(true)), Ok(Some(true)));
        assert_eq!(
            merge_keep_git_dir(Some(true), Some(false))
                .unwrap_err()
                .to_string(),
            "inconsistent keep-git-dir configuration"
        );
    }
}
