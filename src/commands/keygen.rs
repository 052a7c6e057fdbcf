//! `agentplane keygen [--out PREFIX]`

use anyhow::Result;
use serde_json::{Value, json};
use std::path::PathBuf;

use super::Ctx;
use crate::cli::KeygenArgs;
use crate::evidence::keys;
use crate::exit::Exit;
use crate::output::render::{Render, Style};

pub fn run(ctx: &Ctx, args: KeygenArgs) -> Result<Box<dyn Render>> {
    let prefix = match &args.out {
        Some(p) => ctx.abs(p),
        None => ctx.root.join(keys::DEFAULT_KEY_PREFIX),
    };
    let (key_id, private, public) = keys::generate(&prefix)?;
    Ok(Box::new(KeyPair { key_id, private, public }))
}

/// A key pair `keygen` wrote.
pub struct KeyPair {
    pub key_id: String,
    pub private: PathBuf,
    pub public: PathBuf,
}

impl Render for KeyPair {
    fn exit(&self) -> Exit {
        Exit::Success
    }

    fn human(&self, _style: Style) -> String {
        format!(
            "key id  {}\nprivate {} (mode 0600: keep it secret)\npublic  {} (give this to auditors)\n",
            self.key_id,
            self.private.display(),
            self.public.display()
        )
    }

    fn json(&self) -> Value {
        json!({"keyId": self.key_id, "privateKey": self.private, "publicKey": self.public})
    }
}
