//! "Did you mean …?" hints for misspelt names (flags, mount options,
//! instructions), chosen the way BuildKit chooses them so that error texts
//! match.
//!
//! A leaf module: it must not import any other frontend module.

/// The edit distance BuildKit accepts for a hint is strictly below this.
const MAX_DISTANCE: usize = 3;

/// The option closest to `value`, if one is close enough to be a plausible
/// typo. An exact match yields `None`: the value was then valid and the
/// error is about something else.
///
/// Options are tried in the given order and only a strictly closer one
/// replaces an earlier pick, so callers pass options in a fixed order to get
/// stable messages (BuildKit iterates a Go map, whose order is random).
pub fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let needle = if case_sensitive {
        value.to_string()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut best_distance = MAX_DISTANCE;
    for option in options {
        let candidate = if case_sensitive {
            option.to_string()
        } else {
            option.to_lowercase()
        };
        if candidate == needle {
            return None;
        }
        let distance = levenshtein(&needle, &candidate);
        if distance < best_distance {
            best_distance = distance;
            best = Some(if case_sensitive {
                candidate
            } else {
                match_case(&candidate, value)
            });
        }
    }
    best
}

/// Formats an optional hint as BuildKit appends it to a message.
pub fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// Gives the (lower-cased) candidate the casing style of what the user
/// typed: all lower, all upper, or left lower for mixed input.
fn match_case(candidate: &str, typed: &str) -> String {
    if typed == typed.to_uppercase() && typed != typed.to_lowercase() {
        candidate.to_uppercase()
    } else {
        candidate.to_string()
    }
}

/// Plain Levenshtein distance over characters, unit costs.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            let substitution = diagonal + usize::from(ca != cb);
            row[j + 1] = substitution.min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("chmodd", "chmod"), 1);
        assert_eq!(levenshtein("ß", "s"), 1);
    }

    #[test]
    fn picks_closest_option_below_three_edits() {
        let opts = ["chown", "chmod", "link"];
        assert_eq!(suggest("chmodd", &opts, true).as_deref(), Some("chmod"));
        assert_eq!(suggest("lnk", &opts, true).as_deref(), Some("link"));
        assert_eq!(suggest("banana", &opts, true), None);
    }

    #[test]
    fn exact_match_gives_no_hint() {
        assert_eq!(suggest("link", &["lin", "link"], true), None);
    }

    #[test]
    fn first_of_equally_close_options_wins() {
        assert_eq!(suggest("ab", &["aa", "bb"], true).as_deref(), Some("aa"));
    }

    #[test]
    fn case_insensitive_search_mirrors_typed_case() {
        let opts = ["RUN", "COPY"];
        assert_eq!(suggest("RUNN", &opts, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", &opts, false).as_deref(), Some("run"));
        assert_eq!(suggest("Runn", &opts, false).as_deref(), Some("run"));
        assert_eq!(suggest("run", &opts, false), None);
    }

    #[test]
    fn case_sensitive_search_sees_case_as_edits() {
        assert_eq!(suggest("LINK", &["link"], true), None);
        assert_eq!(suggest("Link", &["link"], true).as_deref(), Some("link"));
    }

    #[test]
    fn hint_formats_like_buildkit() {
        assert_eq!(hint(&Some("chmod".into())), " (did you mean chmod?)");
        assert_eq!(hint(&None), "");
    }
}
