//! The shared vocabulary: every fixed set of values agentplane writes or
//! compares (artifact kinds, statuses, gates, placement codes, isolation, …).
//!
//! This module depends on nothing else in the crate. Each enum serialises in
//! the kebab-case (or upstream) spelling the JSON has always used, so typing a
//! value never changes what is on the wire; code compares enums, never strings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `Display` through the serde spelling, so a value prints as it is written.
macro_rules! wire_display {
    ($($t:ty),* $(,)?) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

/// The kinds of chain entry: one per artifact file, plus the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum ArtifactKind {
    ValidationArtifact,
    PlacementDecision,
    RunArtifact,
    ReplayArtifact,
    SessionArtifact,
    PromotionArtifact,
    ReversalArtifact,
    Seal,
}

impl ArtifactKind {
    /// Every kind that is an artifact file (all but the seal).
    pub const FILES: [ArtifactKind; 7] = [
        ArtifactKind::ValidationArtifact,
        ArtifactKind::PlacementDecision,
        ArtifactKind::RunArtifact,
        ArtifactKind::ReplayArtifact,
        ArtifactKind::SessionArtifact,
        ArtifactKind::PromotionArtifact,
        ArtifactKind::ReversalArtifact,
    ];

    /// Every kind: the artifact files, then the seal.
    pub const ALL: [ArtifactKind; 8] = {
        let f = ArtifactKind::FILES;
        [f[0], f[1], f[2], f[3], f[4], f[5], f[6], ArtifactKind::Seal]
    };

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::ValidationArtifact => "ValidationArtifact",
            ArtifactKind::PlacementDecision => "PlacementDecision",
            ArtifactKind::RunArtifact => "RunArtifact",
            ArtifactKind::ReplayArtifact => "ReplayArtifact",
            ArtifactKind::SessionArtifact => "SessionArtifact",
            ArtifactKind::PromotionArtifact => "PromotionArtifact",
            ArtifactKind::ReversalArtifact => "ReversalArtifact",
            ArtifactKind::Seal => "Seal",
        }
    }

    /// The upstream file name of an artifact kind (`None` for the seal).
    pub fn file(self) -> Option<&'static str> {
        Some(match self {
            ArtifactKind::ValidationArtifact => "validation-artifact.json",
            ArtifactKind::PlacementDecision => "placement-decision.json",
            ArtifactKind::RunArtifact => "run-artifact.json",
            ArtifactKind::ReplayArtifact => "replay-artifact.json",
            ArtifactKind::SessionArtifact => "session-artifact.json",
            ArtifactKind::PromotionArtifact => "promotion-artifact.json",
            ArtifactKind::ReversalArtifact => "reversal-artifact.json",
            ArtifactKind::Seal => return None,
        })
    }

    /// The name of its schema (`agentplane schema NAME`).
    pub fn schema_name(self) -> &'static str {
        match self {
            ArtifactKind::ValidationArtifact => "validation-artifact",
            ArtifactKind::PlacementDecision => "placement-decision",
            ArtifactKind::RunArtifact => "run-artifact",
            ArtifactKind::ReplayArtifact => "replay-artifact",
            ArtifactKind::SessionArtifact => "session-artifact",
            ArtifactKind::PromotionArtifact => "promotion-artifact",
            ArtifactKind::ReversalArtifact => "reversal-artifact",
            ArtifactKind::Seal => "seal",
        }
    }

    pub fn is_seal(self) -> bool {
        self == ArtifactKind::Seal
    }
}

/// How a run ended (RunArtifact `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Success,
    Failure,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        }
    }
}

/// How a session ended (SessionArtifact `status`; upstream's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SessionStatus {
    Success,
    Failure,
    Paused,
    Deferred,
    Canceled,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Success => "success",
            SessionStatus::Failure => "failure",
            SessionStatus::Paused => "paused",
            SessionStatus::Deferred => "deferred",
            SessionStatus::Canceled => "canceled",
        }
    }
}

