//! The interned strings of one pickle (attribute names, module names), each
//! written once and then fetched from the memo, and the globals it has
//! written (one function or class is one object: its second use is a memo
//! reference).
//!
//! A record's state repeats its field names in every pickle, and a pickle
//! of one record meets each for the first time, so the first sight is the
//! common case: each name is hashed once, eight bytes per step, and its
//! text goes into one arena, not an allocation of its own. A derived
//! type's field names, and serde's field and variant names, are numbered
//! once per process ([`FieldNames`], [`static_name`]) and kept by number
//! ([`StaticMemo`]).
//!
//! A module name can come from a pickle that was read, so the hash is
//! seeded with this process's random keys: which names collide cannot be
//! worked out from the bytes of a pickle. SipHash, which the standard maps
//! use for that, took a fifth of the time of writing one 33-field record.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Interned strings and globals, in one table: one allocation of each
/// kind per pickle, not two.
#[derive(Default)]
pub(crate) struct Names {
    /// An open-addressing table: 0 for an empty slot, else an index into
    /// `entries` plus one. Its length is a power of two, at least twice
    /// the number of entries (none until the first name).
    slots: Vec<u32>,
    entries: Vec<Entry>,
    arena: String,
    /// One bit per string held, by six bits of its hash: a string whose
    /// bit is clear is not here, without a probe.
    strs: u64,
}

struct Entry {
    hash: u64,
    memo: u32,
    text: Text,
}

/// Where an entry's text is in the arena: a string, or a global's module
/// and name one after the other.
#[derive(Clone, Copy)]
enum Text {
    Str { start: u32, len: u32 },
    Global { start: u32, module: u32, name: u32 },
}

/// What is looked up: an interned string, or a global by module and name.
#[derive(Clone, Copy)]
pub(crate) enum Key<'k> {
    Str(&'k str),
    Global(&'k str, &'k str),
}

impl Key<'_> {
    #[inline]
    fn hash(self) -> u64 {
        match self {
            Key::Str(s) => hash(s.as_bytes()),
            // Mixed apart from a string's hash, so `Global("a", "b")` and
            // `Str("ab")` seldom share a chain (they are told apart by
            // kind anyway).
            Key::Global(m, n) => {
                (hash(m.as_bytes()) ^ 0x5bd1_e995)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(29)
                    ^ hash(n.as_bytes())
            }
        }
    }
}

/// Where a name is, or where it goes.
pub(crate) enum Seen {
    Before(u32),
    New(u64),
}

impl Names {
    /// The memo index of `key`, or its hash for [`Names::insert`].
    #[inline]
    pub(crate) fn find(&self, key: Key<'_>) -> Seen {
        self.find_hashed(key, key.hash())
    }

    /// [`Names::find`] with the hash given ([`FieldNames`] keeps them).
    #[inline]
    pub(crate) fn find_hashed(&self, key: Key<'_>, hash: u64) -> Seen {
        match self.entry(key, hash) {
            Some(at) => Seen::Before(self.entries[at].memo),
            None => Seen::New(hash),
        }
    }

    /// Whether the string of hash `hash` may be here: false when it
    /// surely is not.
    #[inline]
    pub(crate) fn may_hold_str(&self, hash: u64) -> bool {
        self.strs & str_bit(hash) != 0
    }

    /// Whether entry `e` holds `key`.
    #[inline]
    fn holds(&self, e: &Entry, key: Key<'_>) -> bool {
        let arena = |start: u32, len: u32| {
            let start = start as usize;
            &self.arena.as_bytes()[start..start + len as usize]
        };
        match (e.text, key) {
            (Text::Str { start, len }, Key::Str(s)) => arena(start, len) == s.as_bytes(),
            (
                Text::Global {
                    start,
                    module,
                    name,
                },
                Key::Global(m, n),
            ) => {
                arena(start, module) == m.as_bytes() && arena(start + module, name) == n.as_bytes()
            }
            _ => false,
        }
    }

