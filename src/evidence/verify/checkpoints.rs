//! Step 10 (see the list in [`super`]): the checkpoints, and the `tlog-index`
//! the last one's seal wrote for `prove`.
//!
//! The log's RFC 6962 tree head is kept as it grows (a frontier of at most
//! 64 hashes, [`tlog::merkle::RootBuilder`]), not as every leaf: each
//! checkpoint whose size is known before the stream reaches it (a seal's own
//! size, the `checkpoint` file's, each `--since`) has its root captured when
//! the stream passes that size. Only a seal whose checkpoint claims an earlier
//! size (a stale or forged one, a finding either way) needs a root the stream
//! has passed: those are answered by one more pass over the chain at the end.

use serde_json::Value;
use std::collections::HashMap;

use super::files::EvidenceFiles;
use super::findings::{Findings, VerifyCheck};
use super::index_check::IndexCheck;
use super::reader::{ChainReader, WINDOW, Window};
use super::steps::Work;
use crate::evidence::chain::checkpoint_origin;
use crate::evidence::keys::TrustedKey;
use crate::evidence::statement::Statement;
use crate::evidence::tlog::{self, Checkpoint, merkle::RootBuilder};
use crate::evidence::transparency::{check_root, open_for};
use crate::evidence::{CHECKPOINT_FILE, TLOG_INDEX_FILE};

/// A checkpoint opened (signature and origin), waiting for the root of the
/// log at its size; or why it did not open.
enum Pending {
    Failed(String),
    Root(Checkpoint),
}

/// The `checkpoint` file's bytes (or why not), and the checkpoint they open to.
type CheckpointFile = (Result<Vec<u8>, String>, Option<Pending>);

/// What step 10 carries through the stream.
#[derive(Default)]
pub struct Checkpoints<'a> {
    /// The log's origin and trusted note keys, once entry 0 was read
    /// (`None`: it could not be, and step 10 will not run).
    origin: Option<(String, Vec<tlog::NoteKey>)>,
    tree: RootBuilder,
    /// Roots wanted, by log size: filled as the stream passes each size.
    roots: HashMap<u64, Option<tlog::Hash>>,
    /// Seals whose checkpoint is not simply the root at their own position, in order.
    seals: Vec<(usize, Pending)>,
    /// The last seal whose checkpoint verified at its own position: its text and position.
    last: Option<(String, usize)>,
    /// The `checkpoint` file: read when the origin became known, opened when it is text.
    file: Option<CheckpointFile>,
    since: Vec<Pending>,
    /// The `tlog-index`, when there is one: compared as the stream goes (or why it cannot be read).
    index: Option<Result<IndexCheck<'a>, String>>,
}

impl<'a> Checkpoints<'a> {
    /// Before the first leaf: the origin (from entry 0, `first`), and the
    /// checkpoints whose sizes are known now (the file's, each `--since`).
    pub fn begin(
        &mut self,
        first: Option<&Statement>,
        files: &'a dyn EvidenceFiles,
        trusted: &[TrustedKey],
        since: &[String],
        budget: usize,
    ) {
        let Some(s) = first else { return };
        let origin = checkpoint_origin(&s.predicate.run_id);
        let keys: Vec<tlog::NoteKey> = trusted.iter().filter_map(|k| tlog::NoteKey::new(&origin, k.key).ok()).collect();
        self.origin = Some((origin, keys));
        let file = files.read_artifact(CHECKPOINT_FILE);
        let opened = file.as_ref().ok().map(|bytes| match std::str::from_utf8(bytes) {
            Ok(t) => self.open(t),
            Err(_) => Pending::Failed("not UTF-8".into()),
        });
        self.file = Some((file, opened));
        self.since = since.iter().map(|t| self.open(t)).collect();
        if files.exists(TLOG_INDEX_FILE) {
            self.index = Some(files.open_at(TLOG_INDEX_FILE).map(|f| IndexCheck::new(f, budget)));
        }
    }

    /// Open `text` and ask for the root at its size.
    fn open(&mut self, text: &str) -> Pending {
        let Some((origin, keys)) = &self.origin else { return Pending::Failed(String::new()) };
        match open_for(text, origin, keys) {
            Ok(cp) => {
                let now = (cp.size == self.tree.size()).then(|| self.tree.root());
                // A size the stream has passed stays `None` until the last pass.
                self.roots.entry(cp.size).or_insert(now);
                Pending::Root(cp)
            }
            Err(e) => Pending::Failed(format!("{e:#}")),
        }
    }

    /// A window of the stream: its seals' checkpoints, then its leaves.
    pub fn window(&mut self, w: &Window, work: &[Work]) {
        if self.origin.is_none() {
            return;
        }
        let mut at = w.offset;
        for (k, x) in work.iter().enumerate() {
            let i = w.first + k;
            let st = x.statement();
            if let Some(text) = st.filter(|s| s.predicate.kind.is_seal()).and_then(seal_checkpoint) {
                match self.open(text) {
                    Pending::Root(cp) if cp.size == i as u64 && cp.root == self.tree.root() => {
                        self.last = Some((text.to_string(), i));
                    }
                    p => self.seals.push((i, p)),
                }
            }
            if let Some(Ok(ix)) = &mut self.index {
                ix.line(i as u64, at, &x.leaf, st.into_iter().flat_map(|s| s.subject.iter().map(|x| x.name.as_str())));
            }
            at += w.line(k).len() as u64 + 1;
            self.tree.push(x.leaf);
            if let Some(slot) = self.roots.get_mut(&self.tree.size())
                && slot.is_none()
            {
                *slot = Some(self.tree.root());
            }
        }
    }