/// A rollback's state (ReversalArtifact `status`; upstream's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReversalStatus {
    Started,
    Succeeded,
    Failed,
}

/// What a replay found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayVerdict {
    Match,
    Diverged,
}

impl ReplayVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayVerdict::Match => "match",
            ReplayVerdict::Diverged => "diverged",
        }
    }
}

/// The isolation a run actually had, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    Process,
    VmTcg,
    VmKvm,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::VmTcg => "vm-tcg",
            Isolation::VmKvm => "vm-kvm",
        }
    }
}

/// The lane a bundle runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Staging,
    Prod,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Staging => "staging",
            Lane::Prod => "prod",
        }
    }
}

/// Where a bundle asks to run (`spec.vm.backendIntent`; upstream's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Qemu,
    Microvm,
    LimaProcess,
    Fleet,
    AgentMachine,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Microvm => "microvm",
            Backend::LimaProcess => "lima-process",
            Backend::Fleet => "fleet",
            Backend::AgentMachine => "agent-machine",
        }
    }

    /// Whether this backend runs the smoke script inside a virtual machine.
    pub fn is_vm(self) -> bool {
        matches!(self, Backend::Qemu | Backend::Microvm)
    }

    pub fn parse(s: &str) -> Option<Backend> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// How an executor is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Local,
    Ssh,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Local => "local",
            Transport::Ssh => "ssh",
        }
    }
}

/// The named validation gates of DESIGN §4, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    Parse,
    Schema,
    LicensePolicy,
    MaxRunSeconds,
    SecretsAreRefs,
    PathsInsideRoot,
    OutDirSafe,
    SmokeScriptPresent,
    BackendSupported,
}

impl Gate {
    pub const ALL: [Gate; 9] = [
        Gate::Parse,
        Gate::Schema,
        Gate::LicensePolicy,
        Gate::MaxRunSeconds,
        Gate::SecretsAreRefs,
        Gate::PathsInsideRoot,
        Gate::OutDirSafe,
        Gate::SmokeScriptPresent,
        Gate::BackendSupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Parse => "parse",
            Gate::Schema => "schema",
            Gate::LicensePolicy => "license-policy",
            Gate::MaxRunSeconds => "max-run-seconds",
            Gate::SecretsAreRefs => "secrets-are-refs",
            Gate::PathsInsideRoot => "paths-inside-root",
            Gate::OutDirSafe => "out-dir-safe",
            Gate::SmokeScriptPresent => "smoke-script-present",
            Gate::BackendSupported => "backend-supported",
        }
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Warn,
}

/// One gate's result. The JSON shape is part of the documented output and of
/// the ValidationArtifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: Gate,
    pub status: CheckStatus,
    pub message: Option<String>,
    pub pointer: Option<String>,
    /// Where in the file, when the problem has a position (JSON syntax errors do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Check {
    pub fn pass(gate: Gate) -> Check {
        Check { name: gate, status: CheckStatus::Pass, message: None, pointer: None, line: None, column: None }
    }

    pub fn fail(gate: Gate, message: String, pointer: Option<&str>) -> Check {
        Check {
            name: gate,
            status: CheckStatus::Fail,
            message: Some(message),
            pointer: pointer.map(str::to_string),
            line: None,
            column: None,
        }
    }

    /// The same check, located at `line`/`column` of the file.
    pub fn at(mut self, line: usize, column: usize) -> Check {
        if line > 0 {
            self.line = Some(line);
            self.column = Some(column.max(1));
        }
        self
    }

    pub fn warn(gate: Gate, message: String, pointer: Option<&str>) -> Check {
        Check {
            name: gate,
            status: CheckStatus::Warn,
            message: Some(message),
            pointer: pointer.map(str::to_string),
            line: None,
            column: None,
        }
    }
}

