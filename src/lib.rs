//! agentplane: an evidence-forward execution control plane for bundles.
//!
//! `validate → place → run → emit`, then `verify` and `replay` offline. The
//! library never prints; [`run`] parses the command line, dispatches to
//! `commands/`, and maps every outcome to an exit code (`exit.rs`).
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cli;
pub mod commands;
pub mod error;
pub mod evidence;
pub mod exit;
pub mod fleet;
pub mod fsx;
pub mod json;
pub mod output;
pub mod runner;
pub mod schema_tools;
pub mod schemas;
pub mod spill;
pub mod ssh;
pub mod stages;
pub mod types;

use clap::Parser;

/// Run agentplane with the process's arguments; returns the exit code.
pub fn run() -> exit::Exit {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::Exit::Error } else { exit::Exit::Success };
        }
    };
    let printer = output::Printer::new(cli.format, cli.quiet);
    match commands::dispatch(cli, printer.clone()) {
        Ok(outcome) => {
            let exit = printer.emit(outcome.as_ref());
            if outcome.only_memory() {
                // Printed and flushed; nothing but memory is left to release.
                std::mem::forget(outcome);
            }
            exit
        }
        Err(err) => {
            printer.error(&err);
            error::exit_of(&err)
        }
    }
}
