//! The schema check: the bundle schema generated from [`super::model::Bundle`].

use serde_json::Value;

/// One schema violation, located by JSON pointer.
#[derive(Debug, Clone)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// A compiled bundle-schema validator, built once and shared across threads.
pub struct SchemaChecker {
    validator: jsonschema::Validator,
}

impl SchemaChecker {
    pub fn new() -> anyhow::Result<Self> {
        Ok(SchemaChecker {
            validator: crate::schema_tools::compile("bundle", &crate::schema_tools::input::<super::model::Bundle>())?,
        })
    }

    /// Every violation, not just the first, in a stable order.
    pub fn check(&self, instance: &Value) -> Vec<Violation> {
        let mut out: Vec<Violation> = self
            .validator
            .iter_errors(instance)
            .map(|e| Violation { pointer: e.instance_path().as_str().to_string(), message: short(&e.to_string()) })
            .collect();
        out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.message.cmp(&b.message)));
        out.dedup_by(|a, b| a.pointer == b.pointer && a.message == b.message);
        out
    }
}

/// Keep messages about huge values readable.
fn short(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}
