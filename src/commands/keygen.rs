//! `agentplane keygen [--out PREFIX]`

use anyhow::Result;

use super::Ctx;
use crate::cli::KeygenArgs;
use crate::evidence::keys;
use crate::exit::Exit;

pub fn run(ctx: &Ctx, args: KeygenArgs) -> Result<Exit> {
    let prefix = match &args.out {
        Some(p) => ctx.abs(p),
        None => ctx.root.join(keys::DEFAULT_KEY_PREFIX),
    };
    let (id, key, public) = keys::generate(&prefix)?;
    let p = &ctx.printer;
    if p.human() {
        p.line(format!("key id  {id}"));
        p.line(format!("private {} (mode 0600: keep it secret)", key.display()));
        p.line(format!("public  {} (give this to auditors)", public.display()));
    } else {
        p.json(&serde_json::json!({"keyId": id, "privateKey": key, "publicKey": public}));
    }
    Ok(Exit::Success)
}
