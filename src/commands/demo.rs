//! `agentplane demo`: the whole story on `bundles/example-agent`, from nothing.

use anyhow::Result;
use std::path::Path;

use super::Ctx;
use crate::cli::KeyArgs;
use crate::error::Problem;
use crate::evidence::keys::{self, Signer};
use crate::evidence::verify;
use crate::exit::Exit;
use crate::fsx;

const DEMO_BUNDLE: &str = "bundles/example-agent";

pub fn run(ctx: &Ctx, args: KeyArgs) -> Result<Exit> {
    let p = &ctx.printer;
    let bundle = Path::new(DEMO_BUNDLE);
    if !ctx.root.join(bundle).join("bundle.json").is_file() {
        return Err(Problem::error(format!("no `{DEMO_BUNDLE}` under `{}`", ctx.root.display()))
            .hint("run the demo from the agentplane repository root, or pass --root")
            .into());
    }
    // 1. A signing key: the given one, or a demo key created on first use.
    let signer = match args.key.as_deref() {
        Some(k) => Signer::load(&ctx.abs(k))?,
        None => {
            let prefix = ctx.root.join(keys::DEFAULT_KEY_PREFIX);
            if !Path::new(&format!("{}.key", prefix.display())).exists() {
                let (id, _, _) = keys::generate(&prefix)?;
                p.line(format!(
                    "created a demo signing key {} (key id {}…)",
                    fsx::rel_to(&ctx.root, &prefix.with_extension("key")),
                    &id[..16]
                ));
            }
            Signer::load(&prefix.with_extension("key"))?
        }
    };
    let public = signer.path.with_extension("pub");
    p.line(format!("signing as {}… ({})\n", &signer.key_id()[..16], fsx::rel_to(&ctx.root, &signer.path)));

    // 2. up: validate → place → run → emit, on the local executor.
    p.line(format!("1. agentplane up {DEMO_BUNDLE}"));
    let opts = crate::stages::place::Options {
        inventory: None,
        executor: Some("local".into()),
        probe_timeout: std::time::Duration::from_secs(3),
    };
    let (exit, report) = super::up::up(ctx, bundle, &opts, false, &signer)?;
    if exit != Exit::Success {
        p.line("the demo run did not succeed; see above");
        return Ok(exit);
    }
    let evidence = ctx.root.join(report.evidence.as_deref().unwrap_or("artifacts/example-agent"));
    let ev_rel = fsx::rel_to(&ctx.root, &evidence);

    // 3. verify, as an auditor would: the public key only.
    p.line(format!("\n2. agentplane verify {ev_rel} --trusted-key {}", fsx::rel_to(&ctx.root, &public)));
    let trusted = vec![keys::load_public(&public)?];
    let v = verify::verify_dir(&evidence, &verify::Options { trusted: trusted.clone(), allow_unsealed: false })?;
    for e in &v.entries {
        let file = e.file.as_deref().unwrap_or("(seal)");
        let digest = e
            .file
            .as_ref()
            .and_then(|f| fsx::sha256_file(&evidence.join(f)).ok())
            .map(|d| format!("sha256:{}…", &d[..12]))
            .unwrap_or_default();
        p.line(format!("   {:>2} {:18} {:26} {digest}", e.seq, e.kind.map_or("?", |k| k.as_str()), file));
    }
    if !v.verified {
        p.line(format!("{} evidence did not verify: {}", p.bad(), v.first_failure.unwrap_or_default()));
        return Ok(Exit::Failed);
    }
    p.line(format!("   {} {} signed entries verified, chain sealed", p.ok(), v.entries.len()));

    // 4. replay: re-run from the ReplayArtifact and compare.
    p.line(format!("\n3. agentplane replay {ev_rel} --trusted-key {}", fsx::rel_to(&ctx.root, &public)));
    let opts = crate::stages::replay::Options { trusted, executor: None, inventory: None };
    let verdict = super::replay::replay_quiet(ctx, &evidence, &opts)?;
    p.line(format!(
        "   {} {}{}",
        if verdict.verdict == "match" { p.ok() } else { p.bad() },
        verdict.verdict,
        if verdict.differences.is_empty() { String::new() } else { format!(": {}", verdict.differences.join("; ")) }
    ));

    p.line(format!("\nevidence: {ev_rel}/ (readable JSON artifacts, logs, products, evidence.jsonl)"));
    p.line("an auditor with only the binary and the public key runs:");
    p.line(format!("   agentplane verify {ev_rel} --trusted-key {}", fsx::rel_to(&ctx.root, &public)));
    Ok(if verdict.verdict == "match" { Exit::Success } else { Exit::Failed })
}
