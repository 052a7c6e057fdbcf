//! The files the chain names, for steps 6 (named once) and 8 (nothing
//! unnamed), in 16 bytes a name instead of the names themselves, sorted
//! outside memory past a budget ([`super::extsort`]).
//!
//! Step 8 cannot know that a file in the directory is unnamed before it has
//! seen every entry, and the listing is not in chain order. So every name an
//! entry gives is recorded as it comes, and at the end the recorded names,
//! sorted, are walked beside the listing's names, sorted the same way: a
//! listed name with no recorded one is unnamed. Both sorts hold at most their
//! budget in memory and spill sorted runs to a temporary file beyond it.
//!
//! A name is kept as a salted fingerprint: 15 bytes of `sha256(salt ‖ name)`
//! with a salt drawn from the OS for each verification, so whoever wrote the
//! evidence cannot aim two names at one fingerprint; two names of a chain of
//! a million collide by chance with probability below 2⁻⁷⁹.
//!
//! Step 6's "named twice" is decided in stream order: the later entry in good
//! standing that claims a name already claimed gets the finding (and is then
//! not checked by step 7). Holding every claim to decide that as the stream
//! goes is what this module avoids; instead each recorded name says whether
//! it was claimed, and the walk at the end finds the names claimed twice.
//! Which entries claim a name does not depend on what step 6 decides (only
//! on steps 1–5 and the file's digest), so when there are such names (only
//! in tampered evidence) verification runs again with them known up front
//! ([`NameSet::new`]'s `twice`, under the same salt): the second pass decides
//! their claims exactly, as the stream goes, holding only those names.

use anyhow::Result;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use super::extsort::{Merge, Record, Sorter, read_array};
use crate::fsx::NotRegular;

pub type Key = [u8; 15];

/// The salt of one verification's fingerprints (both passes share it).
#[derive(Debug, Clone, Copy)]
pub struct Salt([u8; 16]);

impl Salt {
    pub fn random() -> Salt {
        let mut salt = [0u8; 16];
        // Without the OS's randomness, a fixed salt still names every file
        // apart; it only lets a forger who knows it aim a collision.
        let _ = getrandom::getrandom(&mut salt);
        Salt(salt)
    }

    pub fn key(&self, name: &str) -> Key {
        let d = Sha256::new().chain_update(self.0).chain_update(name.as_bytes()).finalize();
        let mut k = [0u8; 15];
        k.copy_from_slice(&d[..15]);
        k
    }
}

/// One name an entry gives, and whether the entry claimed it (step 6: it is
/// in good standing and the file checked out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mention {
    key: Key,
    claimed: bool,
}

impl Record for Mention {
    fn weight(&self) -> usize {
        size_of::<Mention>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.push(u8::from(self.claimed));
    }

    fn decode(r: &mut dyn BufRead) -> std::io::Result<Mention> {
        let b: [u8; 16] = read_array(r)?;
        let mut key = [0u8; 15];
        key.copy_from_slice(&b[..15]);
        Ok(Mention { key, claimed: b[15] != 0 })
    }
}

/// Whether the name was named once already by an entry in good standing (step 6).
type Claimed = bool;

/// The names seen so far.
pub struct NameSet {
    salt: Salt,
    mentions: Sorter<Mention>,
    /// The names known (from a pass before) to be claimed twice: their
    /// claims are decided here, in stream order. Any other claim is a first.
    twice: HashMap<Key, Claimed>,
    /// The first error keeping the names (reported by [`NameSet::finish`]).
    error: Option<anyhow::Error>,
}

impl NameSet {
    /// `twice`: the names a pass before found claimed twice; `budget`: the
    /// bytes of names held before they spill to a temporary file.
    pub fn new(salt: Salt, twice: &HashSet<Key>, budget: usize) -> NameSet {
        NameSet {
            salt,
            mentions: Sorter::new(budget, "the names the chain gives"),
            twice: twice.iter().map(|k| (*k, false)).collect(),
            error: None,
        }
    }

    pub fn key(&self, name: &str) -> Key {
        self.salt.key(name)
    }

