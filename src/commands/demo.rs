//! `agentplane demo`: the whole story on `bundles/example-agent`, from nothing:
//! up, then verify and replay as an auditor would.

use anyhow::Result;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::cli::KeyArgs;
use crate::error::Problem;
use crate::evidence::keys::{self, Signer};
use crate::evidence::verify::{self, Report};
use crate::exit::Exit;
use crate::fsx;
use crate::output::render::{Lines, Render, Style};
use crate::output::reporter;
use crate::stages::replay::{self, Verdict};
use crate::stages::up::{self, UpOutcome, UpStatus};
use crate::types::ReplayVerdict;

const DEMO_BUNDLE: &str = "bundles/example-agent";

pub fn run(ctx: &Ctx, args: KeyArgs) -> Result<Box<dyn Render>> {
    let bundle = Path::new(DEMO_BUNDLE);
    if !ctx.root.join(bundle).join("bundle.json").is_file() {
        return Err(Problem::error(format!("no `{DEMO_BUNDLE}` under `{}`", ctx.root.display()))
            .hint("run the demo from the agentplane repository root, or pass --root")
            .into());
    }
    // 1. A signing key: the given one, or a demo key created on first use.
    let mut created = None;
    let signer = match args.key.as_deref() {
        Some(k) => Signer::load(&ctx.abs(k))?,
        None => {
            let prefix = ctx.root.join(keys::DEFAULT_KEY_PREFIX);
            if !Path::new(&format!("{}.key", prefix.display())).exists() {
                let (id, key, _) = keys::generate(&prefix)?;
                created = Some((id, key));
            }
            Signer::load(&prefix.with_extension("key"))?
        }
    };
    let public = signer.path.with_extension("pub");

    // 2. up: validate → place → run → emit, on the local executor.
    let opts = crate::stages::place::Options {
        inventory: None,
        executor: Some("local".into()),
        probe_timeout: std::time::Duration::from_secs(3),
    };
    let mut rep = reporter::for_printer(&ctx.printer, false);
    let cancel = super::cancel_flag();
    let up = up::up(&ctx.root, bundle, &opts, &signer, cancel.clone(), rep.as_mut())?;
    let mut demo = Demo {
        root: ctx.root.clone(),
        created,
        signer_id: signer.key_id().to_string(),
        signer_path: signer.path.clone(),
        public: public.clone(),
        up,
        verify: None,
        replay: None,
    };
    if demo.up.status() != UpStatus::Success {
        rep.end();
        return Ok(Box::new(demo));
    }
    let evidence = demo.evidence();

    // 3. verify, as an auditor would: the public key only.
    let trusted = vec![keys::load_public(&public)?];
    let report = verify::verify_dir(
        &evidence,
        &verify::Options {
            trusted: trusted.clone(),
            allow_unsealed: false,
            since: Vec::new(),
            lines: verify::ReportLines::Kept,
        },
    )?;
    let verified = report.verified;
    demo.verify = Some(report);
    if !verified {
        rep.end();
        return Ok(Box::new(demo));
    }

    // 4. replay: re-run from the ReplayArtifact and compare.
    let opts = replay::Options { trusted, executor: None, inventory: None };
    demo.replay = Some(replay::replay(&ctx.root, &evidence, &opts, cancel, rep.as_mut())?);
    rep.end();
    Ok(Box::new(demo))
}

/// The demo's story.
pub struct Demo {
    pub root: PathBuf,
    /// A key created for the demo: its id and path.
    pub created: Option<(String, PathBuf)>,
    pub signer_id: String,
    pub signer_path: PathBuf,
    pub public: PathBuf,
    pub up: UpOutcome,
    pub verify: Option<Report>,
    pub replay: Option<Verdict>,
}

impl Demo {
    fn evidence(&self) -> PathBuf {
        self.up.evidence().map(Path::to_path_buf).unwrap_or_else(|| self.root.join("artifacts/example-agent"))
    }

    fn rel(&self, p: &Path) -> String {
        fsx::rel_to(&self.root, p)
    }
}

impl Render for Demo {
    fn exit(&self) -> Exit {
        match &self.replay {
            Some(v) if v.verdict == ReplayVerdict::Match => Exit::Success,
            _ => Exit::Failed,
        }
    }

    fn human(&self, style: Style) -> String {
        let mut out = Lines::default();
        if let Some((id, key)) = &self.created {
            out.line(format!("created a demo signing key {} (key id {}…)", self.rel(key), &id[..16]));
        }
        out.line(format!("signing as {}… ({})\n", &self.signer_id[..16], self.rel(&self.signer_path)));
        out.line(format!("1. agentplane up {DEMO_BUNDLE}"));
        for line in super::up::up_human(&self.up, &self.root, style).lines() {
            out.line(format!("   {line}"));
        }
        if self.up.status() != UpStatus::Success {
            out.line("the demo run did not succeed; see above");
            return out.into_string();
        }
        let ev = self.rel(&self.evidence());
        let public = self.rel(&self.public);
        if let Some(v) = &self.verify {
            out.line(format!("\n2. agentplane verify {ev} --trusted-key {public}"));
            // (A demo chain is a few entries, held in memory: nothing to fail reading back.)
            let _ = v.entries.each(|e| {
                let file = e.file.as_deref().unwrap_or("(seal)");
                let digest = e
                    .file
                    .as_ref()
                    .and_then(|f| fsx::sha256_file(&self.evidence().join(f)).ok())
                    .map(|d| format!("sha256:{}…", &d[..12]))
                    .unwrap_or_default();
                out.line(format!("   {:>2} {:18} {:26} {digest}", e.seq, e.kind.map_or("?", |k| k.as_str()), file));
                Ok(())
            });
            if !v.verified {
                out.line(format!(
                    "{} evidence did not verify: {}",
                    style.bad(),
                    v.first_failure.as_deref().unwrap_or_default()
                ));
                return out.into_string();
            }
            out.line(format!("   {} {} signed entries verified, chain sealed", style.ok(), v.entries.len()));
        }
        if let Some(verdict) = &self.replay {
            out.line(format!("\n3. agentplane replay {ev} --trusted-key {public}"));
            let diffs = if verdict.differences.is_empty() {
                String::new()
            } else {
                format!(": {}", verdict.differences.join("; "))
            };
            out.line(format!(
                "   {} {}{diffs}",
                style.mark(verdict.verdict == ReplayVerdict::Match),
                verdict.verdict.as_str()
            ));
        }
        out.line(format!("\nevidence: {ev}/ (readable JSON artifacts, logs, products, evidence.jsonl)"));
        out.line("an auditor with only the binary and the public key runs:");
        out.line(format!("   agentplane verify {ev} --trusted-key {public}"));
        out.into_string()
    }

    fn json(&self) -> Value {
        json!({
            "keyCreated": self.created.as_ref().map(|(_, k)| self.rel(k)),
            "keyId": self.signer_id,
            "publicKey": self.rel(&self.public),
            "up": super::up::up_json(&self.up, &self.root),
            "verify": self.verify,
            "replay": self.replay,
        })
    }
}
