//! Transparency-log building blocks for the evidence chain (DESIGN §7): RFC 6962
//! Merkle trees and proofs, C2SP signed notes, `tlog-checkpoint`s and
//! `tlog-proof`s. A pure library: no file or command-line handling here.
//!
//! - [`merkle`]: leaf/node hashes, tree roots, inclusion and consistency proofs.
//! - [`note`]: `c2sp.org/signed-note` with Ed25519 signatures.
//! - [`checkpoint`]: `c2sp.org/tlog-checkpoint` bodies, signing and opening.
//! - [`proof`]: `c2sp.org/tlog-proof@v1` inclusion proofs bundled with a checkpoint.
//! - [`stored`]: a tree kept as its stored subtree hashes: O(log n) roots and proofs.

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod stored;

#[cfg(test)]
mod interop_tests;

pub use checkpoint::Checkpoint;
pub use merkle::Hash;
pub use note::{NoteKey, NoteSigner};
pub use proof::TlogProof;
