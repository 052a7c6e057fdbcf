//! JSON Schemas generated from the Rust types (schemars): the bundle, the
//! fleet inventory and every artifact kind. The committed `schemas/` folder is
//! this module's output; a test keeps the two equal.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::bundle::model::Bundle;
use crate::evidence::artifacts::{
    PlacementDecision, PromotionArtifact, ReplayArtifact, ReversalArtifact, RunArtifact, SealPredicate,
    SessionArtifact, ValidationArtifact,
};
use crate::fleet::inventory::TypedInventory;

/// Every kind with a schema: (kind name for `agentplane schema KIND`, file name).
pub const KINDS: &[(&str, &str)] = &[
    ("bundle", "bundle.schema.json"),
    ("fleet-inventory", "fleet-inventory.schema.json"),
    ("validation-artifact", "validation-artifact.schema.json"),
    ("placement-decision", "placement-decision.schema.json"),
    ("run-artifact", "run-artifact.schema.json"),
    ("replay-artifact", "replay-artifact.schema.json"),
    ("session-artifact", "session-artifact.schema.json"),
    ("promotion-artifact", "promotion-artifact.schema.json"),
    ("reversal-artifact", "reversal-artifact.schema.json"),
    ("seal", "seal.schema.json"),
];

/// The schema of one kind, or `None` for an unknown kind.
pub fn schema_for(kind: &str) -> Option<Value> {
    Some(match kind {
        "bundle" => input::<Bundle>(),
        "fleet-inventory" => input::<TypedInventory>(),
        "validation-artifact" => generate::<ValidationArtifact>(),
        "placement-decision" => generate::<PlacementDecision>(),
        "run-artifact" => generate::<RunArtifact>(),
        "replay-artifact" => generate::<ReplayArtifact>(),
        "session-artifact" => generate::<SessionArtifact>(),
        "promotion-artifact" => generate::<PromotionArtifact>(),
        "reversal-artifact" => generate::<ReversalArtifact>(),
        "seal" => generate::<SealPredicate>(),
        _ => return None,
    })
}

/// The schema kind for an artifact `kind` field value (e.g. `RunArtifact`).
pub fn kind_for_artifact(artifact_kind: &str) -> Option<&'static str> {
    Some(match artifact_kind {
        "ValidationArtifact" => "validation-artifact",
        "PlacementDecision" => "placement-decision",
        "RunArtifact" => "run-artifact",
        "ReplayArtifact" => "replay-artifact",
        "SessionArtifact" => "session-artifact",
        "PromotionArtifact" => "promotion-artifact",
        "ReversalArtifact" => "reversal-artifact",
        _ => return None,
    })
}

fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
}

/// Schemas for what users write (bundles, inventories): schemars lets
/// `Option<T>` fields be `null`, upstream's input schemas do not, so absent is
/// the only "no value" there. Artifact schemas keep `null` (upstream's do too).
fn input<T: JsonSchema>() -> Value {
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

/// A compiled validator for one kind's schema.
pub fn validator(kind: &str) -> anyhow::Result<jsonschema::Validator> {
    let schema = schema_for(kind).ok_or_else(|| anyhow::anyhow!("no schema for kind `{kind}`"))?;
    compile(kind, &schema)
}

/// A compiled validator for a type that is not a published kind (e.g. the
/// older untyped inventory shape).
pub fn type_validator<T: JsonSchema>(name: &str) -> anyhow::Result<jsonschema::Validator> {
    compile(name, &generate::<T>())
}

fn compile(name: &str, schema: &Value) -> anyhow::Result<jsonschema::Validator> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| anyhow::anyhow!("the built-in `{name}` schema does not compile: {e}"))
}
