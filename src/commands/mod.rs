//! One file per subcommand: resolve arguments, call a stage, return its
//! outcome for the printer to render. Nothing here does a stage's work.

pub mod demo;
pub mod emit;
pub mod keygen;
pub mod lifecycle;
pub mod place;
pub mod prove;
pub mod refused;
pub mod replay;
pub mod root;
pub mod run;
pub mod schema;
pub mod status;
pub mod up;
pub mod validate;
pub mod verify;

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::cli::{Cli, Command, Format, TrustArgs};
use crate::error::Problem;
use crate::evidence::keys::{self, Signer, TrustedKey};
use crate::output::{Printer, Render};

/// What every command gets: the canonical root and the printer.
pub struct Ctx {
    pub root: PathBuf,
    pub printer: Printer,
    /// `--root` was given: relative bundle paths are relative to it (the
    /// documented rule); otherwise to the current directory, as in any tool.
    pub explicit_root: bool,
}

impl Ctx {
    pub fn signer(&self, flag: Option<&Path>) -> Result<Signer> {
        Signer::find(&self.root, flag.map(|p| self.abs(p)).as_deref())
    }

    /// A user-given path: relative to the current directory as usual.
    pub fn abs(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
        }
    }

    /// A bundle argument for a stage: stages resolve relative paths against
    /// the root, so without `--root` a relative path is made absolute against
    /// the current directory first.
    pub fn bundle_arg(&self, p: &Path) -> PathBuf {
        if self.explicit_root { p.to_path_buf() } else { self.abs(p) }
    }

    pub fn trusted(&self, t: &TrustArgs) -> Result<Vec<TrustedKey>> {
        t.trusted_keys.iter().map(|p| keys::load_public(&self.abs(p))).collect()
    }
}

/// Ctrl-C (SIGINT) and SIGTERM set the returned flag instead of killing
/// agentplane, so the work is stopped and the evidence sealed.
pub fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    flag
}

/// The command's name, as `refused` documents name it.
fn name_of(c: &Command) -> &'static str {
    match c {
        Command::Validate(_) => "validate",
        Command::Place(_) => "place",
        Command::Run(_) => "run",
        Command::Emit(_) => "emit",
        Command::Up(_) => "up",
        Command::Verify(_) => "verify",
        Command::Replay(_) => "replay",
        Command::Prove(_) => "prove",
        Command::VerifyProof(_) => "verify-proof",
        Command::Promote(_) => "promote",
        Command::Rollback(_) => "rollback",
        Command::Status => "status",
        Command::Keygen(_) => "keygen",
        Command::Schema(_) => "schema",
        Command::Demo(_) => "demo",
    }
}

/// Run the parsed command and return its outcome. A stage that refused its
/// subject (a [`crate::error::Refusal`]) becomes a `refused` outcome here, so
/// it is rendered as data like any other exit-1 result; anything else that
/// failed is an error (exit 2).
pub fn dispatch(cli: Cli, printer: Printer) -> Result<Box<dyn Render>> {
    let command = name_of(&cli.command);
    if cli.format == Format::Github && command != "validate" {
        return Err(Problem::error(format!("--format github is for `validate` only, not `{command}`"))
            .hint("use --format human or --format json")
            .into());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Problem::error(format!("the current directory cannot be used: {e}")).hint("cd into your project and run again")
    })?;
    let chosen = root::choose(cli.root.as_deref(), cli.command.anchor(), &cwd);
    let root = chosen.canonicalize().map_err(|e| {
        Problem::error(format!("root `{}` cannot be used: {e}", chosen.display()))
            .hint("pass an existing directory with --root")
    })?;
    if cli.root.is_none() && cwd.canonicalize().ok().as_deref() != Some(root.as_path()) {
        printer.note(format!("using project root {}", root.display()));
    }
    let ctx = Ctx { root, printer, explicit_root: cli.root.is_some() };
    let outcome = match cli.command {
        Command::Validate(a) => validate::run(&ctx, a),
        Command::Place(a) => place::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Emit(a) => emit::run(&ctx, a),
        Command::Up(a) => up::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Replay(a) => replay::run(&ctx, a),
        Command::Prove(a) => prove::prove(&ctx, a),
        Command::VerifyProof(a) => prove::verify_proof(&ctx, a),
        Command::Promote(a) => lifecycle::promote(&ctx, a),
        Command::Rollback(a) => lifecycle::rollback(&ctx, a),
        Command::Status => status::run(&ctx),
        Command::Keygen(a) => keygen::run(&ctx, a),
        Command::Schema(a) => schema::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
    };
    outcome.or_else(|err| refused::from_error(command, err))
}
