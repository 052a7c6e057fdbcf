//! `verify_strict`, computed faster for a key that signs many entries.
//!
//! ed25519-dalek's [`VerifyingKey::verify_strict`] accepts a signature
//! `(R, s)` on `M` under `A` exactly when
//!
//! 1. `s` is canonical (`s < ℓ`);
//! 2. `R` decompresses to a point, `R` is not of small order, `A` is not of small order;
//! 3. `([s]B - [k]A).compress() == R` byte for byte, with `k = H(R ‖ A ‖ M) mod ℓ`.
//!
//! It computes `[s]B - [k]A` with a variable-base double scalar
//! multiplication: ~253 doublings whatever the key. When one key signs a
//! whole chain, a table of `j·256ⁱ·(-A)` (and the same for `B`, once per
//! process) turns each product into at most 32 additions and no doublings.
//!
//! [`KeyTable::verify`] decides exactly what `verify_strict` decides:
//! conditions 1 and 3 are checked as they are; for 2, `A` is checked when the
//! table is built, and since `P.compress() == R` holds only for a `P` that
//! `R` decompresses to, `R` decodes and has `P`'s order. So testing `P` for
//! small order after the comparison is testing `R` (and saves decompressing
//! it). The tests compare the two on valid, tampered, non-canonical and
//! small-order inputs.
//!
//! Everything here is variable-time, as `verify_strict` is: signatures,
//! messages and public keys are public.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha512};
use std::sync::OnceLock;

/// Below this many signatures, building a table (~8,000 point additions)
/// costs more than it saves: use `verify_strict` itself.
pub const WORTH_IT: usize = 1024;

/// `j·256ⁱ·P` for `i` in 0..32, `j` in 0..256 (`j = 0` is the identity).
struct Table(Vec<EdwardsPoint>);

impl Table {
    fn of(p: EdwardsPoint) -> Table {
        let mut t = Vec::with_capacity(32 * 256);
        let mut base = p;
        for _ in 0..32 {
            let mut acc = EdwardsPoint::identity();
            for _ in 0..256 {
                t.push(acc);
                acc += base;
            }
            base = acc; // 256 · base
        }
        Table(t)
    }

    /// The points whose sum is `[x]P`, for the little-endian scalar bytes
    /// `x`, appended to `out`. Fetched all before any is added: the loads
    /// (misses, mostly: the table is larger than the cache) then overlap
    /// instead of each waiting behind an addition.
    fn gather(&self, x: &[u8; 32], out: &mut Vec<EdwardsPoint>) {
        for (i, &d) in x.iter().enumerate() {
            if d != 0 {
                out.push(self.0[i * 256 + d as usize]);
            }
        }
    }
}

fn basepoint() -> &'static Table {
    static B: OnceLock<Table> = OnceLock::new();
    B.get_or_init(|| Table::of(ED25519_BASEPOINT_POINT))
}

/// One trusted key, ready to check many signatures.
pub struct KeyTable {
    compressed: [u8; 32],
    minus_a: Table,
}

impl KeyTable {
    /// `None` for a key of small order, which `verify_strict` never accepts.
    pub fn new(key: &VerifyingKey) -> Option<KeyTable> {
        if key.is_weak() {
            return None;
        }
        let a = key.as_bytes();
        let point = curve25519_dalek::edwards::CompressedEdwardsY(*a).decompress()?;
        basepoint(); // built once, before the workers need it
        Some(KeyTable { compressed: *a, minus_a: Table::of(-point) })
    }

    /// Exactly `key.verify_strict(msg, sig)` (see the module documentation).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let (r, s) = sig.split_at(32);
        let s: [u8; 32] = s.try_into().unwrap_or([0xff; 32]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else { return false };
        let mut h = Sha512::new();
        h.update(r);
        h.update(self.compressed);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut terms = Vec::with_capacity(64);
        self.minus_a.gather(k.as_bytes(), &mut terms);
        basepoint().gather(s.as_bytes(), &mut terms);
        let p = terms.iter().fold(EdwardsPoint::identity(), |acc, t| acc + t);
        p.compress().as_bytes() == r && !p.is_small_order()
    }
}

#[cfg(test)]
mod tests;
