//! The artifact kinds, named and shaped as upstream's (`../shared/compat/upstream-schemas/`)
//! plus additive fields. Every kind is written as a readable JSON file in the
//! bundle's outDir and named by a signed chain entry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{
    ArtifactKind, Backend, Containment, Isolation, Lane, RejectCode, ReversalStatus, RunStatus, SecretScan,
    SessionStatus, VmHost,
};
pub use crate::types::{Check, Environment, SshTarget, Transport};

/// An artifact: the file (exactly upstream's shape, so upstream's schema
/// accepts it) and the facts agentplane adds that upstream's schema has no
/// room for, its `Details`, which live in the signed statement's predicate
/// (`predicate.details`) of the entry naming the file. Nothing is lost and the
/// file stays upstream-valid (DESIGN §7).
pub trait Artifact: Serialize + serde::de::DeserializeOwned {
    const KIND: ArtifactKind;
    /// What goes into `predicate.details` (`NoDetails` for the open kinds).
    type Details: Serialize + serde::de::DeserializeOwned + JsonSchema + Default;
}

macro_rules! artifact {
    ($t:ident) => {
        artifact!($t, NoDetails);
    };
    ($t:ident, $d:ty) => {
        impl Artifact for $t {
            const KIND: ArtifactKind = ArtifactKind::$t;
            type Details = $d;
        }
    };
}

/// The details of a kind whose upstream schema is open (its file holds everything).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoDetails {}

/// A file named by the evidence (log or product) with its digest and size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct FileDigest {
    /// Path relative to the evidence directory (`run.stdout.log`, `products/report.json`).
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

/// A check as upstream's ValidationArtifact records it (name, status, message);
/// the full check, with its JSON pointer, is in the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCheck {
    pub name: crate::types::Gate,
    pub status: crate::types::CheckStatus,
    #[serde(default)]
    pub message: Option<String>,
}

impl From<&Check> for UpstreamCheck {
    fn from(c: &Check) -> UpstreamCheck {
        UpstreamCheck { name: c.name, status: c.status, message: c.message.clone() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    pub checks: Vec<UpstreamCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_metadata: Option<BundleMetadata>,
}
artifact!(ValidationArtifact, ValidationDetails);

/// What a ValidationArtifact's entry adds: the digest and what it covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationDetails {
    /// `sha256:<hex>`: the bundle digest (DESIGN §4).
    pub bundle_digest: String,
    /// The files the digest covers, so later stages can name what changed.
    pub bundle_files: Vec<BundleFile>,
    /// Every check with its JSON pointer.
    pub checks: Vec<Check>,
    /// The bundle's extension blocks (`sourceos`, `outputs`, …), carried through.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub bundle_extensions: serde_json::Map<String, Value>,
}

/// An executor not chosen, as upstream records it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rejection {
    pub name: String,
    pub ssh_ref: String,
    /// Human-readable reason, prefixed by its stable code.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
}
artifact!(PlacementDecision, PlacementDetails);

/// One rejection's stable code.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectionCode {
    pub name: String,
    pub code: RejectCode,
}

/// What a PlacementDecision's entry adds: how the executor is reached and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementDetails {
    pub bundle: String,
    pub bundle_digest: String,
    pub transport: Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshTarget>,
    /// The ssh_config file that resolved the executor's alias, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<String>,
    /// The isolation class the chosen executor is expected to provide.
    pub isolation: Isolation,
    /// Inventory file the decision was made from (`implicit` when there was none).
    pub inventory: String,
    /// The platform the probe observed on the chosen executor (`os/arch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_platform: Option<String>,
    /// For a VM bundle on an SSH executor: the QEMU, kernel and `/dev/kvm`
    /// the probe found there (the run boots with these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_host: Option<VmHost>,
    /// Each rejection's stable code, in the order of `rejected`.
    pub rejected: Vec<RejectionCode>,
}

