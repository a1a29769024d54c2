//! Word expansion and splitting exactly as BuildKit's shell lexer does it.

use std::collections::BTreeSet;

/// Why a word could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("{0}")]
    Syntax(String),
}

/// Where the lexer looks variables up.
pub trait EnvGetter {
    fn get(&self, key: &str) -> Option<&str>;
    fn keys(&self) -> Vec<String>;
}

/// The outcome of expanding one word, with the variables it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub result: String,
    pub matched: BTreeSet<String>,
    pub unmatched: BTreeSet<String>,
}

/// The lexer's settings.
#[derive(Debug, Clone)]
pub struct Lex {
    pub escape: char,
    pub raw_quotes: bool,
    pub raw_escapes: bool,
    pub skip_unset_env: bool,
}

impl Lex {
    pub fn new(escape: char) -> Self {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
        }
    }

    pub fn process_word(&self, _word: &str, _env: &dyn EnvGetter) -> Result<String, ShellError> {
        todo!("lexer lands in the shell branch")
    }

    pub fn process_word_with_matches(
        &self,
        _word: &str,
        _env: &dyn EnvGetter,
    ) -> Result<Expansion, ShellError> {
        todo!("lexer lands in the shell branch")
    }

    pub fn process_words(
        &self,
        _word: &str,
        _env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        todo!("lexer lands in the shell branch")
    }
}
