//! `agentplane schema [KIND] [--write DIR]`

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::SchemaArgs;
use crate::error::Problem;
use crate::exit::Exit;
use crate::schemas;

pub fn run(ctx: &Ctx, args: SchemaArgs) -> Result<Exit> {
    let kinds: Vec<&str> = schemas::KINDS.iter().map(|(k, _)| *k).collect();
    if let Some(dir) = &args.write {
        let dir = ctx.abs(dir);
        for (kind, file) in schemas::KINDS {
            let v = schemas::schema_for(kind).expect("every listed kind has a schema");
            let mut bytes = serde_json::to_vec_pretty(&v)?;
            bytes.push(b'\n');
            crate::fsx::write_atomic(&dir.join(file), &bytes)
                .with_context(|| format!("cannot write `{}`", dir.display()))?;
        }
        ctx.printer.note(format!("wrote {} schemas to {}", schemas::KINDS.len(), dir.display()));
        return Ok(Exit::Success);
    }
    let kind = args.kind.as_deref().unwrap_or("bundle");
    let v = schemas::schema_for(kind).ok_or_else(|| {
        Problem::error(format!("no schema kind `{kind}`")).hint(format!("kinds: {}", kinds.join(", ")))
    })?;
    ctx.printer.json(&v);
    Ok(Exit::Success)
}
