//! Command-line definitions (clap derive): global flags and one Args struct per subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "agentplane",
    version,
    about = "Run bundles through validate → place → run → emit and leave signed, hash-chained evidence",
    after_help = "Exit codes: 0 success; 1 the subject failed (invalid bundle, no executor, failed run, evidence that does not verify, diverged replay); 2 agentplane could not do its job."
)]
pub struct Cli {
    /// Project root that bundle paths, fleet/ and state/ resolve against. Default: the
    /// nearest ancestor of the bundle path (or of the current directory) holding
    /// `bundles/`, `fleet/` or `.agentplane/`, as git and cargo find theirs.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Output format: human (default), json (one document on stdout), github (validate only).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Print only errors (and the json document with --format json).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    /// GitHub Actions annotations (`::error file=…::`), for `validate`.
    Github,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check bundles: the schema and every named gate; start each bundle's evidence chain.
    Validate(ValidateArgs),
    /// Choose the executor for a validated bundle and record why every other one was not.
    Place(PlaceArgs),
    /// Run a placed bundle's smoke script on its executor.
    Run(RunArgs),
    /// Write the ReplayArtifact and SessionArtifact and seal the chain.
    Emit(EmitArgs),
    /// validate → place → run → emit in one go.
    Up(UpArgs),
    /// Check an evidence directory offline against trusted public keys.
    Verify(VerifyArgs),
    /// Verify, then re-run the recorded bundle and compare with the recorded run.
    Replay(ReplayArgs),
    /// Print a C2SP tlog-proof that the entry naming FILE is in the checkpointed log.
    Prove(ProveArgs),
    /// Check a proof from `prove` offline: the file, the entry, the log, the signature.
    VerifyProof(VerifyProofArgs),
    /// Move a bundle with a verified, sealed, successful run to prod.
    Promote(PromoteArgs),
    /// Move prod back to the previous good bundle.
    Rollback(KeyArgs),
    /// Show the lane pointers and each bundle's latest run.
    Status,
    /// Create an ed25519 signing key pair.
    Keygen(KeygenArgs),
    /// Print the JSON Schema of a kind, or write them all.
    Schema(SchemaArgs),
    /// Run the whole pipeline on bundles/example-agent, then verify and replay it.
    Demo(KeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Signing key (PKCS#8 PEM); default $AGENTPLANE_SIGNING_KEY, then .agentplane/keys/signing.key.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Bundle directories, bundle.json files, or trees to search.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Write nothing (no artifact, no key needed): for CI.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlaceOpts {
    /// Fleet inventory; default fleet/inventory.json under the root (none: the local executor).
    #[arg(long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Pin the executor by name.
    #[arg(long, value_name = "NAME")]
    pub executor: Option<String>,
    /// Seconds each executor probe may take (all probes run in parallel).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub probe_timeout: f64,
}

#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// The bundle directory (holding bundle.json), or its bundle.json.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub opts: PlaceOpts,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The bundle directory (holding bundle.json), or its bundle.json.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Stream the smoke script's output live.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// The bundle directory (holding bundle.json), or its bundle.json.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The bundle directory (holding bundle.json), or its bundle.json.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub place: PlaceOpts,
    /// Stream the smoke script's output live.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// A public key (SPKI PEM) whose signatures are trusted; repeatable.
    #[arg(long = "trusted-key", value_name = "PUB")]
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The evidence directory (a bundle's outDir).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Accept a chain with no seal after its last entry (with a warning).
    #[arg(long)]
    pub allow_unsealed: bool,
    /// A checkpoint seen earlier (a C2SP signed note): prove the chain only grew since; repeatable.
    #[arg(long = "since", value_name = "CHECKPOINT")]
    pub since: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The evidence directory (a bundle's outDir).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The file whose entry to prove, as the evidence names it (e.g. `run-artifact.json`).
    #[arg(value_name = "FILE", required_unless_present = "entry", conflicts_with = "entry")]
    pub file: Option<String>,
    /// Prove the entry at this index (0 is the chain's first line) instead of naming a file.
    #[arg(long, value_name = "N")]
    pub entry: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// A C2SP tlog-proof written by `agentplane prove`.
    #[arg(value_name = "PROOF")]
    pub proof: PathBuf,
    /// The file the proof is about.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The evidence directory (a bundle's outDir).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Re-run on this executor (`local`, or a name in the inventory) instead of the recorded one.
    #[arg(long, value_name = "NAME")]
    pub executor: Option<String>,
    /// Fleet inventory to find `--executor` in; default fleet/inventory.json under the root.
    #[arg(long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Write the verdict as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The bundle directory (holding bundle.json), or its bundle.json.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// An approver's private key (not the run's signer), for bundles with humanGateRequired.
    #[arg(long, value_name = "PATH")]
    pub approval_key: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix: writes PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// bundle, fleet-inventory, validation-artifact, placement-decision, run-artifact,
    /// replay-artifact, session-artifact, promotion-artifact, reversal-artifact, seal.
    #[arg(value_name = "KIND")]
    pub kind: Option<String>,
    /// Write every schema into DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "kind")]
    pub write: Option<PathBuf>,
}

impl Command {
    /// The path argument a project root is discovered from, when the command has one.
    pub fn anchor(&self) -> Option<&std::path::Path> {
        match self {
            Command::Validate(a) => a.paths.first().map(PathBuf::as_path),
            Command::Place(a) => Some(&a.bundle),
            Command::Run(a) => Some(&a.bundle),
            Command::Emit(a) => Some(&a.bundle),
            Command::Up(a) => Some(&a.bundle),
            Command::Promote(a) => Some(&a.bundle),
            Command::Verify(a) => Some(&a.dir),
            Command::Prove(a) => Some(&a.dir),
            Command::Replay(a) => Some(&a.dir),
            Command::Rollback(_)
            | Command::Status
            | Command::Keygen(_)
            | Command::Schema(_)
            | Command::Demo(_)
            | Command::VerifyProof(_) => None,
        }
    }
}
