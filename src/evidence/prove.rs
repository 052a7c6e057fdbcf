//! `prove DIR FILE` / `prove DIR --entry N`: a C2SP tlog-proof that an entry is
//! in the log the chain's last checkpoint signs.
//!
//! **Fast path** (evidence sealed by this version): the seal's [`tlog_index`]
//! gives the entry's index, its line's byte offset and the stored subtree
//! hashes; `prove` reads the index's header, a few hundred hashes, the entry's
//! line and the seal's line (the chain's last), and nothing else: O(log² n)
//! small reads on a chain of any length. Nothing the index says is trusted:
//! the seal's line must be the chain's last line and a seal of exactly the
//! index's `n` entries, the root recomputed from the stored hashes must be the
//! one its checkpoint signs, the entry's line must hash to its stored leaf and
//! name FILE, and the finished proof is checked against the root before it is
//! printed. A wrong index makes `prove` fail (exit 2, naming it); it can never
//! print a proof for something false.
//!
//! **Fallback**: with no index (evidence sealed by an older agentplane, or
//! upstream's), or one that describes an earlier seal than the chain's last
//! (the chain grew since), `prove` reads and hashes the whole chain as before,
//! and says so on stderr when that is worth knowing.

use anyhow::{Context, Result, anyhow};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::chain::Chain;
use super::dsse::Envelope;
use super::statement::Statement;
use super::tlog::{self, Checkpoint, TlogProof, merkle, stored};
use super::tlog_index::TlogIndex;
use super::transparency::last_checkpoint;
use super::{CHAIN_FILE, TLOG_INDEX_FILE};
use crate::error::{Problem, Refusal, RefusalCode};
use crate::fsx;

/// What to prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The first entry naming this file (as the evidence names it).
    File(String),
    /// The entry at this index.
    Entry(u64),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::File(s) => write!(f, "`{s}`"),
            Target::Entry(i) => write!(f, "entry {i}"),
        }
    }
}

/// A proof, and how it was made.
#[derive(Debug, Clone)]
pub struct Proved {
    /// The C2SP tlog-proof text.
    pub proof: String,
    pub index: u64,
    /// Entries in the checkpointed log.
    pub size: u64,
    /// `true`: from the `tlog-index`; `false`: the whole chain was read.
    pub indexed: bool,
    /// Something worth saying on stderr (why the whole chain was read).
    pub note: Option<String>,
}

/// Chains at least this long get a note when they are read whole.
const NOTE_FROM: usize = 10_000;

/// Prove `target` in the evidence directory `dir` (see the module doc).
pub fn prove(dir: &Path, target: &Target) -> Result<Proved> {
    let stale = match TlogIndex::open(dir).map_err(|e| broken_index(dir, &format!("{e:#}")))? {
        None => None,
        Some(index) => match from_index(dir, index, target)? {
            Ok(p) => return Ok(p),
            Err(stale) => Some(stale),
        },
    };
    let mut p = from_chain(dir, target)?;
    p.note = match stale {
        Some(why) => Some(format!("`{TLOG_INDEX_FILE}` {why}: read the whole chain instead")),
        None if p.size as usize >= NOTE_FROM => Some(format!(
            "no `{TLOG_INDEX_FILE}` (evidence sealed by an older agentplane): read all {} entries of the chain",
            p.size
        )),
        None => None,
    };
    Ok(p)
}

