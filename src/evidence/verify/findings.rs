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

/// Findings in the order the steps recorded them: step by step, and within
/// a step entry by entry, so "the first finding of entry N" is deterministic.
#[derive(Debug, Default)]
pub struct Findings {
    list: Vec<Finding>,
    /// `failed[i]`: entry `i` has a finding already (from this or an earlier step).
    failed: Vec<bool>,
}

impl Findings {
    pub fn entry(&mut self, step: VerifyCheck, entry: usize, message: impl Into<String>) {
        if self.failed.len() <= entry {
            self.failed.resize(entry + 1, false);
        }
        self.failed[entry] = true;
        self.list.push(Finding { step, entry: Some(entry), message: message.into() });
    }

    pub fn dir(&mut self, step: VerifyCheck, message: impl Into<String>) {
        self.list.push(Finding { step, entry: None, message: message.into() });
    }

    /// Whether entry `i` failed a step already run.
    pub fn entry_failed(&self, i: usize) -> bool {
        self.failed.get(i).copied().unwrap_or(false)
    }

    /// The first finding of `step`, if it found anything.
    pub fn first_of(&self, step: VerifyCheck) -> Option<&Finding> {
        self.list.iter().find(|f| f.step == step)
    }

    /// Entry `i`'s first finding (the lowest step that failed it).
    pub fn first_for_entry(&self, i: usize) -> Option<&Finding> {
        self.list.iter().find(|f| f.entry == Some(i))
    }

    /// The first directory-level finding, in step order.
    pub fn first_for_dir(&self) -> Option<&Finding> {
        self.list.iter().find(|f| f.entry.is_none())
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.list
    }
}