    /// Once every entry was seen (`end`: where the chain's bytes end). Runs
    /// only when `runs`: a chain whose structure already failed has shown
    /// its tampering where it was first seen. `Err`: `tlog-index` could not
    /// be compared (its names could not be kept).
    pub fn end(mut self, runs: bool, end: u64, files: &dyn EvidenceFiles, f: &mut Findings) -> anyhow::Result<()> {
        if !runs || self.origin.is_none() {
            return Ok(());
        }
        let len = self.tree.size();
        if self.roots.iter().any(|(&size, root)| root.is_none() && size <= len) {
            self.rescan(files);
        }
        let roots = &self.roots;
        let check = |p: Pending| -> Result<Checkpoint, String> {
            match p {
                Pending::Failed(e) => Err(e),
                Pending::Root(cp) => {
                    check_root(&cp, len, |size| roots.get(&size).copied().flatten().unwrap_or_default())
                        .map_err(|e| format!("{e:#}"))?;
                    Ok(cp)
                }
            }
        };
        for (i, p) in std::mem::take(&mut self.seals) {
            match check(p) {
                Ok(cp) if cp.size as usize == i => {} // (not reached: these verified as they came)
                Ok(cp) => f.entry(
                    VerifyCheck::Checkpoint,
                    i,
                    format!("its checkpoint covers {} entries, not the {i} it seals", cp.size),
                ),
                Err(e) => f.entry(VerifyCheck::Checkpoint, i, format!("its checkpoint does not verify: {e}")),
            }
        }
        let mut last_at = self.last.as_ref().map(|(_, i)| *i);
        match (self.file.take(), &self.last) {
            (Some((Ok(bytes), _)), Some((text, _))) if bytes == text.as_bytes() => {}
            (Some((Ok(_), _)), Some(_)) => f.dir(
                VerifyCheck::Checkpoint,
                format!("`{CHECKPOINT_FILE}` is not the checkpoint the last seal signed"),
            ),
            // No seal left to compare with (an unsealed chain, with --allow-unsealed):
            // the file must still be a signed prefix of this log (and the index is its log's).
            (Some((Ok(_), Some(p))), None) => match check(p) {
                Ok(cp) => last_at = Some(cp.size as usize),
                Err(e) => {
                    f.dir(VerifyCheck::Checkpoint, format!("`{CHECKPOINT_FILE}` does not verify against this log: {e}"))
                }
            },
            (Some((Err(e), _)), Some(_)) => f.dir(VerifyCheck::Checkpoint, format!("`{CHECKPOINT_FILE}`: {e}")),
            _ => {}
        }
        if let Some(ix) = self.index.take() {
            index_matches(ix, len, end, last_at, f)?;
        }
        for (n, p) in std::mem::take(&mut self.since).into_iter().enumerate() {
            if let Err(e) = check(p) {
                f.dir(
                    VerifyCheck::Checkpoint,
                    format!("--since checkpoint {}: the log is not an extension of it: {e}", n + 1),
                );
            }
        }
        Ok(())
    }

    /// One more pass over the chain for the roots at sizes the stream had
    /// passed when they were asked for. (A chain that changed since reads as
    /// a different log: a root that does not match.)
    fn rescan(&mut self, files: &dyn EvidenceFiles) {
        let Ok(r) = files.chain() else { return };
        let mut reader = ChainReader::new(r);
        let mut tree = RootBuilder::new();
        if let Some(slot) = self.roots.get_mut(&0) {
            slot.get_or_insert(tree.root());
        }
        while let Ok(w) = reader.next_window(WINDOW) {
            if w.is_empty() {
                break;
            }
            for (_, line) in w.iter() {
                tree.push_leaf(line);
                if let Some(slot) = self.roots.get_mut(&tree.size()) {
                    slot.get_or_insert(tree.root());
                }
            }
        }
    }
}

/// The checkpoint a seal published (absent from seals made before checkpoints).
fn seal_checkpoint(s: &Statement) -> Option<&str> {
    s.predicate.details.as_ref().and_then(|d| d.get("checkpoint")).and_then(Value::as_str)
}

/// `tlog-index`, when present, must be exactly the index of the log the last
/// checkpointed seal closes (its first `last_at` entries; without a seal, the
/// `checkpoint` file's): a cache `prove` reads, so it is checked here rather
/// than left as a file no entry explains. Absent is fine (evidence sealed
/// before it existed); present without any checkpoint is not.
fn index_matches(
    ix: Result<IndexCheck, String>,
    lines: u64,
    end: u64,
    last_at: Option<usize>,
    f: &mut Findings,
) -> anyhow::Result<()> {
    let Some(n) = last_at else {
        f.dir(VerifyCheck::Checkpoint, format!("`{TLOG_INDEX_FILE}` is here but no seal published a checkpoint"));
        return Ok(());
    };
    let matched = match ix {
        Ok(ix) => ix.matches(n as u64, lines, end)?,
        Err(e) => Err(e),
    };
    match matched {
        Ok(true) => {}
        Ok(false) => f.dir(
            VerifyCheck::Checkpoint,
            format!("`{TLOG_INDEX_FILE}` is not the index of the log the last seal's checkpoint signs"),
        ),
        Err(e) => f.dir(VerifyCheck::Checkpoint, e),
    }
    Ok(())
}
