//! Lowering COPY and ADD (BuildKit's `dispatchCopy`): local, stage, image,
//! heredoc, HTTP and git sources → one FileOp of copy actions on the stage
//! state, or onto scratch and merged for `--link`. The conventions are in
//! `lower`'s module documentation.
//!
//! Like `lower`, it must not import the solver, snapshotter, cache or
//! exporter layers: deciding what a source is ends here, fetching it is
//! the solver's.

use std::collections::BTreeMap;

use super::config_values::path_clean;
use super::error::{Error, Result};
use super::git_ref::{parse_git_ref, GitRef};
use super::instructions::{merge_keep_git_dir, Add, Chmod, Copy, SourceContent};
use super::lower::{chown, InputSet, LowerError, Lowering, StageCx, State};
use super::stages::{CopyAction as PlanCopy, Source, Step};
use crate::llb::{
    attr, CopyAction, FileAction, FileActionKind, FileOp, Input, MergeOp, Op, SourceOp,
};

/// COPY and ADD, reduced to what lowering needs.
pub(super) struct Spec<'a> {
    is_add: bool,
    sources: &'a [String],
    heredocs: &'a [SourceContent],
    from: Option<&'a Source>,
    dest: &'a str,
    chown: &'a str,
    chmod: Option<&'a Chmod>,
    link: bool,
    parents: bool,
    exclude: &'a [String],
    keep_git_dir: Option<bool>,
    checksum: &'a str,
    unpack: Option<bool>,
}

impl<'a> Spec<'a> {
    pub(super) fn copy(c: &'a Copy, action: &'a PlanCopy) -> Spec<'a> {
        Spec {
            is_add: false,
            sources: &c.sources,
            heredocs: &c.heredocs,
            from: action.source.as_ref(),
            dest: &action.dest,
            chown: &c.chown,
            chmod: action.chmod.as_ref(),
            link: c.link,
            parents: c.parents,
            exclude: &c.exclude,
            keep_git_dir: None,
            checksum: "",
            unpack: None,
        }
    }

    pub(super) fn add(a: &'a Add, action: &'a PlanCopy) -> Spec<'a> {
        Spec {
            is_add: true,
            sources: &a.sources,
            heredocs: &a.heredocs,
            from: None,
            dest: &action.dest,
            chown: &a.chown,
            chmod: action.chmod.as_ref(),
            link: a.link,
            parents: false,
            exclude: &a.exclude,
            keep_git_dir: a.keep_git_dir,
            checksum: &a.checksum,
            unpack: a.unpack,
        }
    }
}

/// What one source of a COPY/ADD is.
enum Kind {
    Local,
    Http,
    Git(GitRef),
}

/// A local source split the way BuildKit copies it.
struct LocalSource {
    /// Where the copy reads, absolute (the pivot for `--parents`).
    src: String,
    /// `--parents`: what to copy below `src`.
    include: Option<String>,
    required: Option<String>,
    /// The whole path relative to the context root ("" for all of it).
    context_path: String,
}

