//! The files the chain names, for steps 6 (named once) and 8 (nothing
//! unnamed), in 16 bytes a name instead of the names themselves.
//!
//! This is the one thing verify keeps per entry for the whole chain: step 8
//! cannot know that a file in the directory is unnamed before it has seen
//! every entry, and the listing is not in chain order. A name is kept as a
//! salted fingerprint: 15 bytes of `sha256(salt ‖ name)` with a salt drawn
//! from the OS for each run, so whoever wrote the evidence cannot aim two
//! names at one fingerprint; two names of a chain of a million collide by
//! chance with probability below 2⁻⁷⁹.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type Key = [u8; 15];

/// Whether the name was named once already by an entry in good standing (step 6).
type Claimed = bool;

pub struct NameSet {
    salt: [u8; 16],
    names: HashMap<Key, Claimed, BuildHasherDefault<KeyHasher>>,
}

impl NameSet {
    pub fn new() -> NameSet {
        let mut salt = [0u8; 16];
        // Without the OS's randomness, a fixed salt still names every file
        // apart; it only lets a forger who knows it aim a collision.
        let _ = getrandom::getrandom(&mut salt);
        NameSet { salt, names: HashMap::default() }
    }

    fn key(&self, name: &str) -> Key {
        let d = Sha256::new().chain_update(self.salt).chain_update(name.as_bytes()).finalize();
        let mut k = [0u8; 15];
        k.copy_from_slice(&d[..15]);
        k
    }

    /// Step 8: an entry names `name`. Returns its key, for [`NameSet::claim`].
    pub fn mention(&mut self, name: &str) -> Key {
        let key = self.key(name);
        self.names.entry(key).or_insert(false);
        key
    }

    /// Step 6: an entry in good standing names the name of `key` (from
    /// [`NameSet::mention`]), whose file checked out. False when one already
    /// did (the name is named twice).
    pub fn claim(&mut self, key: Key) -> bool {
        let c = self.names.entry(key).or_insert(false);
        !std::mem::replace(c, true)
    }

    /// Step 8: whether any entry names `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(&self.key(name))
    }
}

/// The keys are uniformly random already: their first eight bytes are the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}
