//! checkpoint_cost: what `verify`'s step 10 (the checkpoints and the
//! `tlog-index`) costs on a chain, beside the whole verification, in one
//! process (scripts/bench/verify.sh runs it; docs/performance.md).
//!
//! Times, each the median of R runs (default 15), single process, warm cache:
//!   verify    `verify::verify_dir` of the directory (all ten steps, all cores)
//!   step10    the work step 10 adds, redone with the same library calls:
//!             the RFC 6962 leaf hash of every line; for every seal,
//!             `transparency::check_against` (the checkpoint's signature and
//!             the root of the lines before it); the `checkpoint` file read;
//!             `tlog_index::encode` of the last seal's log, its sha256 and the
//!             `tlog-index` file's (`fsx::sha256_regular`).
//! and prints one JSON line: {"entries", "verifySeconds", "step10Seconds",
//! "share": step10 / (verify - step10)}: how much slower verify is with the
//! step than it would be without it (the "within 10 %").
//!
//! Usage: cargo bench --bench checkpoint_cost -- EVIDENCE_DIR PUBLIC_KEY [R]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use agentplane::evidence::chain::{Chain, checkpoint_origin};
use agentplane::evidence::tlog::{self, merkle};
use agentplane::evidence::verify::{Options, verify_dir};
use agentplane::evidence::{CHECKPOINT_FILE, TLOG_INDEX_FILE, keys, tlog_index, transparency};
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let pos: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    anyhow::ensure!(pos.len() >= 2, "usage: checkpoint_cost EVIDENCE_DIR PUBLIC_KEY [RUNS]");
    let dir = PathBuf::from(&pos[0]);
    let key = keys::load_public(&PathBuf::from(&pos[1]))?;
    let runs: usize = pos.get(2).map(|s| s.parse()).transpose()?.unwrap_or(15);
    let opts =
        Options { trusted: vec![key.clone()], allow_unsealed: false, since: Vec::new(), lines: Default::default() };

    // Parsed once, untimed: step 4's work, which step 10 reuses.
    let chain = Chain::read(&dir)?.ok_or_else(|| anyhow::anyhow!("no chain in {}", dir.display()))?;
    let bytes = std::fs::read(dir.join(agentplane::evidence::CHAIN_FILE))?;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let origin = checkpoint_origin(chain.run_id().unwrap_or_default());
    let note_keys = transparency::note_keys(std::slice::from_ref(&key), &origin)?;
    let seals: Vec<(usize, String)> = chain
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind().is_seal())
        .filter_map(|(i, e)| {
            let d = e.statement.predicate.details.as_ref()?;
            Some((i, d.get("checkpoint")?.as_str()?.to_string()))
        })
        .collect();
    let last = seals.last().map(|(i, _)| *i).ok_or_else(|| anyhow::anyhow!("no checkpointed seal"))?;

    let step10 = || -> anyhow::Result<()> {
        let leaves: Vec<tlog::Hash> = lines.iter().map(|l| merkle::leaf_hash(l)).collect();
        for (i, text) in &seals {
            let cp = transparency::check_against(text, &origin, &note_keys, &leaves)?;
            anyhow::ensure!(cp.size as usize == *i, "checkpoint size");
        }
        let file = std::fs::read(dir.join(CHECKPOINT_FILE))?;
        anyhow::ensure!(file == seals.last().expect("a seal").1.as_bytes(), "checkpoint file");
        let mut offsets = vec![0u64];
        for l in &lines[..last] {
            offsets.push(offsets.last().expect("one") + l.len() as u64 + 1);
        }
        let names = chain.entries[..last]
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.statement.subject.iter().map(move |s| (s.name.as_str(), i as u64)));
        let want = agentplane::fsx::sha256_hex(&tlog_index::encode(&leaves[..last], &offsets, names));
        let (got, _) = agentplane::fsx::sha256_regular(&dir.join(TLOG_INDEX_FILE))?;
        anyhow::ensure!(got == want, "tlog-index differs");
        Ok(())
    };
    step10()?;
    anyhow::ensure!(verify_dir(&dir, &opts)?.verified, "the chain does not verify");

    let (mut v, mut s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(verify_dir(&dir, &opts)?);
        v.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        step10()?;
        s.push(t.elapsed().as_secs_f64());
    }
    let (v, s) = (median(v), median(s));
    println!(
        "{{\"entries\": {}, \"runs\": {runs}, \"verifySeconds\": {v:.6}, \"step10Seconds\": {s:.6}, \"share\": {:.4}}}",
        lines.len(),
        s / (v - s)
    );
    Ok(())
}
