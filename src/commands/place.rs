//! `agentplane place BUNDLE`

use anyhow::Result;
use std::time::Duration;

use super::Ctx;
use crate::cli::{PlaceArgs, PlaceOpts};
use crate::error::Problem;
use crate::exit::Exit;
use crate::stages::place::{self, Placed};

pub fn options(ctx: &Ctx, o: &PlaceOpts) -> Result<place::Options> {
    if !(o.probe_timeout.is_finite() && o.probe_timeout > 0.0 && o.probe_timeout <= 300.0) {
        return Err(
            Problem::error(format!("--probe-timeout {} is not between 0 and 300 seconds", o.probe_timeout)).into()
        );
    }
    Ok(place::Options {
        inventory: o.inventory.as_ref().map(|p| ctx.abs(p)),
        executor: o.executor.clone(),
        probe_timeout: Duration::from_secs_f64(o.probe_timeout),
    })
}

pub fn run(ctx: &Ctx, args: PlaceArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let placed = place::place(&ctx.root, &args.bundle, &signer, &options(ctx, &args.opts)?)?;
    print(ctx, &placed);
    Ok(if placed.chosen.is_some() { Exit::Success } else { Exit::Failed })
}

pub fn print(ctx: &Ctx, placed: &Placed) {
    let p = &ctx.printer;
    if !p.human() {
        match &placed.decision {
            Some(d) => p.json(d),
            None => p.json(&serde_json::json!({
                "kind": "PlacementDecision",
                "bundle": placed.bundle,
                "chosenExecutor": null,
                "rejected": placed.candidates.iter().map(|c| serde_json::json!({
                    "name": c.executor.name,
                    "sshRef": c.executor.ssh_ref,
                    "code": c.rejected.as_ref().map(|r| r.code),
                    "reason": c.rejected.as_ref().map(|r| format!("{}: {}", r.code, r.detail)),
                })).collect::<Vec<_>>(),
            })),
        }
        return;
    }
    let width = placed.candidates.iter().map(|c| c.executor.name.len()).max().unwrap_or(8).max(8);
    for (i, c) in placed.candidates.iter().enumerate() {
        if Some(i) == placed.chosen {
            p.line(format!(
                "{} {:width$}  chosen ({} isolation, {})",
                p.ok(),
                c.executor.name,
                c.isolation.as_str(),
                c.executor.ssh_ref
            ));
        } else if let Some(r) = &c.rejected {
            p.line(format!("{} {:width$}  {}: {}", p.bad(), c.executor.name, r.code, r.detail));
        }
    }
    match (&placed.decision, &placed.file) {
        (Some(d), Some(f)) => p.line(format!(
            "placed {} on `{}`; decision in {}",
            placed.bundle,
            d.chosen_executor,
            crate::fsx::rel_to(&ctx.root, &placed.out_dir.join(f))
        )),
        _ => p.line(format!("no executor qualifies for {}", placed.bundle)),
    }
}
