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
    BATCHSIZE, EMPTY_TUPLE, MARK, POP, POP_MARK, REDUCE, TUPLE, TUPLE1, TUPLE2, TUPLE3,
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

/// [`Batches`] fed one item at a time, for a writer told the count first
/// and given the items after (serde's `SerializeSeq`): writes each chunk's
/// `MARK` and closer as the items come. Items beyond the count announced
/// each take the one-item opcode, and a chunk cut short by fewer items is
/// closed at the end, so any count gives a valid pickle.
pub(crate) struct Batcher {
    plan: Batches,
    chunk: Option<Batch>,
    /// Items still to come in `chunk` (0 when there is none): one
    /// decrement per item until the chunk's last.
    left: usize,
    one: u8,
    many: u8,
}

impl Batcher {
    #[inline]
    pub(crate) fn new(kind: Batching, proto: u8, n: usize, one: u8, many: u8) -> Batcher {
        Batcher {
            plan: Batches::new(kind, proto, n),
            chunk: None,
            left: 0,
            one,
            many,
        }
    }

    /// Opens the first chunk.
    #[inline]
    pub(crate) fn start(&mut self, out: &mut impl Sink) {
        self.next_chunk(out);
    }

    #[inline]
    fn next_chunk(&mut self, out: &mut impl Sink) {
        self.chunk = self.plan.next();
        if let Some(c) = self.chunk {
            if c.many {
                out.write(&[MARK]);
                if c.len == 0 {
                    // CPython's empty last batch of a dict.
                    out.write(&[self.many]);
                    self.chunk = self.plan.next();
                }
            }
        }
        self.left = self.chunk.map_or(0, |c| c.len);
    }

    /// After one item (one key and value, for a dict).
    #[inline]
    pub(crate) fn item(&mut self, out: &mut impl Sink) {
        if self.left > 1 {
            self.left -= 1;
        } else {
            self.chunk_end(out);
        }
    }

    /// After a chunk's last item, or an item beyond the count announced.
    #[inline(never)]
    fn chunk_end(&mut self, out: &mut impl Sink) {
        match self.chunk {
            None => out.write(&[self.one]),
            Some(c) => {
                out.write(&[if c.many { self.many } else { self.one }]);
                self.next_chunk(out);
            }
        }
    }

    /// After the last item: closes a chunk left open by fewer items than
    /// announced.
    #[inline]
    pub(crate) fn end(&mut self, out: &mut impl Sink) {
        if let Some(c) = self.chunk.take() {
            if c.many {
                out.write(&[self.many]);
            }
        }
    }
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
