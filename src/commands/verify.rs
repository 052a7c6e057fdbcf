//! `agentplane verify DIR --trusted-key PUB...`

use anyhow::Result;
use serde_json::Value;
use std::io::Write;

use super::Ctx;
use crate::cli::VerifyArgs;
use crate::evidence::verify::{self, Report};
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style, plural};

pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<Box<dyn Render>> {
    let trusted = ctx.trusted(&args.trust)?;
    let dir = ctx.abs(&args.dir);
    refuse_a_bundle_dir(ctx, &dir)?;
    let mut since = Vec::new();
    for p in &args.since {
        let p = ctx.abs(p);
        let bytes = crate::fsx::read_regular(&p, crate::evidence::tlog::note::MAX_NOTE_SIZE as u64).map_err(|e| {
            crate::error::Problem::error(format!("--since: {e}"))
                .hint("pass a checkpoint file saved from an evidence directory")
        })?;
        since.push(
            String::from_utf8(bytes)
                .map_err(|_| crate::error::Problem::error(format!("--since `{}` is not UTF-8", p.display())))?,
        );
    }
    // `-q` with human output prints nothing: no line per entry is kept for it.
    let lines = if ctx.printer.quiet && ctx.printer.format == crate::cli::Format::Human {
        verify::ReportLines::Dropped
    } else {
        verify::ReportLines::Kept
    };
    let report =
        verify::verify_dir(&dir, &verify::Options { trusted, allow_unsealed: args.allow_unsealed, since, lines })?;
    Ok(Box::new(Verified { report }))
}

/// `verify bundles/x` is an easy mistake: say where that bundle's evidence is.
fn refuse_a_bundle_dir(ctx: &Ctx, dir: &std::path::Path) -> Result<()> {
    let manifest = dir.join("bundle.json");
    if !manifest.is_file() || dir.join(crate::evidence::CHAIN_FILE).exists() {
        return Ok(());
    }
    let out_dir = crate::fsx::read_regular(&manifest, crate::fsx::caps::DOCUMENT)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.pointer("/spec/artifacts/outDir").and_then(Value::as_str).map(str::to_string));
    let hint = match out_dir {
        Some(o) => format!("run `agentplane verify {} --trusted-key PUB`", ctx.root.join(&o).display()),
        None => "pass the bundle's evidence directory (its spec.artifacts.outDir)".to_string(),
    };
    Err(crate::error::Problem::error(format!(
        "`{}` is a bundle, not an evidence directory: its evidence is in its outDir",
        dir.display()
    ))
    .hint(hint)
    .into())
}

/// What `verify` found.
pub struct Verified {
    pub report: Report,
}

/// The human table: one row per entry, then the verdict. Everything that came
/// from the evidence (file names, reasons) is escaped: it is untrusted.
pub fn report_human(r: &Report, style: Style) -> Result<String> {
    let mut out = Vec::new();
    write_report_human(r, style, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`report_human`] written to `out` a line at a time: the entries are read
/// back once (their columns' widths were kept as they were written), never held.
fn write_report_human(r: &Report, style: Style, out: &mut dyn Write) -> Result<()> {
    let kind = |e: &verify::EntryResult| e.kind.map_or("?", |k| k.as_str());
    let file = |e: &verify::EntryResult| untrusted(e.file.as_deref().unwrap_or("-"));
    let (kw, fw) = r.entries.widths();
    let (kw, fw) = (kw.max(4), fw.clamp(4, 60));
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "{:>4}  {:kw$}  {:fw$}  {:16}  result", "seq", "kind", "file", "signer")?;
    r.entries.each(|e| {
        let signer = e.signer.as_deref().map(|s| &s[..16.min(s.len())]).unwrap_or("-");
        let result = if e.result == "ok" { style.paint("ok", "32") } else { style.paint(&untrusted(&e.result), "31") };
        Ok(writeln!(out, "{:>4}  {:kw$}  {:fw$}  {:16}  {result}", e.seq, kind(&e), file(&e), signer)?)
    })?;
    let mut tail = Lines::default();
    for w in &r.warnings {
        tail.line(format!("{} {}", style.paint("warning:", "33"), untrusted(w)));
    }
    match &r.first_failure {
        None => tail.line(format!(
            "{} verified: {}, {}, run {}",
            style.ok(),
            plural(r.entries.len(), "entry", "entries"),
            if r.sealed { "sealed" } else { "NOT sealed" },
            untrusted(r.run_id.as_deref().unwrap_or("?"))
        )),
        Some(f) => tail.line(format!("{} NOT verified: {}", style.bad(), untrusted(f))),
    }
    out.write_all(tail.into_string().as_bytes())?;
    Ok(out.flush()?)
}

impl Render for Verified {
    fn exit(&self) -> Exit {
        if self.report.verified { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        report_human(&self.report, style).unwrap_or_else(|e| format!("{e:#}\n"))
    }

    fn json(&self) -> Value {
        serde_json::to_value(&self.report).unwrap_or(Value::Null)
    }

    fn write_human(&self, style: Style, out: &mut dyn Write) -> Result<()> {
        write_report_human(&self.report, style, out)
    }

    /// The same bytes as [`Render::json`] pretty-printed (fields keep their
    /// order), the entries streamed as they are read back.
    fn write_json(&self, out: &mut dyn Write) -> Result<()> {
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, &self.report)?;
        out.write_all(b"\n")?;
        Ok(out.flush()?)
    }
}
