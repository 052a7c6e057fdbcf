//! `agentplane promote`, `rollback` and `status`.

use anyhow::Result;

use super::Ctx;
use crate::cli::{KeyArgs, PromoteArgs};
use crate::exit::Exit;
use crate::stages::lifecycle;

pub fn promote(ctx: &Ctx, args: PromoteArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let trusted = ctx.trusted(&args.trust)?;
    let approval = args.approval_key.as_ref().map(|p| ctx.abs(p));
    let r = lifecycle::promote(&ctx.root, &args.bundle, &signer, &trusted, approval.as_deref())?;
    let p = &ctx.printer;
    if p.human() {
        p.line(format!(
            "{} promoted {} to prod ({})",
            p.ok(),
            r.artifact.promoted_object_ref,
            r.artifact.promotion_receipt_ref
        ));
        if let Some(prev) = &r.previous_good {
            p.line(format!("    previous-good: {prev}"));
        }
    } else {
        p.json(&r.artifact);
    }
    Ok(Exit::Success)
}

pub fn rollback(ctx: &Ctx, args: KeyArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.as_deref())?;
    let r = lifecycle::rollback(&ctx.root, &signer)?;
    let p = &ctx.printer;
    if p.human() {
        p.line(format!("{} rolled prod back from {} to {} ({})", p.ok(), r.from, r.to, r.artifact.reversal_handle));
    } else {
        p.json(&r.artifact);
    }
    Ok(Exit::Success)
}

pub fn status(ctx: &Ctx) -> Result<Exit> {
    let s = lifecycle::status(&ctx.root)?;
    let p = &ctx.printer;
    if !p.human() {
        p.json(&s);
        return Ok(Exit::Success);
    }
    for (k, v) in &s.pointers {
        p.line(format!("{k:16} {}", v.as_deref().unwrap_or("-")));
    }
    p.line("");
    let w = s.bundles.iter().map(|b| b.bundle.len()).max().unwrap_or(6).max(6);
    p.line(format!("{:w$}  {:18}  {:8}  {:6}  evidence", "bundle", "last stage", "run", "sealed"));
    for b in &s.bundles {
        p.line(format!(
            "{:w$}  {:18}  {:8}  {:6}  {}",
            b.bundle,
            b.stage,
            b.run_status.map_or("-", |s| s.as_str()),
            if b.sealed { "yes" } else { "no" },
            b.evidence
        ));
    }
    Ok(Exit::Success)
}