    /// An entry names the name of `key` (step 8); `claims`: the entry is in
    /// good standing and the file checked out (step 6). False when the name
    /// was claimed before, which is known here only for the names of `twice`.
    pub fn name(&mut self, key: Key, claims: bool) -> bool {
        if self.error.is_none()
            && let Err(e) = self.mentions.push(Mention { key, claimed: claims })
        {
            self.error = Some(e);
        }
        match self.twice.get_mut(&key) {
            Some(c) if claims => !std::mem::replace(c, true),
            _ => true,
        }
    }

    /// Every name recorded, sorted, for [`walk`].
    pub fn finish(self) -> Result<Names> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(Names { sorted: self.mentions.finish()? })
    }
}

/// The names of the whole chain, sorted by key (the directory's names must
/// be fingerprinted under the same [`Salt`] to be walked beside them).
pub struct Names {
    sorted: Merge<Mention>,
}

/// A name in the directory that step 8 must find named, with what it is
/// when not a regular file (for the finding).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedName {
    key: Key,
    pub name: String,
    /// [`NotRegular`] by its position in [`KINDS`] + 1 (0: a regular file).
    kind: u8,
}

/// The kinds a listed entry may be, in a fixed order (a too-large file
/// comes back without its sizes: only its kind is ever shown).
const KINDS: [NotRegular; 7] = [
    NotRegular::Missing,
    NotRegular::Symlink,
    NotRegular::Directory,
    NotRegular::Fifo,
    NotRegular::Socket,
    NotRegular::Device,
    NotRegular::TooLarge { cap: 0, len: 0 },
];

impl ListedName {
    pub fn new(salt: &Salt, name: String, kind: Result<u64, NotRegular>) -> ListedName {
        let code = match kind {
            Ok(_) => 0,
            Err(NotRegular::TooLarge { .. }) => 7,
            Err(k) => KINDS.iter().position(|x| *x == k).map_or(1, |p| p as u8 + 1),
        };
        ListedName { key: salt.key(&name), name, kind: code }
    }

    /// `Ok` for a regular file, else what it is.
    pub fn kind(&self) -> Result<(), NotRegular> {
        match (self.kind as usize).checked_sub(1) {
            None => Ok(()),
            Some(p) => Err(KINDS.get(p).copied().unwrap_or(NotRegular::Missing)),
        }
    }
}

impl Record for ListedName {
    fn weight(&self) -> usize {
        size_of::<ListedName>() + self.name.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.push(self.kind);
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
    }

    fn decode(r: &mut dyn BufRead) -> std::io::Result<ListedName> {
        let key: Key = read_array(r)?;
        let [kind] = read_array(r)?;
        let n = u32::from_le_bytes(read_array(r)?) as usize;
        let mut name = vec![0u8; n];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).map_err(std::io::Error::other)?;
        Ok(ListedName { key, name, kind })
    }
}

/// What the walk at the end found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// The listed names no entry names, in key order.
    pub unnamed: Vec<ListedName>,
    /// The names claimed by more than one entry.
    pub twice: HashSet<Key>,
}

/// Walk the chain's names beside the listing's (`None`: step 8 does not
/// look at the listing), both sorted by key.
pub fn walk(names: Names, listed: Option<Merge<ListedName>>) -> Result<Walked> {
    let mut out = Walked::default();
    let mut listed = listed.into_iter().flatten();
    let mut next_listed = listed.next().transpose()?;
    // The key being walked, and how many entries claimed it.
    let mut at: Option<(Key, u32)> = None;
    for m in names.sorted {
        let m = m?;
        match &mut at {
            Some((k, n)) if *k == m.key => *n += u32::from(m.claimed),
            _ => at = Some((m.key, u32::from(m.claimed))),
        }
        if let Some((k, 2)) = at
            && m.claimed
        {
            out.twice.insert(k);
        }
        while let Some(l) = next_listed.take_if(|l| l.key <= m.key) {
            if l.key < m.key {
                out.unnamed.push(l);
            }
            next_listed = listed.next().transpose()?;
        }
    }
    while let Some(l) = next_listed {
        out.unnamed.push(l);
        next_listed = listed.next().transpose()?;
    }
    Ok(out)
}

