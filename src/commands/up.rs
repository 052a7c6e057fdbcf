//! `agentplane up BUNDLE`: validate → place → run → emit.

use anyhow::Result;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::cli::UpArgs;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style, plural};
use crate::output::reporter;
use crate::stages::up::{self, UpOutcome, UpStatus};

pub fn run(ctx: &Ctx, args: UpArgs) -> Result<Box<dyn Render>> {
    let opts = super::place::options(ctx, &args.place)?;
    let signer = ctx.signer(args.key.key.as_deref())?;
    let mut rep = reporter::for_printer(&ctx.printer, args.watch);
    let outcome = up::up(&ctx.root, &ctx.bundle_arg(&args.bundle), &opts, &signer, super::cancel_flag(), rep.as_mut())?;
    rep.end();
    Ok(Box::new(Up { root: ctx.root.clone(), outcome }))
}

/// What `up` did.
pub struct Up {
    pub root: PathBuf,
    pub outcome: UpOutcome,
}

/// One line per stage reached, then what failed in detail.
pub fn up_human(o: &UpOutcome, root: &Path, style: Style) -> String {
    let mut out = Lines::default();
    let r = &o.validation.report;
    let name = untrusted(r.bundle.as_deref().unwrap_or("(unnamed)"));
    if r.valid {
        out.line(format!(
            "{} validate {name} ({}, digest {})",
            style.ok(),
            plural(r.checks.len(), "check", "checks"),
            r.digest.as_deref().map(|d| format!("{}…", &d[..19.min(d.len())])).unwrap_or_default()
        ));
    } else {
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| c.status == crate::types::CheckStatus::Fail)
            .map(|c| {
                format!(
                    "{}{}",
                    c.name,
                    c.pointer.as_deref().map(|p| format!(" at {}", untrusted(p))).unwrap_or_default()
                )
            })
            .collect();
        out.line(format!("{} validate invalid: {}", style.bad(), failed.join(", ")));
        for c in r.checks.iter().filter(|c| c.status == crate::types::CheckStatus::Fail) {
            out.line(format!(
                "    fail {}: {}\n         hint: {}",
                c.name,
                untrusted(c.message.as_deref().unwrap_or("")),
                crate::bundle::gates::hint_for(c.name)
            ));
        }
    }
    if let Some(p) = &o.placed {
        match (&p.decision, p.chosen) {
            (Some(d), Some(i)) => out.line(format!(
                "{} place    executor `{}` ({} isolation)",
                style.ok(),
                untrusted(&d.chosen_executor),
                p.candidates[i].isolation
            )),
            _ => {
                out.line(format!("{} place    no executor qualifies", style.bad()));
                for line in super::place::placed_human(p, root, style).lines() {
                    out.line(format!("    {line}"));
                }
            }
        }
    }
    if let Some(run) = &o.run {
        let a = &run.artifact;
        out.line(format!(
            "{} run      {} ({}, {} ms, {})",
            style.mark(run.success),
            a.status.as_str(),
            super::run::how_it_ended(run),
            a.duration_ms,
            plural(a.products.len(), "product", "products")
        ));
        if let Some(e) = &a.error {
            out.line(format!("    error: {}", untrusted(e)));
        }
        if !run.success && !a.canceled {
            for line in super::run::stderr_tail(run) {
                out.line(format!("    stderr| {line}"));
            }
            out.line(format!(
                "    full logs: {}",
                untrusted(&crate::fsx::rel_to(root, &run.out_dir.join(crate::stages::run::STDERR_LOG)))
            ));
        }
        if a.canceled {
            out.line("  canceled: session recorded as canceled and the chain sealed");
        }
    }
    if let Some(e) = &o.emitted {
        out.line(format!("{} emit     {}, {}, sealed", style.ok(), e.replay_file, e.session_file));
    }
    if let Some(ev) = o.evidence() {
        out.line(format!("evidence: {}", untrusted(&crate::fsx::rel_to(root, ev))));
    }
    out.into_string()
}

/// `{"bundle", "evidence", "status", "stages": {"validate", "place", "run", "emit"}}`:
/// each stage's own json document (null when not reached).
pub fn up_json(o: &UpOutcome, root: &Path) -> Value {
    let r = &o.validation.report;
    json!({
        "bundle": r.bundle,
        "evidence": o.evidence().map(|e| crate::fsx::rel_to(root, e)),
        "status": o.status(),
        "stages": {
            "validate": {
                "path": r.path,
                "valid": r.valid,
                "digest": r.digest,
                "checks": r.checks,
            },
            "place": o.placed.as_ref().map(super::place::placed_json),
            "run": o.run.as_ref().map(|r| serde_json::to_value(&r.artifact).unwrap_or(Value::Null)),
            "emit": o.emitted.as_ref().map(|e| super::emit::emitted_json(e, root)),
        },
    })
}

impl Render for Up {
    fn exit(&self) -> Exit {
        if self.outcome.status() == UpStatus::Success { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        up_human(&self.outcome, &self.root, style)
    }

    fn json(&self) -> Value {
        up_json(&self.outcome, &self.root)
    }
}
