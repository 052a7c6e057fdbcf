//! `agentplane replay DIR`

use anyhow::{Context, Result};
use serde_json::Value;

use super::Ctx;
use crate::cli::ReplayArgs;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style};
use crate::output::reporter;
use crate::stages::replay::{self, Verdict};
use crate::types::ReplayVerdict;

pub fn run(ctx: &Ctx, args: ReplayArgs) -> Result<Box<dyn Render>> {
    let opts = replay::Options {
        trusted: ctx.trusted(&args.trust)?,
        executor: args.executor.clone(),
        inventory: args.inventory.as_ref().map(|p| ctx.abs(p)),
    };
    let mut rep = reporter::for_printer(&ctx.printer, false);
    let v = replay::replay(&ctx.root, &ctx.abs(&args.dir), &opts, super::cancel_flag(), rep.as_mut())?;
    rep.end();
    if let Some(path) = &args.report {
        let path = ctx.abs(path);
        let mut bytes = serde_json::to_vec_pretty(&v)?;
        bytes.push(b'\n');
        crate::fsx::write_atomic(&path, &bytes)
            .with_context(|| format!("cannot write the report `{}`", path.display()))?;
    }
    Ok(Box::new(Replayed { verdict: v }))
}

/// What `replay` found.
pub struct Replayed {
    pub verdict: Verdict,
}

pub fn verdict_human(v: &Verdict, style: Style) -> String {
    let mut out = Lines::default();
    if v.verdict == ReplayVerdict::Match {
        out.line(format!(
            "{} match: {} re-ran on `{}` with exit {}{}",
            style.ok(),
            untrusted(&v.bundle),
            untrusted(&v.executor),
            v.exit_code,
            if v.determinism_required { ", every product identical" } else { "" }
        ));
    } else {
        out.line(format!("{} diverged: {} re-ran on `{}`", style.bad(), untrusted(&v.bundle), untrusted(&v.executor)));
        for d in &v.differences {
            out.line(format!("    {}", untrusted(d)));
        }
    }
    out.into_string()
}

impl Render for Replayed {
    fn exit(&self) -> Exit {
        if self.verdict.verdict == ReplayVerdict::Match { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        verdict_human(&self.verdict, style)
    }

    fn json(&self) -> Value {
        serde_json::to_value(&self.verdict).unwrap_or(Value::Null)
    }
}
