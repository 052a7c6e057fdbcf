//! The cross-bundle half of `out-dir-safe` for a stream of bundles: two
//! bundles with one outDir would archive each other's evidence and mix their
//! chains, so each fails, naming the other. Which bundles share is known
//! only after the last one; while they stream by, one 8-byte hash per outDir
//! is kept, and the few outDirs whose hashes repeat are then compared exactly.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

/// The outDirs seen so far, as hashes.
#[derive(Debug, Default)]
pub struct OutDirs {
    hasher: RandomState,
    hashes: Vec<u64>,
}

impl OutDirs {
    /// One bundle's resolved outDir, as an exact key (distinct paths, distinct keys).
    pub fn see(&mut self, key: &str) {
        self.hashes.push(self.hasher.hash_one(key));
    }

    /// The outDirs that may have been seen twice (the same hash).
    pub fn finish(mut self) -> Candidates {
        self.hashes.sort_unstable();
        let twice = self.hashes.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        Candidates { hasher: self.hasher, twice }
    }
}

/// Hashes seen more than once: each still needs an exact comparison.
#[derive(Debug)]
pub struct Candidates {
    hasher: RandomState,
    twice: HashSet<u64>,
}

impl Candidates {
    pub fn is_empty(&self) -> bool {
        self.twice.is_empty()
    }

    pub fn may_share(&self, key: &str) -> bool {
        !self.twice.is_empty() && self.twice.contains(&self.hasher.hash_one(key))
    }
}

/// The outDirs that several bundles name, each with those bundles' paths in
/// stream order. Built from the candidates only, so it holds what it reports.
#[derive(Debug, Default)]
pub struct Shared {
    groups: HashMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    paths: Vec<String>,
    /// Members that were valid before sharing made them fail.
    valid: usize,
}

impl Shared {
    /// A bundle whose outDir is a candidate, in stream order.
    pub fn add(&mut self, key: &str, path: &str, valid: bool) {
        let g = self.groups.entry(key.to_string()).or_default();
        g.paths.push(path.to_string());
        g.valid += usize::from(valid);
    }

    /// Keep only the outDirs named more than once.
    pub fn settle(mut self) -> Shared {
        self.groups.retain(|_, g| g.paths.len() > 1);
        self
    }

    /// The other bundles naming the outDir `key` of the bundle at `path`, when any.
    pub fn others(&self, key: &str, path: &str) -> Option<Vec<&str>> {
        let g = self.groups.get(key)?;
        Some(g.paths.iter().map(String::as_str).filter(|p| *p != path).collect())
    }

    /// How many bundles that passed every other check fail for sharing.
    pub fn newly_invalid(&self) -> usize {
        self.groups.values().map(|g| g.valid).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outdirs_named_twice_are_shared() {
        let seen = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("e", "x"), ("f", "y")];
        let mut dirs = OutDirs::default();
        for (_, key) in seen {
            dirs.see(key);
        }
        let candidates = dirs.finish();
        assert!(candidates.may_share("x") && candidates.may_share("y") && !candidates.may_share("z"));
        let mut shared = Shared::default();
        for (path, key) in seen.iter().filter(|(_, k)| candidates.may_share(k)) {
            shared.add(key, path, *path != "e");
        }
        let shared = shared.settle();
        assert_eq!(shared.others("x", "a"), Some(vec!["c", "e"]));
        assert_eq!(shared.others("x", "e"), Some(vec!["a", "c"]));
        assert_eq!(shared.others("y", "f"), Some(vec!["b"]));
        assert_eq!(shared.others("z", "d"), None);
        assert_eq!(shared.newly_invalid(), 4);
    }

    #[test]
    fn no_repeats_no_candidates() {
        let mut dirs = OutDirs::default();
        for i in 0..1000 {
            dirs.see(&format!("artifacts/b{i}"));
        }
        assert!(dirs.finish().is_empty());
    }
}
