//! `agentplane place BUNDLE`

use anyhow::Result;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

use super::Ctx;
use crate::cli::{PlaceArgs, PlaceOpts};
use crate::error::Problem;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style};
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

pub fn run(ctx: &Ctx, args: PlaceArgs) -> Result<Box<dyn Render>> {
    let opts = options(ctx, &args.opts)?;
    let signer = ctx.signer(args.key.key.as_deref())?;
    let placed = place::place(&ctx.root, &ctx.bundle_arg(&args.bundle), &signer, &opts)?;
    Ok(Box::new(PlaceOutcome { root: ctx.root.clone(), placed }))
}

/// What `place` decided.
pub struct PlaceOutcome {
    pub root: PathBuf,
    pub placed: Placed,
}

/// The json of a placement: the PlacementDecision with its signed details
/// merged in (each rejection with its `code`), or (nothing qualified) the
/// same shape with `chosenExecutor: null` and every rejection.
pub fn placed_json(placed: &Placed) -> Value {
    match (&placed.decision, &placed.details) {
        (Some(d), Some(details)) => {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            let details = serde_json::to_value(details).unwrap_or(Value::Null);
            if let (Value::Object(m), Value::Object(extra)) = (&mut v, details) {
                for (k, x) in extra {
                    if k != "rejected" {
                        m.insert(k, x);
                    }
                }
                if let Some(Value::Array(rej)) = m.get_mut("rejected") {
                    for (r, code) in rej.iter_mut().zip(placed.candidates.iter().filter_map(|c| c.rejected.as_ref())) {
                        r["code"] = json!(code.code);
                    }
                }
            }
            v
        }
        _ => json!({
            "kind": "PlacementDecision",
            "bundle": placed.bundle,
            "chosenExecutor": null,
            "rejected": placed.candidates.iter().map(|c| json!({
                "name": c.executor.name,
                "sshRef": c.executor.ssh_ref,
                "code": c.rejected.as_ref().map(|r| r.code),
                "reason": c.rejected.as_ref().map(|r| format!("{}: {}", r.code, r.detail)),
            })).collect::<Vec<_>>(),
        }),
    }
}

/// The human table of a placement: the chosen executor and why each other was not.
pub fn placed_human(placed: &Placed, root: &std::path::Path, style: Style) -> String {
    let mut out = Lines::default();
    let width = placed.candidates.iter().map(|c| c.executor.name.chars().count()).max().unwrap_or(8).clamp(8, 40);
    for (i, c) in placed.candidates.iter().enumerate() {
        let name = untrusted(&c.executor.name);
        if Some(i) == placed.chosen {
            out.line(format!(
                "{} {name:width$}  chosen ({} isolation, {})",
                style.ok(),
                c.isolation,
                untrusted(&c.executor.ssh_ref)
            ));
        } else if let Some(r) = &c.rejected {
            out.line(format!("{} {name:width$}  {}: {}", style.bad(), r.code, untrusted(&r.detail)));
        }
    }
    match (&placed.decision, &placed.file) {
        (Some(d), Some(f)) => out.line(format!(
            "placed {} on `{}`; decision in {}",
            untrusted(&placed.bundle),
            untrusted(&d.chosen_executor),
            untrusted(&crate::fsx::rel_to(root, &placed.out_dir.join(f)))
        )),
        _ => out.line(format!("no executor qualifies for {}", untrusted(&placed.bundle))),
    }
    out.into_string()
}

impl Render for PlaceOutcome {
    fn exit(&self) -> Exit {
        if self.placed.chosen.is_some() { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        placed_human(&self.placed, &self.root, style)
    }

    fn json(&self) -> Value {
        placed_json(&self.placed)
    }
}