impl Lowering<'_> {
    /// Lowers one COPY/ADD onto `state`.
    pub(super) fn copy(
        &mut self,
        cx: &mut StageCx,
        step: &Step,
        state: State,
        spec: &Spec<'_>,
    ) -> Result<State> {
        let location = step.instruction.location();
        let fail = |e: LowerError| Error::new(e, location);
        let text = StageCx::display(&cx.lex, &step.instruction.meta().code, &step.env);
        let name = cx.prefix(&text, step.onbuild);

        let mut kinds = Vec::with_capacity(spec.sources.len());
        for src in spec.sources {
            kinds.push(classify(src, spec.is_add).map_err(fail)?);
        }
        let locals: Vec<LocalSource> = spec
            .sources
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| matches!(k, Kind::Local))
            .map(|(src, _)| local_source(src, spec.parents))
            .collect();

        // Where local sources read: the --from stage or image, else one
        // context source carrying exactly this instruction's paths.
        let local_input: State = match (spec.from, locals.is_empty()) {
            (_, true) => None,
            (Some(source), false) => self.source_state(source, location).map_err(fail)?,
            (None, false) => {
                let includes: Vec<String> = locals.iter().map(|l| l.context_path.clone()).collect();
                let excludes = match locals.as_slice() {
                    [only] => context_excludes(&only.src, spec.exclude),
                    _ => Vec::new(),
                };
                Some(
                    self.context_source(&includes, &excludes, location)
                        .map_err(fail)?,
                )
            }
        };

        let link = spec.link && spec.chmod.is_none();
        let mut inputs = InputSet::default();
        let base = if link { None } else { state.clone() };
        let first_input = base.as_ref().map(|b| inputs.index(b));
        let owner = (!spec.chown.is_empty()).then(|| chown(spec.chown));
        let mode = spec.chmod.map(|c| match c {
            Chmod::Octal(bits) => format!("{bits:04o}"),
            Chmod::Symbolic(s) => s.clone(),
        });
        let plain = CopyAction {
            src: String::new(),
            dest: spec.dest.to_string(),
            owner,
            mode,
            follow_symlink: false,
            dir_copy_contents: false,
            attempt_unpack: false,
            create_dest_path: true,
            allow_wildcard: false,
            allow_empty_wildcard: false,
            include_patterns: Vec::new(),
            exclude_patterns: spec.exclude.to_vec(),
            required_paths: Vec::new(),
            parents: false,
            always_replace_existing_dest: false,
            timestamp: None,
        };

        let mut actions: Vec<(Option<u32>, CopyAction)> = Vec::new();
        let mut locals = locals.into_iter();
        for (src, kind) in spec.sources.iter().zip(kinds) {
            match kind {
                Kind::Local => {
                    let Some(local) = locals.next() else { continue };
                    let secondary = local_input.as_ref().map(|i| inputs.index(i));
                    actions.push((
                        secondary,
                        CopyAction {
                            src: local.src,
                            follow_symlink: true,
                            dir_copy_contents: true,
                            attempt_unpack: spec.is_add && spec.unpack.unwrap_or(true),
                            allow_wildcard: true,
                            allow_empty_wildcard: true,
                            include_patterns: local.include.into_iter().collect(),
                            required_paths: local.required.into_iter().collect(),
                            parents: spec.parents,
                            ..plain.clone()
                        },
                    ));
                }
                Kind::Http => {
                    let filename = http_filename(src);
                    let input = self
                        .http_source(src, &filename, spec.checksum, &name, location)
                        .map_err(fail)?;
                    actions.push((
                        Some(inputs.index(&input)),
                        CopyAction {
                            src: format!("/{filename}"),
                            attempt_unpack: spec.unpack.unwrap_or(false),
                            ..plain.clone()
                        },
                    ));
                }
                Kind::Git(git) => {
                    let input = self.git_source(&git, spec, &name, location)?;
                    actions.push((
                        Some(inputs.index(&input)),
                        CopyAction {
                            src: "/".into(),
                            ..plain.clone()
                        },
                    ));
                }
            }
        }
        for doc in spec.heredocs {
            let path = path_clean(&format!("/{}", doc.path));
            let input = self
                .inline_file(
                    path.clone(),
                    0o644,
                    &doc.data,
                    &step.platform,
                    cx.ignore_cache,
                    location,
                )
                .map_err(fail)?;
            actions.push((
                Some(inputs.index(&input)),
                CopyAction {
                    src: path,
                    ..plain.clone()
                },
            ));
        }

        let actions = actions
            .into_iter()
            .enumerate()
            .map(|(i, (secondary, copy))| FileAction {
                input: if i == 0 { first_input } else { None },
                secondary_input: secondary,
                action: FileActionKind::Copy(copy),
            })
            .collect();
        let meta = self.metadata(name, location, cx.ignore_cache);
        let copied = self
            .add(
                Op::File(FileOp { actions }),
                inputs,
                Some(step.platform.clone()),
                meta,
            )
            .map_err(fail)?;
        if !link {
            return Ok(Some(copied));
        }
        let Some(state) = state else {
            // Merging onto nothing is the copy itself.
            return Ok(Some(copied));
        };
        let mut inputs = InputSet::default();
        let lower = inputs.index(&state);
        let upper = inputs.index(&copied);
        let merge_name = cx.prefix_again(&format!("LINK {text}"), step.onbuild);
        let meta = self.metadata(merge_name, location, cx.ignore_cache);
        let merged = self
            .add(
                Op::Merge(MergeOp {
                    inputs: vec![lower, upper],
                }),
                inputs,
                Some(step.platform.clone()),
                meta,
            )
            .map_err(fail)?;
        Ok(Some(merged))
    }

    fn http_source(
        &mut self,
        url: &str,
        filename: &str,
        checksum: &str,
        name: &str,
        location: super::location::Range,
    ) -> std::result::Result<Input, LowerError> {
        let mut attrs = BTreeMap::new();
        if !checksum.is_empty() {
            check_digest(checksum)?;
            attrs.insert(attr::HTTP_CHECKSUM.to_string(), checksum.to_string());
        }
        attrs.insert(attr::HTTP_FILENAME.to_string(), filename.to_string());
        let op = Op::Source(SourceOp {
            identifier: url.to_string(),
            attrs,
        });
        let meta = self.metadata(name.to_string(), location, false);
        self.add(op, InputSet::default(), None, meta)
    }

    fn git_source(
        &mut self,
        git: &GitRef,
        spec: &Spec<'_>,
        name: &str,
        location: super::location::Range,
    ) -> Result<Input> {
        let fail = |e: LowerError| Error::new(e, location);
        let keep_git_dir = merge_keep_git_dir(spec.keep_git_dir, git.keep_git_dir)
            .map_err(|e| Error::new(e, location))?;
        if !spec.checksum.is_empty() && !git.checksum.is_empty() && spec.checksum != git.checksum {
            return Err(fail(LowerError::GitChecksumMismatch {
                flag: spec.checksum.to_string(),
                url: git.checksum.clone(),
            }));
        }
        let checksum = if git.checksum.is_empty() {
            spec.checksum
        } else {
            &git.checksum
        };

        let op = Op::Source(super::git_ref::source_op(git, keep_git_dir, checksum));
        let meta = self.metadata(name.to_string(), location, false);
        self.add(op, InputSet::default(), None, meta).map_err(fail)
    }
}

