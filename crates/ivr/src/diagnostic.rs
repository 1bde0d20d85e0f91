//! Problems found in flow files, printed as `file:line:col: message`.

use std::fmt;

use crate::located::Position;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: String,
    pub position: Position,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, position: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            position,
            severity: Severity::Error,
            message: message.into(),
        }
    }
    pub fn warning(file: &str, position: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            position,
            severity: Severity::Warning,
            message: message.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A YAML or shape error from serde-saphyr, reduced to one line with its position.
    pub fn from_yaml(file: &str, err: &serde_saphyr::Error) -> Self {
        let position = err
            .location()
            .map(|l| {
                Position::new(
                    u32::try_from(l.line()).unwrap_or(u32::MAX),
                    u32::try_from(l.column()).unwrap_or(u32::MAX),
                )
            })
            .unwrap_or(Position::UNKNOWN);
        let text = err.to_string();
        let first = text.lines().next().unwrap_or("invalid YAML");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        // serde-saphyr starts with "line L column C: "; we print the position ourselves.
        let message = match first.find(": ") {
            Some(i) if first.starts_with("line ") => &first[i + 2..],
            _ => first,
        };
        // serde-saphyr's hint names a library option; operators need the rule instead.
        if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
            let key = rest
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(rest);
            return Diagnostic::error(
                file,
                position,
                format!(
                    "duplicate key `{key}`: each key may appear once (in a menu: one step per key)"
                ),
            );
        }
        Diagnostic::error(file, position, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}:{}: {}", self.file, self.position, self.message),
            Severity::Warning => write!(
                f,
                "{}:{}: warning: {}",
                self.file, self.position, self.message
            ),
        }
    }
}

/// All the errors that stopped a flow set from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
