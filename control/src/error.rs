//! [`ConfigError`]: what is wrong with a config file, a services file or a flag, said in one
//! sentence that names the file, the line (and column) and the field, and the YAML reader that
//! produces it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

/// Where a problem is: `file:line:column`, each part only when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The file; `None` for a [`crate::Config`] built in code rather than read from a file.
    pub file: Option<PathBuf>,
    /// 1-based line.
    pub line: Option<u64>,
    /// 1-based column.
    pub column: Option<u64>,
}

impl Position {
    pub(crate) fn at(file: &Path, location: serde_saphyr::Location) -> Position {
        // serde-saphyr reports an unknown location as line 0.
        let known = location != serde_saphyr::Location::UNKNOWN && location.line() > 0;
        Position {
            file: Some(file.to_path_buf()),
            line: known.then(|| location.line()),
            column: known.then(|| location.column()).filter(|c| *c > 0),
        }
    }

    pub(crate) fn file(file: &Path) -> Position {
        Position {
            file: Some(file.to_path_buf()),
            line: None,
            column: None,
        }
    }

    pub(crate) fn nowhere() -> Position {
        Position {
            file: None,
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("config")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// A configuration problem, reported to the operator as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A value in a file is wrong: `file:line:column: field: message`.
    #[error("{at}: {}{message}", FieldPrefix(field))]
    Invalid {
        at: Position,
        /// Dotted path of the field, e.g. `services[1].endpoints[0]`; empty for the document.
        field: String,
        message: String,
    },
    /// A command-line value is wrong.
    #[error("{flag} {value:?}: {message}")]
    Flag {
        flag: &'static str,
        value: String,
        message: String,
    },
}

impl ConfigError {
    /// The position, for errors read from a file.
    pub fn position(&self) -> Option<&Position> {
        match self {
            ConfigError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The line, for errors read from a file.
    pub fn line(&self) -> Option<u64> {
        self.position().and_then(|p| p.line)
    }

    pub(crate) fn invalid(
        at: Position,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            at,
            field: field.into(),
            message: message.into(),
        }
    }
}

struct FieldPrefix<'a>(&'a str);

impl fmt::Display for FieldPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

/// Deserialises one YAML document, turning any error into a [`ConfigError::Invalid`] with the
/// position serde-saphyr recorded and the field path serde_path_to_error tracked.
pub(crate) fn from_yaml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().clone());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let e = e.without_snippet();
        let at = match e.location() {
            Some(location) => Position::at(origin, location),
            None => Position::at(origin, serde_saphyr::Location::UNKNOWN),
        };
        let message = UserMessageFormatter.format_message(e).into_owned();
        ConfigError::invalid(
            at,
            path.as_ref().map(field_path).unwrap_or_default(),
            message,
        )
    })
}

const SPANNED_KEYS: [&str; 4] = [
    "value",
    "referenced",
    "defined",
    "__serde_saphyr_private_spanned",
];

/// Renders a serde_path_to_error path as `services[1].endpoints[0]`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            // serde-saphyr's `Spanned<T>` shows up as a map with these keys; no field of ours
            // has these names.
            Segment::Map { key } if SPANNED_KEYS.contains(&key.as_str()) => {}
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}