/// The proof from the whole chain: every line parsed and hashed.
pub fn from_chain(dir: &Path, target: &Target) -> Result<Proved> {
    let chain = Chain::read(dir)?.ok_or_else(|| no_chain(dir))?;
    let (text, size) = last_checkpoint(&chain).ok_or_else(|| not_provable(target, "the chain has no checkpoint"))?;
    let index = match target {
        Target::Entry(i) => usize::try_from(*i).ok().filter(|i| *i < size),
        Target::File(f) => {
            chain.entries.iter().take(size).position(|e| e.statement.subject.iter().any(|s| s.name == *f))
        }
    }
    .ok_or_else(|| outside(target, size as u64))?;
    // A checkpoint that is not the root of the lines before its seal: the
    // evidence fails (exit 1), as `verify` would say.
    let mut proof = TlogProof::new(&chain.leaves[..size], index as u64, &text).map_err(|e| {
        Refusal::new(RefusalCode::NotProvable, format!("cannot prove {target}: {e:#}"))
            .hint("run `agentplane verify DIR --trusted-key PUB`: the chain does not match its last checkpoint")
    })?;
    proof.extra = Some(chain.line(index).to_vec());
    Ok(Proved { proof: proof.format(), index: index as u64, size: size as u64, indexed: false, note: None })
}

/// The proof from the index: `Ok(Err(why))` when the index describes an
/// earlier seal than the chain's last (then the chain is read whole).
fn from_index(dir: &Path, mut index: TlogIndex, target: &Target) -> Result<Result<Proved, String>> {
    let bad = |why: String| broken_index(dir, &why);
    let chain_path = dir.join(CHAIN_FILE);
    let chain = match fsx::open_regular(&chain_path, Some(fsx::caps::CHAIN)) {
        Ok(f) => f,
        Err(e) if e.kind == Some(fsx::NotRegular::Missing) => return Err(no_chain(dir)),
        Err(e) => return Err(e.into()),
    };
    let len = chain.metadata().with_context(|| format!("cannot read `{}`", chain_path.display()))?.len();
    let n = index.size;
    let seal_at = index.offset(n)?;
    if seal_at >= len {
        return Ok(Err(format!("covers {n} entries and a seal at byte {seal_at}; the chain has {len} bytes")));
    }
    if len - seal_at > fsx::caps::DOCUMENT {
        return Ok(Err(format!("describes the seal at byte {seal_at}; the chain grew since")));
    }
    // The seal the index describes must end the chain: a later line means a
    // later seal (or an entry not sealed yet), and the chain's last seal rules.
    let tail = read_at(&chain, &chain_path, seal_at.saturating_sub(1), len)?;
    let (before, tail) = if seal_at == 0 { (b'\n', &tail[..]) } else { (tail[0], &tail[1..]) };
    if before != b'\n' {
        return Err(bad(format!("the seal offset {seal_at} is not the start of a line of `{CHAIN_FILE}`")));
    }
    let Some(seal_line) = tail.strip_suffix(b"\n").filter(|l| !l.contains(&b'\n')) else {
        return Ok(Err(format!("describes the seal at byte {seal_at}; the chain grew since")));
    };
    let text = seal_checkpoint(seal_line, n).map_err(|e| bad(format!("the line at byte {seal_at}: {e:#}")))?;
    let cp = tlog::note::parse(&text)
        .and_then(|note| Checkpoint::parse_body(&note.text))
        .map_err(|e| bad(format!("the seal's checkpoint: {e:#}")))?;
    if cp.size != n {
        return Err(bad(format!("it covers {n} entries; the seal's checkpoint {}", cp.size)));
    }
    if stored::root(&mut index, n)? != cp.root {
        return Err(bad("its hashes do not give the root the seal's checkpoint signs".into()));
    }
    let i = match target {
        Target::Entry(i) if *i < n => *i,
        Target::Entry(_) => return Err(outside(target, n)),
        Target::File(f) => index.lookup(f)?.ok_or_else(|| outside(target, n))?,
    };
    if i >= n {
        return Err(bad(format!("it names entry {i} for {target}, beyond its {n} entries")));
    }
    let (start, end) = (index.offset(i)?, index.offset(i + 1)?);
    if start >= end || end > seal_at || end - start > fsx::caps::DOCUMENT {
        return Err(bad(format!("entry {i}'s line would be bytes {start}..{end} of `{CHAIN_FILE}`")));
    }
    let raw = read_at(&chain, &chain_path, start.saturating_sub(1), end)?;
    let whole = if start == 0 { &raw[..] } else { &raw[1..] };
    let line = whole.strip_suffix(b"\n").filter(|l| (start == 0 || raw[0] == b'\n') && !l.contains(&b'\n'));
    let Some(line) = line else {
        return Err(bad(format!("bytes {start}..{end} of `{CHAIN_FILE}` are not one whole line")));
    };
    let leaf = merkle::leaf_hash(line);
    if tlog::stored::StoredHashes::stored(&mut index, 0, i)? != leaf {
        return Err(bad(format!("its leaf hash of entry {i} is not the hash of that line")));
    }
    if let Target::File(f) = target {
        let names = statement(line).map(|s| s.subject.iter().any(|s| s.name == *f)).unwrap_or(false);
        if !names {
            return Err(bad(format!("it points {target} at entry {i}, which does not name it")));
        }
    }
    let path = stored::inclusion_proof(&mut index, n, i)?;
    merkle::verify_inclusion(&leaf, i, n, &path, &cp.root).map_err(|e| bad(format!("{e:#}")))?;
    let proof = TlogProof { extra: Some(line.to_vec()), index: i, path, checkpoint: text };
    Ok(Ok(Proved { proof: proof.format(), index: i, size: n, indexed: true, note: None }))
}

