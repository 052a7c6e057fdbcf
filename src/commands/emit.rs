//! `agentplane emit BUNDLE`

use anyhow::Result;
use serde_json::{Value, json};
use std::path::PathBuf;

use super::Ctx;
use crate::cli::EmitArgs;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Render, Style};
use crate::stages::emit::{self, Emitted};
use crate::types::SessionStatus;

pub fn run(ctx: &Ctx, args: EmitArgs) -> Result<Box<dyn Render>> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let emitted = emit::emit(&ctx.root, &ctx.bundle_arg(&args.bundle), &signer)?;
    Ok(Box::new(EmitOutcome { root: ctx.root.clone(), emitted }))
}

/// What `emit` wrote.
pub struct EmitOutcome {
    pub root: PathBuf,
    pub emitted: Emitted,
}

/// `{"evidence", "replayArtifact", "sessionArtifact", "status", "sealed"}`
pub fn emitted_json(e: &Emitted, root: &std::path::Path) -> Value {
    json!({
        "evidence": crate::fsx::rel_to(root, &e.out_dir),
        "replayArtifact": e.replay_file,
        "sessionArtifact": e.session_file,
        "status": e.session.status,
        "sealed": true,
    })
}

impl Render for EmitOutcome {
    fn exit(&self) -> Exit {
        if self.emitted.session.status == SessionStatus::Success { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        let e = &self.emitted;
        format!(
            "{} emitted {} and {} (session {}); chain sealed in {}\n",
            style.mark(e.session.status == SessionStatus::Success),
            e.replay_file,
            e.session_file,
            e.session.status.as_str(),
            untrusted(&crate::fsx::rel_to(&self.root, &e.out_dir))
        )
    }

    fn json(&self) -> Value {
        emitted_json(&self.emitted, &self.root)
    }
}