/// Why placement did not choose an executor: stable codes (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RejectCode {
    Disabled,
    HealthNotReady,
    BackendUnsupported,
    KvmRequired,
    IsolationTooWeak,
    /// No runner can run this backend over this executor's transport.
    RunnerUnsupported,
    /// The bundle mounts a host path the executor does not allow.
    HostPathNotAllowed,
    PlatformMismatch,
    /// A VM executor without `qemu-system-x86_64` (or the one it names).
    QemuMissing,
    /// A VM executor without a kernel QEMU can read.
    KernelMissing,
    SshUnreachable,
    SshHostKeyUnknown,
    SshHostKeyChanged,
    SshAuthFailed,
    /// agentplane could not probe it (its own resources ran out): never recorded as evidence.
    ProbeFailed,
    /// It qualified, but another was preferred.
    NotPreferred,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Disabled => "disabled",
            RejectCode::HealthNotReady => "health-not-ready",
            RejectCode::BackendUnsupported => "backend-unsupported",
            RejectCode::KvmRequired => "kvm-required",
            RejectCode::IsolationTooWeak => "isolation-too-weak",
            RejectCode::RunnerUnsupported => "runner-unsupported",
            RejectCode::HostPathNotAllowed => "host-path-not-allowed",
            RejectCode::PlatformMismatch => "platform-mismatch",
            RejectCode::QemuMissing => "qemu-missing",
            RejectCode::KernelMissing => "kernel-missing",
            RejectCode::SshUnreachable => "ssh-unreachable",
            RejectCode::SshHostKeyUnknown => "ssh-host-key-unknown",
            RejectCode::SshHostKeyChanged => "ssh-host-key-changed",
            RejectCode::SshAuthFailed => "ssh-auth-failed",
            RejectCode::ProbeFailed => "probe-failed",
            RejectCode::NotPreferred => "not-preferred",
        }
    }
}

/// How a stage reaches an SSH executor (paths only, never key contents).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: String,
    pub known_hosts_file: String,
}

/// What the inventory says about VMs on an executor
/// (`capabilities.vm: {"qemu": PATH, "kernel": PATH}`), paths on that host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmHostConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// `/dev/kvm` as the login sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KvmDevice {
    /// It exists and the login may open it read-write (a test boot still decides).
    Usable,
    /// It exists, but not for this login.
    Denied,
    Absent,
}

/// What the probe found on the host (recorded in the PlacementDecision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmHost {
    /// The QEMU binary, when found and executable.
    pub qemu: Option<String>,
    /// The kernel to boot, when found and readable.
    pub kernel: Option<String>,
    pub kvm: KvmDevice,
    /// `uname -m`.
    pub arch: String,
    /// Why a piece is missing, in the order asked (for messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Normalise OS spellings (`macos` is what `uname -s` calls `darwin`).
pub fn norm_os(o: &str) -> String {
    match o.to_ascii_lowercase().as_str() {
        "macos" | "osx" | "mac" => "darwin".into(),
        other => other.into(),
    }
}

/// Normalise architecture spellings (`amd64` is `x86_64`, `arm64` is `aarch64`).
pub fn norm_arch(a: &str) -> String {
    match a.to_ascii_lowercase().as_str() {
        "amd64" | "x64" | "x86-64" => "x86_64".into(),
        "arm64" => "aarch64".into(),
        other => other.into(),
    }
}

/// Where a run happened: kernel, arch and hostname.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub os: String,
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
}

/// How a run's processes were held together and torn down (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// A PID namespace whose init is the script: when it ends, the kernel kills everything in it.
    PidNamespace,
    /// A cgroup v2 leaf killed as a whole (`cgroup.kill`).
    Cgroup,
    /// The fallback: the script's process group, then a sweep of every descendant.
    #[serde(rename = "process-group+sweep")]
    ProcessGroupSweep,
    /// A virtual machine, powered off or killed as a whole.
    Vm,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::PidNamespace => "pid-namespace",
            Mechanism::Cgroup => "cgroup",
            Mechanism::ProcessGroupSweep => "process-group+sweep",
            Mechanism::Vm => "vm",
        }
    }
}

