//! Credentials written into URLs (`https://user:token@host/…`) kept out
//! of everything bk prints: step names, progress and errors. The user
//! information is masked as BuildKit's `urlutil.RedactCredentials` masks
//! it: `user:password@` → `xxxxx:xxxxx@`, `user@` → `xxxxx@`,
//! `:password@` → `:xxxxx@`.
//!
//! Imports nothing project-internal.

const MASK: &str = "xxxxx";

/// `url` with its user information masked; anything that is not a
/// `scheme://` URL is returned as is.
pub fn url(url: &str) -> String {
    text(url)
}

/// `text` with the user information of every `scheme://…@host` URL in it
/// masked (a Dockerfile line, a command, an error message).
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let scheme_ok = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@').filter(|_| scheme_ok) {
            Some(i) => {
                out.push_str(&mask(&authority[..i]));
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `text` (a message from a tool that was given `url`) with `url`'s
/// user information masked wherever it appears, also outside a URL (git
/// prints `unable to look up user:password@host`), and any URL in it
/// masked as [`text`] does.
pub fn text_about(url: &str, message: &str) -> String {
    let mut out = message.to_string();
    if let Some(userinfo) = userinfo(url) {
        out = out.replace(userinfo, &mask(userinfo));
        // A password alone too, unless it is too short to tell from
        // ordinary text.
        if let Some((_, password)) = userinfo.split_once(':') {
            if password.len() >= 3 {
                out = out.replace(password, MASK);
            }
        }
    }
    text(&out)
}

/// The `user[:password]` of a `scheme://` URL, when it has one.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..end].rsplit_once('@')?;
    (!userinfo.is_empty()).then_some(userinfo)
}

/// The masked form of one `user[:password]` part.
fn mask(userinfo: &str) -> String {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    match (user.is_empty(), password) {
        (false, Some(_)) => format!("{MASK}:{MASK}"),
        (false, None) => MASK.to_string(),
        (true, Some(_)) => format!(":{MASK}"),
        (true, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_information() {
        for (input, want) in [
            (
                "https://user:secret@example.com/r.git",
                "https://xxxxx:xxxxx@example.com/r.git",
            ),
            (
                "https://token@example.com:8443/a?x=1#b",
                "https://xxxxx@example.com:8443/a?x=1#b",
            ),
            ("http://:pw@h/f", "http://:xxxxx@h/f"),
            ("git://example.com/r.git", "git://example.com/r.git"),
            ("git@example.com:r.git", "git@example.com:r.git"),
            ("/no/url", "/no/url"),
        ] {
            assert_eq!(url(input), want, "{input}");
        }
    }

    #[test]
    fn every_url_in_a_text_is_masked() {
        assert_eq!(
            text("ADD https://u:p@h/a git://x:y@h/r.git#main /dst"),
            "ADD https://xxxxx:xxxxx@h/a git://xxxxx:xxxxx@h/r.git#main /dst"
        );
        assert_eq!(
            text("RUN curl \"https://u:p@h\" -o f && echo a@b"),
            "RUN curl \"https://xxxxx:xxxxx@h\" -o f && echo a@b"
        );
        assert_eq!(text("see ://x@y"), "see ://x@y");
        assert_eq!(
            text_about(
                "git://me:s3cret@h:1/r",
                "unable to look up me:s3cret@h:1; password s3cret"
            ),
            "unable to look up xxxxx:xxxxx@h:1; password xxxxx"
        );
        assert_eq!(text_about("git://h/r", "fatal: no"), "fatal: no");
        assert_eq!(text("a://"), "a://");
    }
}
