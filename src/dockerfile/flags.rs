//! Instruction flags (`COPY --from=x --link`), parsed as BuildKit's `BFlags`
//! does: each instruction declares the string, boolean and repeatable flags
//! it knows, then the verbatim `--name[=value]` words from the syntax tree
//! are checked against that declaration.
//!
//! It knows flag words only. It must not import the instruction layer (which
//! builds on it) nor the parser; errors are its own [`FlagError`] so callers
//! can attach their location.

use std::collections::HashMap;

use super::suggest::{hint, suggest};

/// Why the flags of an instruction were rejected. Messages are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// An instruction declared the same flag twice (a bug in the caller,
    /// reported rather than panicking).
    #[error("error setting up flags: Duplicate flag defined: {0}")]
    DefinedTwice(String),
    /// A word in flag position does not start with `--`.
    #[error("arg should start with -- : {0}")]
    NotAFlag(String),
    /// The instruction has no flag of this name.
    #[error("unknown flag: {flag}{}", hint(.suggestion))]
    Unknown {
        flag: String,
        suggestion: Option<String>,
    },
    /// A non-repeatable flag was given twice.
    #[error("duplicate flag specified: {0}")]
    Duplicate(String),
    /// `--name` without `=value` for a string flag, or `--bool=`.
    #[error("missing a value on flag: {0}")]
    MissingValue(String),
    /// A boolean flag with a value other than true/false.
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotABool { flag: String, value: String },
}

/// Handle to a declared flag, returned by the `add_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagId(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    String,
    Strings,
}

#[derive(Debug, Clone)]
struct Declared {
    name: String,
    kind: Kind,
    value: String,
    values: Vec<String>,
    used: bool,
}

/// The flags one instruction accepts, and what the Dockerfile gave for them.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    args: Vec<String>,
    declared: Vec<Declared>,
    by_name: HashMap<String, usize>,
    /// Names in the order they were first given, for [`Flags::used`].
    used_order: Vec<String>,
    /// A declaration mistake, reported by [`Flags::parse`] so that the
    /// `add_*` calls need no error handling of their own.
    setup_error: Option<FlagError>,
}

impl Flags {
    /// Flags to be checked against the declarations that follow.
    pub fn new(args: &[String]) -> Self {
        Flags {
            args: args.to_vec(),
            ..Flags::default()
        }
    }

    /// Declares `--name` / `--name=true|false`.
    pub fn add_bool(&mut self, name: &str, default: bool) -> FlagId {
        let value = if default { "true" } else { "false" };
        self.add(name, Kind::Bool, value)
    }

    /// Declares `--name=value` (given at most once; `default` otherwise).
    pub fn add_string(&mut self, name: &str, default: &str) -> FlagId {
        self.add(name, Kind::String, default)
    }

    /// Declares a repeatable `--name=value`, collecting every value in order.
    pub fn add_strings(&mut self, name: &str) -> FlagId {
        self.add(name, Kind::Strings, "")
    }

    fn add(&mut self, name: &str, kind: Kind, default: &str) -> FlagId {
        if let Some(&index) = self.by_name.get(name) {
            if self.setup_error.is_none() {
                self.setup_error = Some(FlagError::DefinedTwice(name.to_string()));
            }
            return FlagId(index);
        }
        let index = self.declared.len();
        self.declared.push(Declared {
            name: name.to_string(),
            kind,
            value: default.to_string(),
            values: Vec::new(),
            used: false,
        });
        self.by_name.insert(name.to_string(), index);
        FlagId(index)
    }

    /// Checks every given word against the declarations and records values.
    /// Stops at a bare `--`, after which words are not flags.
    pub fn parse(&mut self) -> Result<(), FlagError> {
        if let Some(err) = &self.setup_error {
            return Err(err.clone());
        }
        let args = std::mem::take(&mut self.args);
        let result = args.iter().try_for_each(|arg| self.parse_one(arg));
        self.args = args;
        match result {
            // `--` ends flag parsing without being an error.
            Err(None) => Ok(()),
            Err(Some(err)) => Err(err),
            Ok(()) => Ok(()),
        }
    }

