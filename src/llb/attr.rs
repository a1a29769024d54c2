//! Names of the `SourceOp::attrs` keys the frontend sets and the solver
//! reads, spelled as BuildKit spells them (`solver/pb/attr.go`) except
//! where noted. Kept here, in the leaf both sides import, so the two can
//! never disagree on a key.

/// `local://context`: JSON array of the paths and patterns (relative to the
/// context root) the vertex reads; absent means the whole context. (BuildKit
/// names its key `local.includepattern`; this project's solver reads this
/// one.)
pub const LOCAL_INCLUDE_PATTERNS: &str = "local.includepatterns";
/// `local://context`: JSON array of patterns (relative to the context root)
/// the vertex never reads, on top of `.dockerignore`.
pub const LOCAL_EXCLUDE_PATTERNS: &str = "local.excludepatterns";
/// `local://context`: vertices with the same hint read the same directory,
/// so the solver can share one transfer and one content cache between them.
pub const LOCAL_SHARED_KEY_HINT: &str = "local.sharedkeyhint";

/// `https://…`: the digest (`sha256:…`) the download must have.
pub const HTTP_CHECKSUM: &str = "http.checksum";
/// `https://…`: the name the downloaded file gets in the source's root.
pub const HTTP_FILENAME: &str = "http.filename";
/// `https://…`: octal file mode of the downloaded file.
pub const HTTP_PERM: &str = "http.perm";

/// `git://…`: keep the `.git` directory in the checkout.
pub const GIT_KEEP_GIT_DIR: &str = "git.keepgitdir";
/// `git://…`: the URL to clone (the identifier is transport-neutral).
pub const GIT_FULL_URL: &str = "git.fullurl";
/// `git://…`: names of the secrets holding HTTP credentials.
pub const GIT_AUTH_TOKEN_SECRET: &str = "git.authtokensecret";
pub const GIT_AUTH_HEADER_SECRET: &str = "git.authheadersecret";
/// `git://…`: the SSH agent id to use for `ssh` remotes.
pub const GIT_MOUNT_SSH_SOCK: &str = "git.mountsshsock";
/// `git://…`: the commit the ref must resolve to.
pub const GIT_CHECKSUM: &str = "git.checksum";
/// `git://…`: do not fetch submodules.
pub const GIT_SKIP_SUBMODULES: &str = "git.skipsubmodules";
/// `git://…`: `checkout` or `commit`: which time files get.
pub const GIT_MTIME: &str = "git.mtime";
/// `git://…`: fetch the checksum commit directly.
pub const GIT_FETCH_BY_COMMIT: &str = "git.fetchbycommit";

/// `docker-image://…`: `pull` (always ask the registry) or `local`.
pub const IMAGE_RESOLVE_MODE: &str = "image.resolvemode";