/// The listing's names, sorted by key outside memory past `budget`.
pub fn listing(budget: usize) -> Sorter<ListedName> {
    Sorter::new(budget, "the names of the files in the directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(budget: usize, chain: &[(&str, bool)], dir: &[&str]) -> (Vec<String>, Vec<String>) {
        let salt = Salt([7; 16]);
        let mut set = NameSet::new(salt, &HashSet::new(), budget);
        for (name, claims) in chain {
            assert!(set.name(set.key(name), *claims), "no claim is a second one without `twice`");
        }
        let mut l = listing(budget);
        for name in dir {
            l.push(ListedName::new(&salt, name.to_string(), Ok(0))).unwrap();
        }
        let w = walk(set.finish().unwrap(), Some(l.finish().unwrap())).unwrap();
        let mut unnamed: Vec<String> = w.unnamed.into_iter().map(|l| l.name).collect();
        unnamed.sort();
        let mut twice: Vec<String> =
            chain.iter().filter(|(n, _)| w.twice.contains(&salt.key(n))).map(|(n, _)| n.to_string()).collect();
        twice.sort();
        twice.dedup();
        (unnamed, twice)
    }

    #[test]
    fn the_walk_finds_unnamed_files_and_names_claimed_twice_held_or_spilled() {
        let chain: Vec<(String, bool)> = (0..300).map(|i| (format!("f{i}"), i % 5 != 0)).collect();
        let mut chain: Vec<(&str, bool)> = chain.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        // Named again, far apart (in different runs): claimed twice, named
        // twice but claimed once, and claimed three times.
        chain.extend([("f1", true), ("f5", true), ("f2", true), ("f2", true), ("f3", false)]);
        let dir: Vec<String> = (0..300).map(|i| format!("f{i}")).chain(["extra".into(), "f1.bak".into()]).collect();
        let mut dir: Vec<&str> = dir.iter().map(String::as_str).collect();
        // In the chain, not in the directory: step 6 reports it, not step 8.
        dir.retain(|n| *n != "f7");
        for budget in [0, 16, 100, 1 << 20] {
            let (unnamed, twice) = walked(budget, &chain, &dir);
            assert_eq!(unnamed, ["extra", "f1.bak"], "budget {budget}");
            assert_eq!(twice, ["f1", "f2"], "budget {budget}");
        }
    }

    #[test]
    fn an_empty_chain_names_nothing_and_an_empty_directory_lacks_nothing() {
        assert_eq!(walked(0, &[], &["a", "b"]), (vec!["a".into(), "b".into()], vec![]));
        assert_eq!(walked(0, &[("a", true)], &[]), (vec![], vec![]));
    }

    #[test]
    fn known_names_claimed_twice_are_decided_in_stream_order() {
        let salt = Salt([1; 16]);
        let twice: HashSet<Key> = [salt.key("a")].into();
        let mut set = NameSet::new(salt, &twice, 0);
        let a = set.key("a");
        assert!(set.name(a, false), "a mention without a claim");
        assert!(set.name(a, true), "the first claim");
        assert!(!set.name(a, true), "the second claim");
        assert!(set.name(set.key("b"), true));
    }

    #[test]
    fn a_listed_kind_comes_back() {
        let salt = Salt([0; 16]);
        for kind in [Ok(3), Err(NotRegular::Fifo), Err(NotRegular::TooLarge { cap: 1, len: 2 })] {
            let l = ListedName::new(&salt, "x".into(), kind);
            let mut b = Vec::new();
            l.encode(&mut b);
            let back = ListedName::decode(&mut &b[..]).unwrap();
            assert_eq!(back, l);
            assert_eq!(back.kind().is_ok(), kind.is_ok());
        }
        assert_eq!(
            ListedName::new(&salt, "x".into(), Err(NotRegular::TooLarge { cap: 1, len: 2 })).kind(),
            Err(NotRegular::TooLarge { cap: 0, len: 0 })
        );
    }
}
