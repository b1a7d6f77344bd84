//! CPython's rules for writing containers, in one place for both writers:
//! the typed [`Saver`](crate::Saver) and the `Value` encoder ask these
//! functions, so a change in CPython's behaviour is made here once.
//!
//! | rule | CPython (`Modules/_pickle.c`) | here |
//! |---|---|---|
//! | how a tuple opens and closes, by size and protocol | `save_tuple` | [`tuple_open`], [`tuple_close`] |
//! | a tuple that reached itself through its items | `save_tuple`'s memo check | [`tuple_unwind`] |
//! | items in batches of [`BATCHSIZE`] | `batch_list_exact`, `batch_dict_exact`, `save_set`, `batch_list`, `batch_dict` | [`Batches`] |
//! | `set` and `frozenset` before protocol 4 | `save_set`, `save_frozenset` | [`set_constructor`] |
//! | a reduced object's state given to its `state_setter` | `save_reduce` | [`STATE_SETTER_CALL`] |

use crate::base::op::{
    APPEND, APPENDS, BATCHSIZE, EMPTY_TUPLE, MARK, POP, POP_MARK, REDUCE, SETITEM, SETITEMS, TUPLE,
    TUPLE1, TUPLE2, TUPLE3,
};

/// What follows `setter`, the object and its state when a reduced object has
/// a `state_setter` (protocol 5's sixth element): `setter(obj, state)` is
/// called and its result dropped, whatever the protocol.
pub(crate) const STATE_SETTER_CALL: [u8; 3] = [TUPLE2, REDUCE, POP];

/// Whether a tuple of `n` items is closed by `TUPLE1`-`TUPLE3` (no `MARK`).
#[inline]
fn small_tuple(proto: u8, n: usize) -> bool {
    (1..=3).contains(&n) && proto >= 2
}

/// What is written before a tuple's `n` items. The empty tuple is complete
/// after it (`EMPTY_TUPLE`, or `MARK TUPLE` at protocol 0); otherwise the
/// items and then [`tuple_close`] follow.
#[inline]
pub(crate) fn tuple_open(proto: u8, n: usize) -> &'static [u8] {
    match n {
        0 if proto >= 1 => &[EMPTY_TUPLE],
        0 => &[MARK, TUPLE],
        _ if small_tuple(proto, n) => &[],
        _ => &[MARK],
    }
}

/// The opcode that closes a tuple of `n >= 1` items.
#[inline]
pub(crate) fn tuple_close(proto: u8, n: usize) -> u8 {
    if small_tuple(proto, n) {
        [TUPLE1, TUPLE2, TUPLE3][n - 1]
    } else {
        TUPLE
    }
}

/// What drops a tuple's `n >= 1` items from the stack when writing them
/// memoized the tuple itself (it reached itself through a reduced object):
/// CPython then fetches the memoized copy instead. The opcode, and how many
/// times it is written.
pub(crate) fn tuple_unwind(proto: u8, n: usize) -> (u8, usize) {
    if small_tuple(proto, n) {
        (POP, n)
    } else if proto >= 1 {
        (POP_MARK, 1)
    } else {
        (POP, n + 1)
    }
}

/// The global called with a list of the items to build a `set` (or a
/// `frozenset`) before protocol 4, which has no opcode for it; `None` from
/// protocol 4 on (`EMPTY_SET` and `ADDITEMS`, `FROZENSET`).
pub(crate) fn set_constructor(proto: u8, frozen: bool) -> Option<(&'static str, &'static str)> {
    match (proto < 4, frozen) {
        (false, _) => None,
        (true, false) => Some(("builtins", "set")),
        (true, true) => Some(("builtins", "frozenset")),
    }
}

/// Which of CPython's batching loops a run of items follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batching {
    /// A `list` (`batch_list_exact`): one item alone takes the one-item
    /// opcode; otherwise chunks of [`BATCHSIZE`], none empty.
    List,
    /// A `dict` (`batch_dict_exact`): one item alone takes the one-item
    /// opcode; otherwise chunks, repeated while the last one was full, so a
    /// multiple of [`BATCHSIZE`] ends with an empty chunk.
    Dict,
    /// A `set` at protocol 4 and later (`save_set`): chunks, repeated while
    /// the last one was full; there is no one-item opcode.
    Set,
    /// A reduced object's `listitems` or `dictitems`, an iterator to
    /// CPython (`batch_list`, `batch_dict`): chunks, where a last chunk of
    /// one item takes the one-item opcode.
    Iter,
    /// One opcode's items, written back as they were read (an inert
    /// [`Step`](crate::Step)): one item takes the one-item opcode; none, or
    /// more than one, go in a single chunk whatever their number.
    Whole,
}