/// What a source is. COPY only has local sources (the planner refused URLs
/// and git refs); ADD also takes git and HTTP(S) URLs.
fn classify(src: &str, is_add: bool) -> std::result::Result<Kind, LowerError> {
    if !is_add {
        return Ok(Kind::Local);
    }
    match parse_git_ref(src) {
        Some(Err(reason)) => Err(LowerError::GitRef {
            url: crate::util::redact::url(src),
            reason,
        }),
        Some(Ok(git)) if !git.indistinguishable_from_local => Ok(Kind::Git(git)),
        _ if src.starts_with("http://") || src.starts_with("https://") => Ok(Kind::Http),
        _ => Ok(Kind::Local),
    }
}

/// A local source as BuildKit copies it, `--parents` splitting it at an
/// optional `/./` pivot.
fn local_source(src: &str, parents: bool) -> LocalSource {
    let context_path = relative(&path_clean(&format!("/{src}")));
    if !parents {
        return LocalSource {
            src: path_clean(&format!("/{src}")),
            include: None,
            required: None,
            context_path,
        };
    }
    let (pivot, pattern) = src.split_once("/./").unwrap_or(("/", src));
    let pattern = relative(&path_clean(&format!("/{pattern}")));
    let required = (!has_wildcards(pivot) && !has_wildcards(&pattern))
        .then(|| path_clean(&format!("/{pivot}/{pattern}")));
    LocalSource {
        src: path_clean(&format!("/{pivot}")),
        include: Some(pattern),
        required,
        context_path,
    }
}

/// `/a/b` → `a/b`, `/` → ``.
fn relative(abs: &str) -> String {
    abs.trim_start_matches('/').to_string()
}

/// BuildKit's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
fn has_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => return true,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    false
}

