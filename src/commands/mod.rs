//! One file per subcommand: resolve arguments, call the library, print.

pub mod demo;
pub mod keygen;
pub mod lifecycle;
pub mod place;
pub mod replay;
pub mod run;
pub mod schema;
pub mod up;
pub mod validate;
pub mod verify;

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::cli::{Cli, Command, TrustArgs};
use crate::error::Problem;
use crate::evidence::keys::{self, Signer, TrustedKey};
use crate::exit::Exit;
use crate::output::Printer;

/// What every command gets: the canonical root and the printer.
pub struct Ctx {
    pub root: PathBuf,
    pub printer: Printer,
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

/// Run the parsed command; `printer` is the one `lib::run` also reports errors with.
pub fn dispatch(cli: Cli, printer: Printer) -> Result<Exit> {
    let root = cli.root.canonicalize().map_err(|e| {
        Problem::error(format!("root `{}` cannot be used: {e}", cli.root.display()))
            .hint("pass an existing directory with --root")
    })?;
    let ctx = Ctx { root, printer };
    match cli.command {
        Command::Validate(a) => validate::run(&ctx, a),
        Command::Place(a) => place::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Emit(a) => up::emit(&ctx, a),
        Command::Up(a) => up::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Replay(a) => replay::run(&ctx, a),
        Command::Promote(a) => lifecycle::promote(&ctx, a),
        Command::Rollback(a) => lifecycle::rollback(&ctx, a),
        Command::Status => lifecycle::status(&ctx),
        Command::Keygen(a) => keygen::run(&ctx, a),
        Command::Schema(a) => schema::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
    }
}
