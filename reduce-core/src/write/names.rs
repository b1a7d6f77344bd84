//! The interned strings of one pickle (attribute names, module names), each
//! written once and then fetched from the memo.
//!
//! A record's state repeats its field names in every pickle, and a pickle
//! of one record meets each for the first time, so the first sight is the
//! common case: each name is hashed once, eight bytes per step, and its
//! text goes into one arena, not an allocation of its own.
//!
//! A module name can come from a pickle that was read, so the hash is
//! seeded with this process's random keys: which names collide cannot be
//! worked out from the bytes of a pickle. SipHash, which the standard maps
//! use for that, took a fifth of the time of writing one 33-field record.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;

#[derive(Default)]
pub(crate) struct Names {
    /// An open-addressing table: 0 for an empty slot, else an index into
    /// `entries` plus one. Its length is a power of two, at least twice
    /// the number of entries (none until the first name).
    slots: Vec<u32>,
    entries: Vec<Entry>,
    arena: String,
}

struct Entry {
    hash: u64,
    start: usize,
    len: usize,
    memo: u32,
}

/// Where a name is, or where it goes.
pub(crate) enum Seen {
    Before(u32),
    New(u64),
}

impl Names {
    /// The memo index of `name`, or its hash for [`Names::insert`].
    #[inline]
    pub(crate) fn find(&self, name: &str) -> Seen {
        self.lookup(name, hash(name.as_bytes()))
    }

    fn lookup(&self, name: &str, hash: u64) -> Seen {
        match self.entry(name, hash) {
            Some(at) => Seen::Before(self.entries[at].memo),
            None => Seen::New(hash),
        }
    }

    /// The index in `entries` of `name`, of hash `hash`.
    fn entry(&self, name: &str, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let at = self.slots[i].checked_sub(1)? as usize;
            let e = &self.entries[at];
            if e.hash == hash && &self.arena[e.start..e.start + e.len] == name {
                return Some(at);
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `name` at `memo`, in place of the memo index it had.
    pub(crate) fn set(&mut self, name: &str, memo: u32) {
        let hash = hash(name.as_bytes());
        match self.entry(name, hash) {
            Some(at) => self.entries[at].memo = memo,
            None => self.insert(name, hash, memo),
        }
    }

    /// Records `name`, of hash `hash` (from [`Names::find`]), at `memo`.
    pub(crate) fn insert(&mut self, name: &str, hash: u64, memo: u32) {
        let Ok(at) = u32::try_from(self.entries.len() + 1) else {
            // More names than memo entries: never reached, as the memo
            // stops first; forget the name rather than wrap.
            return;
        };
        if 2 * (self.entries.len() + 1) > self.slots.len() {
            self.grow();
        }
        self.place(hash, at);
        self.entries.push(Entry {
            hash,
            start: self.arena.len(),
            len: name.len(),
            memo,
        });
        self.arena.push_str(name);
    }

    /// Puts entry `at` (plus one) in the first free slot from its hash's.
    fn place(&mut self, hash: u64, at: u32) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = at;
    }

    /// Doubles the table (the first one has room for a record's field
    /// names) and places every entry again.
    #[cold]
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(128);
        self.slots = vec![0; len];
        if self.entries.is_empty() {
            self.entries.reserve(64);
            self.arena.reserve(1024);
        }
        for i in 0..self.entries.len() {
            self.place(self.entries[i].hash, i as u32 + 1);
        }
    }
}

/// This process's key for [`hash`], drawn once from the standard library's
/// random source.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(0x5EED_u64) | 1)
}

/// A keyed hash of `bytes`: each 8-byte word (the last one zero-padded,
/// the length mixed in first, so padding cannot collide) folded into the
/// state by an xor, a rotation and a multiplication whose carries tie
/// every later word's effect to the key.
#[inline]
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let key = seed();
    let mut h = (key ^ bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h.rotate_left(23) ^ w ^ key).wrapping_mul(K);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        h = (h.rotate_left(23) ^ tail_word(tail) ^ key).wrapping_mul(K);
    }
    // The table indexes by the low bits: fold the high ones down.
    h ^ (h >> 32)
}

/// The last 1 to 7 bytes as one word, without a call to `memcpy`: two
/// overlapping loads, or three bytes. Given the length (which [`hash`]
/// mixes in first) the word tells every byte.
#[inline]
fn tail_word(t: &[u8]) -> u64 {
    let n = t.len();
    if n >= 4 {
        let lo = u32::from_le_bytes(t[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(t[n - 4..].try_into().expect("4 bytes"));
        u64::from(lo) | u64::from(hi) << 32
    } else {
        u64::from(t[0]) | u64::from(t[n / 2]) << 8 | u64::from(t[n - 1]) << 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_by_their_text() {
        let mut names = Names::default();
        let texts: Vec<String> = (0..500).map(|i| format!("field_{i}")).collect();
        for (i, t) in texts.iter().enumerate() {
            match names.find(t) {
                Seen::New(h) => names.insert(t, h, i as u32 * 2),
                Seen::Before(_) => panic!("{t} found before it was added"),
            }
        }
        for (i, t) in texts.iter().enumerate() {
            // A different allocation of the same text is the same name.
            let copy = t.clone();
            assert!(matches!(names.find(&copy), Seen::Before(m) if m == i as u32 * 2));
        }
        assert!(matches!(names.find("field_500"), Seen::New(_)));
        // A name set again points at its new memo entry.
        names.set("field_7", 9999);
        names.set("field_500", 10_000);
        assert!(matches!(names.find("field_7"), Seen::Before(9999)));
        assert!(matches!(names.find("field_500"), Seen::Before(10_000)));
        assert_eq!(names.entries.len(), 501);
        assert!(matches!(names.find(""), Seen::New(_)));
    }

    #[test]
    fn every_short_name_hashes_apart() {
        // Every text of up to 2 bytes over a small alphabet, and each
        // length's tail spelled differently: no two share a hash.
        let alphabet = b"ab_\0";
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<Vec<u8>> = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |&c| [t.clone(), vec![c]].concat()))
                .collect();
            texts.extend(longer);
        }
        texts.sort();
        texts.dedup();
        for len in 4..=17 {
            for c in alphabet {
                let mut t = vec![b'x'; len];
                t[len / 2] = *c;
                texts.push(t);
            }
        }
        let hashes: std::collections::HashSet<u64> = texts.iter().map(|t| hash(t)).collect();
        assert_eq!(hashes.len(), texts.len());
    }

    #[test]
    fn names_with_one_hash_are_told_apart() {
        // Force a collision: two entries under one hash, found by text.
        let mut names = Names::default();
        names.insert("a", 7, 1);
        names.insert("b", 7, 2);
        let find = |names: &Names, s: &str| match names.lookup(s, 7) {
            Seen::Before(m) => Some(m),
            Seen::New(_) => None,
        };
        assert_eq!(find(&names, "a"), Some(1));
        assert_eq!(find(&names, "b"), Some(2));
        assert_eq!(find(&names, "c"), None);

        // A long run of one hash, across the table's growth.
        for i in 0..300u32 {
            names.insert(&format!("n{i}"), 7, 100 + i);
        }
        for i in 0..300u32 {
            assert_eq!(find(&names, &format!("n{i}")), Some(100 + i));
        }
        assert_eq!(find(&names, "a"), Some(1));
        assert_eq!(find(&names, "n300"), None);
        assert!(names.slots.len() >= 2 * names.entries.len());
    }
}
