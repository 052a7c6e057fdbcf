//! `agentplane status`: lane pointers and each bundle's latest run.

use anyhow::Result;
use serde_json::Value;

use super::Ctx;
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style};
use crate::stages::lifecycle::{self, Status};

pub fn run(ctx: &Ctx) -> Result<Box<dyn Render>> {
    Ok(Box::new(lifecycle::status(&ctx.root)?))
}

impl Render for Status {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        let mut out = Lines::default();
        for (k, v) in &self.pointers {
            out.line(format!("{k:16} {}", v.as_ref().map(|p| untrusted(&p.describe())).unwrap_or_else(|| "-".into())));
        }
        out.line("");
        // Column widths are capped: a name may be any length (it comes from a bundle).
        let w = self.bundles.iter().map(|b| b.bundle.chars().count()).max().unwrap_or(6).clamp(6, 48);
        out.line(format!("{:w$}  {:18}  {:8}  {:6}  evidence", "bundle", "last stage", "run", "sealed"));
        for b in &self.bundles {
            out.line(format!(
                "{:w$}  {:18}  {:8}  {:6}  {}",
                untrusted(&b.bundle),
                b.stage,
                b.run_status.map_or("-", |s| s.as_str()),
                if b.sealed { "yes" } else { "no" },
                untrusted(&b.evidence)
            ));
        }
        out.into_string()
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
