//! The `key=value,key="a,b"` attribute lists that `--output`, `--cache-to`,
//! `--secret` and friends take. buildx reads them as one CSV record, so a
//! field may be double-quoted to carry commas, and `""` inside quotes is a
//! literal quote.

/// Why an attribute list could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsvError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("unexpected character after closing quote in {0:?}")]
    TextAfterQuote(String),
    #[error("invalid field {field:?} in {input:?}: expected key=value")]
    NotKeyValue { field: String, input: String },
}

/// Splits one CSV record into its fields.
pub fn split_fields(input: &str) -> Result<Vec<String>, CsvError> {
    let mut fields = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(CsvError::UnterminatedQuote(input.to_string())),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(_) => return Err(CsvError::TextAfterQuote(input.to_string())),
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                // A quote opening mid-field (`key="a,b"`) quotes the rest of
                // the value, as buildx's lenient reading allows.
                if c == '"' {
                    chars.next();
                    loop {
                        match chars.next() {
                            None => return Err(CsvError::UnterminatedQuote(input.to_string())),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => field.push(c),
                        }
                    }
                    continue;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            None => return Ok(fields),
            Some(_) => continue,
        }
    }
}

/// Reads `k=v,k2=v2` into pairs, keys lower-cased and trimmed as buildx
/// does; every field must contain `=`.
pub fn parse_pairs(input: &str) -> Result<Vec<(String, String)>, CsvError> {
    split_fields(input)?
        .into_iter()
        .map(|field| match field.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_lowercase(), v.to_string())),
            None => Err(CsvError::NotKeyValue {
                field,
                input: input.to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(split_fields("a=1,b=2").unwrap(), vec!["a=1", "b=2"]);
        assert_eq!(split_fields("\"a=1,2\",b").unwrap(), vec!["a=1,2", "b"]);
        assert_eq!(
            split_fields("name=\"x,y\",push=true").unwrap(),
            vec!["name=x,y", "push=true"]
        );
        assert_eq!(
            split_fields("a=\"say \"\"hi\"\"\"").unwrap(),
            vec!["a=say \"hi\""]
        );
        assert_eq!(split_fields("").unwrap(), vec![""]);
    }

    #[test]
    fn rejects_broken_quotes() {
        assert_eq!(
            split_fields("a=\"open"),
            Err(CsvError::UnterminatedQuote("a=\"open".into()))
        );
        assert!(matches!(
            split_fields("\"a\"b"),
            Err(CsvError::TextAfterQuote(_))
        ));
    }

    #[test]
    fn pairs_need_equals() {
        assert_eq!(
            parse_pairs("Type=local, dest=out").unwrap(),
            vec![
                ("type".into(), "local".into()),
                ("dest".into(), "out".into())
            ]
        );
        assert!(matches!(
            parse_pairs("type=local,oops"),
            Err(CsvError::NotKeyValue { .. })
        ));
    }
}