    /// The index in `entries` of `key`, of hash `hash`.
    #[inline]
    fn entry(&self, key: Key<'_>, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let at = self.slots[i].checked_sub(1)? as usize;
            let e = &self.entries[at];
            if e.hash == hash && self.holds(e, key) {
                return Some(at);
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `key` at `memo`, in place of the memo index it had.
    pub(crate) fn set(&mut self, key: Key<'_>, memo: u32) {
        let hash = key.hash();
        match self.entry(key, hash) {
            Some(at) => self.entries[at].memo = memo,
            None => self.insert(key, hash, memo),
        }
    }

    /// Records `key`, of hash `hash` (from [`Names::find`]), at `memo`,
    /// its text copied into the arena.
    pub(crate) fn insert(&mut self, key: Key<'_>, hash: u64, memo: u32) {
        let start = self.arena.len();
        let text = match key {
            Key::Str(s) => {
                let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(s.len())) else {
                    return self.forget();
                };
                Text::Str { start, len }
            }
            Key::Global(m, n) => {
                let (Ok(start), Ok(module), Ok(name)) = (
                    u32::try_from(start),
                    u32::try_from(m.len()),
                    u32::try_from(n.len()),
                ) else {
                    return self.forget();
                };
                Text::Global {
                    start,
                    module,
                    name,
                }
            }
        };
        if start + key_len(key) > u32::MAX as usize {
            return self.forget();
        }
        if self.arena.capacity() == 0 {
            self.arena.reserve(256);
        }
        match key {
            Key::Str(s) => self.arena.push_str(s),
            Key::Global(m, n) => {
                self.arena.push_str(m);
                self.arena.push_str(n);
            }
        }
        self.push(hash, memo, text);
    }

    /// A text too long for the arena's offsets (4 GiB of names): never
    /// reached in practice; the name is forgotten, so it is written again
    /// rather than found at a wrong place.
    #[cold]
    fn forget(&mut self) {}

    #[inline]
    fn push(&mut self, hash: u64, memo: u32, text: Text) {
        if matches!(text, Text::Str { .. }) {
            self.strs |= str_bit(hash);
        }
        let Ok(at) = u32::try_from(self.entries.len() + 1) else {
            // More names than memo entries: never reached, as the memo
            // stops first; forget the name rather than wrap.
            return;
        };
        if 2 * (self.entries.len() + 1) > self.slots.len() {
            self.grow();
        }
        self.place(hash, at);
        self.entries.push(Entry { hash, memo, text });
    }

    /// Puts entry `at` (plus one) in the first free slot from its hash's.
    #[inline]
    fn place(&mut self, hash: u64, at: u32) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = at;
    }

    /// Doubles the table and places every entry again. The first table
    /// is small (a pickle of derived types holds a module name or two
    /// here), and every first allocation is below 1 KiB, which glibc
    /// serves from its per-thread cache: a larger one cost several
    /// hundred instructions to allocate and free.
    #[cold]
    fn grow(&mut self) {
        self.resize((self.slots.len() * 2).max(32));
    }

    /// A table of `len` slots (a power of two, more than twice the
    /// entries), with every entry placed again.
    fn resize(&mut self, len: usize) {
        // Not `vec![0; len]`, whose `calloc` skips that cache.
        #[allow(clippy::slow_vector_initialization)]
        let mut slots = Vec::with_capacity(len);
        slots.resize(len, 0);
        self.slots = slots;
        if self.entries.is_empty() {
            self.entries.reserve(16);
        }
        for i in 0..self.entries.len() {
            self.place(self.entries[i].hash, i as u32 + 1);
        }
    }
}

/// A string's bit in [`Names::strs`], from hash bits the table index does
/// not use.
#[inline]
fn str_bit(hash: u64) -> u64 {
    1 << (hash >> 58)
}

fn key_len(key: Key<'_>) -> usize {
    match key {
        Key::Str(s) => s.len(),
        Key::Global(m, n) => m.len() + n.len(),
    }
}

/// The field names of one derived type, prepared once per process: each
/// hashed, and numbered in [`static_id`]'s table, so that a pickle keeps
/// their memo entries in an array by number (see [`StaticMemo`]) rather
/// than looking them up by text. `#[derive(Reduce)]` keeps one in a
/// `static` per type.
#[doc(hidden)]
pub struct FieldNames {
    names: &'static [&'static str],
    table: OnceLock<Table>,
}

