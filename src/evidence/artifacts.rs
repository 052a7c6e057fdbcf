//! The artifact kinds, named and shaped as upstream's (`../shared/compat/upstream-schemas/`)
//! plus additive fields. Every kind is written as a readable JSON file in the
//! bundle's outDir and named by a signed chain entry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{ArtifactKind, Backend, Isolation, Lane, RejectCode, ReversalStatus, RunStatus, SessionStatus};
pub use crate::types::{Check, Environment, SshTarget, Transport};

/// An artifact file: its kind name and upstream file name.
pub trait Artifact: Serialize + serde::de::DeserializeOwned {
    const KIND: ArtifactKind;
}

macro_rules! artifact {
    ($t:ident) => {
        impl Artifact for $t {
            const KIND: ArtifactKind = ArtifactKind::$t;
        }
    };
}

/// A file named by the evidence (log or product) with its digest and size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct FileDigest {
    /// Path relative to the evidence directory (products: relative to `products/`).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One file of the bundle digest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct BundleFile {
    pub path: String,
    pub mode: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Validation Artifact v0.1")]
pub struct ValidationArtifact {
    #[schemars(with = "String", extend("const" = "ValidationArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
    pub captured_at: String,
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    /// Governance context copied from Bundle.spec.governanceContext when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_context: Option<Value>,
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_metadata: Option<BundleMetadata>,
    /// `sha256:<hex>`: the bundle digest (DESIGN §4).
    pub bundle_digest: String,
    /// The files the digest covers, so later stages can name what changed.
    pub bundle_files: Vec<BundleFile>,
}
artifact!(ValidationArtifact);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub name: String,
    pub ssh_ref: String,
    /// Human-readable reason, prefixed by its stable code.
    pub reason: String,
    /// Stable kebab-case code: `disabled`, `health-not-ready`, `ssh-unreachable`, …
    pub code: RejectCode,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Placement Decision v0.1")]
