//! Any word, with either escape character, through every lexer entry
//! point: errors are fine, panics are not.
#![no_main]

use bk::dockerfile::shell::{EnvGetter, Lex};
use libfuzzer_sys::fuzz_target;

struct FixedEnv;

impl EnvGetter for FixedEnv {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "A" => Some("a b  c"),
            "EMPTY" => Some(""),
            "PWD" => Some("/home"),
            "U" => Some("한국어"),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<String> {
        ["A", "EMPTY", "PWD", "U"].map(String::from).to_vec()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lex = Lex::new(if first & 1 == 0 { '\\' } else { '`' });
    lex.raw_quotes = first & 2 != 0;
    lex.raw_escapes = first & 4 != 0;
    lex.skip_unset_env = first & 8 != 0;
    let _ = lex.process_word(word, &FixedEnv);
    let _ = lex.process_word_with_matches(word, &FixedEnv);
    let _ = lex.process_words(word, &FixedEnv);
});
