//! Generating and compiling JSON Schemas from Rust types (schemars +
//! jsonschema). Depends on nothing else in the crate, so every layer that
//! checks a document against its own types (bundles, inventories, artifacts)
//! can use it without importing the others; `schemas.rs` is the registry of
//! published kinds on top.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The draft 2020-12 schema of `T`, using only the standard `format`s, so
/// every validator (ajv in its default strict mode too) compiles it.
pub fn generate<T: JsonSchema>() -> Value {
    let mut v = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value();
    standard_formats(&mut v);
    v
}

/// The `format` values JSON Schema draft 2020-12 defines (§7.3).
pub const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// schemars describes Rust integer widths as formats (`uint16`, `int64`, …),
/// which are not JSON Schema's: express them as bounds instead.
fn standard_formats(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(f)) = map.get("format")
                && !STANDARD_FORMATS.contains(&f.as_str())
            {
                let bounds: Option<(i128, i128)> = match f.as_str() {
                    "uint8" => Some((0, u8::MAX.into())),
                    "uint16" => Some((0, u16::MAX.into())),
                    "uint32" => Some((0, u32::MAX.into())),
                    "uint64" | "uint" => Some((0, u64::MAX.into())),
                    "int8" => Some((i8::MIN.into(), i8::MAX.into())),
                    "int16" => Some((i16::MIN.into(), i16::MAX.into())),
                    "int32" => Some((i32::MIN.into(), i32::MAX.into())),
                    _ => None, // int64, float, double: no bound JSON numbers need
                };
                map.remove("format");
                if let Some((lo, hi)) = bounds {
                    map.entry("minimum").or_insert_with(|| serde_json::json!(lo));
                    // u64::MAX is not exactly representable as an f64: leave it unbounded.
                    if hi < i128::from(u64::MAX) {
                        map.entry("maximum").or_insert_with(|| serde_json::json!(hi));
                    }
                }
            }
            for (_, child) in map.iter_mut() {
                standard_formats(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats),
        _ => {}
    }
}

/// The schema of a type users write (bundles, inventories): schemars lets
/// `Option<T>` fields be `null`, upstream's input schemas do not, so absent is
/// the only "no value" there. Artifact schemas keep `null` (upstream's do too).
pub fn input<T: JsonSchema>() -> Value {
    let mut v = generate::<T>();
    strip_null(&mut v);
    v
}

/// Remove `null` from the types an input schema allows.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type")
                && types.len() > 1
            {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = map.get_mut(key) {
                    alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                    if alts.len() == 1 {
                        let only = alts.remove(0);
                        map.remove(key);
                        if let Value::Object(o) = only {
                            for (k, val) in o {
                                map.entry(k).or_insert(val);
                            }
                        }
                    }
                }
            }
            if let Some(Value::Array(e)) = map.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            for (_, child) in map.iter_mut() {
                strip_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// Compile `schema` (named `name` in errors) as draft 2020-12. No remote
/// `$ref` is ever fetched: jsonschema is built without its HTTP resolver.
pub fn compile(name: &str, schema: &Value) -> anyhow::Result<jsonschema::Validator> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| anyhow::anyhow!("the built-in `{name}` schema does not compile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Widths {
        port: u16,
        size: u64,
        delta: i64,
    }

    #[test]
    fn only_standard_formats_are_emitted() {
        let v = generate::<Widths>();
        let text = v.to_string();
        assert!(!text.contains("\"format\""), "{text}");
        assert_eq!(v["properties"]["port"]["maximum"], 65535);
        assert_eq!(v["properties"]["size"]["minimum"], 0);
    }
}