/// One chunk of a run of items: `len` items, after a `MARK` or not, then
/// the many-items opcode (`APPENDS`, `SETITEMS`, `ADDITEMS`) or the
/// one-item opcode (`APPEND`, `SETITEM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) len: usize,
    /// Whether a `MARK` goes before the items, and the many-items opcode
    /// after them (else the one-item opcode).
    pub(crate) many: bool,
}

/// The chunks in which `n` items are written: at protocol 0 one item at a
/// time with the one-item opcode, otherwise as the [`Batching`] says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batches {
    kind: Batching,
    proto: u8,
    left: usize,
    started: bool,
    done: bool,
}

impl Batches {
    pub(crate) fn new(kind: Batching, proto: u8, n: usize) -> Batches {
        Batches {
            kind,
            proto,
            left: n,
            started: false,
            done: false,
        }
    }

    fn take(&mut self, n: usize, many: bool) -> Batch {
        self.left -= n;
        Batch { len: n, many }
    }
}

impl Iterator for Batches {
    type Item = Batch;

    #[inline]
    fn next(&mut self) -> Option<Batch> {
        if self.done {
            return None;
        }
        let first = !self.started;
        self.started = true;
        if self.proto == 0 {
            return (self.left > 0).then(|| self.take(1, false));
        }
        let chunk = self.left.min(BATCHSIZE);
        match self.kind {
            Batching::Whole if !first => None,
            Batching::Whole if self.left == 1 => Some(self.take(1, false)),
            Batching::Whole => Some(self.take(self.left, true)),
            Batching::List | Batching::Iter if self.left == 0 => None,
            Batching::Dict | Batching::Set if first && self.left == 0 => None,
            Batching::List | Batching::Dict if first && self.left == 1 => {
                self.done = true;
                Some(self.take(1, false))
            }
            Batching::Iter if self.left == 1 => Some(self.take(1, false)),
            Batching::List => Some(self.take(chunk, true)),
            Batching::Dict | Batching::Set | Batching::Iter => {
                self.done = chunk < BATCHSIZE;
                Some(self.take(chunk, true))
            }
        }
    }
}

/// Where a [`Batcher`] writes its opcodes (the output layer).
pub(crate) trait Sink {
    fn write(&mut self, data: &[u8]);
}

/// [`Batches`] of a list or dict fed one item at a time, for a writer told
/// the count first and given the items after (serde's `SerializeSeq`):
/// writes each chunk's `MARK` and closer as the items come. Items beyond
/// the count announced each take the one-item opcode, and a chunk cut short
/// by fewer items is closed at the end, so any count gives a valid pickle.
///
/// Two words, passed and returned in registers: a writer keeps it in the
/// container it returns for every list or dict, and a larger one was
/// copied there through memory, each copy read back before its stores had
/// landed.
#[derive(Clone, Copy)]
pub(crate) struct Batcher {
    /// Items still to come in the open chunk; 0 when none is open.
    left: usize,
    /// The items announced after the open chunk, shifted left by 8, and
    /// the flags below.
    state: u64,
}

/// The open chunk has a `MARK` and ends with the many-items opcode.
const MANY: u64 = 1;
/// A dict (`SETITEM`, `SETITEMS`), else a list (`APPEND`, `APPENDS`).
const DICT: u64 = 2;
/// Protocol 0: one item at a time.
const PROTO0: u64 = 4;
/// The last chunk was full: a dict follows it with a chunk, empty if need be.
const FULL: u64 = 8;
/// Counts at or above this are taken as this (nobody gives that many).
const MOST: usize = 1 << 55;

impl Batcher {
    /// A batcher for `n` items of a list or dict (`kind`), its first chunk
    /// opened on `out`.
    #[inline(always)]
    pub(crate) fn started(kind: Batching, proto: u8, n: usize, out: &mut impl Sink) -> Batcher {
        debug_assert!(matches!(kind, Batching::List | Batching::Dict));
        let dict = if kind == Batching::Dict { DICT } else { 0 };
        // The common case, without the general rules: 2 to BATCHSIZE - 1
        // items are one chunk, `MARK` to the closer.
        if proto >= 1 && (2..BATCHSIZE).contains(&n) {
            out.write(&[MARK]);
            return Batcher {
                left: n,
                state: dict | MANY,
            };
        }
        let proto0 = if proto == 0 { PROTO0 } else { 0 };
        Batcher::open(n.min(MOST), dict | proto0, true, out)
    }

