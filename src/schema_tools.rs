//! Generating and compiling JSON Schemas from Rust types (schemars +
//! jsonschema). Depends on nothing else in the crate, so every layer that
//! checks a document against its own types (bundles, inventories, artifacts)
//! can use it without importing the others; `schemas.rs` is the registry of
//! published kinds on top.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The draft 2020-12 schema of `T`, as generated.
pub fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
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
