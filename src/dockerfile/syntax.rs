//! Front-end selection: `# syntax=IMAGE` (or the `BUILDKIT_SYNTAX` build
//! argument, which wins, as in BuildKit's `dockerfile.v0`) names the
//! image of a Dockerfile front end to run instead of the built-in one.
//! bk runs no front-end images; it is itself BuildKit's Dockerfile front
//! end, so the official images `docker/dockerfile` and
//! `docker/dockerfile-upstream` (any tag or digest, with or without
//! `docker.io/`) select the built-in front end, and any other image is
//! refused with an error naming it and the override.

use super::location::Range;
use crate::image::Reference;

/// The build argument that overrides the directive.
pub const SYNTAX_ARG: &str = "BUILDKIT_SYNTAX";

/// The repositories whose images are BuildKit's Dockerfile front end.
const BUILTIN: [&str; 2] = ["docker/dockerfile", "docker/dockerfile-upstream"];

/// A front-end image bk cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported Dockerfile front end {image:?} (from {origin}): bk builds with its built-in \
     front end, which docker/dockerfile[-upstream] images select; remove the directive or \
     override it with --build-arg {SYNTAX_ARG}=docker/dockerfile:1"
)]
pub struct SyntaxError {
    pub image: String,
    /// `# syntax=` or `--build-arg BUILDKIT_SYNTAX`.
    pub origin: String,
    /// The directive's line; `None` for the build argument.
    pub location: Option<Range>,
}

/// Checks the front end the build asks for: the `BUILDKIT_SYNTAX` build
/// argument (the last one given), else the `# syntax=` directive's
/// value; both are `IMAGE[ OPTIONS]`.
pub fn check(
    directive: Option<&(String, Range)>,
    build_args: &[(String, String)],
) -> Result<(), SyntaxError> {
    let arg = build_args.iter().rev().find(|(k, _)| k == SYNTAX_ARG);
    let (value, origin, location) = match (arg, directive) {
        (Some((_, v)), _) => (v.as_str(), format!("--build-arg {SYNTAX_ARG}"), None),
        (None, Some((v, at))) => (v.as_str(), "# syntax=".to_string(), Some(*at)),
        (None, None) => return Ok(()),
    };
    let image = value.trim().split(' ').next().unwrap_or_default();
    if image.is_empty() || is_builtin(image) {
        return Ok(());
    }
    Err(SyntaxError {
        image: image.to_string(),
        origin,
        location,
    })
}

/// Whether `image` is an official Dockerfile front-end image.
pub fn is_builtin(image: &str) -> bool {
    Reference::parse_normalized(image)
        .is_ok_and(|r| r.domain == "docker.io" && BUILTIN.contains(&r.path.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_images_select_the_built_in_front_end() {
        for image in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7-labs",
            "docker/dockerfile",
            "docker.io/docker/dockerfile:1.4",
            "docker/dockerfile-upstream:master",
            "docker.io/docker/dockerfile-upstream:1-labs",
            "docker/dockerfile:1@sha256:0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            assert!(is_builtin(image), "{image}");
        }
        for image in [
            "example.com/docker/dockerfile:1",
            "tonistiigi/dockerfile:1",
            "docker/dockerfile-other:1",
            "Docker/dockerfile:1",
        ] {
            assert!(!is_builtin(image), "{image}");
        }
    }

    #[test]
    fn the_build_argument_overrides_the_directive() {
        let at = Range::lines(1, 1);
        let directive = ("me/frontend:2 // x".to_string(), at);
        let err = check(Some(&directive), &[]).unwrap_err();
        assert_eq!(err.image, "me/frontend:2");
        assert_eq!(err.location, Some(at));
        let text = err.to_string();
        assert!(
            text.contains("\"me/frontend:2\"") && text.contains(SYNTAX_ARG),
            "{text}"
        );
        let arg = |v: &str| vec![(SYNTAX_ARG.to_string(), v.to_string())];
        assert!(check(Some(&directive), &arg("docker/dockerfile:1")).is_ok());
        let err = check(None, &arg("other/fe")).unwrap_err();
        assert_eq!((err.image.as_str(), err.location), ("other/fe", None));
        assert!(check(Some(&("docker/dockerfile:1.9".into(), at)), &[]).is_ok());
        assert!(check(None, &[]).is_ok());
    }
}