struct Table {
    names: Box<[StaticName]>,
    /// One more than the highest id among them.
    ids: usize,
}

/// A field name of a derived type: its text, its hash, and its number,
/// the same for every type with a field of that name.
#[derive(Clone, Copy)]
pub(crate) struct StaticName {
    pub(crate) text: &'static str,
    pub(crate) hash: u64,
    pub(crate) id: u32,
    /// The name as protocol 4 and later write it the first time
    /// (`SHORT_BINUNICODE`, its length, its bytes, `MEMOIZE`), in the
    /// first `short.1` bytes, or a length of 0 when it is too long.
    pub(crate) short: ([u8; SHORT_NAME], u8),
}

impl StaticName {
    /// `text`, numbered in `ids` (the [`registry`]) by its text.
    fn new(text: &'static str, ids: &mut HashMap<&'static str, u32>) -> StaticName {
        let next = ids.len() as u32;
        let id = *ids.entry(text).or_insert(next);
        StaticName {
            text,
            hash: hash(text.as_bytes()),
            id,
            short: short_name(text),
        }
    }
}

/// The room for a field name written from [`StaticName::short`].
pub(crate) const SHORT_NAME: usize = 32;

impl FieldNames {
    /// The names, in the order the derive numbers them.
    pub const fn new(names: &'static [&'static str]) -> FieldNames {
        FieldNames {
            names,
            table: OnceLock::new(),
        }
    }

    #[inline]
    fn prepared(&self) -> &Table {
        self.table.get_or_init(|| {
            let mut ids = registry();
            let names: Box<[StaticName]> = self
                .names
                .iter()
                .map(|&text| StaticName::new(text, &mut ids))
                .collect();
            let ids = names.iter().map(|n| n.id as usize + 1).max().unwrap_or(0);
            Table { names, ids }
        })
    }

    /// Each name, in order.
    #[inline]
    pub(crate) fn table(&self) -> &[StaticName] {
        &self.prepared().names
    }

    /// One more than the highest id of these names: the room a
    /// [`StaticMemo`] needs for them.
    #[inline]
    pub(crate) fn ids(&self) -> usize {
        self.prepared().ids
    }
}

/// `SHORT_BINUNICODE`, the length, the text and `MEMOIZE`, if they fit
/// [`SHORT_NAME`] bytes.
fn short_name(text: &str) -> ([u8; SHORT_NAME], u8) {
    let mut op = [0; SHORT_NAME];
    let n = text.len();
    if n + 3 > SHORT_NAME {
        return (op, 0);
    }
    op[0] = crate::base::op::SHORT_BINUNICODE;
    op[1] = n as u8;
    op[2..2 + n].copy_from_slice(text.as_bytes());
    op[2 + n] = crate::base::op::MEMOIZE;
    (op, (n + 3) as u8)
}

