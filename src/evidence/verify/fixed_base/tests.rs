use super::*;
use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::Signature;

/// Deterministic bytes: sha512 of a label and a counter.
fn bytes64(label: &str, i: u64) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(label.as_bytes());
    h.update(i.to_le_bytes());
    h.finalize().into()
}

fn scalar(label: &str, i: u64) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&bytes64(label, i))
}

fn key_of(point: EdwardsPoint) -> VerifyingKey {
    VerifyingKey::from_bytes(point.compress().as_bytes()).expect("a point decodes")
}

/// `(R, s)` with `s = r + k·a` over the given `R` encoding: valid when `R = [r]B`.
fn sign_with(a: &Scalar, key: &VerifyingKey, r_bytes: [u8; 32], r: &Scalar, msg: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(msg);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

fn same(table: &KeyTable, key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    let strict = key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok();
    assert_eq!(table.verify(msg, sig), strict, "table and verify_strict disagree on {}", hex::encode(sig));
    strict
}

#[test]
fn agrees_with_verify_strict_on_valid_and_tampered_signatures() {
    for i in 0..12 {
        let a = scalar("a", i);
        let key = key_of(ED25519_BASEPOINT_POINT * a);
        let table = KeyTable::new(&key).expect("a prime-order key");
        for j in 0..8 {
            let msg = bytes64("msg", i * 100 + j);
            let r = scalar("r", i * 100 + j);
            let sig = sign_with(&a, &key, (ED25519_BASEPOINT_POINT * r).compress().to_bytes(), &r, &msg);
            assert!(same(&table, &key, &msg, &sig), "a valid signature verifies");
            // Any flipped bit of the signature or the message.
            for bit in [0, 7, 100, 255, 256, 300, 511] {
                let mut bad = sig;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!same(&table, &key, &msg, &bad));
            }
            let mut other = msg;
            other[3] ^= 0x10;
            assert!(!same(&table, &key, &other, &sig));
            // s + ℓ: the same equation, a non-canonical s.
            let l = Scalar::ZERO - Scalar::ONE; // ℓ - 1
            let mut s_plus_l = [0u8; 32];
            let mut carry = 1u16; // (ℓ - 1) + 1 + s, byte by byte
            for (k, out) in s_plus_l.iter_mut().enumerate() {
                let v = u16::from(l.as_bytes()[k]) + u16::from(sig[32 + k]) + carry;
                *out = v as u8;
                carry = v >> 8;
            }
            let mut noncanon = sig;
            noncanon[32..].copy_from_slice(&s_plus_l);
            assert!(!same(&table, &key, &msg, &noncanon));
        }
    }
}

#[test]
fn agrees_on_small_order_r_mixed_order_keys_and_random_bytes() {
    let a = scalar("a", 99);
    let key = key_of(ED25519_BASEPOINT_POINT * a);
    let table = KeyTable::new(&key).unwrap();
    let msg = b"a message";
    // R = identity with s = k·a: the equation holds, strict refuses a small-order R.
    let identity = EdwardsPoint::identity().compress().to_bytes();
    let sig = sign_with(&a, &key, identity, &Scalar::ZERO, msg);
    assert!(!same(&table, &key, msg, &sig));
    // The identity written non-canonically (y = 1 + p).
    let mut y = [0u8; 32];
    y[0] = 0xee;
    y[1..31].fill(0xff);
    y[31] = 0x7f;
    let sig = sign_with(&a, &key, y, &Scalar::ZERO, msg);
    assert!(!same(&table, &key, msg, &sig));
    // R = [r]B + T for each torsion point T: honest s, torsion in R.
    for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
        let r = scalar("rt", t as u64);
        let r_point = ED25519_BASEPOINT_POINT * r + torsion;
        let sig = sign_with(&a, &key, r_point.compress().to_bytes(), &r, msg);
        same(&table, &key, msg, &sig);
    }
    // A mixed-order key A + T: strict accepts exactly when k·T vanishes.
    let mut accepted = 0;
    for i in 0..64u64 {
        let mixed = key_of(ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1]);
        let t = KeyTable::new(&mixed).expect("not of small order");
        let r = scalar("rm", i);
        let m = bytes64("mm", i);
        let sig = sign_with(&a, &mixed, (ED25519_BASEPOINT_POINT * r).compress().to_bytes(), &r, &m);
        accepted += usize::from(same(&t, &mixed, &m, &sig));
    }
    assert!(accepted > 0 && accepted < 64, "{accepted} of 64");
    // Random bytes as signatures.
    for i in 0..200 {
        let sig = bytes64("random", i);
        same(&table, &key, msg, &sig);
    }
}

#[test]
fn small_order_keys_get_no_table() {
    for t in EIGHT_TORSION.iter() {
        if let Ok(key) = VerifyingKey::from_bytes(t.compress().as_bytes()) {
            assert!(KeyTable::new(&key).is_none());
        }
    }
}
