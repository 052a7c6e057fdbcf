//! `agentplane schema [KIND] [--write DIR]`

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::SchemaArgs;
use crate::error::Problem;
use crate::exit::Exit;
use crate::output::render::{Render, Style};
use crate::schemas;

pub fn run(ctx: &Ctx, args: SchemaArgs) -> Result<Box<dyn Render>> {
    if let Some(dir) = &args.write {
        let dir = ctx.abs(dir);
        for (kind, file) in schemas::KINDS {
            let v = schemas::schema_for(kind).expect("every listed kind has a schema");
            let mut bytes = serde_json::to_vec_pretty(&v)?;
            bytes.push(b'\n');
            crate::fsx::write_atomic(&dir.join(file), &bytes)
                .with_context(|| format!("cannot write `{}`", dir.display()))?;
        }
        return Ok(Box::new(Written { dir: dir.display().to_string() }));
    }
    let kind = args.kind.as_deref().unwrap_or("bundle");
    let v = schemas::schema_for(kind).ok_or_else(|| {
        let kinds: Vec<&str> = schemas::KINDS.iter().map(|(k, _)| *k).collect();
        Problem::error(format!("no schema kind `{kind}`")).hint(format!("kinds: {}", kinds.join(", ")))
    })?;
    Ok(Box::new(Schema(v)))
}

/// One schema: printed as JSON in every format (it is a document).
pub struct Schema(pub Value);

impl Render for Schema {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default() + "\n"
    }

    fn json(&self) -> Value {
        self.0.clone()
    }
}

/// `--write DIR`.
pub struct Written {
    pub dir: String,
}

impl Render for Written {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        format!("wrote {} schemas to {}\n", schemas::KINDS.len(), self.dir)
    }

    fn json(&self) -> Value {
        json!({"written": schemas::KINDS.iter().map(|(_, f)| f).collect::<Vec<_>>(), "dir": self.dir})
    }
}
