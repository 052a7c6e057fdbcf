//! JSON Schemas generated from the Rust types (schemars): the bundle, the
//! fleet inventory and every artifact kind. The committed `schemas/` folder is
//! this module's output; a test keeps the two equal. Only the `schema`
//! command and tests use this registry: each layer compiles its own schemas
//! through `schema_tools`.

use serde_json::Value;

use crate::schema_tools::{compile, input};
use crate::types::ArtifactKind;

use crate::bundle::model::Bundle;
use crate::evidence::artifacts::{details_schema_of, schema_of};
use crate::fleet::inventory::TypedInventory;

/// Every kind with a schema: (kind name for `agentplane schema KIND`, file name).
/// A `…-details` kind is the signed `predicate.details` of that artifact's
/// chain entry: what agentplane records beyond upstream's file.
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
    ("validation-artifact-details", "validation-artifact-details.schema.json"),
    ("placement-decision-details", "placement-decision-details.schema.json"),
    ("session-artifact-details", "session-artifact-details.schema.json"),
    ("promotion-artifact-details", "promotion-artifact-details.schema.json"),
    ("reversal-artifact-details", "reversal-artifact-details.schema.json"),
];

/// The schema of one kind, or `None` for an unknown kind.
pub fn schema_for(kind: &str) -> Option<Value> {
    Some(match kind {
        "bundle" => input::<Bundle>(),
        "fleet-inventory" => input::<TypedInventory>(),
        other => match other.strip_suffix("-details") {
            Some(name) => details_schema_of(ArtifactKind::FILES.into_iter().find(|k| k.schema_name() == name)?)?,
            None => schema_of(ArtifactKind::ALL.into_iter().find(|k| k.schema_name() == other)?),
        },
    })
}

/// A compiled validator for one kind's schema.
pub fn validator(kind: &str) -> anyhow::Result<jsonschema::Validator> {
    let schema = schema_for(kind).ok_or_else(|| anyhow::anyhow!("no schema for kind `{kind}`"))?;
    compile(kind, &schema)
}
