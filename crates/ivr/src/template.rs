//! `{variable}` templates in flow text (URLs, bodies, lookup arguments, `set` values), and the
//! call's variables, some of which are secret and must never reach a log in clear.

use std::collections::BTreeMap;
use std::fmt;

/// What secret values look like wherever they are shown.
pub const MASK: &str = "****";

/// A variable's value; secret ones (PINs, card numbers) print masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub secret: bool,
}

impl Value {
    pub fn plain(text: impl Into<String>) -> Self {
        Value {
            text: text.into(),
            secret: false,
        }
    }
    pub fn secret(text: impl Into<String>) -> Self {
        Value {
            text: text.into(),
            secret: true,
        }
    }
    /// The value as logs and call records may show it.
    pub fn shown(&self) -> &str {
        if self.secret { MASK } else { &self.text }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

/// Text rendered from a template: the real text, and the text fit for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub redacted: String,
}

impl Rendered {
    pub fn has_secret(&self) -> bool {
        self.text != self.redacted
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted)
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a template into literal text and variable names. `{{` and `}}` are literal braces.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in template `{template}`"))?;
            let name = after[..end].trim();
            if !is_variable_name(name) {
                return Err(format!(
                    "invalid variable name `{name}` in template `{template}` (letters, digits, `_` and `.`)"
                ));
            }
            out.push(Piece::Var(name));
            rest = &after[end + 1..];
        } else if rest.starts_with('}') {
            return Err(format!(
                "unopened `}}` in template `{template}` (write `}}}}` for a brace)"
            ));
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            out.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.starts_with('.')
        && !name.ends_with('.')
}

/// The variables a template reads, or why it is malformed.
pub fn variables_in(template: &str) -> Result<Vec<String>, String> {
    Ok(pieces(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(name) => Some(name.to_owned()),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Where templates find variable values.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<Value>;
}

impl Lookup for BTreeMap<String, Value> {
    fn get(&self, name: &str) -> Option<Value> {
        BTreeMap::get(self, name).cloned()
    }
}

/// Renders a template; unknown variables become empty text (the validator warns about them).
pub fn render(template: &str, vars: &dyn Lookup) -> Rendered {
    let Ok(parts) = pieces(template) else {
        // Malformed templates are rejected at load; if one slips through, use it verbatim.
        return Rendered {
            text: template.to_owned(),
            redacted: template.to_owned(),
        };
    };
    let mut text = String::with_capacity(template.len());
    let mut redacted = String::with_capacity(template.len());
    for part in parts {
        match part {
            Piece::Text(t) => {
                text.push_str(t);
                redacted.push_str(t);
            }
            Piece::Var(name) => {
                if let Some(value) = vars.get(name) {
                    text.push_str(&value.text);
                    redacted.push_str(value.shown());
                }
            }
        }
    }
    Rendered { text, redacted }
}

/// Renders every string inside a JSON value; returns the real and the redacted value.
pub fn render_json(
    value: &serde_json::Value,
    vars: &dyn Lookup,
) -> (serde_json::Value, serde_json::Value) {
    use serde_json::Value as J;
    match value {
        J::String(s) => {
            let r = render(s, vars);
            (J::String(r.text), J::String(r.redacted))
        }
        J::Array(items) => {
            let (a, b): (Vec<_>, Vec<_>) = items.iter().map(|v| render_json(v, vars)).unzip();
            (J::Array(a), J::Array(b))
        }
        J::Object(map) => {
            let mut a = serde_json::Map::new();
            let mut b = serde_json::Map::new();
            for (k, v) in map {
                let (x, y) = render_json(v, vars);
                a.insert(k.clone(), x);
                b.insert(k.clone(), y);
            }
            (J::Object(a), J::Object(b))
        }
        other => (other.clone(), other.clone()),
    }
}

/// Every template string inside a JSON value (for validation).
pub fn json_strings(value: &serde_json::Value) -> Vec<&str> {
    use serde_json::Value as J;
    match value {
        J::String(s) => vec![s.as_str()],
        J::Array(items) => items.iter().flat_map(json_strings).collect(),
        J::Object(map) => map.values().flat_map(json_strings).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, Value> {
        let mut v = BTreeMap::new();
        v.insert("customer_no".to_owned(), Value::plain("100001"));
        v.insert("pin".to_owned(), Value::secret("1234"));
        v
    }

    #[test]
    fn renders_and_masks_secrets() {
        let r = render("https://crm.test/c/{customer_no}?pin={pin}", &vars());
        assert_eq!(r.text, "https://crm.test/c/100001?pin=1234");
        assert_eq!(r.redacted, "https://crm.test/c/100001?pin=****");
        assert!(r.has_secret());
        assert_eq!(format!("{r:?}"), "\"https://crm.test/c/100001?pin=****\"");
    }

    #[test]
    fn braces_escape_and_errors() {
        assert_eq!(render("{{x}}", &vars()).text, "{x}");
        assert_eq!(render("{missing}!", &vars()).text, "!");
        assert!(variables_in("{open").is_err());
        assert!(variables_in("close}").is_err());
        assert!(variables_in("{bad name}").is_err());
        assert_eq!(
            variables_in("{a} and {b.c}"),
            Ok(vec!["a".to_owned(), "b.c".to_owned()])
        );
    }

    #[test]
    fn json_bodies_render_strings_only() {
        let body = serde_json::json!({"pin": "{pin}", "n": 3, "list": ["{customer_no}"]});
        let (real, shown) = render_json(&body, &vars());
        assert_eq!(
            real,
            serde_json::json!({"pin": "1234", "n": 3, "list": ["100001"]})
        );
        assert_eq!(
            shown,
            serde_json::json!({"pin": "****", "n": 3, "list": ["100001"]})
        );
    }
}
