//! `bk build -` and `bk build http(s)://…`: standard input (or the
//! download) is either a build context tarball (plain or compressed with
//! gzip, bzip2, xz or zstd) or, when it is not an archive, the Dockerfile
//! with an empty context, as buildx decides by looking at its first
//! bytes. Git contexts are refused by name. A tarball is unpacked into a private directory under the
//! store's `tmp/` that lives as long as the build; its Dockerfile is
//! `Dockerfile` inside it, or `-f PATH` (a file outside the tarball when
//! PATH exists, else a path inside it). A download is shown as the step
//! `[internal] load remote build context`, as BuildKit names it.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

use crate::source::dockerignore::Dockerignore;

/// How far into a tar stream its `ustar` magic is.
const TAR_MAGIC_AT: usize = 257;

/// Where a build's context and Dockerfile are, once standard input is
/// read.
pub struct Inputs {
    /// The context directory.
    pub context: String,
    /// The Dockerfile: a path, or `-` for standard input.
    pub dockerfile: String,
    /// The Dockerfile's text when it was read from standard input here.
    pub dockerfile_text: Option<String>,
    /// The unpacked tarball (or empty context), removed when dropped.
    pub _dir: Option<tempfile::TempDir>,
    /// A git context's checkout, leased from the cache until dropped.
    pub _checkout: Option<super::build_remote::Checkout>,
    /// A context fetched from a URL (git or HTTP).
    pub remote: bool,
    /// The progress display that showed the fetch, for the build to go
    /// on with.
    pub progress: Option<super::build_remote::Display>,
}

impl Inputs {
    /// The ignore file that filters the context. None for a context
    /// fetched from a URL: as BuildKit says, `.dockerignore` only filters
    /// what the client sends, and a git or HTTP context is used whole.
    pub fn dockerignore(&self, dockerfile: Option<&Path>) -> anyhow::Result<Dockerignore> {
        if self.remote {
            return Ok(Dockerignore::none());
        }
        Dockerignore::load(Path::new(&self.context), dockerfile)
            .context("failed to read the ignore file")
    }
}

/// Reads standard input when the context is `-`, checks a git context
/// out, downloads an HTTP one; otherwise returns the context and
/// Dockerfile as given.
pub fn inputs(opts: &super::build::BuildOpts, root: &Path) -> anyhow::Result<Inputs> {
    let (context, file) = (opts.context.as_str(), opts.file.as_deref());
    if let Some(git) = super::build_remote::detect(context) {
        return super::build_remote::inputs(context, &git?, opts, root);
    }
    if context.starts_with("http://") || context.starts_with("https://") {
        return remote(context, file, root, opts.progress.into());
    }
    if context != "-" {
        return Ok(Inputs {
            context: context.to_string(),
            dockerfile: super::build::dockerfile_path(file, context)?,
            dockerfile_text: None,
            _dir: None,
            _checkout: None,
            remote: false,
            progress: None,
        });
    }
    if file == Some("-") {
        bail!("invalid argument: can't use standard input for both the build context and the Dockerfile");
    }
    read(std::io::stdin().lock(), file, root)
}