/// `--exclude` patterns (relative to the copied path `src`) restated
/// relative to the context root, negations kept.
fn context_excludes(src: &str, exclude: &[String]) -> Vec<String> {
    let base = relative(src);
    exclude
        .iter()
        .map(|p| {
            let (neg, pattern) = match p.strip_prefix('!') {
                Some(rest) => ("!", rest),
                None => ("", p.as_str()),
            };
            if base.is_empty() {
                format!("{neg}{pattern}")
            } else {
                format!("{neg}{base}/{pattern}")
            }
        })
        .collect()
}

/// The file name a download gets: the URL path's last element (decoded),
/// `__unnamed__` when there is none, as BuildKit names it.
pub(super) fn http_filename(url: &str) -> String {
    const UNNAMED: &str = "__unnamed__";
    let Some((_, rest)) = url.split_once("://") else {
        return UNNAMED.into();
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let rest = rest.split('?').next().unwrap_or_default();
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let Some(decoded) = percent_decode(path) else {
        return UNNAMED.into();
    };
    match super::lower::go_base(&decoded).as_str() {
        "." | "/" => UNNAMED.into(),
        base => base.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// go-digest's `Parse`: `algorithm:hex` with a known algorithm and the
/// right length of lower-case hex.
fn check_digest(checksum: &str) -> std::result::Result<(), LowerError> {
    let format = || LowerError::ChecksumFormat(checksum.to_string());
    let (algorithm, hex) = match checksum.split_once(':') {
        Some((a, h)) if !a.is_empty() && !h.is_empty() => (a, h),
        _ => return Err(format()),
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(LowerError::ChecksumAlgorithm(algorithm.to_string())),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_filenames() {
        for (url, want) in [
            ("https://example.com/a/b.tar.gz", "b.tar.gz"),
            ("https://example.com/a/b%20c.txt?x=1#f", "b c.txt"),
            ("https://example.com/", "__unnamed__"),
            ("https://example.com", "__unnamed__"),
            ("https://example.com/dir/", "dir"),
            ("https://example.com/%zz", "__unnamed__"),
        ] {
            assert_eq!(http_filename(url), want, "{url}");
        }
    }

    #[test]
    fn parents_split_at_pivot() {
        let l = local_source("a/./b/c", true);
        assert_eq!(l.src, "/a");
        assert_eq!(l.include.as_deref(), Some("b/c"));
        assert_eq!(l.required.as_deref(), Some("/a/b/c"));
        assert_eq!(l.context_path, "a/b/c");
        let l = local_source("tests/*/x.log", true);
        assert_eq!(l.src, "/");
        assert_eq!(l.include.as_deref(), Some("tests/*/x.log"));
        assert_eq!(l.required, None);
        let l = local_source("./", false);
        assert_eq!((l.src.as_str(), l.context_path.as_str()), ("/", ""));
    }

    #[test]
    fn excludes_restated_at_the_context_root() {
        let ex = vec!["*.md".to_string(), "!keep.md".to_string()];
        assert_eq!(context_excludes("/web", &ex), ["web/*.md", "!web/keep.md"]);
        assert_eq!(context_excludes("/", &ex), ["*.md", "!keep.md"]);
    }

    #[test]
    fn digests_are_checked() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert!(check_digest(&ok).is_ok());
        assert!(matches!(
            check_digest("md5:abc"),
            Err(LowerError::ChecksumAlgorithm(_))
        ));
        assert!(matches!(
            check_digest("sha256:ABC"),
            Err(LowerError::ChecksumFormat(_))
        ));
        assert!(matches!(
            check_digest("nocolon"),
            Err(LowerError::ChecksumFormat(_))
        ));
    }

    #[test]
    fn chown_reads_ids_and_names() {
        use crate::llb::UserOpt;
        let owner_of = chown;
        let c = owner_of("1000:staff");
        assert_eq!(c.user, UserOpt::Id(1000));
        assert_eq!(c.group, Some(UserOpt::Name("staff".into())));
        let c = owner_of("root");
        assert_eq!((c.user, c.group), (UserOpt::Id(0), None));
        assert_eq!(owner_of("tide").user, UserOpt::Name("tide".into()));
    }
}
