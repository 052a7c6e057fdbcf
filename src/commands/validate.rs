//! `agentplane validate PATH...`

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::bundle::gates::{self, Check, Status};
use crate::cli::{Format, ValidateArgs};
use crate::exit::Exit;
use crate::stages::validate::{self, Outcome};

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

pub fn run(ctx: &Ctx, args: ValidateArgs) -> Result<Exit> {
    let manifests = validate::find(&ctx.root, &args.paths)?;
    // The digest is shown only in json output and recorded only in artifacts.
    let with_digest = !args.check || ctx.printer.format == Format::Json;
    let reports = validate::check_all(&ctx.root, &manifests, with_digest)?;
    let outcomes: Vec<Outcome> = if args.check {
        reports.into_iter().map(|report| Outcome { report, written: None, not_written: None }).collect()
    } else {
        let signer = ctx.signer(args.key.key.as_deref())?;
        validate::write_all(&ctx.root, reports, &signer)?
    };
    let all_valid = outcomes.iter().all(|o| o.report.valid);
    print(ctx, &outcomes, all_valid);
    Ok(if all_valid { Exit::Success } else { Exit::Failed })
}

pub fn print(ctx: &Ctx, outcomes: &[Outcome], all_valid: bool) {
    let p = &ctx.printer;
    match p.format {
        Format::Json => p.json(&JsonReport {
            valid: all_valid,
            bundles: outcomes
                .iter()
                .map(|o| JsonBundle {
                    path: &o.report.path,
                    bundle: o.report.bundle.as_deref(),
                    valid: o.report.valid,
                    digest: o.report.digest.as_deref(),
                    checks: &o.report.checks,
                })
                .collect(),
        }),
        Format::Github => {
            for o in outcomes {
                for c in o.report.checks.iter().filter(|c| c.status != Status::Pass) {
                    let level = if c.status == Status::Fail { "error" } else { "warning" };
                    let at = c
                        .pointer
                        .as_deref()
                        .map(|p| format!(" at {}", if p.is_empty() { "/" } else { p }))
                        .unwrap_or_default();
                    let msg = format!("{}{at}: {}", c.name, c.message.as_deref().unwrap_or(""));
                    // GitHub annotation values escape %, CR and LF.
                    let esc = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
                    p.raw_out(
                        format!("::{level} file={},title=agentplane {}::{}\n", o.report.path, c.name, esc(&msg))
                            .as_bytes(),
                    );
                }
            }
            let invalid = outcomes.iter().filter(|o| !o.report.valid).count();
            p.raw_out(
                format!("{} bundles: {} valid, {invalid} invalid\n", outcomes.len(), outcomes.len() - invalid)
                    .as_bytes(),
            );
        }
        Format::Human => {
            use std::fmt::Write as _;
            let mut buf = String::new();
            let mut line = |s: String| {
                let _ = writeln!(buf, "{s}");
            };
            for o in outcomes {
                let r = &o.report;
                let mark = if r.valid { p.ok() } else { p.bad() };
                let name = r.bundle.as_deref().unwrap_or("(unnamed)");
                line(format!("{mark} {name}  {}", r.path));
                for c in r.checks.iter().filter(|c| c.status != Status::Pass) {
                    let status = match c.status {
                        Status::Fail => p.paint("fail", "31"),
                        _ => p.paint("warn", "33"),
                    };
                    let at = match c.pointer.as_deref() {
                        Some("") => " at /".to_string(),
                        Some(ptr) => format!(" at {ptr}"),
                        None => String::new(),
                    };
                    line(format!("    {status} {}{at}: {}", c.name, c.message.as_deref().unwrap_or("")));
                    if c.status == Status::Fail {
                        line(format!("         hint: {}", gates::hint_for(c.name)));
                    }
                }
                if let Some(w) = &o.written {
                    line(format!("    evidence: {}", super::super::fsx::rel_to(&ctx.root, w)));
                }
                if let Some(why) = &o.not_written {
                    line(format!("    no artifact written: {why}"));
                }
            }
            let invalid = outcomes.iter().filter(|o| !o.report.valid).count();
            line(format!("{} bundles: {} valid, {invalid} invalid", outcomes.len(), outcomes.len() - invalid));
            p.block(&buf);
        }
    }
}
