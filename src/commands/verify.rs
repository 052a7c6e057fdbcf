//! `agentplane verify DIR --trusted-key PUB...`

use anyhow::Result;

use super::Ctx;
use crate::cli::VerifyArgs;
use crate::evidence::verify::{self, Report};
use crate::exit::Exit;

pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<Exit> {
    let trusted = ctx.trusted(&args.trust)?;
    let dir = ctx.abs(&args.dir);
    let report = verify::verify_dir(&dir, &verify::Options { trusted, allow_unsealed: args.allow_unsealed })?;
    print(ctx, &report);
    Ok(if report.verified { Exit::Success } else { Exit::Failed })
}

pub fn print(ctx: &Ctx, r: &Report) {
    let p = &ctx.printer;
    if !p.human() {
        p.json(r);
        return;
    }
    let kw = r.entries.iter().map(|e| e.kind.map_or(1, |k| k.as_str().len())).max().unwrap_or(4).max(4);
    let fw = r.entries.iter().map(|e| e.file.as_deref().unwrap_or("-").len()).max().unwrap_or(4).max(4);
    p.line(format!("{:>4}  {:kw$}  {:fw$}  {:16}  result", "seq", "kind", "file", "signer"));
    for e in &r.entries {
        let signer = e.signer.as_deref().map(|s| &s[..16.min(s.len())]).unwrap_or("-");
        let result = if e.result == "ok" { p.paint("ok", "32") } else { p.paint(&e.result, "31") };
        p.line(format!(
            "{:>4}  {:kw$}  {:fw$}  {:16}  {result}",
            e.seq,
            e.kind.map_or("?", |k| k.as_str()),
            e.file.as_deref().unwrap_or("-"),
            signer
        ));
    }
    for w in &r.warnings {
        p.line(format!("{} {w}", p.paint("warning:", "33")));
    }
    match &r.first_failure {
        None => p.line(format!(
            "{} verified: {} entries, {}, run {}",
            p.ok(),
            r.entries.len(),
            if r.sealed { "sealed" } else { "NOT sealed" },
            r.run_id.as_deref().unwrap_or("?")
        )),
        Some(f) => p.line(format!("{} NOT verified: {f}", p.bad())),
    }
}
