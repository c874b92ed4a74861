//! Config errors: every problem carries its line, column and, where possible, a hint.

use std::fmt;
use std::ops::Range;

/// What is wrong with a config. Each problem found becomes one [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The text is not TOML.
    #[error("{message}")]
    Syntax {
        /// The TOML parser's message.
        message: String,
    },
    /// No `version` key at the top of the file.
    #[error("missing `version`")]
    MissingVersion,
    /// A `version` this build does not read.
    #[error("unsupported config version {found}; this build reads version 1")]
    UnsupportedVersion {
        /// The value found, as written.
        found: String,
    },
    /// A key the schema does not know.
    #[error("unknown key `{key}` in {table}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was found (`the top level`, `[dns]`, `[[nic]]`, ...).
        table: String,
    },
    /// A value of the wrong type, a missing key, or another shape problem.
    #[error("{table}: {message}")]
    Shape {
        /// Where it was found.
        table: String,
        /// The deserializer's message.
        message: String,
    },
    /// A value that has the right type but is not acceptable.
    #[error("{field} {value} is not valid: {reason}")]
    Invalid {
        /// The key, with its owner (`nic "admin" ip`).
        field: String,
        /// The value, quoted if it is a string.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A gateway that no subnet of its owner reaches.
    #[error("gateway {gateway} is outside {subnet} ({owner})")]
    GatewayOutside {
        /// The gateway address.
        gateway: String,
        /// The owner's subnet, in CIDR form.
        subnet: String,
        /// The NIC or personality the gateway belongs to.
        owner: String,
    },
    /// A value that must be unique appears twice.
    #[error("duplicate {what} {value:?} (first at line {first_line})")]
    Duplicate {
        /// What is duplicated (`nic tag`, `mac`, ...).
        what: String,
        /// The value.
        value: String,
        /// The line of its first appearance.
        first_line: usize,
    },
    /// A reference to a NIC tag that no `[[nic]]` has.
    #[error("{owner} uses nic tag {tag:?}, which no [[nic]] has")]
    UnknownNicTag {
        /// The personality that names the tag.
        owner: String,
        /// The missing tag.
        tag: String,
    },
    /// Two settings that cannot go together.
    #[error("{message}")]
    Conflict {
        /// What conflicts with what.
        message: String,
    },
}

/// A line and column in the config text, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text).
    #[must_use]
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = text.floor_char_boundary(offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a config, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the offending key or value starts.
    pub location: Location,
    /// The byte range of the offending key or value.
    pub span: Range<usize>,
    /// What is wrong.
    pub kind: ErrorKind,
    /// What to do next, when there is something useful to say.
    pub hint: Option<String>,
}

impl ConfigError {
    /// A problem at `span` of `text`.
    #[must_use]
    pub fn new(text: &str, span: Range<usize>, kind: ErrorKind) -> Self {
        Self {
            location: Location::of_offset(text, span.start),
            span,
            kind,
            hint: None,
        }
    }

    /// The same problem with a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same problem with a hint, if there is one.
    #[must_use]
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// Every problem found in one config file. `Display` prints one problem per line as
/// `file:line:col: message`, each followed by `  hint: ...` where there is a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name the messages name (a parameter: `config.toml`, a URL, ...).
    pub file: String,
    /// The problems, in the order of their position in the file.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Collects `errors` for `file`, sorted by position.
    #[must_use]
    pub fn new(file: &str, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.location, e.span.end));
        Self {
            file: file.to_owned(),
            errors,
        }
    }

    /// How many problems were found.
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether no problem was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file, e.location, e.kind)?;
            if let Some(hint) = &e.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of_offset(text, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of_offset(text, 6), Location { line: 2, column: 1 });
        assert_eq!(Location::of_offset(text, 9), Location { line: 2, column: 3 });
        assert_eq!(Location::of_offset(text, 8), Location { line: 2, column: 2 });
        assert_eq!(Location::of_offset(text, 999).line, 3);
    }

    #[test]
    fn display_names_file_line_column_and_hint() {
        let text = "x\ny = 1\n";
        let e = ConfigError::new(
            text,
            2..3,
            ErrorKind::UnknownKey {
                key: "y".into(),
                table: "the top level".into(),
            },
        )
        .with_hint("did you mean `x`?");
        let all = ConfigErrors::new("config.toml", vec![e]);
        assert_eq!(
            all.to_string(),
            "config.toml:2:1: unknown key `y` in the top level\n  hint: did you mean `x`?"
        );
    }
}