/// Bytes `[from, to)` of the chain, read in place.
fn read_at(file: &File, path: &Path, from: u64, to: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from).with_context(|| format!("cannot read `{}` at byte {from}", path.display()))?;
    Ok(buf)
}

fn statement(line: &[u8]) -> Result<Statement> {
    let env: Envelope = serde_json::from_slice(line).context("not a DSSE envelope")?;
    let body = env.body().context("its payload is not base64")?;
    serde_json::from_slice(&body).context("its payload is not an agentplane statement")
}

/// The checkpoint a seal line carries; it must seal exactly `n` entries.
fn seal_checkpoint(line: &[u8], n: u64) -> Result<String> {
    let st = statement(line)?;
    let p = &st.predicate;
    if !p.kind.is_seal() || p.seq != n {
        return Err(anyhow!("not the seal of {n} entries (a {} entry, seq {})", p.kind, p.seq));
    }
    let text = p.details.as_ref().and_then(|d| d.get("checkpoint")).and_then(|c| c.as_str());
    text.map(str::to_string).ok_or_else(|| anyhow!("the seal carries no checkpoint"))
}

fn broken_index(dir: &Path, why: &str) -> anyhow::Error {
    Problem::error(format!("cannot prove from `{}`: {why}", dir.join(TLOG_INDEX_FILE).display()))
        .hint(format!(
            "`{TLOG_INDEX_FILE}` is a cache each seal writes so that `prove` need not read the whole chain: \
             delete it and `prove` reads the chain itself; `agentplane verify DIR` says whether the evidence is intact"
        ))
        .into()
}

fn no_chain(dir: &Path) -> anyhow::Error {
    Problem::error(format!("`{}` holds no evidence chain", dir.display()))
        .hint("pass an evidence directory (a bundle's outDir, holding evidence.jsonl)")
        .into()
}

fn not_provable(target: &Target, why: &str) -> anyhow::Error {
    Refusal::new(RefusalCode::NotProvable, format!("cannot prove {target}: {why}"))
        .hint("a proof needs a seal: run `agentplane emit` (or `up`) to seal the chain")
        .into()
}

fn outside(target: &Target, size: u64) -> anyhow::Error {
    let why = match target {
        Target::File(f) => format!("no entry before the last checkpoint names `{f}`"),
        Target::Entry(i) => format!("the last checkpoint covers entries 0..{size}, not {i}"),
    };
    let hint = match target {
        Target::File(_) => "name a file an entry signed before the last seal (see `agentplane verify DIR`)".to_string(),
        Target::Entry(_) => format!("pass an --entry below {size}, the size of the last checkpoint"),
    };
    Refusal::new(RefusalCode::NotProvable, format!("cannot prove {target}: {why}")).hint(hint).into()
}

#[cfg(test)]
mod tests;
