//! `agentplane up BUNDLE` and `agentplane emit BUNDLE`.

use anyhow::Result;
use std::path::Path;

use super::Ctx;
use crate::cli::{EmitArgs, UpArgs};
use crate::evidence::keys::Signer;
use crate::exit::Exit;
use crate::stages::{emit, place, validate};
use crate::types::SessionStatus;

pub fn emit(ctx: &Ctx, args: EmitArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let e = emit::emit(&ctx.root, &args.bundle, &signer)?;
    print_emit(ctx, &e);
    Ok(if e.session.status == SessionStatus::Success { Exit::Success } else { Exit::Failed })
}

fn print_emit(ctx: &Ctx, e: &emit::Emitted) {
    let p = &ctx.printer;
    if p.human() {
        p.line(format!(
            "{} emitted {} and {}; chain sealed in {}",
            p.ok(),
            e.replay_file,
            e.session_file,
            crate::fsx::rel_to(&ctx.root, &e.out_dir)
        ));
    }
}

/// What `up` did, stage by stage (the json document of `up`).
#[derive(serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpReport {
    pub bundle: String,
    pub evidence: Option<String>,
    pub stages: Vec<StageReport>,
    pub status: String,
}

#[derive(serde::Serialize)]
pub struct StageReport {
    pub stage: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// validate → place → run → emit, stopping at the first failing stage.
pub fn up(ctx: &Ctx, bundle: &Path, opts: &place::Options, watch: bool, signer: &Signer) -> Result<(Exit, UpReport)> {
    let p = &ctx.printer;
    let mut report = UpReport { bundle: bundle.display().to_string(), ..Default::default() };
    let say = |r: &StageReport| {
        let mark = if r.ok { p.ok() } else { p.bad() };
        p.line(format!("{mark} {:8} {}", r.stage, r.detail));
    };

    let manifests = validate::find(&ctx.root, &[bundle.to_path_buf()])?;
    let reports = validate::check_all(&ctx.root, &manifests, true)?;
    let outcomes = validate::write_all(&ctx.root, reports, signer)?;
    let Some(o) = outcomes.first() else {
        anyhow::bail!("no bundle.json at `{}`", bundle.display());
    };
    let failed: Vec<String> = o
        .report
        .checks
        .iter()
        .filter(|c| c.status == crate::bundle::gates::Status::Fail)
        .map(|c| format!("{}{}", c.name, c.pointer.as_deref().map(|p| format!(" at {p}")).unwrap_or_default()))
        .collect();
    let st = StageReport {
        stage: "validate",
        ok: o.report.valid,
        detail: if o.report.valid {
            format!(
                "{} ({} checks, digest {})",
                o.report.bundle.as_deref().unwrap_or(""),
                o.report.checks.len(),
                short(o.report.digest.as_deref())
            )
        } else {
            format!("invalid: {}", failed.join(", "))
        },
    };
    say(&st);
    report.stages.push(st);
    report.bundle = o.report.bundle.clone().unwrap_or(report.bundle);
    report.evidence = o.written.as_ref().map(|w| crate::fsx::rel_to(&ctx.root, w));
    if !o.report.valid {
        if p.human() {
            super::validate::print(ctx, &outcomes, false);
        }
        report.status = "invalid".into();
        return Ok((Exit::Failed, report));
    }

    let placed = place::place(&ctx.root, bundle, signer, opts)?;
    let st = match (&placed.decision, placed.chosen) {
        (Some(d), Some(_)) => StageReport {
            stage: "place",
            ok: true,
            detail: format!("executor `{}` ({} isolation)", d.chosen_executor, d.isolation),
        },
        _ => StageReport { stage: "place", ok: false, detail: "no executor qualifies".into() },
    };
    say(&st);
    let placed_ok = st.ok;
    report.stages.push(st);
    if !placed_ok {
        if p.human() {
            super::place::print(ctx, &placed);
        }
        report.status = "unplaced".into();
        return Ok((Exit::Failed, report));
    }

    let r = super::run::run_stage(ctx, bundle, watch, signer)?;
    let a = &r.artifact;
    let st = StageReport {
        stage: "run",
        ok: r.success,
        detail: format!(
            "{} (exit {}{}, {} ms, {} products)",
            a.status,
            a.exit_code,
            if a.timed_out {
                ", timed out"
            } else if a.canceled {
                ", canceled"
            } else {
                ""
            },
            a.duration_ms,
            a.products.len()
        ),
    };
    say(&st);
    report.stages.push(st);
    if a.canceled {
        report.status = "canceled".into();
        p.line("  canceled: session recorded as canceled and the chain sealed");
        return Ok((Exit::Failed, report));
    }

    let e = emit::emit(&ctx.root, bundle, signer)?;
    let st = StageReport { stage: "emit", ok: true, detail: format!("{}, {}, sealed", e.replay_file, e.session_file) };
    say(&st);
    report.stages.push(st);
    report.status = e.session.status.as_str().into();
    Ok((if r.success { Exit::Success } else { Exit::Failed }, report))
}

fn short(d: Option<&str>) -> String {
    d.map(|d| d.chars().take(19).collect::<String>() + "…").unwrap_or_default()
}

pub fn run(ctx: &Ctx, args: UpArgs) -> Result<Exit> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let opts = super::place::options(ctx, &args.place)?;
    let (exit, report) = up(ctx, &args.bundle, &opts, args.watch, &signer)?;
    if !ctx.printer.human() {
        ctx.printer.json(&report);
    } else if let Some(ev) = &report.evidence {
        ctx.printer.line(format!("evidence: {ev}"));
    }
    Ok(exit)
}
