//! `agentplane validate PATH...`

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

use super::Ctx;
use crate::bundle::gates::{self, Check, Status};
use crate::cli::{Format, ValidateArgs};
use crate::error::{Refusal, RefusalCode};
use crate::exit::Exit;
use crate::output::escape::{gh_message, gh_property, untrusted};
use crate::output::render::{Lines, Render, Style, plural};
use crate::stages::validate::{self, Outcome};

/// What `validate` found, for every bundle.
pub struct Validated {
    pub root: PathBuf,
    pub outcomes: Vec<Outcome>,
    /// No artifact could be signed (no key): the checks are still reported.
    pub unsigned: Option<anyhow::Error>,
}

/// The documented `--format json` shape.
#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    bundles: Vec<JsonBundle<'a>>,
}

#[derive(Serialize)]
struct JsonBundle<'a> {
    path: &'a str,
    bundle: Option<&'a str>,
    valid: bool,
    digest: Option<&'a str>,
    checks: &'a [Check],
}

pub fn run(ctx: &Ctx, args: ValidateArgs) -> Result<Box<dyn Render>> {
    let paths: Vec<PathBuf> = args.paths.iter().map(|p| ctx.bundle_arg(p)).collect();
    let manifests = validate::find(&ctx.root, &paths)?;
    if manifests.is_empty() {
        // A typo in a CI path must not pass green.
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Refusal::new(RefusalCode::NoBundles, format!("no bundle.json under {}", shown.join(", ")))
            .hint("pass a bundle directory, a bundle.json, or a folder of bundles")
            .into());
    }
    // The digest is shown only in json output and recorded only in artifacts.
    let with_digest = !args.check || ctx.printer.format == Format::Json;
    let reports = validate::check_all(&ctx.root, &manifests, with_digest)?;
    let unwritten =
        |reports: Vec<_>| reports.into_iter().map(|report| Outcome { report, written: None, not_written: None });
    if args.check {
        return Ok(Box::new(Validated {
            root: ctx.root.clone(),
            outcomes: unwritten(reports).collect(),
            unsigned: None,
        }));
    }
    // Without a key the checks are still worth seeing; then exit 2.
    let (outcomes, unsigned) = match ctx.signer(args.key.key.as_deref()) {
        Ok(signer) => (validate::write_all(&ctx.root, reports, &signer)?, None),
        Err(e) => {
            let inner = crate::error::hint_of(&e).map(|h| format!("; or {h}")).unwrap_or_default();
            let e = anyhow::Error::new(
                crate::error::Problem::error(format!("no ValidationArtifact was written ({e})"))
                    .hint(format!("pass --check to validate without writing evidence{inner}")),
            );
            (unwritten(reports).collect(), Some(e))
        }
    };
    Ok(Box::new(Validated { root: ctx.root.clone(), outcomes, unsigned }))
}

impl Validated {
    fn all_valid(&self) -> bool {
        self.outcomes.iter().all(|o| o.report.valid)
    }

    fn summary(&self) -> String {
        let invalid = self.outcomes.iter().filter(|o| !o.report.valid).count();
        format!(
            "{}: {} valid, {invalid} invalid",
            plural(self.outcomes.len(), "bundle", "bundles"),
            self.outcomes.len() - invalid
        )
    }
}

fn at(c: &Check) -> String {
    match c.pointer.as_deref() {
        Some("") => " at /".to_string(),
        Some(ptr) => format!(" at {}", untrusted(ptr)),
        None => String::new(),
    }
}

impl Render for Validated {
    fn exit(&self) -> Exit {
        if self.all_valid() { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        let mut out = Lines::default();
        for o in &self.outcomes {
            let r = &o.report;
            let name = r.bundle.as_deref().map(untrusted).unwrap_or_else(|| "(unnamed)".into());
            out.line(format!("{} {name}  {}", style.mark(r.valid), untrusted(&r.path)));
            for c in r.checks.iter().filter(|c| c.status != Status::Pass) {
                let status = match c.status {
                    Status::Fail => style.paint("fail", "31"),
                    _ => style.paint("warn", "33"),
                };
                let msg = untrusted(c.message.as_deref().unwrap_or(""));
                out.line(format!("    {status} {}{}: {msg}", c.name, at(c)));
                if c.status == Status::Fail {
                    out.line(format!("         hint: {}", gates::hint_for(c.name)));
                }
            }
            if let Some(w) = &o.written {
                out.line(format!("    evidence: {}", untrusted(&crate::fsx::rel_to(&self.root, w))));
            }
            if let Some(why) = &o.not_written {
                out.line(format!("    no artifact written: {why}"));
            }
        }
        out.line(self.summary());
        out.into_string()
    }

    fn json(&self) -> Value {
        let doc = JsonReport {
            valid: self.all_valid(),
            bundles: self
                .outcomes
                .iter()
                .map(|o| JsonBundle {
                    path: &o.report.path,
                    bundle: o.report.bundle.as_deref(),
                    valid: o.report.valid,
                    digest: o.report.digest.as_deref(),
                    checks: &o.report.checks,
                })
                .collect(),
        };
        serde_json::to_value(doc).unwrap_or(Value::Null)
    }

    fn stopped_by(&self) -> Option<&anyhow::Error> {
        self.unsigned.as_ref()
    }

    fn github(&self) -> Option<String> {
        let mut out = Lines::default();
        for o in &self.outcomes {
            for c in o.report.checks.iter().filter(|c| c.status != Status::Pass) {
                let level = if c.status == Status::Fail { "error" } else { "warning" };
                let ptr = c.pointer.as_deref().map(|p| format!(" at {}", if p.is_empty() { "/" } else { p }));
                let msg = format!("{}{}: {}", c.name, ptr.unwrap_or_default(), c.message.as_deref().unwrap_or(""));
                let pos = match (c.line, c.column) {
                    (Some(l), Some(col)) => format!(",line={l},col={col}"),
                    _ => String::new(),
                };
                out.line(format!(
                    "::{level} file={}{pos},title={}::{}",
                    gh_property(&o.report.path),
                    gh_property(&format!("agentplane {}", c.name)),
                    gh_message(&msg)
                ));
            }
        }
        out.line(self.summary());
        Some(out.into_string())
    }
}