/// The containment receipt a RunArtifact carries: what held the run, what had
/// to be killed when it ended, and what was found afterwards (checked, not assumed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Containment {
    pub mechanism: Mechanism,
    /// Processes still running when the script ended (or at the deadline) that were killed.
    pub killed_at_end: u32,
    /// Processes of the run found alive after teardown (0 is the promise).
    pub survivors: u32,
    /// Whether `survivors` was checked (a scan) rather than assumed.
    pub checked: bool,
    /// Why a weaker mechanism was used, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

wire_display!(Mechanism);

/// The leak gate's receipt (RunArtifact `secretScan`): an exact-value scan of
/// everything about to be signed, run before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretScan {
    /// How many secrets were looked for (0: the bundle declares none).
    pub secrets: u32,
    /// Files scanned byte for byte (logs, products, the artifact itself).
    pub files: u32,
    /// Secret values found: always 0 in a written artifact (a find fails the run).
    pub found: u32,
}

wire_display!(
    ArtifactKind,
    RunStatus,
    SessionStatus,
    ReplayVerdict,
    Isolation,
    Lane,
    Backend,
    Transport,
    Gate,
    RejectCode
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde spelling and `as_str` never drift apart.
    #[test]
    fn wire_names_match_as_str() {
        fn wire<T: Serialize>(v: T) -> String {
            serde_json::to_value(v).unwrap().as_str().unwrap().to_string()
        }
        for k in ArtifactKind::ALL {
            assert_eq!(wire(k), k.as_str());
        }
        for g in Gate::ALL {
            assert_eq!(wire(g), g.as_str());
        }
        for b in [Backend::Qemu, Backend::Microvm, Backend::LimaProcess, Backend::Fleet, Backend::AgentMachine] {
            assert_eq!(wire(b), b.as_str());
            assert_eq!(Backend::parse(b.as_str()), Some(b));
        }
        for i in [Isolation::Process, Isolation::VmTcg, Isolation::VmKvm] {
            assert_eq!(wire(i), i.as_str());
        }
        for c in [
            RejectCode::Disabled,
            RejectCode::HealthNotReady,
            RejectCode::BackendUnsupported,
            RejectCode::KvmRequired,
            RejectCode::IsolationTooWeak,
            RejectCode::RunnerUnsupported,
            RejectCode::HostPathNotAllowed,
            RejectCode::PlatformMismatch,
            RejectCode::QemuMissing,
            RejectCode::KernelMissing,
            RejectCode::SshUnreachable,
            RejectCode::SshHostKeyUnknown,
            RejectCode::SshHostKeyChanged,
            RejectCode::SshAuthFailed,
            RejectCode::ProbeFailed,
            RejectCode::NotPreferred,
        ] {
            assert_eq!(wire(c), c.as_str());
        }
        for s in [
            SessionStatus::Success,
            SessionStatus::Failure,
            SessionStatus::Paused,
            SessionStatus::Deferred,
            SessionStatus::Canceled,
        ] {
            assert_eq!(wire(s), s.as_str());
        }
        for m in [Mechanism::PidNamespace, Mechanism::Cgroup, Mechanism::ProcessGroupSweep, Mechanism::Vm] {
            assert_eq!(wire(m), m.as_str());
        }
        assert_eq!(wire(RunStatus::Failure), "failure");
        assert_eq!(wire(ReplayVerdict::Diverged), "diverged");
        assert_eq!(wire(ReversalStatus::Succeeded), "succeeded");
    }

    #[test]
    fn platforms_compare_across_spellings() {
        assert_eq!((norm_os("macOS"), norm_arch("arm64")), (norm_os("darwin"), norm_arch("aarch64")));
        assert_ne!(norm_os("macOS"), norm_os("linux"));
    }
}
