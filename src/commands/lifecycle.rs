//! `agentplane promote BUNDLE` and `agentplane rollback`.

use anyhow::Result;
use serde_json::Value;

use super::Ctx;
use crate::cli::{KeyArgs, PromoteArgs};
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style};
use crate::stages::lifecycle::{self, Promoted, RolledBack};

pub fn promote(ctx: &Ctx, args: PromoteArgs) -> Result<Box<dyn Render>> {
    let signer = ctx.signer(args.key.key.as_deref())?;
    let trusted = ctx.trusted(&args.trust)?;
    let approval = args.approval_key.as_ref().map(|p| ctx.abs(p));
    let r = lifecycle::promote(&ctx.root, &ctx.bundle_arg(&args.bundle), &signer, &trusted, approval.as_deref())?;
    Ok(Box::new(r))
}

pub fn rollback(ctx: &Ctx, args: KeyArgs) -> Result<Box<dyn Render>> {
    let signer = ctx.signer(args.key.as_deref())?;
    Ok(Box::new(lifecycle::rollback(&ctx.root, &signer)?))
}

impl Render for Promoted {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, style: Style) -> String {
        let mut out = Lines::default();
        out.line(format!(
            "{} promoted {} to prod ({})",
            style.ok(),
            untrusted(&self.artifact.promoted_object_ref),
            self.artifact.promotion_receipt_ref
        ));
        if let Some(prev) = &self.previous_good {
            out.line(format!("    previous-good: {}", untrusted(&prev.describe())));
        }
        out.into_string()
    }

    fn json(&self) -> Value {
        crate::evidence::artifacts::merged(&self.artifact, &self.details)
    }
}

impl Render for RolledBack {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, style: Style) -> String {
        format!(
            "{} rolled prod back from {} to {} ({})\n",
            style.ok(),
            untrusted(&self.from.describe()),
            untrusted(&self.to.describe()),
            self.artifact.reversal_handle
        )
    }

    fn json(&self) -> Value {
        crate::evidence::artifacts::merged(&self.artifact, &self.details)
    }
}