impl Default for PlacementDetails {
    fn default() -> Self {
        PlacementDetails {
            bundle: String::new(),
            bundle_digest: String::new(),
            transport: Transport::Local,
            ssh: None,
            ssh_config: None,
            isolation: Isolation::Process,
            inventory: String::new(),
            observed_platform: None,
            vm_host: None,
            rejected: Vec::new(),
        }
    }
}

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
    /// Where the script ran (for a VM: the guest).
    pub environment: Environment,
    /// For a VM: the machine QEMU ran on (this host, or the SSH executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_host: Option<Environment>,
    pub logs: Vec<FileDigest>,
    pub products: Vec<FileDigest>,
    /// Names (never values) of secrets given to the run; their values were
    /// replaced by `[redacted:NAME]` wherever they appeared in logs or products.
    pub secrets_provided: Vec<String>,
    /// Files in which a secret value was found and redacted.
    pub redacted_in: Vec<String>,
    /// Products renamed because their name held a secret value (the new names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed_products: Vec<String>,
    /// The exact-value scan of everything signed with this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_scan: Option<SecretScan>,
    /// What held the run's processes and what was found after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<Containment>,
    /// Why the runner itself failed (lost SSH host, VM did not boot, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The bundle's extension blocks (`sourceos`, `sociosAutomation`,
    /// `outputs`, …: every `spec` block beyond the core ones), carried through
    /// verbatim (upstream's RunArtifact schema is open).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub bundle_extensions: serde_json::Map<String, Value>,
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
}
artifact!(SessionArtifact, SessionDetails);

/// What a SessionArtifact's entry adds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionDetails {
    /// Why the session ended as it did (e.g. `interrupted (SIGINT/SIGTERM)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
}
artifact!(PromotionArtifact, PromotionDetails);

/// What a PromotionArtifact's entry adds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionDetails {
    pub bundle_digest: String,
    pub bundle_path: String,
    /// The bundle that was in prod before (now previous-good), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
}
artifact!(ReversalArtifact, ReversalDetails);

/// What a ReversalArtifact's entry adds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReversalDetails {
    /// The bundle prod points at after the rollback.
    pub restored: String,
}

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

/// One document with everything an entry says: the artifact's fields, then its
/// details' (what `--format json` shows; the file alone is upstream's shape).
pub fn merged<A: Artifact>(artifact: &A, details: &A::Details) -> Value {
    let mut v = serde_json::to_value(artifact).unwrap_or(Value::Null);
    if let (Value::Object(m), Ok(Value::Object(d))) = (&mut v, serde_json::to_value(details)) {
        for (k, x) in d {
            m.entry(k).or_insert(x);
        }
    }
    v
}

/// The JSON Schema of an artifact kind's `predicate.details` (`None` for the
/// kinds whose file holds everything, and for the seal).
pub fn details_schema_of(kind: ArtifactKind) -> Option<serde_json::Value> {
    use crate::schema_tools::generate;
    Some(match kind {
        ArtifactKind::ValidationArtifact => generate::<ValidationDetails>(),
        ArtifactKind::PlacementDecision => generate::<PlacementDetails>(),
        ArtifactKind::SessionArtifact => generate::<SessionDetails>(),
        ArtifactKind::PromotionArtifact => generate::<PromotionDetails>(),
        ArtifactKind::ReversalArtifact => generate::<ReversalDetails>(),
        ArtifactKind::RunArtifact | ArtifactKind::ReplayArtifact | ArtifactKind::Seal => return None,
    })
}

/// The bundle's extension blocks: every `spec` member beyond the core ones
/// agentplane interprets and the two upstream artifacts carry as fields of
/// their own (`governanceContext`, `chronosCarrier`), verbatim.
pub fn bundle_extensions(manifest: &Value) -> serde_json::Map<String, Value> {
    manifest
        .get("spec")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter(|(k, _)| is_extension(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Whether a `spec` member is an extension block (not one agentplane's bundle types define).
pub fn is_extension(spec_member: &str) -> bool {
    const CORE: &[&str] = &[
        "vm",
        "secrets",
        "policy",
        "artifacts",
        "smoke",
        "executor",
        "determinism",
        "governanceContext",
        "chronosCarrier",
    ];
    !CORE.contains(&spec_member)
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
