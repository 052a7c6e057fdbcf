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
//!   cargo bench --bench synth_chain -- OUT [N] [--bulk] [--all-files]
//!   SYNTH_CHAIN_DIR=OUT SYNTH_CHAIN_N=N cargo bench --bench synth_chain
//!     N default 10000, entries incl. the seal.
//!
//! `--bulk` (for the prove bench's 1,000,000 entries, where an fsync'd file per
//! entry would take hours): the first entry is written by `ChainWriter` as
//! usual; entries 1..N-2 are appended to `evidence.jsonl` in one buffered
//! write, built with the library's own types exactly as `ChainWriter` builds
//! them (`Statement`, `Predicate`, `Subject::sha256` of the pretty-printed
//! artifact, `Envelope::sign`); then `ChainWriter::open` reads the chain back
//! and `seal()` seals it: the product's seal, checkpoint and `tlog-index`.
//! Only the artifact files of the first and last two entries are written
//! (`--all-files`: every one, so that `agentplane verify` can check that a
//! bulk chain is byte for byte what the product writes; prove.sh does that
//! on a small one). `prove` reads no artifact file.
//!
//! Without `--bulk`:
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
    let flag = |f: &str| std::env::args().any(|a| a == f);
    let (bulk, all_files) = (flag("--bulk"), flag("--all-files"));
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
    if bulk {
        w.write_artifact(&session(0), &[])?;
        let run_id = w.run_id().to_string();
        drop(w);
        bulk_append(&dir, &signer, &run_id, &digest, n, all_files)?;
        let t = Instant::now();
        let (mut w, _) = ChainWriter::open(&dir, &signer)?;
        let opened = t.elapsed().as_secs_f64();
        w.seal()?;
        eprintln!(
            "synth_chain: ChainWriter::open {opened:.2} s, seal (checkpoint + tlog-index) {:.2} s",
            t.elapsed().as_secs_f64() - opened
        );
    } else {
        for i in 0..n - 1 {
            w.write_artifact(&session(i), &[])?;
        }
        w.seal()?;
        drop(w);
    }
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

fn session(i: u64) -> SessionArtifact {
    SessionArtifact {
        kind: agentplane::types::ArtifactKind::SessionArtifact,
        bundle: "bench@0.1.0".into(),
        captured_at: "2026-11-22T00:00:00.000Z".into(),
        session_ref: format!("urn:srcos:session:bench-{i:06}"),
        status: agentplane::types::SessionStatus::Success,
        run_artifact_ref: None,
        replay_artifact_ref: None,
        governance_context: None,
    }
}

/// Entries 1..n-2 (SessionArtifacts), as `ChainWriter::write_artifact` makes
/// them, appended in one buffered write with one fsync (see the module doc).
fn bulk_append(
    dir: &std::path::Path,
    signer: &Signer,
    run_id: &str,
    digest: &str,
    n: u64,
    all_files: bool,
) -> anyhow::Result<()> {
    use agentplane::evidence::dsse::Envelope;
    use agentplane::evidence::statement::{Predicate, STATEMENT_TYPE, Statement, Subject, predicate_type};
    use agentplane::types::ArtifactKind;
    use std::io::Write;
    let chain = dir.join(agentplane::evidence::CHAIN_FILE);
    let first = std::fs::read(&chain)?;
    let mut previous = format!("sha256:{}", agentplane::fsx::sha256_hex(first.strip_suffix(b"\n").unwrap_or(&first)));
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::OpenOptions::new().append(true).open(&chain)?);
    for seq in 1..n - 1 {
        let mut bytes = serde_json::to_vec_pretty(&session(seq))?;
        bytes.push(b'\n');
        let name = format!("session-artifact-{seq}.json");
        if all_files || seq < 3 || seq + 3 >= n {
            std::fs::write(dir.join(&name), &bytes)?;
        }
        let kind = ArtifactKind::SessionArtifact;
        let statement = Statement {
            statement_type: STATEMENT_TYPE.to_string(),
            predicate_type: predicate_type(kind),
            predicate: Predicate {
                kind,
                seq,
                run_id: run_id.to_string(),
                bundle: "bench@0.1.0".into(),
                bundle_digest: digest.to_string(),
                previous: previous.clone(),
                length: None,
                head: None,
                details: None,
            },
            subject: vec![Subject::sha256(name, agentplane::fsx::sha256_hex(&bytes))],
        };
        let line = serde_json::to_vec(&Envelope::sign(&serde_json::to_vec(&statement)?, signer))?;
        out.write_all(&line)?;
        out.write_all(b"\n")?;
        previous = format!("sha256:{}", agentplane::fsx::sha256_hex(&line));
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}