    /// One word; `Err(None)` means "stop, the rest are not flags".
    fn parse_one(&mut self, arg: &str) -> Result<(), Option<FlagError>> {
        if arg == "--" {
            return Err(None);
        }
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(Some(FlagError::NotAFlag(arg.to_string())));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (stripped, None),
        };
        let flag = format!("--{name}");
        let Some(&index) = self.by_name.get(name) else {
            let names: Vec<&str> = self.declared.iter().map(|d| d.name.as_str()).collect();
            return Err(Some(FlagError::Unknown {
                suggestion: suggest(name, &names, true),
                flag,
            }));
        };
        let declared = &mut self.declared[index];
        if declared.used && declared.kind != Kind::Strings {
            return Err(Some(FlagError::Duplicate(flag)));
        }
        if !declared.used {
            declared.used = true;
            self.used_order.push(name.to_string());
        }
        match declared.kind {
            Kind::Bool => {
                // A bare `--flag` means true, but `--flag=` is a mistake.
                declared.value = match value.map(str::to_lowercase).as_deref() {
                    None | Some("true") => "true".to_string(),
                    Some("") => return Err(Some(FlagError::MissingValue(flag))),
                    Some("false") => "false".to_string(),
                    Some(_) => {
                        return Err(Some(FlagError::NotABool {
                            flag,
                            value: value.unwrap_or_default().to_string(),
                        }))
                    }
                };
            }
            Kind::String => match value {
                Some(v) => declared.value = v.to_string(),
                None => return Err(Some(FlagError::MissingValue(flag))),
            },
            Kind::Strings => match value {
                Some(v) => declared.values.push(v.to_string()),
                None => return Err(Some(FlagError::MissingValue(flag))),
            },
        }
        Ok(())
    }

    /// The flag was given in the Dockerfile (even if equal to its default).
    pub fn is_used(&self, id: FlagId) -> bool {
        self.declared.get(id.0).is_some_and(|d| d.used)
    }

    /// A boolean flag's value (false for non-boolean flags).
    pub fn is_true(&self, id: FlagId) -> bool {
        self.declared
            .get(id.0)
            .is_some_and(|d| d.kind == Kind::Bool && d.value == "true")
    }

    /// A boolean flag's value when given, `None` when left at its default;
    /// for options whose absence means "decide later" (e.g. `--unpack`).
    pub fn bool_if_used(&self, id: FlagId) -> Option<bool> {
        self.is_used(id).then(|| self.is_true(id))
    }

    /// A string flag's value, or its default.
    pub fn value(&self, id: FlagId) -> &str {
        self.declared.get(id.0).map_or("", |d| d.value.as_str())
    }

    /// Every value of a repeatable flag, in the order given.
    pub fn values(&self, id: FlagId) -> &[String] {
        self.declared.get(id.0).map_or(&[], |d| d.values.as_slice())
    }

    /// Names (without dashes) of the flags that were given, first use first.
    pub fn used(&self) -> Vec<String> {
        self.used_order.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::new(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_words_and_no_declarations_parse() {
        assert_eq!(flags(&[]).parse(), Ok(()));
        assert_eq!(flags(&["--"]).parse(), Ok(()));
    }

    #[test]
    fn defaults_hold_when_flags_are_absent() {
        let mut f = flags(&[]);
        let s = f.add_string("str1", "HI");
        let b = f.add_bool("bool1", false);
        let t = f.add_bool("bool2", true);
        f.parse().unwrap();
        assert_eq!(f.value(s), "HI");
        assert!(!f.is_true(b));
        assert!(f.is_true(t));
        assert!(!f.is_used(s) && !f.is_used(b) && !f.is_used(t));
        assert_eq!(f.bool_if_used(b), None);
    }

    #[test]
    fn string_flag_needs_equals() {
        let mut f = flags(&["--str1"]);
        f.add_string("str1", "HI");
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "missing a value on flag: --str1"
        );
    }

    #[test]
    fn string_flag_may_be_empty() {
        let mut f = flags(&["--str1="]);
        let s = f.add_string("str1", "HI");
        f.parse().unwrap();
        assert_eq!(f.value(s), "");
        assert!(f.is_used(s));
    }

    #[test]
    fn string_flag_value_keeps_later_equals_signs() {
        let mut f = flags(&["--from=a=b"]);
        let s = f.add_string("from", "");
        f.parse().unwrap();
        assert_eq!(f.value(s), "a=b");
    }

    #[test]
    fn bool_flag_forms() {
        for (word, expected) in [
            ("--b", true),
            ("--b=true", true),
            ("--b=TRUE", true),
            ("--b=false", false),
            ("--b=False", false),
        ] {
            let mut f = flags(&[word]);
            let b = f.add_bool("b", !expected);
            f.parse().unwrap();
            assert_eq!(f.is_true(b), expected, "{word}");
            assert_eq!(f.bool_if_used(b), Some(expected), "{word}");
        }
    }

    #[test]
    fn bool_flag_rejects_other_values() {
        let mut f = flags(&["--bool1=false1"]);
        f.add_bool("bool1", false);
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "expecting boolean value for flag --bool1, not: false1"
        );
        let mut f = flags(&["--bool1="]);
        f.add_bool("bool1", false);
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "missing a value on flag: --bool1"
        );
    }

    #[test]
    fn unknown_flag_is_rejected_with_a_hint() {
        let mut f = flags(&["--bool2"]);
        f.add_bool("bool1", false);
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "unknown flag: --bool2 (did you mean bool1?)"
        );
        let mut f = flags(&["--foo"]);
        f.add_bool("link", false);
        assert_eq!(f.parse().unwrap_err().to_string(), "unknown flag: --foo");
        let mut f = flags(&["--boo"]);
        assert_eq!(f.parse().unwrap_err().to_string(), "unknown flag: --boo");
    }

    #[test]
    fn words_without_dashes_are_rejected() {
        let mut f = flags(&["-x"]);
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "arg should start with -- : -x"
        );
    }

    #[test]
    fn double_dash_ends_flags() {
        let mut f = flags(&["--a", "--", "--unknown", "word"]);
        let a = f.add_bool("a", false);
        f.parse().unwrap();
        assert!(f.is_true(a));
    }

    #[test]
    fn repeated_single_flags_are_rejected() {
        let mut f = flags(&["--from=a", "--from=b"]);
        f.add_string("from", "");
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "duplicate flag specified: --from"
        );
        let mut f = flags(&["--link", "--link=false"]);
        f.add_bool("link", false);
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "duplicate flag specified: --link"
        );
    }

    #[test]
    fn repeatable_flags_collect_in_order() {
        let mut f = flags(&["--exclude=a", "--x", "--exclude=b"]);
        let e = f.add_strings("exclude");
        f.add_bool("x", false);
        f.parse().unwrap();
        assert_eq!(f.values(e), ["a", "b"]);
        assert_eq!(f.used(), ["exclude", "x"]);
        let mut f = flags(&["--exclude"]);
        f.add_strings("exclude");
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "missing a value on flag: --exclude"
        );
    }

    #[test]
    fn used_lists_given_flags_once() {
        let mut f = flags(&[
            "--bool2=false",
            "--bool3",
            "--bool4=true",
            "--bool5",
            "--str2= ",
            "--str3=def3",
            "--str4=my-val",
        ]);
        for b in ["bool1", "bool2", "bool3", "bool4", "bool5"] {
            f.add_bool(b, b == "bool4" || b == "bool5");
        }
        for s in ["str1", "str2", "str3", "str4"] {
            f.add_string(s, "");
        }
        f.parse().unwrap();
        assert_eq!(
            f.used().join(", "),
            "bool2, bool3, bool4, bool5, str2, str3, str4"
        );
    }

    #[test]
    fn declaring_a_flag_twice_fails_at_parse() {
        let mut f = flags(&[]);
        f.add_bool("a", false);
        f.add_string("a", "");
        assert_eq!(
            f.parse().unwrap_err().to_string(),
            "error setting up flags: Duplicate flag defined: a"
        );
    }

    #[test]
    fn accessors_tolerate_wrong_kinds() {
        let mut f = flags(&["--s=v"]);
        let s = f.add_string("s", "");
        f.parse().unwrap();
        assert!(!f.is_true(s));
        assert!(f.values(s).is_empty());
    }
}
