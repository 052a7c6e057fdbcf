//! An RFC 6962 tree kept as its stored hashes, so that roots and inclusion
//! proofs cost O(log n) hash look-ups instead of O(n) hashing.
//!
//! The stored hashes of a tree of `n` leaves are the roots of its *perfect,
//! aligned* subtrees: at level `L` there are `n >> L` of them, the `k`-th
//! covering leaves `[k·2^L, (k+1)·2^L)` (level 0: the leaf hashes). Laid out
//! level by level (all of level 0, then level 1, …) that is `2n − popcount(n)`
//! hashes, about twice the leaves. Every other subtree of an RFC 6962 tree (the
//! ragged right edge) is hashed from at most `log n` of them, so a root costs
//! O(log n) look-ups and an inclusion proof O(log² n) at worst (≈ 400 for a
//! million leaves).
//!
//! The same hashes Go's `golang.org/x/mod/sumdb/tlog` stores, in a simpler
//! (level-major, not append-friendly) order: agentplane rewrites its index at
//! each seal, which already costs O(n). Pure: the hashes come from a
//! [`StoredHashes`] source (memory, or a file read with `pread`).

use anyhow::{Result, bail};

use super::merkle::{self, Hash};

/// Where stored hashes come from.
pub trait StoredHashes {
    /// The root of the perfect subtree at `level` number `k` (leaves
    /// `[k << level, (k + 1) << level)`).
    fn stored(&mut self, level: u32, k: u64) -> Result<Hash>;
}

/// Number of stored hashes of a tree of `n` leaves: `Σ n >> L` = `2n − popcount(n)`.
pub fn count(n: u64) -> u64 {
    (0..64).map(|l| n >> l).sum()
}

/// Position of hash (`level`, `k`) in the level-major layout of a tree of `n` leaves.
pub fn position(n: u64, level: u32, k: u64) -> u64 {
    (0..level).map(|l| n >> l).sum::<u64>() + k
}

/// Every stored hash of the tree over `leaves` (leaf hashes), level-major.
pub fn build(leaves: &[Hash]) -> Vec<Hash> {
    let mut out = Vec::with_capacity(count(leaves.len() as u64) as usize);
    out.extend_from_slice(leaves);
    let mut at = 0; // start of the level below
    let mut width = leaves.len();
    while width >= 2 {
        let next = width / 2;
        for k in 0..next {
            let h = merkle::node_hash(&out[at + 2 * k], &out[at + 2 * k + 1]);
            out.push(h);
        }
        at += width;
        width = next;
    }
    out
}

/// Stored hashes held in memory (the output of [`build`] for `n` leaves).
#[derive(Debug, Clone)]
pub struct InMemory<'a> {
    pub n: u64,
    pub hashes: &'a [Hash],
}

impl StoredHashes for InMemory<'_> {
    fn stored(&mut self, level: u32, k: u64) -> Result<Hash> {
        let at = position(self.n, level, k) as usize;
        match self.hashes.get(at) {
            Some(h) => Ok(*h),
            None => bail!("stored hash ({level}, {k}) is outside the tree"),
        }
    }
}

/// The RFC 6962 hash of leaves `[lo, hi)`, a subtree of the tree (as the
/// recursion of RFC 6962 §2.1 cuts it: `lo` is a multiple of the largest power
/// of two not above `hi − lo`). O(log n) look-ups.
pub fn subtree(src: &mut dyn StoredHashes, lo: u64, hi: u64) -> Result<Hash> {
    if hi <= lo {
        bail!("empty subtree [{lo}, {hi})");
    }
    let size = hi - lo;
    if size.is_power_of_two() && lo.is_multiple_of(size) {
        return src.stored(size.trailing_zeros(), lo / size);
    }
    let k = split(size);
    let left = subtree(src, lo, lo + k)?;
    let right = subtree(src, lo + k, hi)?;
    Ok(merkle::node_hash(&left, &right))
}

/// MTH of the tree of `n` leaves.
pub fn root(src: &mut dyn StoredHashes, n: u64) -> Result<Hash> {
    if n == 0 { Ok(merkle::empty_root()) } else { subtree(src, 0, n) }
}

/// RFC 6962 `PATH(index, D[n])` from stored hashes: the same path as
/// [`merkle::inclusion_proof`] over all leaves, leaf's sibling first.
pub fn inclusion_proof(src: &mut dyn StoredHashes, n: u64, index: u64) -> Result<Vec<Hash>> {
    if index >= n {
        bail!("inclusion proof: index {index} is outside a tree of {n} leaves");
    }
    let (mut lo, mut hi) = (0u64, n);
    let mut path = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(subtree(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(subtree(src, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| merkle::leaf_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn counts_and_positions() {
        for n in [0u64, 1, 2, 3, 7, 8, 1000, 1_000_000] {
            assert_eq!(count(n), 2 * n - u64::from(n.count_ones()), "n={n}");
        }
        assert_eq!(position(5, 0, 4), 4);
        assert_eq!(position(5, 1, 0), 5);
        assert_eq!(position(5, 2, 0), 7);
        assert_eq!(build(&leaves(5)).len() as u64, count(5));
    }

    #[test]
    fn roots_and_every_proof_match_the_full_computation() {
        for n in 0..=70usize {
            let l = leaves(n);
            let hashes = build(&l);
            let mut src = InMemory { n: n as u64, hashes: &hashes };
            assert_eq!(root(&mut src, n as u64).unwrap(), merkle::root(&l), "root n={n}");
            for i in 0..n as u64 {
                let got = inclusion_proof(&mut src, n as u64, i).unwrap();
                assert_eq!(got, merkle::inclusion_proof(&l, i).unwrap(), "path n={n} i={i}");
            }
            assert!(inclusion_proof(&mut src, n as u64, n as u64).is_err());
        }
    }

    #[test]
    fn a_large_tree_needs_few_lookups() {
        struct Counting<'a>(InMemory<'a>, usize);
        impl StoredHashes for Counting<'_> {
            fn stored(&mut self, level: u32, k: u64) -> Result<Hash> {
                self.1 += 1;
                self.0.stored(level, k)
            }
        }
        let n = 100_003;
        let l = leaves(n);
        let hashes = build(&l);
        let mut src = Counting(InMemory { n: n as u64, hashes: &hashes }, 0);
        let path = inclusion_proof(&mut src, n as u64, n as u64 - 1).unwrap();
        merkle::verify_inclusion(&l[n - 1], n as u64 - 1, n as u64, &path, &merkle::root(&l)).unwrap();
        assert!(src.1 < 17 * 17, "{} look-ups", src.1);
    }
}
