//! in-toto Statement v1 with agentplane's chain predicate.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::types::ArtifactKind;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// `https://agentplane.socioprophet.org/evidence/<Kind>/v0.1`
pub fn predicate_type(kind: ArtifactKind) -> String {
    format!("https://agentplane.socioprophet.org/evidence/{kind}/v0.1")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// A path relative to the evidence directory, `/`-separated.
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: impl Into<String>, hex: impl Into<String>) -> Subject {
        Subject { name: name.into(), digest: BTreeMap::from([("sha256".to_string(), hex.into())]) }
    }

    pub fn sha256_hex(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// The chain predicate every entry carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    pub kind: ArtifactKind,
    pub seq: u64,
    pub run_id: String,
    /// `name@version`
    pub bundle: String,
    /// `sha256:<hex>` of the bundle.
    pub bundle_digest: String,
    /// `sha256:<hex>` of the previous line's exact bytes; [`super::GENESIS`] for seq 0.
    pub previous: String,
    /// Seal entries only: how many entries precede the seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Seal entries only: the digest of the entry the seal closes (equal to `previous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// What agentplane records about the artifact beyond the fields upstream's
    /// schema allows in its file (see `evidence::artifacts::Artifact::Details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}
