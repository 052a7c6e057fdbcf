//! What verification found: typed findings, each owned by the numbered step
//! (the [`VerifyCheck`]) that produced it.
//!
//! A check in the report fails exactly when its own step recorded a finding;
//! nothing is ever inferred from a message's wording.

use serde::Serialize;

/// The named checks of `agentplane verify`, one per numbered step, in step order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyCheck {
    /// Step 1: `evidence.jsonl` is a readable regular file of whole lines.
    ChainPresent,
    /// Step 2: each line is a DSSE envelope with our payload type and one signature.
    Envelopes,
    /// Step 3: each signature verifies against a trusted key (strict ed25519).
    Signatures,
    /// Step 4: each payload is an in-toto Statement v1 whose predicate type matches its kind.
    Statements,
    /// Step 5: seq, previous digest, one runId / bundle / bundle digest.
    Links,
    /// Step 6: every named file has its signed digest, is named once, and has a safe name.
    SubjectDigests,
    /// Step 7: every artifact matches its schema, kind, bundle and bundle digest.
    Schemas,
    /// Step 8: no file in the directory that no entry names (lock and temp files included).
    NoUnnamedFiles,
    /// Step 9: the seals close what they say, and the chain ends in one.
    Seal,
    /// Step 10: every seal's checkpoint, `outDir/checkpoint` and each `--since`
    /// checkpoint are signed by a trusted key and are prefixes of this log.
    Checkpoint,
}

impl VerifyCheck {
    /// Every check, in step order (the order of the report's `checks`).
    pub const ALL: [VerifyCheck; 10] = [
        VerifyCheck::ChainPresent,
        VerifyCheck::Envelopes,
        VerifyCheck::Signatures,
        VerifyCheck::Statements,
        VerifyCheck::Links,
        VerifyCheck::SubjectDigests,
        VerifyCheck::Schemas,
        VerifyCheck::NoUnnamedFiles,
        VerifyCheck::Seal,
        VerifyCheck::Checkpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCheck::ChainPresent => "chain-present",
            VerifyCheck::Envelopes => "envelopes",
            VerifyCheck::Signatures => "signatures",
            VerifyCheck::Statements => "statements",
            VerifyCheck::Links => "links",
            VerifyCheck::SubjectDigests => "subject-digests",
            VerifyCheck::Schemas => "schemas",
            VerifyCheck::NoUnnamedFiles => "no-unnamed-files",
            VerifyCheck::Seal => "seal",
            VerifyCheck::Checkpoint => "checkpoint",
        }
    }
}

impl std::fmt::Display for VerifyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The step (and so the check) that found it.
    pub step: VerifyCheck,
    /// The chain entry (line index, from 0) it concerns; `None` for the directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<usize>,
    pub message: String,
}

/// Findings by step, and within a step in the order recorded (entry by
/// entry), so "the first finding of entry N" is deterministic however the
/// chain was cut into windows. Held: the findings themselves (none for a
/// chain that verifies) and the current window's per-entry state.
#[derive(Debug, Default)]
pub struct Findings {
    by_step: [Vec<Finding>; VerifyCheck::ALL.len()],
    /// The first entry of the window being checked.
    base: usize,
    /// `first[i - base]`: the first finding of entry `i` of this window (from
    /// the lowest step that failed it: steps record their findings in order).
    first: Vec<Option<String>>,
}

impl Findings {
    pub fn entry(&mut self, step: VerifyCheck, entry: usize, message: impl Into<String>) {
        let message = message.into();
        if let Some(slot) = entry.checked_sub(self.base).and_then(|i| self.first.get_mut(i))
            && slot.is_none()
        {
            *slot = Some(message.clone());
        }
        self.by_step[step as usize].push(Finding { step, entry: Some(entry), message });
    }

    pub fn dir(&mut self, step: VerifyCheck, message: impl Into<String>) {
        self.by_step[step as usize].push(Finding { step, entry: None, message: message.into() });
    }

    /// Start the window of `len` entries from `base`: per-entry state is kept for it only.
    pub fn start_window(&mut self, base: usize, len: usize) {
        self.base = base;
        self.first.clear();
        self.first.resize(len, None);
    }

    /// Whether entry `i` (of the current window) failed a step already run.
    pub fn entry_failed(&self, i: usize) -> bool {
        i.checked_sub(self.base).and_then(|i| self.first.get(i)).is_some_and(Option::is_some)
    }

    /// Entry `i`'s first finding so far (the lowest step that failed it), of the current window.
    pub fn first_in_window(&mut self, i: usize) -> Option<String> {
        i.checked_sub(self.base).and_then(|i| self.first.get_mut(i)).and_then(Option::take)
    }

    /// The first finding of `step`, if it found anything.
    pub fn first_of(&self, step: VerifyCheck) -> Option<&Finding> {
        self.by_step[step as usize].first()
    }

    /// Everything `step` found, in order.
    pub fn of(&self, step: VerifyCheck) -> &[Finding] {
        &self.by_step[step as usize]
    }

    /// Drop what `step` found (a step that turned out not to apply).
    pub fn clear(&mut self, step: VerifyCheck) {
        self.by_step[step as usize].clear();
    }

    /// The first directory-level finding, in step order.
    pub fn first_for_dir(&self) -> Option<&Finding> {
        self.by_step.iter().flatten().find(|f| f.entry.is_none())
    }

    pub fn is_empty(&self) -> bool {
        self.by_step.iter().all(Vec::is_empty)
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.by_step.into_iter().flatten().collect()
    }
}
