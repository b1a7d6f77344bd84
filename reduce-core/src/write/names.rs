//! The interned strings of one pickle (attribute names, module names), each
//! written once and then fetched from the memo.
//!
//! A record's state repeats its field names in every pickle, and a pickle
//! of one record meets each for the first time, so the first sight is the
//! common case: each name is hashed once (SipHash with this process's
//! random keys, since a module name can come from a pickle that was read),
//! and its text goes into one arena, not an allocation of its own.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

#[derive(Default)]
pub(crate) struct Names {
    keys: RandomState,
    /// The hash of a name, to the last entry with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<Hashed>>,
    entries: Vec<Entry>,
    arena: String,
}

struct Entry {
    start: usize,
    len: usize,
    memo: u32,
    /// The entry before this one with the same hash, or `NONE`.
    next: u32,
}

const NONE: u32 = u32::MAX;

/// Where a name is, or where it goes.
pub(crate) enum Seen {
    Before(u32),
    New(u64),
}

impl Names {
    /// The memo index of `name`, or its hash for [`Names::insert`].
    #[inline]
    pub(crate) fn find(&self, name: &str) -> Seen {
        self.lookup(name, self.keys.hash_one(name))
    }

    fn lookup(&self, name: &str, hash: u64) -> Seen {
        let mut at = self.heads.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let e = &self.entries[at as usize];
            if &self.arena[e.start..e.start + e.len] == name {
                return Seen::Before(e.memo);
            }
            at = e.next;
        }
        Seen::New(hash)
    }

    /// Records `name`, of hash `hash` (from [`Names::find`]), at `memo`.
    pub(crate) fn insert(&mut self, name: &str, hash: u64, memo: u32) {
        let Ok(at) = u32::try_from(self.entries.len()) else {
            // More names than memo entries: never reached, as the memo
            // stops first; forget the name rather than wrap.
            return;
        };
        if self.entries.is_empty() {
            // Room for a record's field names without growing on the way.
            self.heads.reserve(64);
            self.entries.reserve(64);
            self.arena.reserve(1024);
        }
        let next = self.heads.insert(hash, at).unwrap_or(NONE);
        self.entries.push(Entry {
            start: self.arena.len(),
            len: name.len(),
            memo,
            next,
        });
        self.arena.push_str(name);
    }
}

/// A hasher for keys that are already SipHash values.
#[derive(Default)]
pub(crate) struct Hashed(u64);

impl Hasher for Hashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys reach this hasher; fold anything else anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
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
        assert!(matches!(names.find(""), Seen::New(_)));
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
    }
}
