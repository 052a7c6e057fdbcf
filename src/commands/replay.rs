//! `agentplane replay DIR`

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::ReplayArgs;
use crate::exit::Exit;
use crate::stages::replay::{self, Verdict};

pub fn run(ctx: &Ctx, args: ReplayArgs) -> Result<Exit> {
    let opts = replay::Options {
        trusted: ctx.trusted(&args.trust)?,
        executor: args.executor.clone(),
        inventory: args.inventory.as_ref().map(|p| ctx.abs(p)),
    };
    let v = replay_quiet(ctx, &args.dir, &opts)?;
    if let Some(path) = &args.report {
        let path = ctx.abs(path);
        let mut bytes = serde_json::to_vec_pretty(&v)?;
        bytes.push(b'\n');
        crate::fsx::write_atomic(&path, &bytes)
            .with_context(|| format!("cannot write the report `{}`", path.display()))?;
    }
    print(ctx, &v);
    Ok(if v.verdict == "match" { Exit::Success } else { Exit::Failed })
}

pub fn replay_quiet(ctx: &Ctx, dir: &std::path::Path, opts: &replay::Options) -> Result<Verdict> {
    let spinner = ctx.printer.spinner(format!("replaying {}", dir.display()));
    let v = replay::replay(&ctx.root, &ctx.abs(dir), opts, super::cancel_flag(), &mut |_| {});
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    v
}

pub fn print(ctx: &Ctx, v: &Verdict) {
    let p = &ctx.printer;
    if !p.human() {
        p.json(v);
        return;
    }
    if v.verdict == "match" {
        p.line(format!(
            "{} match: {} re-ran on `{}` with exit {}{}",
            p.ok(),
            v.bundle,
            v.executor,
            v.exit_code,
            if v.determinism_required { ", every product identical" } else { "" }
        ));
    } else {
        p.line(format!("{} diverged: {} re-ran on `{}`", p.bad(), v.bundle, v.executor));
        for d in &v.differences {
            p.line(format!("    {d}"));
        }
    }
}
