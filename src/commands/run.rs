//! `agentplane run BUNDLE`

use anyhow::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::cli::RunArgs;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style, plural};
use crate::output::reporter;
use crate::stages::run::{self, RunResult};

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<Box<dyn Render>> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let mut rep = reporter::for_printer(&ctx.printer, args.watch);
    let result = run::run(&ctx.root, &ctx.bundle_arg(&args.bundle), &signer, super::cancel_flag(), rep.as_mut())?;
    rep.end();
    Ok(Box::new(RunOutcome { root: ctx.root.clone(), result }))
}

/// What `run` did.
pub struct RunOutcome {
    pub root: PathBuf,
    pub result: RunResult,
}

/// How the script ended, for people: `exit 3`, `timed out after 20 s (…)`, `canceled`.
pub fn how_it_ended(r: &RunResult) -> String {
    let a = &r.artifact;
    if a.timed_out {
        format!(
            "timed out at its deadline after {} s (SIGTERM, then SIGKILL once the grace passed)",
            a.duration_ms.div_ceil(1000)
        )
    } else if a.canceled {
        "canceled".into()
    } else if a.exit_code < 0 {
        match &a.signal {
            Some(s) => format!("killed by {s}"),
            None => "did not run".into(),
        }
    } else {
        format!("exit {}", a.exit_code)
    }
}

/// The last lines of a run's stderr log (already redacted), escaped for a terminal.
pub fn stderr_tail(r: &RunResult) -> Vec<String> {
    const LINES: usize = 5;
    let log = r.out_dir.join(crate::stages::run::STDERR_LOG);
    let bytes = crate::fsx::read_regular(&log, crate::fsx::caps::DOCUMENT).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LINES)..].iter().map(|l| untrusted(l)).collect()
}

/// The human lines of a run.
pub fn run_human(r: &RunResult, root: &Path, style: Style) -> String {
    let a = &r.artifact;
    let mut out = Lines::default();
    out.line(format!(
        "{} run {} on `{}`: {} ({}, {} ms, {} isolation, {})",
        style.mark(r.success),
        untrusted(&a.bundle),
        untrusted(&a.executor),
        a.status.as_str(),
        how_it_ended(r),
        a.duration_ms,
        a.isolation,
        plural(a.products.len(), "product", "products")
    ));
    if let Some(e) = &a.error {
        out.line(format!("    error: {}", untrusted(e)));
    }
    if !r.success {
        for line in stderr_tail(r) {
            out.line(format!("    stderr| {line}"));
        }
        out.line(format!(
            "    full logs: {}, {}",
            untrusted(&crate::fsx::rel_to(root, &r.out_dir.join(crate::stages::run::STDERR_LOG))),
            untrusted(&crate::fsx::rel_to(root, &r.out_dir.join(crate::stages::run::STDOUT_LOG)))
        ));
    }
    for prod in &a.products {
        out.line(format!("    product {} sha256:{}", untrusted(&prod.path), &prod.sha256[..16.min(prod.sha256.len())]));
    }
    out.line(format!("    evidence: {}", untrusted(&crate::fsx::rel_to(root, &r.out_dir.join(&r.file)))));
    out.into_string()
}

impl Render for RunOutcome {
    fn exit(&self) -> Exit {
        if self.result.success { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        run_human(&self.result, &self.root, style)
    }

    fn json(&self) -> Value {
        serde_json::to_value(&self.result.artifact).unwrap_or(Value::Null)
    }
}
