//! synth_chain: build a large evidence chain with agentplane's own library, for
//! the verify benchmark (scripts/bench/verify.sh).
//!
//! Writes, under OUT:
//!   OUT/keys/signing.key, OUT/keys/signing.pub   a fresh key (evidence::keys::generate)
//!   OUT/evidence/                                the chain directory:
//!     evidence.jsonl   N entries: N-1 SessionArtifact entries + 1 seal
//!     session-artifact.json, session-artifact-<seq>.json   the N-1 artifacts
//! through `ChainWriter::start` / `write_artifact` / `seal`, i.e. exactly the
//! format `agentplane verify` checks, so
//!   agentplane verify OUT/evidence --trusted-key OUT/keys/signing.pub
//! must exit 0.
//!
//! Usage (not part of `cargo test`; harness = false):
//!   cargo bench --bench synth_chain -- OUT [N]      (N default 10000, entries incl. the seal)
//!   SYNTH_CHAIN_DIR=OUT SYNTH_CHAIN_N=N cargo bench --bench synth_chain
//! Idempotent: an OUT this program made before (it holds OUT/.synth-chain) is
//! rebuilt from scratch; any other non-empty OUT is refused.
//! Every artifact write is fsync'd (as agentplane does): 10,000 entries take a
//! while on a slow disk.

// A benchmark program reports on stdout/stderr: that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use agentplane::evidence::artifacts::SessionArtifact;
use agentplane::evidence::chain::ChainWriter;
use agentplane::evidence::keys::{self, Signer};
use std::path::PathBuf;
use std::time::Instant;

const MARKER: &str = ".synth-chain";

fn main() -> anyhow::Result<()> {
    // `cargo bench` appends `--bench`; ignore flags.
    let pos: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let out = pos
        .first()
        .cloned()
        .or_else(|| std::env::var("SYNTH_CHAIN_DIR").ok())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: synth_chain OUT [N]  (or SYNTH_CHAIN_DIR=OUT)"))?;
    let n: u64 = pos
        .get(1)
        .cloned()
        .or_else(|| std::env::var("SYNTH_CHAIN_N").ok())
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    anyhow::ensure!(n >= 2, "N must be at least 2 (one artifact entry and the seal)");

    if out.exists() {
        let empty = std::fs::read_dir(&out)?.next().is_none();
        if !empty && !out.join(MARKER).exists() {
            anyhow::bail!("{} exists, is not empty and was not made by synth_chain: refusing", out.display());
        }
        for sub in ["keys", "evidence"] {
            let p = out.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join(MARKER), "made by benches/synth_chain.rs\n")?;

    let t0 = Instant::now();
    let (key_id, key_path, pub_path) = keys::generate(&out.join("keys/signing"))?;
    let signer = Signer::load(&key_path)?;
    let dir = out.join("evidence");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut w = ChainWriter::start(&dir, &signer, "bench@0.1.0", &digest)?;
    for i in 0..n - 1 {
        let artifact = SessionArtifact {
            kind: agentplane::types::ArtifactKind::SessionArtifact,
            bundle: "bench@0.1.0".into(),
            captured_at: "2026-11-22T00:00:00.000Z".into(),
            session_ref: format!("urn:srcos:session:bench-{i:06}"),
            status: agentplane::types::SessionStatus::Success,
            run_artifact_ref: None,
            replay_artifact_ref: None,
            governance_context: None,
        };
        w.write_artifact(&artifact, &[])?;
    }
    w.seal()?;
    drop(w);
    // The lock file stays (agentplane leaves it too; verify skips it).
    eprintln!(
        "synth_chain: {n} entries ({} SessionArtifact + seal) in {} ({:.1} s)\n  key id {key_id}\n  trusted key {}",
        n - 1,
        dir.display(),
        t0.elapsed().as_secs_f64(),
        pub_path.display()
    );
    println!("{}", dir.display());
    Ok(())
}