/// A serde field or variant name as a [`StaticName`], numbered with the
/// derived types' field names: made once per process for each `&'static
/// str` (by address and length, which no other text can have while the
/// program runs), then found by address in a table every thread reads
/// without a lock, and without hashing the text.
///
/// Each distinct `&'static str` costs one [`StaticName`] (about 64 bytes)
/// for the life of the process, as the string itself lives that long.
#[cfg(feature = "serde")]
#[inline]
pub(crate) fn static_name(text: &'static str) -> &'static StaticName {
    let mut i = by_address::slot(text);
    // Open addressing, with no removal: a name is in the run of taken
    // slots from its own, or not yet here.
    while let Some(name) = by_address::SLOTS[i].get() {
        // Address and length: the same `&'static str`.
        if std::ptr::eq(name.text, text) {
            return name;
        }
        i = (i + 1) % by_address::SLOTS.len();
    }
    by_address::add(text)
}

/// The table behind [`static_name`].
#[cfg(feature = "serde")]
mod by_address {
    use super::{registry, HashMap, Mutex, OnceLock, StaticName};

    /// 2048 slots, at most half of them taken: a program with more distinct
    /// serde names than that finds the rest in [`add`]'s map, under a lock.
    pub(super) static SLOTS: [OnceLock<&'static StaticName>; 2048] =
        [const { OnceLock::new() }; 2048];

    #[inline]
    pub(super) fn slot(text: &str) -> usize {
        // The names of one type sit a few bytes apart: a multiplication
        // spreads the low bits of the address, and the high bits of the
        // product index the table.
        let key = text.as_ptr() as u64 ^ (text.len() as u64).rotate_left(40);
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % SLOTS.len()
    }

    /// A name not in the table: the process's, made if no call has made
    /// it, and placed in the table while there is room. Slots are only
    /// set under the lock, so a free slot found under it stays free.
    #[cold]
    pub(super) fn add(text: &'static str) -> &'static StaticName {
        struct Made {
            names: HashMap<(usize, usize), &'static StaticName>,
            placed: usize,
        }
        static MADE: OnceLock<Mutex<Made>> = OnceLock::new();
        let mut made = MADE
            .get_or_init(|| {
                Mutex::new(Made {
                    names: HashMap::new(),
                    placed: 0,
                })
            })
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (text.as_ptr() as usize, text.len());
        if let Some(&name) = made.names.get(&key) {
            return name;
        }
        let name: &'static StaticName = Box::leak(Box::new(StaticName::new(text, &mut registry())));
        made.names.insert(key, name);
        if 2 * (made.placed + 1) <= SLOTS.len() {
            let mut i = slot(text);
            while SLOTS[i].get().is_some() {
                i = (i + 1) % SLOTS.len();
            }
            if SLOTS[i].set(name).is_ok() {
                made.placed += 1;
            }
        }
        name
    }
}

/// The process's numbering of derived types' field names, by text.
fn registry() -> MutexGuard<'static, HashMap<&'static str, u32>> {
    static IDS: OnceLock<Mutex<HashMap<&'static str, u32>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The number of a derived type's field name spelled `text`, if any type
/// has one.
pub(crate) fn static_id(text: &str) -> Option<u32> {
    registry().get(text).copied()
}

/// The memo entries of the derived types' field names one pickle has
/// written, by [`StaticName::id`]: an array lookup, where [`Names`] hashes
/// and compares text.
///
/// A name is one interned object however it is written, so the two tables
/// agree: a field name seen first is looked up in [`Names`] too (a module
/// name or an interned value may have written its text before), and a
/// text written through [`Names`] once the pickle has field names looks
/// its number up ([`static_id`]) to find them.
#[derive(Default)]
pub(crate) struct StaticMemo {
    /// Memo index plus one, or 0 for a name not written yet.
    memo: Vec<u32>,
}

impl StaticMemo {
    /// Makes room for ids below `ids`.
    #[inline]
    pub(crate) fn reserve(&mut self, ids: usize) {
        if self.memo.len() < ids {
            self.memo.resize(ids, 0);
        }
    }

    /// Whether any field name is recorded.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.memo.is_empty()
    }

    /// The memo index of name `id`, if written.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<u32> {
        match self.memo.get(id as usize) {
            Some(&m) if m != 0 => Some(m - 1),
            _ => None,
        }
    }

    /// The slot of name `id`, if there is room for it: the memo index
    /// plus one goes there.
    #[inline]
    pub(crate) fn slot(&mut self, id: u32) -> Option<&mut u32> {
        self.memo.get_mut(id as usize)
    }

    /// Records name `id` at memo index `memo` (below `u32::MAX`).
    #[inline]
    pub(crate) fn set(&mut self, id: u32, memo: u32) {
        let at = id as usize;
        if at >= self.memo.len() {
            // serde's names come one at a time, with no count ahead:
            // room for the next few at once.
            self.reserve((at + 1).max(2 * self.memo.len()).max(32));
        }
        self.memo[at] = memo + 1;
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
            match names.find(Key::Str(t)) {
                Seen::New(h) => names.insert(Key::Str(t), h, i as u32 * 2),
                Seen::Before(_) => panic!("{t} found before it was added"),
            }
        }
        for (i, t) in texts.iter().enumerate() {
            // A different allocation of the same text is the same name.
            let copy = t.clone();
            assert!(matches!(names.find(Key::Str(&copy)), Seen::Before(m) if m == i as u32 * 2));
        }
        assert!(matches!(names.find(Key::Str("field_500")), Seen::New(_)));
        // A name set again points at its new memo entry.
        names.set(Key::Str("field_7"), 9999);
        names.set(Key::Str("field_500"), 10_000);
        assert!(matches!(
            names.find(Key::Str("field_7")),
            Seen::Before(9999)
        ));
        assert!(matches!(
            names.find(Key::Str("field_500")),
            Seen::Before(10_000)
        ));
        assert_eq!(names.entries.len(), 501);
        assert!(matches!(names.find(Key::Str("")), Seen::New(_)));
    }

    #[test]
    fn strings_globals_and_static_names_are_kept_apart() {
        let mut names = Names::default();
        static FIELDS: FieldNames = FieldNames::new(&["ab", "x"]);
        let StaticName {
            text: ab, hash: h, ..
        } = FIELDS.table()[0];
        names.insert(Key::Str(ab), h, 1);
        let g = Key::Global("a", "b");
        names.set(g, 2);
        names.set(Key::Global("a\nb", ""), 3);
        names.set(Key::Global("", "a\nb"), 4);
        // The static name is found by its text, from any allocation.
        let copy = String::from("ab");
        assert!(matches!(names.find(Key::Str(&copy)), Seen::Before(1)));
        assert!(matches!(
            names.find_hashed(Key::Str(ab), h),
            Seen::Before(1)
        ));
        assert!(matches!(names.find(g), Seen::Before(2)));
        assert!(matches!(
            names.find(Key::Global("a\nb", "")),
            Seen::Before(3)
        ));
        assert!(matches!(
            names.find(Key::Global("", "a\nb")),
            Seen::Before(4)
        ));
        // A global is no string, and the split between module and name counts.
        assert!(matches!(names.find(Key::Str("a\nb")), Seen::New(_)));
        assert!(matches!(names.find(Key::Global("ab", "")), Seen::New(_)));
        assert!(matches!(names.find(Key::Global("a", "\nb")), Seen::New(_)));
        assert!(matches!(names.find(Key::Str("x")), Seen::New(h) if h == FIELDS.table()[1].hash));
        // A global written again points at its latest memo entry.
        names.set(g, 5);
        assert!(matches!(names.find(g), Seen::Before(5)));
        assert_eq!(names.entries.len(), 4);
    }

    #[test]
    fn field_names_are_numbered_by_text_across_types() {
        static A: FieldNames = FieldNames::new(&["id", "name", "a_only"]);
        static B: FieldNames = FieldNames::new(&["b_only", "name", "id"]);
        let (a, b) = (A.table(), B.table());
        assert_eq!(a[0].id, b[2].id);
        assert_eq!(a[1].id, b[1].id);
        assert_ne!(a[2].id, b[0].id);
        assert_eq!(static_id("name"), Some(a[1].id));
        assert_eq!(static_id(&String::from("b_only")), Some(b[0].id));
        assert!(A.ids() > a.iter().map(|n| n.id as usize).max().unwrap());
        let mut memo = StaticMemo::default();
        assert!(memo.is_empty() && memo.get(a[0].id).is_none());
        memo.set(a[0].id, 0);
        memo.set(b[0].id, 7);
        assert_eq!(memo.get(b[2].id), Some(0));
        assert_eq!(memo.get(b[0].id), Some(7));
        assert_eq!(memo.get(a[1].id), None);
        assert_eq!(memo.get(u32::MAX), None);
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
        names.insert(Key::Str("a"), 7, 1);
        names.insert(Key::Str("b"), 7, 2);
        let find = |names: &Names, s: &str| match names.find_hashed(Key::Str(s), 7) {
            Seen::Before(m) => Some(m),
            Seen::New(_) => None,
        };
        assert_eq!(find(&names, "a"), Some(1));
        assert_eq!(find(&names, "b"), Some(2));
        assert_eq!(find(&names, "c"), None);

        // A long run of one hash, across the table's growth.
        for i in 0..300u32 {
            names.insert(Key::Str(&format!("n{i}")), 7, 100 + i);
        }
        for i in 0..300u32 {
            assert_eq!(find(&names, &format!("n{i}")), Some(100 + i));
        }
        assert_eq!(find(&names, "a"), Some(1));
        assert_eq!(find(&names, "n300"), None);
        assert!(names.slots.len() >= 2 * names.entries.len());
    }
}
