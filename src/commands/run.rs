//! `agentplane run BUNDLE`

use anyhow::Result;

use super::Ctx;
use crate::cli::RunArgs;
use crate::exit::Exit;
use crate::runner::Event;
use crate::stages::run::{self, RunResult};

/// Run with progress: a spinner on a terminal, or live output with `--watch`.
pub fn run_stage(
    ctx: &Ctx,
    bundle: &std::path::Path,
    watch: bool,
    signer: &crate::evidence::keys::Signer,
) -> Result<RunResult> {
    let p = &ctx.printer;
    let cancel = super::cancel_flag();
    let spinner = if watch { None } else { p.spinner(format!("running {}", bundle.display())) };
    let mut on_event = |ev: Event| match ev {
        Event::Stdout(d) if watch => p.raw_out(&d),
        Event::Stderr(d) if watch => p.raw_err(&d),
        Event::Status(s) => {
            if let Some(sp) = &spinner {
                sp.set_message(s);
            } else if watch {
                p.note(format!("· {s}"));
            }
        }
        _ => {}
    };
    let result = run::run(&ctx.root, bundle, signer, cancel, &mut on_event);
    if let Some(sp) = spinner {
        sp.finish_and_clear();
    }
    result
}

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let r = run_stage(ctx, &args.bundle, args.watch, &signer)?;
    print(ctx, &r);
    Ok(exit_of(&r))
}

pub fn exit_of(r: &RunResult) -> Exit {
    if r.success { Exit::Success } else { Exit::Failed }
}

pub fn print(ctx: &Ctx, r: &RunResult) {
    let p = &ctx.printer;
    if !p.human() {
        p.json(&r.artifact);
        return;
    }
    let a = &r.artifact;
    let mark = if r.success { p.ok() } else { p.bad() };
    let mut how = format!("exit {}", a.exit_code);
    if a.timed_out {
        how = format!("timed out, killed ({})", a.signal.as_deref().unwrap_or("SIGKILL"));
    } else if a.canceled {
        how = "canceled".into();
    }
    p.line(format!(
        "{mark} run {} on `{}`: {} ({how}, {} ms, {} isolation)",
        a.bundle, a.executor, a.status, a.duration_ms, a.isolation
    ));
    if let Some(e) = &a.error {
        p.line(format!("    error: {e}"));
    }
    for prod in &a.products {
        p.line(format!("    product {} sha256:{}", prod.path, &prod.sha256[..16]));
    }
    p.line(format!("    evidence: {}", crate::fsx::rel_to(&ctx.root, &r.out_dir.join(&r.file))));
}