    /// A batcher that writes nothing: for items that go elsewhere.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))] // only serde's gathered items
    #[inline(always)]
    pub(crate) fn idle() -> Batcher {
        Batcher { left: 0, state: 0 }
    }

    /// The next chunk of `rest` items, the first one or not, as
    /// [`Batches`] plans it for a list or dict.
    #[inline(never)]
    fn open(rest: usize, flags: u64, first: bool, out: &mut impl Sink) -> Batcher {
        let flags = flags & (DICT | PROTO0 | FULL);
        let at = |left: usize, rest: usize, flags: u64| Batcher {
            left,
            state: (rest as u64) << 8 | flags,
        };
        if flags & PROTO0 != 0 {
            return at(rest.min(1), rest.saturating_sub(1), flags);
        }
        if first && rest == 1 {
            // One item alone: the one-item opcode, no `MARK`.
            return at(1, 0, flags);
        }
        if rest == 0 {
            if !first && flags & (DICT | FULL) == DICT | FULL {
                // CPython's empty last batch of a dict.
                out.write(&[MARK, SETITEMS]);
            }
            return at(0, 0, flags & !FULL);
        }
        let chunk = rest.min(BATCHSIZE);
        out.write(&[MARK]);
        let full = if chunk == BATCHSIZE { FULL } else { 0 };
        at(chunk, rest - chunk, (flags & !FULL) | MANY | full)
    }

    #[inline(always)]
    fn closers(self) -> (u8, u8) {
        if self.state & DICT != 0 {
            (SETITEM, SETITEMS)
        } else {
            (APPEND, APPENDS)
        }
    }

    /// After one item (one key and value, for a dict).
    #[inline(always)]
    pub(crate) fn item(&mut self, out: &mut impl Sink) {
        if self.left > 1 {
            self.left -= 1;
        } else {
            *self = self.chunk_end(out);
        }
    }

    /// After a chunk's last item, or an item beyond the count announced.
    #[inline(never)]
    fn chunk_end(self, out: &mut impl Sink) -> Batcher {
        let (one, many) = self.closers();
        if self.left == 0 {
            out.write(&[one]);
            return self;
        }
        out.write(&[if self.state & MANY != 0 { many } else { one }]);
        Batcher::open((self.state >> 8) as usize, self.state, false, out)
    }

    /// Whether the items are one chunk from the `MARK` written at the start
    /// to its closer: what [`Batcher::started`] makes of 2 to
    /// `BATCHSIZE - 1` items at protocol 1 and later.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))] // only serde's containers
    #[inline(always)]
    pub(crate) fn one_chunk(self) -> bool {
        self.state >> 8 == 0 && self.state & (MANY | FULL) == MANY
    }

    /// Closes the one chunk of a batcher whose items were not counted
    /// ([`Batcher::one_chunk`]).
    #[cfg_attr(not(feature = "serde"), allow(dead_code))] // only serde's containers
    #[inline(always)]
    pub(crate) fn close_one_chunk(self, out: &mut impl Sink) {
        out.write(&[self.closers().1]);
    }

    /// After the last item: closes a chunk left open by fewer items than
    /// announced.
    #[inline(always)]
    pub(crate) fn end(self, out: &mut impl Sink) {
        if self.left > 0 && self.state & MANY != 0 {
            out.write(&[self.closers().1]);
        }
    }
}

