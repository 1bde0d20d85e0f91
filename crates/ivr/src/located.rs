//! A value read from a flow file together with where it was written, so that problems found
//! after parsing (unknown steps, bad regexes, …) are reported as `file:line:col`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use schemars::{JsonSchema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// Line and column (both from 1) of a value in its file; `0:0` when not known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub const UNKNOWN: Position = Position { line: 0, column: 0 };

    pub fn new(line: u32, column: u32) -> Self {
        Position { line, column }
    }

    /// Unknown positions point at the start of the file rather than at a line 0 editors reject.
    pub fn or_start(self) -> Position {
        if self.line == 0 {
            Position::new(1, 1)
        } else {
            self
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.or_start();
        write!(f, "{}:{}", p.line, p.column)
    }
}

/// A value and its position in the file it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Located<T> {
    pub value: T,
    pub position: Position,
}

impl<T> Located<T> {
    pub fn new(value: T, position: Position) -> Self {
        Located { value, position }
    }

    /// A value made in code (tests, defaults) rather than read from a file.
    pub fn synthetic(value: T) -> Self {
        Located {
            value,
            position: Position::UNKNOWN,
        }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let loc = spanned.referenced;
        let position = Position::new(
            u32::try_from(loc.line()).unwrap_or(u32::MAX),
            u32::try_from(loc.column()).unwrap_or(u32::MAX),
        );
        Ok(Located {
            value: spanned.value,
            position,
        })
    }
}

impl<T: serde::Serialize> serde::Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

// The position is invisible in the file format, so the schema is the inner value's.
impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}
