//! `agentplane prove DIR FILE` and `agentplane verify-proof PROOF FILE`.

use anyhow::Result;
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{ProveArgs, VerifyProofArgs};
use crate::error::Problem;
use crate::evidence::prove::{self, Proved, Target};
use crate::evidence::transparency::{self, ProofVerdict};
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Render, Style};

pub fn prove(ctx: &Ctx, args: ProveArgs) -> Result<Box<dyn Render>> {
    let dir = ctx.abs(&args.dir);
    let target = match (args.file, args.entry) {
        (Some(f), _) => Target::File(f),
        (None, Some(i)) => Target::Entry(i),
        (None, None) => return Err(Problem::error("name a FILE or an --entry N to prove").into()),
    };
    let proved = prove::prove(&dir, &target)?;
    if let Some(note) = &proved.note {
        ctx.printer.note(format!("note: {}", untrusted(note)));
    }
    Ok(Box::new(Proof { target, proved }))
}

/// A proof, printed as the C2SP text itself (save it to a `.tlog-proof` file).
pub struct Proof {
    pub target: Target,
    pub proved: Proved,
}

impl Render for Proof {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        self.proved.proof.clone()
    }

    fn json(&self) -> Value {
        let source = if self.proved.indexed { "tlog-index" } else { "chain" };
        let mut v =
            json!({"index": self.proved.index, "size": self.proved.size, "source": source, "proof": self.proved.proof});
        if let Target::File(f) = &self.target {
            v["file"] = json!(f);
        }
        v
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