/// An `http(s)://` context: downloaded, then read as standard input
/// would be (a tarball, or a bare Dockerfile with an empty context, as
/// BuildKit takes either from a URL). Git URLs never come here.
fn remote(
    url: &str,
    file: Option<&str>,
    root: &Path,
    mode: crate::progress::Mode,
) -> anyhow::Result<Inputs> {
    if file == Some("-") {
        bail!("invalid argument: a remote build context cannot take the Dockerfile from standard input");
    }
    // Shown as BuildKit shows the HTTP source it makes of the URL.
    let digest = crate::llb::Digest::of(url.as_bytes()).to_string();
    let progress = super::build_remote::Fetching::start(
        mode,
        &digest,
        "[internal] load remote build context",
    )?;
    let downloaded = download(url, root).map(|dir| (dir, false));
    let (download, display) = progress.end(downloaded)?;
    let path = download.path().join("context");
    let archive =
        std::fs::File::open(&path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut inputs = read(archive, file, root)?;
    inputs.remote = true;
    inputs.progress = display;
    Ok(inputs)
}

/// Downloads `url` to `context` in a new private directory under the
/// store's `tmp/`.
fn download(url: &str, root: &Path) -> anyhow::Result<tempfile::TempDir> {
    let tmp = root.join("tmp");
    crate::util::fs::create_dir_all(&tmp).context("failed to create the store's tmp directory")?;
    let download = tempfile::Builder::new()
        .prefix("remote-context-")
        .tempdir_in(&tmp)
        .with_context(|| format!("failed to create a directory in {}", tmp.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the download")?;
    runtime
        .block_on(async {
            let client = crate::source::http::client()?;
            crate::source::http::fetch(&client, url, download.path(), "context", None, None).await
        })
        .with_context(|| {
            format!(
                "failed to download the build context {}",
                crate::util::redact::url(url)
            )
        })?;
    Ok(download)
}

fn read(mut input: impl Read, file: Option<&str>, root: &Path) -> anyhow::Result<Inputs> {
    let tmp = root.join("tmp");
    crate::util::fs::create_dir_all(&tmp).context("failed to create the store's tmp directory")?;
    let dir = tempfile::Builder::new()
        .prefix("stdin-context-")
        .tempdir_in(&tmp)
        .with_context(|| format!("failed to create a directory in {}", tmp.display()))?;
    let context = dir.path().to_string_lossy().into_owned();
    // The first tar header (a pipe may deliver it in pieces), then the
    // rest of the stream behind it.
    let mut head = Vec::with_capacity(512);
    (&mut input)
        .take(512)
        .read_to_end(&mut head)
        .context("failed to read standard input")?;
    let compression = [
        (&[0x1f, 0x8b][..], Compression::Gzip),
        (&b"BZh"[..], Compression::Bzip2),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0][..], Compression::Xz),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], Compression::Zstd),
    ]
    .into_iter()
    .find(|(magic, _)| head.starts_with(magic))
    .map(|(_, kind)| kind);
    let tar = head.get(TAR_MAGIC_AT..TAR_MAGIC_AT + 5) == Some(b"ustar".as_slice());
    let input = std::io::Cursor::new(head).chain(input);
    if compression.is_some() || tar {
        let reader: Box<dyn Read> = match compression {
            Some(Compression::Gzip) => Box::new(flate2::read::GzDecoder::new(input)),
            Some(Compression::Bzip2) => Box::new(bzip2::read::BzDecoder::new(input)),
            Some(Compression::Xz) => Box::new(xz2::read::XzDecoder::new(input)),
            Some(Compression::Zstd) => Box::new(
                zstd::stream::read::Decoder::new(input)
                    .context("failed to read the zstd-compressed context")?,
            ),
            None => Box::new(input),
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive
            .unpack(dir.path())
            .context("failed to unpack the build context tarball from standard input")?;
        let dockerfile = match file {
            Some(f) if Path::new(f).is_file() => f.to_string(),
            Some(f) => dir.path().join(f).to_string_lossy().into_owned(),
            None => dir.path().join("Dockerfile").to_string_lossy().into_owned(),
        };
        return Ok(Inputs {
            context,
            dockerfile,
            dockerfile_text: None,
            _dir: Some(dir),
            _checkout: None,
            // buildx hands a tarball on stdin to BuildKit as a URL
            // context, which `.dockerignore` does not filter.
            remote: true,
            progress: None,
        });
    }
    if file.is_some() {
        bail!("ambiguous Dockerfile source: both standard input and -f name a Dockerfile");
    }
    let mut text = String::new();
    let mut input = input;
    input
        .read_to_string(&mut text)
        .context("failed to read the Dockerfile from standard input")?;
    Ok(Inputs {
        context,
        dockerfile: "-".to_string(),
        dockerfile_text: Some(text),
        _dir: Some(dir),
        _checkout: None,
        remote: false,
        progress: None,
    })
}

/// How a context tarball is compressed, told by its first bytes.
#[derive(Clone, Copy)]
enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}
