//! Label and field selectors as list and watch requests carry them, parsed and matched the way
//! the API server does (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma = AND;
//! fields `metadata.name` and `metadata.namespace` only).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldReq {
    field: Field,
    value: String,
    equal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
}

/// A parsed `labelSelector` plus `fieldSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Selector {
    /// Parses both selectors; the error is the message of a `400 BadRequest`.
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let labels = match labels {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_label_req)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(parse_field_req)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Selector { labels, fields })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        let meta = object.get("metadata");
        let label = |key: &str| -> Option<&str> {
            meta.and_then(|m| m.get("labels"))
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
        };
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        let field = |f: Field| -> &str {
            let name = match f {
                Field::Name => "name",
                Field::Namespace => "namespace",
            };
            meta.and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        labels_ok
            && self
                .fields
                .iter()
                .all(|req| (field(req.field) == req.value) == req.equal)
    }
}

/// Splits on commas outside parentheses: `a in (x,y),b` is two requirements.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label_req(req: &str) -> Result<LabelReq, String> {
    let bad = |why: &str| format!("unable to parse requirement: {req:?}: {why}");
    if let Some(key) = req.strip_prefix('!') {
        return Ok(LabelReq::NotExists(
            label_key(key.trim()).map_err(|e| bad(&e))?,
        ));
    }
    if let Some((key, value)) = req.split_once("!=") {
        return Ok(LabelReq::NotEq(
            label_key(key.trim()).map_err(|e| bad(&e))?,
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = req.split_once("==").or_else(|| req.split_once('=')) {
        return Ok(LabelReq::Eq(
            label_key(key.trim()).map_err(|e| bad(&e))?,
            value.trim().to_owned(),
        ));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = req.split_once(op) {
            let key = label_key(key.trim()).map_err(|e| bad(&e))?;
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| bad("expected a parenthesised set of values"))?;
            let values = inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            return Ok(if negated {
                LabelReq::NotIn(key, values)
            } else {
                LabelReq::In(key, values)
            });
        }
    }
    Ok(LabelReq::Exists(label_key(req).map_err(|e| bad(&e))?))
}

fn label_key(key: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn parse_field_req(req: &str) -> Result<FieldReq, String> {
    let (field, value, equal) = if let Some((f, v)) = req.split_once("!=") {
        (f, v, false)
    } else if let Some((f, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
        (f, v, true)
    } else {
        return Err(format!(
            "invalid selector: '{req}'; can't understand '{req}'"
        ));
    };
    let field = match field.trim() {
        "metadata.name" => Field::Name,
        "metadata.namespace" => Field::Namespace,
        other => return Err(format!("field label not supported: {other}")),
    };
    Ok(FieldReq {
        field,
        value: value.trim().to_owned(),
        equal,
    })
}

#[cfg(test)]
mod tests;