pub struct PlacementDecision {
    #[schemars(with = "String", extend("const" = "PlacementDecision"))]
    pub kind: ArtifactKind,
    pub captured_at: String,
    pub backend_intent: Backend,
    pub requires_kvm: bool,
    pub chosen_executor: String,
    pub ssh_ref: String,
    pub caps: Value,
    pub rejected: Vec<Rejection>,
    pub bundle: String,
    pub bundle_digest: String,
    pub transport: Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshTarget>,
    /// The isolation class the chosen executor is expected to provide.
    pub isolation: Isolation,
    /// Inventory file the decision was made from (`implicit` when there was none).
    pub inventory: String,
    /// The platform the probe observed on the chosen executor (`os/arch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_platform: Option<String>,
}
artifact!(PlacementDecision);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Run Artifact v0.1")]
pub struct RunArtifact {
    #[schemars(with = "String", extend("const" = "RunArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
    pub captured_at: String,
    pub lane: Lane,
    pub executor: String,
    pub backend_intent: Backend,
    pub status: RunStatus,
    /// The smoke script's exit code; -1 when it was killed or never ran.
    pub exit_code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronos_carrier: Option<Value>,
    pub bundle_digest: String,
    pub timed_out: bool,
    pub canceled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// The isolation actually provided.
    pub isolation: Isolation,
    pub environment: Environment,
    pub logs: Vec<FileDigest>,
    pub products: Vec<FileDigest>,
    /// Names (never values) of secrets given to the run; their values were
    /// replaced by `[redacted:NAME]` wherever they appeared in logs or products.
    pub secrets_provided: Vec<String>,
    /// Files in which a secret value was found and redacted.
    pub redacted_in: Vec<String>,
    /// Why the runner itself failed (lost SSH host, VM did not boot, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
artifact!(RunArtifact);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayInputs {
    pub bundle_path: String,
    /// The git revision of the root, `null` when unknown (upstream requires the key).
    #[serde(default)]
    pub bundle_rev: Option<String>,
    pub artifact_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_pack_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_pack_hash: Option<String>,
    pub secrets_required: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_context: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Replay Artifact v0.1")]
pub struct ReplayArtifact {
    #[schemars(with = "String", extend("const" = "ReplayArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    pub captured_at: String,
    pub executor: String,
    pub backend_intent: Backend,
    pub inputs: ReplayInputs,
    pub bundle_digest: String,
    /// The files the bundle digest covers.
    pub bundle_files: Vec<BundleFile>,
    /// The command line that reproduces the run.
    pub invocation: Vec<String>,
    pub expected_exit_code: i64,
    pub expected_products: Vec<FileDigest>,
    pub determinism_required: bool,
}
artifact!(ReplayArtifact);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Session Artifact v0.1")]
pub struct SessionArtifact {
    #[schemars(with = "String", extend("const" = "SessionArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    pub captured_at: String,
    #[schemars(regex(pattern = r"^urn:srcos:session:"))]
    pub session_ref: String,
    pub status: SessionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_artifact_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_artifact_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance_context: Option<Value>,
    /// Why the session ended as it did (e.g. `interrupted by SIGINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
artifact!(SessionArtifact);

/// A second key's signature approving a promotion (human gate).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub keyid: String,
    /// SPKI PEM of the approving key, so the approval can be checked; it is
    /// never trusted as a signer of the chain.
    pub public_key: String,
    /// base64 ed25519 signature over `approval:<promotedObjectRef>:<bundleDigest>`.
    pub sig: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Promotion Artifact v0.1")]
pub struct PromotionArtifact {
    #[schemars(with = "String", extend("const" = "PromotionArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    pub captured_at: String,
    #[schemars(regex(pattern = r"^urn:srcos:receipt:promotion:"))]
    pub promotion_receipt_ref: String,
    /// `name@version`
    pub promoted_object_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_session_ref: Option<String>,
    pub bundle_digest: String,
    pub bundle_path: String,
    /// The bundle path that was in prod before (now previous-good), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}
artifact!(PromotionArtifact);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Reversal Artifact v0.1")]
pub struct ReversalArtifact {
    #[schemars(with = "String", extend("const" = "ReversalArtifact"))]
    pub kind: ArtifactKind,
    pub bundle: String,
    pub captured_at: String,
    #[schemars(regex(pattern = r"^urn:srcos:receipt:promotion:"))]
    pub source_promotion_receipt_ref: String,
    pub reversal_handle: String,
    pub status: ReversalStatus,
    /// The bundle path prod points at after the rollback.
    pub restored: String,
}
artifact!(ReversalArtifact);

/// The predicate of a seal entry (documented for auditors; checked by `verify`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Seal predicate v0.1")]
pub struct SealPredicate {
    #[schemars(with = "String", extend("const" = "Seal"))]
    pub kind: ArtifactKind,
    pub seq: u64,
    pub run_id: String,
    pub bundle: String,
    pub bundle_digest: String,
    pub previous: String,
    /// Entries before the seal (equal to `seq`).
    pub length: u64,
    /// Digest of the last entry sealed (equal to `previous`).
    pub head: String,
}

/// The JSON Schema of an artifact kind (the seal's predicate for `Seal`).
pub fn schema_of(kind: ArtifactKind) -> serde_json::Value {
    use crate::schema_tools::generate;
    match kind {
        ArtifactKind::ValidationArtifact => generate::<ValidationArtifact>(),
        ArtifactKind::PlacementDecision => generate::<PlacementDecision>(),
        ArtifactKind::RunArtifact => generate::<RunArtifact>(),
        ArtifactKind::ReplayArtifact => generate::<ReplayArtifact>(),
        ArtifactKind::SessionArtifact => generate::<SessionArtifact>(),
        ArtifactKind::PromotionArtifact => generate::<PromotionArtifact>(),
        ArtifactKind::ReversalArtifact => generate::<ReversalArtifact>(),
        ArtifactKind::Seal => generate::<SealPredicate>(),
    }
}
