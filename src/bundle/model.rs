//! The bundle manifest (`bundle.json`, apiVersion `agentplane.socioprophet.org/v0.1`).
//!
//! The types mirror the upstream v0.1 schema constraint for constraint, so the
//! schema generated from them reaches the same verdict on upstream bundles.
//! Extension blocks agentplane does not interpret (`governanceContext`, …)
//! are kept verbatim in `extra` maps and carried into artifacts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::types::{Backend, Isolation, Lane};

pub const API_VERSION: &str = "agentplane.socioprophet.org/v0.1";

/// Extension blocks and unknown fields, kept in their original order.
pub type Extra = Map<String, Value>;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Bundle Schema v0.1")]
pub struct Bundle {
    #[schemars(extend("enum" = [API_VERSION]))]
    pub api_version: String,
    #[schemars(extend("enum" = ["Bundle"]))]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{1,62}$"))]
    pub name: String,
    pub version: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_policy: Option<LicensePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
/// Our internal compliance gate: declare that bundle contents are shippable under our rules.
pub struct LicensePolicy {
    #[serde(default, rename = "allowAGPL", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [false]))]
    pub allow_agpl: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GitSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub vm: Vm,
    pub secrets: Secrets,
    pub policy: Policy,
    pub artifacts: Artifacts,
    pub smoke: Smoke,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorRef>,
    /// Whether a replay must reproduce every product byte for byte (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determinism: Option<Determinism>,
    /// Optional output references emitted by image-production, proof, or release lanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Extra>,
    /// Optional binding to SociOS-Linux/socios automation lanes such as Foreman/Katello, Smart Proxy, Tekton, and Argo CD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socios_automation: Option<SociosAutomation>,
    /// Optional SourceOS artifact-truth binding (carried through, not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourceos: Option<Extra>,
    /// Optional CHRONOS carrier passthrough (carried through, not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronos_carrier: Option<ChronosCarrier>,
    /// Optional SourceOS Agent Machine binding (carried through, not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_machine: Option<Extra>,
    /// `governanceContext` and any other extension block, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SociosAutomation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub katello_lifecycle_environment: Option<KatelloLifecycleEnvironment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tekton_task_refs: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KatelloLifecycleEnvironment {
    Dev,
    Qa,
    Prod,
    Site,
    Custom,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChronosCarrier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_authority_declaration: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vm {
    pub backend_intent: Backend,
    /// Path to NixOS module entry (e.g., vm.nix). Kept for compatibility: NixOS
    /// modules cannot be built on agentplane's hosts; the QEMU runner boots a
    /// kernel plus an initramfs it assembles instead.
    pub module_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The VM needs hardware virtualisation (additive; qemu/microvm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_kvm: Option<bool>,
    /// Kernel image for the QEMU runner, relative to the root (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    pub source: String,
    pub target: String,
    pub ro: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum MountType {
    #[serde(rename = "virtiofs")]
    Virtiofs,
    #[serde(rename = "9p")]
    NineP,
    #[serde(rename = "podman-bind")]
    PodmanBind,
    #[serde(rename = "wsl-bind")]
    WslBind,
    #[serde(rename = "topolvm-local-pv")]
    TopolvmLocalPv,
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_allowlist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    None,
    Nat,
    Bridge,
    Slirp,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, rename = "diskGiB", skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<i64>,
    #[serde(default, rename = "memMiB", skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<i64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Secrets are refs/paths only — never inline values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref_root: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// TrustFirst Policy Pack pointer(s) and hashes; contents live elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_timeout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_gate_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 3600))]
    pub max_run_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_pack_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_pack_ref: Option<String>,
    /// Isolation classes the bundle accepts (additive); absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptable_isolation: Option<Vec<Isolation>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifacts {
    /// Where proof artifacts are written (run/policy/promotion/replay/receipt)
    pub out_dir: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Smoke {
    pub script: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorRef {
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Determinism {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Bundle {
    /// `name@version`, the bundle identity used in every artifact.
    pub fn identity(&self) -> String {
        format!("{}@{}", self.metadata.name, self.metadata.version)
    }

    pub fn lane(&self) -> Lane {
        self.spec.policy.lane.unwrap_or(Lane::Staging)
    }

    pub fn governance_context(&self) -> Option<&Value> {
        self.spec.extra.get("governanceContext")
    }

    pub fn secrets_required(&self) -> &[String] {
        self.spec.secrets.required.as_deref().unwrap_or(&[])
    }

    pub fn determinism_required(&self) -> bool {
        self.spec.determinism.as_ref().and_then(|d| d.required).unwrap_or(false)
    }

    pub fn max_run_seconds(&self) -> u64 {
        self.spec.policy.max_run_seconds.unwrap_or(600).clamp(1, 3600) as u64
    }
}
