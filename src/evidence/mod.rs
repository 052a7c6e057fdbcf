//! Evidence: artifact types, keys, DSSE envelopes over in-toto statements, the
//! hash-chained `evidence.jsonl` writer, and offline verification.

pub mod artifacts;
pub mod chain;
pub mod dsse;
pub mod keys;
pub mod prove;
pub mod statement;
pub mod tlog;
pub mod tlog_index;
pub mod transparency;
pub mod verify;

/// The chain file in every evidence directory.
pub const CHAIN_FILE: &str = "evidence.jsonl";
/// The latest checkpoint of the chain (a C2SP signed note), written at every seal.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// What `prove` needs to answer without reading the whole chain, written at
/// every seal beside the checkpoint ([`tlog_index`]).
pub const TLOG_INDEX_FILE: &str = "tlog-index";
/// The lock file guarding an evidence directory while a stage writes to it.
pub const LOCK_FILE: &str = ".agentplane.lock";
/// Where earlier chains are kept when a new one starts.
pub const RUNS_DIR: &str = "runs";
/// `previous` of the first entry.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
