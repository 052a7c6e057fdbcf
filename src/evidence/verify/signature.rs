//! Step 3's signature policy: strict ed25519, and nothing else.
//!
//! Every envelope is checked with [`VerifyingKey::verify_strict`], one at a
//! time (on all cores, beside the other per-entry work). Strict rejects a
//! non-canonical `s`, an `R` or public key of small order, and any `R` that is
//! not exactly `[s]B - [k]A` in its canonical encoding.
//!
//! Why not `ed25519_dalek::verify_batch`, which is about twice as fast per
//! signature? Its accepted set is larger than strict's, and cannot be cut
//! down to it cheaply:
//!
//! - it never looks at the orders of `R` and `A`: with the weak public key
//!   `01 00…00` (the identity) the signature `R = identity, s = 0` verifies
//!   for every message, so anyone can forge it (see the test below);
//! - it checks `Σ zᵢ(Rᵢ - [sᵢ]B + [kᵢ]Aᵢ) = 0` with coefficients `zᵢ` derived
//!   from a hash of the inputs, so an `R` carrying a small torsion component
//!   (`R = [r]B + T`, `T` of order 2, 4 or 8, `s` honest) passes whenever
//!   `zᵢ·T = 0`: with probability at least 1/8, and the signer can grind.
//!
//! Rejecting weak keys, small-order `R` and non-canonical `s` up front closes
//! the first hole but not the second: that needs a prime-order-subgroup test
//! of every `R`, a full scalar multiplication, which costs about what
//! `verify_strict` costs. So the accepted set is exactly strict's by using
//! strict for every entry; trusted keys of small order are also refused when
//! they are loaded (`keys::load_public`).
//!
//! A faster path was tried and dropped (round 3): fixed-base tables for the
//! signing key that computed `[s]B - [k]A` with precomputed multiples, tested
//! to decide exactly as `verify_strict`. It halved the cost, but it was our
//! own implementation of the verification equation on curve arithmetic, and
//! agentplane never hand-rolls crypto: every signature is decided by
//! ed25519-dalek's `verify_strict` itself.
//!
//! What made strict cheaper instead (round 3): ed25519-dalek 3 on
//! curve25519-dalek 5 with its AVX-512 IFMA backend compiled in
//! (`.cargo/config.toml`); the library picks the backend at run time, so the
//! same binary falls back to AVX2 or portable code on other CPUs.
//! `verify_strict` went from ~46 to ~25 µs here, the library's code throughout.
//!
//! The price of strict alone, measured on the 10,000-entry bench chain (`benches/synth_chain.rs`,
//! release build, a loaded 2-vCPU VM): ~24 µs more per entry on one core
//! (old ~340–410 ms, strict ~610–660 ms), ~220 → ~340–390 ms on two cores.

use ed25519_dalek::Signature;

use crate::evidence::dsse;
use crate::evidence::keys::TrustedKey;

pub const DOES_NOT_VERIFY: &str =
    "the signature does not verify against any trusted key (changed, or signed by an untrusted key)";

/// The strict policy over a set of trusted keys: `verify_strict` for every
/// signature.
pub struct Strict<'k> {
    trusted: &'k [TrustedKey],
}

impl<'k> Strict<'k> {
    pub fn new(trusted: &'k [TrustedKey]) -> Strict<'k> {
        Strict { trusted }
    }

    /// Whether `sig` over `msg` verifies strictly under trusted key `k`.
    fn verifies(&self, k: usize, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.trusted[k].key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
    }

    /// Verify `sig` over PAE(`payload_type`, `body`) against the trusted keys,
    /// the one `keyid` names first. Returns the index of the key that verified.
    pub fn check(&self, payload_type: &str, body: &[u8], keyid: &str, sig: &[u8; 64]) -> Option<usize> {
        let msg = dsse::pae(payload_type, body);
        let hinted = self.trusted.iter().position(|k| k.id == keyid);
        hinted
            .into_iter()
            .chain((0..self.trusted.len()).filter(|k| Some(*k) != hinted))
            .find(|&k| self.verifies(k, &msg, sig))
    }
}

/// [`Strict::check`] for one signature.
#[cfg(test)]
pub fn check(payload_type: &str, body: &[u8], keyid: &str, sig: &[u8; 64], trusted: &[TrustedKey]) -> Option<usize> {
    Strict::new(trusted).check(payload_type, body, keyid, sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::VerifyingKey;
    use std::path::PathBuf;

    fn weak() -> TrustedKey {
        let mut b = [0u8; 32];
        b[0] = 1; // the identity point: a key of small order
        let key = VerifyingKey::from_bytes(&b).expect("the identity decodes");
        TrustedKey { id: crate::evidence::keys::key_id(&key), key, path: PathBuf::from("weak.pub") }
    }

    /// The forgery batch verification accepts and strict refuses: R = identity, s = 0.
    #[test]
    fn a_weak_key_forgery_passes_batch_but_not_strict() {
        let k = weak();
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let msg = dsse::pae(dsse::PAYLOAD_TYPE, b"{\"forged\":true}");
        let s = Signature::from_bytes(&sig);
        assert!(ed25519_dalek::verify_batch(&[&msg], &[s], &[k.key]).is_ok(), "batch accepts the forgery");
        assert!(k.key.is_weak());
        let id = k.id.clone();
        assert_eq!(check(dsse::PAYLOAD_TYPE, b"{\"forged\":true}", &id, &sig, &[k]), None);
    }
}