/// Whether CPython writes the dotted global `module.name` as
/// `getattr(module.parent, "last")` at every protocol: a class's method
/// pickled as a value (its reduction is `getattr`), not a nested class or
/// function (which protocol 4 names with one `STACK_GLOBAL`). The ones the
/// crate writes: `ZoneInfo._unpickle`, in every `datetime` with a zone.
pub(crate) fn method_by_getattr(module: &str, name: &str) -> bool {
    matches!((module, name), ("zoneinfo", "ZoneInfo._unpickle"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: Batching, proto: u8, n: usize) -> Vec<(usize, bool)> {
        Batches::new(kind, proto, n)
            .map(|b| (b.len, b.many))
            .collect()
    }

    #[test]
    fn batches_follow_cpythons_loops() {
        const B: usize = BATCHSIZE;
        for kind in [
            Batching::List,
            Batching::Dict,
            Batching::Set,
            Batching::Iter,
            Batching::Whole,
        ] {
            assert_eq!(plan(kind, 0, 3), [(1, false); 3], "{kind:?}");
            assert_eq!(plan(kind, 0, 0), [], "{kind:?}");
        }
        for kind in [
            Batching::List,
            Batching::Dict,
            Batching::Set,
            Batching::Iter,
        ] {
            assert_eq!(plan(kind, 2, 0), [], "{kind:?}");
        }
        assert_eq!(plan(Batching::Whole, 2, 0), [(0, true)]);
        assert_eq!(plan(Batching::List, 2, 1), [(1, false)]);
        assert_eq!(plan(Batching::List, 2, B + 1), [(B, true), (1, true)]);
        assert_eq!(plan(Batching::List, 2, 2 * B), [(B, true), (B, true)]);
        assert_eq!(plan(Batching::Dict, 2, 1), [(1, false)]);
        assert_eq!(plan(Batching::Dict, 2, B), [(B, true), (0, true)]);
        assert_eq!(plan(Batching::Dict, 2, B + 1), [(B, true), (1, true)]);
        assert_eq!(plan(Batching::Set, 4, 1), [(1, true)]);
        assert_eq!(plan(Batching::Set, 4, B), [(B, true), (0, true)]);
        assert_eq!(plan(Batching::Iter, 2, 1), [(1, false)]);
        assert_eq!(plan(Batching::Iter, 2, B + 1), [(B, true), (1, false)]);
        assert_eq!(plan(Batching::Iter, 2, B), [(B, true)]);
        assert_eq!(plan(Batching::Whole, 2, 3 * B), [(3 * B, true)]);
    }

    impl Sink for Vec<u8> {
        fn write(&mut self, data: &[u8]) {
            self.extend_from_slice(data);
        }
    }

    /// What `n` items written one by one through a [`Batcher`] make, each
    /// item an `x`.
    fn fed(kind: Batching, proto: u8, announced: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = Batcher::started(kind, proto, announced, &mut out);
        for _ in 0..n {
            out.push(b'x');
            b.item(&mut out);
        }
        b.end(&mut out);
        out
    }

    #[test]
    fn a_batcher_writes_the_plans_chunks() {
        for kind in [Batching::List, Batching::Dict] {
            for proto in [0, 1, 2, 5] {
                for n in (0..12)
                    .chain(BATCHSIZE - 2..BATCHSIZE + 3)
                    .chain([2 * BATCHSIZE])
                {
                    let mut want = Vec::new();
                    let (one, many) = match kind {
                        Batching::Dict => (SETITEM, SETITEMS),
                        _ => (APPEND, APPENDS),
                    };
                    for c in Batches::new(kind, proto, n) {
                        if c.many {
                            want.push(MARK);
                        }
                        want.extend(std::iter::repeat_n(b'x', c.len));
                        want.push(if c.many { many } else { one });
                    }
                    assert_eq!(
                        fed(kind, proto, n, n),
                        want,
                        "{kind:?} proto {proto}, {n} items"
                    );
                }
            }
        }
        // Fewer items than announced close the open chunk; more take the
        // one-item opcode each.
        assert_eq!(fed(Batching::List, 2, 5, 2), [MARK, b'x', b'x', APPENDS]);
        assert_eq!(
            fed(Batching::List, 2, 2, 3),
            [MARK, b'x', b'x', APPENDS, b'x', APPEND]
        );
        assert_eq!(fed(Batching::Dict, 2, 0, 1), [b'x', SETITEM]);
        assert_eq!(fed(Batching::Dict, 2, 1, 0), []);
        assert_eq!(
            fed(Batching::Dict, 0, 2, 3),
            [b'x', SETITEM, b'x', SETITEM, b'x', SETITEM]
        );
        let mut cut = vec![MARK];
        cut.extend([b'x'; BATCHSIZE]);
        cut.extend([APPENDS, MARK, APPENDS]);
        assert_eq!(fed(Batching::List, 2, BATCHSIZE + 5, BATCHSIZE), cut);
    }

    #[test]
    fn tuples_open_and_close_by_size_and_protocol() {
        assert_eq!(tuple_open(0, 0), [MARK, TUPLE]);
        assert_eq!(tuple_open(1, 0), [EMPTY_TUPLE]);
        assert_eq!(tuple_open(2, 3), []);
        assert_eq!(tuple_open(1, 3), [MARK]);
        assert_eq!(tuple_open(2, 4), [MARK]);
        assert_eq!(tuple_close(2, 2), TUPLE2);
        assert_eq!(tuple_close(1, 2), TUPLE);
        assert_eq!(tuple_unwind(2, 2), (POP, 2));
        assert_eq!(tuple_unwind(2, 4), (POP_MARK, 1));
        assert_eq!(tuple_unwind(0, 2), (POP, 3));
        assert_eq!(set_constructor(3, true), Some(("builtins", "frozenset")));
        assert_eq!(set_constructor(4, false), None);
    }
}
