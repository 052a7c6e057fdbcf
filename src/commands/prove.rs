//! `agentplane prove DIR FILE` and `agentplane verify-proof PROOF FILE`.

use anyhow::Result;
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{ProveArgs, VerifyProofArgs};
use crate::error::{Problem, Refusal, RefusalCode};
use crate::evidence::chain::Chain;
use crate::evidence::transparency::{self, ProofVerdict};
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Render, Style};

pub fn prove(ctx: &Ctx, args: ProveArgs) -> Result<Box<dyn Render>> {
    let dir = ctx.abs(&args.dir);
    let chain = Chain::read(&dir)?.ok_or_else(|| {
        Problem::error(format!("`{}` holds no evidence chain", dir.display()))
            .hint("pass an evidence directory (a bundle's outDir, holding evidence.jsonl)")
    })?;
    let proof = transparency::prove(&chain, &args.file).map_err(|e| {
        Refusal::new(RefusalCode::NotProvable, format!("cannot prove `{}`: {e:#}", args.file))
            .hint("name a file an entry signed before the last seal (see `agentplane verify DIR`)")
    })?;
    Ok(Box::new(Proof { file: args.file, proof }))
}

/// A proof, printed as the C2SP text itself (save it to a `.tlog-proof` file).
pub struct Proof {
    pub file: String,
    pub proof: String,
}

impl Render for Proof {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        self.proof.clone()
    }

    fn json(&self) -> Value {
        json!({"file": self.file, "proof": self.proof})
    }
}

pub fn verify_proof(ctx: &Ctx, args: VerifyProofArgs) -> Result<Box<dyn Render>> {
    let trusted = ctx.trusted(&args.trust)?;
    if trusted.is_empty() {
        return Err(Problem::error("no trusted key given: a proof is checked only against keys you name")
            .hint("pass --trusted-key PATH.pub")
            .into());
    }
    let path = ctx.abs(&args.proof);
    let text = crate::fsx::read_regular(&path, crate::evidence::tlog::proof::MAX_PROOF_SIZE as u64)
        .map_err(|e| Problem::error(e.to_string()).hint("pass the file `agentplane prove` wrote"))?;
    let text = String::from_utf8(text).map_err(|_| Problem::error(format!("`{}` is not UTF-8", path.display())))?;
    let file = ctx.abs(&args.file);
    let verdict = transparency::verify_proof(&text, &file, &trusted).map_err(|e| format!("{e:#}"));
    Ok(Box::new(ProofChecked { file: args.file.display().to_string(), verdict }))
}

/// What `verify-proof` found.
pub struct ProofChecked {
    pub file: String,
    pub verdict: Result<ProofVerdict, String>,
}

impl Render for ProofChecked {
    fn exit(&self) -> Exit {
        if self.verdict.is_ok() { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        match &self.verdict {
            Ok(v) => format!(
                "{} `{}` (sha256:{}…) is entry {} ({}) of the log {} signed at size {}\n",
                style.ok(),
                untrusted(&self.file),
                &v.sha256[..16],
                v.index,
                v.kind,
                untrusted(&v.origin),
                v.size
            ),
            Err(e) => format!("{} NOT proven: {}\n", style.bad(), untrusted(e)),
        }
    }

    fn json(&self) -> Value {
        match &self.verdict {
            Ok(v) => json!({"proven": true, "file": self.file, "entry": v}),
            Err(e) => json!({"proven": false, "file": self.file, "why": e}),
        }
    }
}
