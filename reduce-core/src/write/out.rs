//! The bottom layer of the writer, shared by the [`Value`](crate::Value)
//! engine and the typed writer: the output buffer and its frames, the memo
//! counter, and every object CPython writes in a straight line (atoms,
//! strings, bytes, globals).

use std::collections::HashMap;
use std::io;

use num_bigint::BigInt;

use super::names::{static_id, Key, Names, Seen, StaticMemo, StaticName, SHORT_NAME};
use super::rules;
use crate::base::error::{Error, ErrorKind, Result};
use crate::base::op::*;
use crate::text::PyStr;
use crate::text::{self, compat};

const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER_SIZE: usize = 9;
/// The memo's size limit: CPython's memo indexes are `Py_ssize_t`, but a
/// `LONG_BINPUT` holds 32 bits.
const MEMO_MAX: u32 = u32::MAX - 1;

/// Refuses a protocol this crate cannot write (above 5).
#[inline]
pub(crate) fn check_protocol(proto: u8) -> Result<()> {
    if proto > crate::base::op::HIGHEST_PROTOCOL {
        return Err(Error::new(ErrorKind::UnsupportedProtocol(proto)));
    }
    Ok(())
}

/// The extension-code table of a write when none are registered.
#[inline]
pub(crate) fn no_extensions() -> Option<&'static HashMap<(String, String), u32>> {
    None
}

pub(crate) fn unpicklable(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unpicklable(msg.into()))
}

pub(crate) struct Out<'o> {
    buf: Vec<u8>,
    sink: Option<&'o mut dyn io::Write>,
    pub(crate) proto: u8,
    fix_imports: bool,
    /// Extension codes by global (`copyreg.add_extension`), if any.
    extensions: Option<&'o HashMap<(String, String), u32>>,
    framing: bool,
    frame_start: Option<usize>,
    memo_len: u32,
    /// Interned strings (module names, attribute names): one object each.
    /// And globals: one function or class is one object, its second use
    /// is a memo reference.
    names: Names,
    /// Derived types' field names, by number: interned strings too.
    statics: StaticMemo,
    /// `_codecs.encode` always receives the one interned `"latin1"`.
    latin1_memo: Option<u32>,
    /// The memo indexes of the objects CPython keeps one of, once written
    /// (see [`Singles`]).
    singles: Singles,
    /// The length of `buf` from which [`Out::begin`] may have work to
    /// do (commit a frame, hand bytes to the sink): one comparison per
    /// `save` otherwise. Always 0 at protocols 0 and 1, whose ints and
    /// bools (and at 0, every object) are written otherwise: the hot paths
    /// of ints, floats and bools, past this comparison, need not test the
    /// protocol.
    check_at: usize,
}

/// The memo indexes of the objects CPython keeps one of, once written in
/// this pickle: `""` and each one-character Latin-1 `str` among the values
/// (keys from [`Singles::STRS`]: 0 for the empty one, 1 + the code point),
/// the same among the Latin-1 texts of one-byte `bytes` before protocol 3
/// (from [`Singles::ENCODED`]: `_codecs.encode('x', 'latin1')`, kept apart
/// from the values, as a `'b'` a Python program wrote as a literal is
/// another object than `str(b'b', 'latin1')`, and numpy's pickles of
/// object arrays hold both), and `b""` and each one-byte `bytes` (from
/// [`Singles::BYTES`]). A pickle holds few: sixteen are kept in line (a
/// table of all would cost a small value's write its allocation:
/// pyperformance's record has eleven), the rest in a table made at the
/// seventeenth.
#[derive(Default)]
struct Singles {
    /// One bit per key written: most singles are written once, and find
    /// without a search that they are new.
    seen: [u64; Singles::ALL.div_ceil(64)],
    n: usize,
    keys: [u16; 16],
    memo: [u32; 16],
    table: Option<Box<[u32; Singles::ALL]>>,
}

impl Singles {
    const STRS: u16 = 0;
    const ENCODED: u16 = 257;
    const BYTES: u16 = 514;
    const ALL: usize = 771;

    /// Whether `key` was written.
    #[inline(always)]
    fn seen(&self, key: u16) -> bool {
        let k = usize::from(key);
        self.seen[k / 64] & (1 << (k % 64)) != 0
    }

    #[inline]
    fn get(&self, key: u16) -> Option<u32> {
        if !self.seen(key) {
            return None;
        }
        if let Some(t) = &self.table {
            let idx = t[usize::from(key)];
            return (idx != u32::MAX).then_some(idx);
        }
        let n = self.n;
        self.keys[..n]
            .iter()
            .position(|&k| k == key)
            .map(|i| self.memo[i])
    }

    /// Records `key`, which [`Singles::get`] did not find.
    #[inline(always)]
    fn insert(&mut self, key: u16, idx: u32) {
        let k = usize::from(key);
        self.seen[k / 64] |= 1 << (k % 64);
        let n = self.n;
        if n < self.keys.len() {
            self.keys[n] = key;
            self.memo[n] = idx;
            self.n = n + 1;
        } else {
            self.insert_more(key, idx);
        }
    }

    #[cold]
    #[inline(never)]
    fn insert_more(&mut self, key: u16, idx: u32) {
        if let Some(t) = &mut self.table {
            t[usize::from(key)] = idx;
        } else {
            let mut t = Box::new([u32::MAX; Singles::ALL]);
            for (&k, &m) in self.keys.iter().zip(&self.memo) {
                t[usize::from(k)] = m;
            }
            t[usize::from(key)] = idx;
            self.table = Some(t);
        }
    }
}

impl rules::Sink for Out<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) {
        Out::write(self, data);
    }
}

impl<'o> Out<'o> {
    /// An output at protocol `proto`, which [`check_protocol`] has
    /// accepted. (Infallible, so the output is built where it lives, not
    /// moved out of a `Result`.)
    #[inline]
    pub(crate) fn new(
        proto: u8,
        fix_imports: bool,
        extensions: Option<&'o HashMap<(String, String), u32>>,
        sink: Option<&'o mut dyn io::Write>,
    ) -> Self {
        debug_assert!(proto <= crate::base::op::HIGHEST_PROTOCOL);
        Out {
            // A small pickle (one record is about 700 bytes) fits without
            // growing. Below 1 KiB, as glibc's per-thread cache takes
            // blocks of up to 1032 bytes with their header: a 1024-byte
            // buffer cost 250 instructions to allocate and free, a
            // 1000-byte one 40.
            buf: Vec::with_capacity(1000),
            sink,
            proto,
            fix_imports,
            extensions,
            framing: false,
            frame_start: None,
            memo_len: 0,
            names: Names::default(),
            statics: StaticMemo::default(),
            latin1_memo: None,
            singles: Singles::default(),
            check_at: 0,
        }
    }

    /// An output for a separate pickle at protocol `proto`, with this one's
    /// settings (`fix_imports`, extension codes), written to `sink`.
    pub(crate) fn fresh<'p>(&self, proto: u8, sink: &'p mut dyn io::Write) -> Result<Out<'p>>
    where
        'o: 'p,
    {
        check_protocol(proto)?;
        Ok(Out::new(
            proto,
            self.fix_imports,
            self.extensions,
            Some(sink),
        ))
    }

    /// `PROTO`, and frames from protocol 4 on. `PROTO` itself is outside any
    /// frame, as CPython writes it.
    #[inline]
    pub(crate) fn start(&mut self) {
        if self.proto >= 2 {
            self.write(&[PROTO, self.proto]);
            self.framing = self.proto >= 4;
            if self.framing {
                self.open_frame();
            }
        }
    }

    /// `STOP`, the last frame, and everything handed to the writer.
    #[inline]
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.write(&[STOP]);
        self.commit_frame();
        self.framing = false;
        self.flush()
    }

    // ---- bytes and frames --------------------------------------------------

    /// Bytes into the open frame. While framing, a frame is always open:
    /// the next one opens as soon as one is committed (and a frame that
    /// ends up shorter than `FRAME_SIZE_MIN` loses its header, as CPython
    /// drops it), so a write is one copy.
    #[inline]
    pub(crate) fn write(&mut self, data: &[u8]) {
        debug_assert!(!self.framing || self.frame_start.is_some());
        self.buf.extend_from_slice(data);
    }

    /// One byte, as [`Out::write`].
    #[inline]
    fn push(&mut self, byte: u8) {
        debug_assert!(!self.framing || self.frame_start.is_some());
        self.buf.push(byte);
    }

    #[inline]
    fn open_frame(&mut self) {
        let start = self.buf.len();
        self.frame_start = Some(start);
        self.buf.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
        self.check_at = start + FRAME_HEADER_SIZE + FRAME_SIZE_TARGET;
    }

    /// The buffer, taken: the whole pickle when there is no sink. (Taken
    /// through `&mut`, as moving the whole output into a call copied it.)
    #[inline]
    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// A header and a payload; a payload of 64 KiB or more goes outside any
    /// frame, so that a reader can take it without copying it into a frame
    /// buffer first.
    #[inline]
    fn write_payload(&mut self, header: &[u8], data: &[u8]) -> Result<()> {
        if data.len() >= FRAME_SIZE_TARGET {
            return self.write_large(header, data);
        }
        self.buf.reserve(header.len() + data.len());
        self.buf.extend_from_slice(header);
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// A payload of 64 KiB or more: outside any frame, and straight to the
    /// writer when there is one (what was buffered before it goes first).
    #[cold]
    fn write_large(&mut self, header: &[u8], data: &[u8]) -> Result<()> {
        self.commit_frame();
        if self.sink.is_some() {
            self.flush()?;
            if let Some(sink) = self.sink.as_mut() {
                sink.write_all(header)?;
                sink.write_all(data)?;
            }
        } else {
            // One copy into the buffer, not a doubling per step, with room
            // for what usually follows (a memo put, a frame header, STOP),
            // so that the end of the pickle does not copy the payload again.
            self.buf.reserve(header.len() + data.len() + 64);
            self.buf.extend_from_slice(header);
            self.buf.extend_from_slice(data);
        }
        if self.framing {
            self.open_frame();
        }
        Ok(())
    }

    #[inline]
    fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else {
            return;
        };
        let len = self.buf.len() - start - FRAME_HEADER_SIZE;
        if len >= FRAME_SIZE_MIN {
            self.buf[start] = FRAME;
            self.buf[start + 1..start + FRAME_HEADER_SIZE]
                .copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            // Too small to be worth a frame: CPython drops the header.
            self.buf.drain(start..start + FRAME_HEADER_SIZE);
        }
    }

    /// The start of an object's `save`: CPython ends a frame of 64 KiB or
    /// more here, before the object's first byte, so that the opcodes
    /// that close the objects before it (`APPENDS`, `TUPLE2`, `SETITEMS`,
    /// `STOP`, ...) stay in the frame they close. Finished bytes go to the
    /// writer. One comparison, most of the time.
    #[inline(always)]
    pub(crate) fn begin(&mut self) -> Result<()> {
        if self.buf.len() < self.check_at {
            return Ok(());
        }
        self.boundary_cold()
    }

    #[inline(never)]
    fn boundary_work(&mut self) -> Result<()> {
        self.check_boundary()?;
        self.check_at = match self.frame_start {
            Some(start) => start + FRAME_HEADER_SIZE + FRAME_SIZE_TARGET,
            // The next write opens a frame, and says where to look.
            None if self.framing => usize::MAX,
            None if self.proto < 2 => 0,
            None if self.sink.is_some() => self.buf.len().max(FRAME_SIZE_TARGET),
            None => usize::MAX,
        };
        Ok(())
    }

    fn check_boundary(&mut self) -> Result<()> {
        if let Some(start) = self.frame_start {
            if self.buf.len() - start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET {
                self.commit_frame();
                self.flush()?;
                self.open_frame();
            }
        } else if !self.framing && self.buf.len() >= FRAME_SIZE_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.frame_start.is_some() {
            return Ok(());
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    // ---- memo --------------------------------------------------------------

    /// Memoizes the object on top of the stack; returns its memo index.
    #[inline]
    pub(crate) fn memo_put(&mut self) -> Result<u32> {
        let idx = self.memo_len;
        if self.proto >= 4 && idx < MEMO_MAX {
            self.memo_len += 1;
            self.push(MEMOIZE);
            return Ok(idx);
        }
        self.memo_put_old()
    }

    /// `memo_put` before protocol 4 (`BINPUT`, `LONG_BINPUT`, `PUT`), and
    /// the memo's limit.
    #[inline(never)]
    fn memo_put_old(&mut self) -> Result<u32> {
        let idx = self.memo_len;
        if idx == MEMO_MAX {
            return Err(unpicklable("more than 2**32 - 2 memoized objects"));
        }
        self.memo_len += 1;
        if self.proto >= 1 {
            match u8::try_from(idx) {
                Ok(i) => self.write(&[BINPUT, i]),
                Err(_) => {
                    let b = idx.to_le_bytes();
                    self.write(&[LONG_BINPUT, b[0], b[1], b[2], b[3]])
                }
            }
        } else {
            self.write(format!("p{idx}\n").as_bytes());
        }
        Ok(idx)
    }

    /// A memo reference, as a whole `save`.
    #[inline]
    pub(crate) fn get(&mut self, idx: u32) -> Result<()> {
        self.begin()?;
        self.get_within(idx);
        Ok(())
    }

    /// A memo reference inside an object's `save`, which is no `save` of
    /// its own: the copy of a tuple or a reduction that reached itself
    /// through its items, dropped for the one memoized inside.
    #[inline]
    pub(crate) fn get_within(&mut self, idx: u32) {
        if self.proto >= 1 {
            match u8::try_from(idx) {
                Ok(i) => self.write(&[BINGET, i]),
                Err(_) => {
                    let b = idx.to_le_bytes();
                    self.write(&[LONG_BINGET, b[0], b[1], b[2], b[3]])
                }
            }
        } else {
            self.get_text(idx);
        }
    }

    #[cold]
    fn get_text(&mut self, idx: u32) {
        self.write(format!("g{idx}\n").as_bytes());
    }

    // ---- atoms ---------------------------------------------------------------

    #[inline]
    pub(crate) fn none(&mut self) -> Result<()> {
        self.begin()?;
        self.push(NONE);
        Ok(())
    }

    #[inline]
    pub(crate) fn bool(&mut self, b: bool) -> Result<()> {
        if self.buf.len() >= self.check_at {
            return self.bool_framed(b);
        }
        // Never before protocol 2, where `check_at` is 0.
        debug_assert!(self.proto >= 2);
        self.push(NEWFALSE - u8::from(b));
        Ok(())
    }

    /// [`Out::bool`] where a frame may end first, or before protocol 2.
    #[cold]
    #[inline(never)]
    fn bool_framed(&mut self, b: bool) -> Result<()> {
        self.boundary_work()?;
        if self.proto < 2 {
            return self.bool_old(b);
        }
        self.push(NEWFALSE - u8::from(b));
        Ok(())
    }

    /// [`Out::bool`] before protocol 2.
    #[cold]
    #[inline(never)]
    fn bool_old(&mut self, b: bool) -> Result<()> {
        self.write(if b { b"I01\n" } else { b"I00\n" });
        Ok(())
    }

    /// An `int` that fits an `i64`: `BININT1`, `BININT2`, `BININT` or
    /// `LONG1` from protocol 2, without a branch on the value beyond
    /// "below 256": ints of mixed sizes would mispredict one or two
    /// branches each, which cost more than the encoding itself.
    ///
    /// The small int is inline and the rest a call, so that every caller
    /// (serde's `Serialize for i64` among them) stays small enough to be
    /// inlined into its loop.
    #[inline(always)]
    pub(crate) fn int(&mut self, i: i64) -> Result<()> {
        if self.buf.len() >= self.check_at {
            return self.int_framed(i);
        }
        self.int_now(i)
    }

    /// [`Out::int`] past the frame check.
    #[inline(always)]
    fn int_now(&mut self, i: i64) -> Result<()> {
        // Never before protocol 2, where `check_at` is 0.
        debug_assert!(self.proto >= 2);
        if (i as u64) < 0x100 {
            // The most common int by far, one predictable branch:
            // `BININT1` from protocol 1.
            self.buf.extend_from_slice(&[BININT1, i as u8]);
            return Ok(());
        }
        self.int_wide(i)
    }

    /// [`Out::int`] where a frame may end first, or before protocol 2: a
    /// tail call, so that the common case saves no register.
    #[cold]
    #[inline(never)]
    fn int_framed(&mut self, i: i64) -> Result<()> {
        self.boundary_work()?;
        if self.proto < 2 {
            return self.int_old(i);
        }
        self.int_now(i)
    }

    /// [`Out::int`] of any other int (from protocol 2: before it,
    /// `int_framed` writes every int).
    #[inline(never)]
    fn int_wide(&mut self, i: i64) -> Result<()> {
        debug_assert!(self.proto >= 2);
        if self.buf.capacity() - self.buf.len() < INT_ROOM {
            // Out of line and last, so that the common case makes no call
            // and saves no register.
            return self.int_wide_grow(i);
        }
        if (i as u64) < 0x1_0000 {
            // Ints of a kind come in runs (counters, ids): one more
            // branch, seldom taken by ints of mixed sizes.
            let b = (i as u16).to_le_bytes();
            self.buf.extend_from_slice(&[BININT2, b[0], b[1]]);
            return Ok(());
        }
        let (lo, hi, len) = encode_wide(i);
        // Ten bytes from registers, cut to the length.
        let (a, b) = (lo.to_le_bytes(), hi.to_le_bytes());
        self.buf
            .extend_from_slice(&[a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1]]);
        self.buf.truncate(self.buf.len() - 10 + len);
        Ok(())
    }

    /// [`Out::int_wide`] when the buffer has less than [`INT_ROOM`] bytes
    /// spare.
    #[cold]
    #[inline(never)]
    fn int_wide_grow(&mut self, i: i64) -> Result<()> {
        self.buf.reserve(INT_ROOM);
        self.int_wide(i)
    }

    /// `int` at protocols 0 and 1.
    #[cold]
    fn int_old(&mut self, i: i64) -> Result<()> {
        let Ok(v) = i32::try_from(i) else {
            return self.int128(i as i128);
        };
        if self.proto >= 1 {
            if (0..=0xff).contains(&v) {
                self.write(&[BININT1, v as u8]);
            } else if (0..=0xffff).contains(&v) {
                let b = (v as u16).to_le_bytes();
                self.write(&[BININT2, b[0], b[1]]);
            } else {
                let b = v.to_le_bytes();
                self.write(&[BININT, b[0], b[1], b[2], b[3]]);
            }
        } else {
            self.write(format!("I{v}\n").as_bytes());
        }
        Ok(())
    }

    /// An int of up to 128 bits, written without a bignum: the common case
    /// of `LONG1` (Rust's i64 and u64 outside 32 bits).
    pub(crate) fn int128(&mut self, i: i128) -> Result<()> {
        if let Ok(v) = i32::try_from(i) {
            return self.int(v as i64);
        }
        self.begin()?;
        if self.proto >= 2 {
            if let Ok(v) = i64::try_from(i) {
                return self.int(v);
            }
            let (bytes, n) = minimal_le(i);
            self.write(&[LONG1, n as u8]);
            self.write(&bytes[..n]);
        } else {
            self.write(&[LONG]);
            self.write(i.to_string().as_bytes());
            self.write(b"L\n");
        }
        Ok(())
    }

    pub(crate) fn bigint(&mut self, b: &BigInt) -> Result<()> {
        if let Ok(i) = i128::try_from(b) {
            return self.int128(i);
        }
        self.begin()?;
        // Beyond 128 bits, so never zero.
        if self.proto >= 2 {
            // Minimal two's complement, little-endian: what CPython's
            // _PyLong_AsByteArray gives after trimming a redundant sign byte.
            let bytes = b.to_signed_bytes_le();
            match u8::try_from(bytes.len()) {
                Ok(n) => self.write(&[LONG1, n]),
                Err(_) => {
                    let n = u32::try_from(bytes.len())
                        .map_err(|_| unpicklable("int too large to pickle"))?
                        .to_le_bytes();
                    self.write(&[LONG4, n[0], n[1], n[2], n[3]]);
                }
            }
            self.write(&bytes);
        } else {
            let digits = b.to_string();
            // CPython refuses str() of an int above sys.get_int_max_str_digits().
            if digits.trim_start_matches('-').len() > 4300 {
                return Err(unpicklable(
                    "int has more than 4300 digits, which protocols 0 and 1 cannot write (as in CPython)",
                ));
            }
            self.write(&[LONG]);
            self.write(digits.as_bytes());
            self.write(b"L\n");
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn float(&mut self, x: f64) -> Result<()> {
        if self.buf.len() >= self.check_at {
            return self.float_framed(x);
        }
        self.float_now(x)
    }

    /// [`Out::float`] past the frame check.
    #[inline(always)]
    fn float_now(&mut self, x: f64) -> Result<()> {
        // Never before protocol 2 but from `float_framed`.
        debug_assert!(self.proto >= 1);
        if self.buf.capacity() - self.buf.len() >= 9 {
            // struct.pack('>d'): the one big-endian number in a pickle.
            let mut buf = [BINFLOAT; 9];
            buf[1..].copy_from_slice(&x.to_be_bytes());
            self.write(&buf);
            return Ok(());
        }
        // Out of line and last, so that the common case makes no call
        // where it is inlined.
        self.float_grow(x)
    }

    /// [`Out::float`] where a frame may end first, or at protocol 0.
    #[cold]
    #[inline(never)]
    fn float_framed(&mut self, x: f64) -> Result<()> {
        self.boundary_work()?;
        if self.proto == 0 {
            self.float_text(x);
            return Ok(());
        }
        self.float_now(x)
    }

    /// [`Out::float`] when the buffer needs room.
    #[cold]
    #[inline(never)]
    fn float_grow(&mut self, x: f64) -> Result<()> {
        self.buf.reserve(9);
        self.float_now(x)
    }

    #[cold]
    fn float_text(&mut self, x: f64) {
        self.write(&[FLOAT]);
        self.write(text::float_repr(x).as_bytes());
        self.write(b"\n");
    }

    // ---- strings and bytes ---------------------------------------------------

    fn str_data(&mut self, s: &PyStr) -> Result<()> {
        if self.proto == 0 {
            let mut buf = vec![UNICODE];
            text::raw_unicode_escape(s, &mut buf);
            buf.push(b'\n');
            self.write(&buf);
            return Ok(());
        }
        self.str_payload(s.as_bytes())
    }

    /// A `str`'s UTF-8 bytes (surrogates as CPython's `surrogatepass`
    /// gives them), from protocol 1.
    #[inline]
    fn str_payload(&mut self, data: &[u8]) -> Result<()> {
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            // The common case in one straight line: a short string (far
            // below the size that leaves the frame).
            self.buf.reserve(2 + n);
            self.buf.extend_from_slice(&[SHORT_BINUNICODE, n as u8]);
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        self.str_payload_long(data)
    }

    /// [`Out::str_payload`] of a string with a 4- or 8-byte length.
    #[inline(never)]
    fn str_payload_long(&mut self, data: &[u8]) -> Result<()> {
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            self.write_payload(&[SHORT_BINUNICODE, n as u8], data)
        } else if let Ok(n32) = u32::try_from(n) {
            let b = n32.to_le_bytes();
            self.write_payload(&[BINUNICODE, b[0], b[1], b[2], b[3]], data)
        } else if self.proto < 4 {
            Err(unpicklable(
                "serializing a string larger than 4 GiB requires pickle protocol 4 or higher",
            ))
        } else {
            let mut header = [BINUNICODE8; 9];
            header[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_payload(&header, data)
        }
    }

    /// A `str` object, memoized; returns its memo index.
    pub(crate) fn str(&mut self, s: &PyStr) -> Result<u32> {
        self.begin()?;
        self.str_data(s)?;
        self.memo_put()
    }

    /// A `str` from Rust text, memoized: its memo index is then
    /// [`Out::last_memo`]. (No index returned: a `Result<u32>` comes back
    /// through memory, where a `Result<()>` is one register.)
    #[inline(always)]
    pub(crate) fn str_utf8(&mut self, s: &str) -> Result<()> {
        if self.buf.len() >= self.check_at {
            return self.str_utf8_framed(s);
        }
        let data = s.as_bytes();
        let idx = self.memo_len;
        // The common case in one straight line: a short string and its
        // `MEMOIZE`.
        let n = data.len();
        if self.proto >= 4 && idx < MEMO_MAX && n <= SMALL {
            if self.buf.capacity() - self.buf.len() < SMALL + 3 {
                // The calls of the uncommon cases are last, so that the
                // common one saves no register.
                return self.str_utf8_long(s);
            }
            self.memo_len = idx + 1;
            self.short_str_memo(data);
            return Ok(());
        }
        self.str_utf8_long(s)
    }

    /// `SHORT_BINUNICODE`, a string of at most 255 bytes, and its
    /// `MEMOIZE`, written into the buffer's spare room (which the caller
    /// made sure of: the slice of it is checked again here) with one
    /// update of the length, where pushes of each part would test the
    /// room and move the length three times. Below 16 bytes the text is
    /// copied in moves of a fixed size, where a call to `memcpy` would
    /// cost more than the copy.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn short_str_memo(&mut self, data: &[u8]) {
        let n = data.len();
        debug_assert!(n <= 0xff);
        let len = self.buf.len();
        let room = &mut self.buf.spare_capacity_mut()[..n + 3];
        room[0].write(SHORT_BINUNICODE);
        room[1].write(n as u8);
        if n < 16 {
            copy_tiny_into(&mut room[2..], data);
        } else {
            write_uninit(&mut room[2..2 + n], data);
        }
        room[2 + n].write(MEMOIZE);
        // SAFETY: `room` is the `n + 3` bytes of spare capacity right
        // after the first `len` (the slicing above checked that they
        // exist), and every one of them was written just now: the opcode,
        // the length, the `n` bytes of `data` (`copy_tiny_into` and
        // `write_uninit` write all of `room[2..2 + n]`) and
        // `MEMOIZE`. So the first `len + n + 3` bytes are initialized and
        // within the capacity, as `set_len` requires.
        unsafe { self.buf.set_len(len + n + 3) };
    }

    /// [`Out::str_utf8`] for a caller that is itself a call per string
    /// (serde's `serialize_str`): every call in it is a tail call, so it
    /// saves no register, and it is small enough to be inlined into the
    /// loop that calls it. A string of 16 bytes or more, whose copy is a
    /// call to `memcpy`, goes on in [`Out::str_utf8_mid`]. (Records
    /// of short names: 2.28M -> 2.16M instructions a write.)
    #[cfg(feature = "serde")]
    #[inline(always)]
    pub(crate) fn str_utf8_lean(&mut self, s: &str) -> Result<()> {
        if self.buf.len() >= self.check_at {
            // A tail call, as the rest: `begin()?` here saved registers
            // for the call (strings of 16 to 90 bytes: 1.53M -> 1.66M
            // instructions a write of 20,000).
            return self.str_utf8_framed(s);
        }
        let data = s.as_bytes();
        let idx = self.memo_len;
        let n = data.len();
        if self.proto >= 4 && idx < MEMO_MAX && n < 16 {
            if self.buf.capacity() - self.buf.len() < 18 {
                return self.str_utf8_long(s);
            }
            self.memo_len = idx + 1;
            self.short_str_memo(data);
            return Ok(());
        }
        self.str_utf8_mid(s)
    }

    /// [`Out::str_utf8`] where a frame may end first.
    #[cold]
    #[inline(never)]
    fn str_utf8_framed(&mut self, s: &str) -> Result<()> {
        self.boundary_work()?;
        if self.proto < 4 {
            // Below protocol 2 `check_at` stays 0, and below 4 the fast
            // path does not apply.
            return self.str_utf8_long(s);
        }
        self.str_utf8(s)
    }

    /// [`Out::str_utf8_lean`] from 16 bytes on, out of line: its call to
    /// `memcpy` would make the lean path save registers in the loop that
    /// inlines it. (Kept apart, records of short names write in 1.93M
    /// instructions; inlined, 2.05M.)
    #[cfg(feature = "serde")]
    #[inline(never)]
    fn str_utf8_mid(&mut self, s: &str) -> Result<()> {
        let data = s.as_bytes();
        let n = data.len();
        let idx = self.memo_len;
        if self.proto >= 4
            && idx < MEMO_MAX
            && n <= SMALL
            && self.buf.capacity() - self.buf.len() >= SMALL + 3
        {
            self.memo_len = idx + 1;
            self.short_str_memo(data);
            return Ok(());
        }
        self.str_utf8_long(s)
    }

    /// The memo index of the object memoized last.
    #[inline]
    pub(crate) fn last_memo(&self) -> u32 {
        debug_assert!(self.memo_len > 0);
        self.memo_len - 1
    }

    /// [`Out::begin`]'s work, where it is rare.
    #[cold]
    #[inline(never)]
    fn boundary_cold(&mut self) -> Result<()> {
        self.boundary_work()
    }

    /// [`Out::str_utf8`] of a longer string, before protocol 4, or when the
    /// buffer needs more room.
    #[inline(never)]
    fn str_utf8_long(&mut self, s: &str) -> Result<()> {
        if self.proto == 0 {
            return self.str(&PyStr::from(s)).map(|_| ());
        }
        let (n, idx) = (s.len(), self.memo_len);
        if self.proto >= 4 && idx < MEMO_MAX && n <= 0xff {
            self.memo_len = idx + 1;
            self.buf.reserve(n + 3);
            self.buf.extend_from_slice(&[SHORT_BINUNICODE, n as u8]);
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(MEMOIZE);
            return Ok(());
        }
        self.str_payload(s.as_bytes())?;
        self.memo_put().map(|_| ())
    }

    /// Whether `data` (UTF-8) is a `str` CPython keeps one object of: the
    /// empty string and each one-character Latin-1 string. A second such
    /// value in a pickle is a memo reference to the first, whatever made
    /// it (`['a', 'a']`, `[chr(97), 'xa'[1:]]`), which
    /// [`Out::single_str`] writes.
    #[inline(always)]
    pub(crate) fn is_single_str(data: &[u8]) -> bool {
        matches!(data, [] | [0..=0x7f] | [0xc2 | 0xc3, _])
    }

    /// A `str` CPython keeps one object of (see [`Out::is_single_str`]):
    /// written the first time, a memo reference after. Returns its memo
    /// index. (Not an interned name's object: in CPython 3.11 an attribute
    /// named `x` and the value `'x'` are two objects.)
    #[cold]
    #[inline(never)]
    pub(crate) fn single_str(&mut self, s: &str) -> Result<u32> {
        self.shared_char(s, false)
    }

    /// [`Out::single_str`] without its index, for a caller that ends in
    /// it (serde's `serialize_str`, which stays a function of tail calls).
    #[cfg(feature = "serde")]
    #[cold]
    #[inline(never)]
    pub(crate) fn single_str_unit(&mut self, s: &str) -> Result<()> {
        self.shared_char(s, false).map(|_| ())
    }

    /// The key of a single `str` (see [`Out::is_single_str`]) among the
    /// values, or (`encoded`) among `_codecs.encode`'s texts.
    #[inline(always)]
    fn single_key(s: &str, encoded: bool) -> u16 {
        // A Latin-1 character, so below 256: one byte, or two of UTF-8.
        let code = match *s.as_bytes() {
            [] => 0,
            [b] => 1 + u16::from(b),
            [lead, b, ..] => 1 + (u16::from(lead & 0x1f) << 6 | u16::from(b & 0x3f)),
        };
        let base = if encoded {
            Singles::ENCODED
        } else {
            Singles::STRS
        };
        base + code
    }

    /// [`Out::single_str`] among the values, or (`encoded`) among
    /// `_codecs.encode`'s texts.
    #[inline(always)]
    fn shared_char(&mut self, s: &str, encoded: bool) -> Result<u32> {
        self.begin()?;
        let key = Out::single_key(s, encoded);
        if let Some(idx) = self.singles.get(key) {
            self.get(idx)?;
            return Ok(idx);
        }
        self.str_utf8(s)?;
        let idx = self.last_memo();
        self.singles.insert(key, idx);
        Ok(idx)
    }

    /// A `bytes` value: [`Out::bytes`], but CPython keeps one object of
    /// `b""` and of each one-byte `bytes`, so a second is a memo reference
    /// to the first. (Not the `bytes` inside a `bytearray`'s reduction,
    /// which CPython makes anew each time.)
    #[inline]
    pub(crate) fn bytes_value(&mut self, data: &[u8]) -> Result<u32> {
        self.begin()?;
        if data.len() > 1 {
            return self.bytes(data, false);
        }
        self.single_bytes_value(data)
    }

    #[cold]
    #[inline(never)]
    fn single_bytes_value(&mut self, data: &[u8]) -> Result<u32> {
        let key = Singles::BYTES + data.first().map_or(0, |&b| 1 + u16::from(b));
        if let Some(idx) = self.singles.get(key) {
            self.get(idx)?;
            return Ok(idx);
        }
        let idx = self.bytes(data, false)?;
        self.singles.insert(key, idx);
        Ok(idx)
    }

    /// An interned `str`: written the first time, a memo reference after.
    pub(crate) fn interned_str(&mut self, s: &str) -> Result<u32> {
        self.begin()?;
        match self.names.find(Key::Str(s)) {
            Seen::Before(idx) => {
                self.get(idx)?;
                Ok(idx)
            }
            Seen::New(hash) => {
                if let Some(idx) = self.static_again(s)? {
                    return Ok(idx);
                }
                self.str_utf8(s)?;
                let idx = self.last_memo();
                self.names.insert(Key::Str(s), hash, idx);
                Ok(idx)
            }
        }
    }

    /// An interned `str` that a derived type's field name has written in
    /// this pickle: its memo reference.
    fn static_again(&mut self, s: &str) -> Result<Option<u32>> {
        if self.statics.is_empty() {
            return Ok(None);
        }
        match static_id(s).and_then(|id| self.statics.get(id)) {
            Some(idx) => {
                self.get(idx)?;
                Ok(Some(idx))
            }
            None => Ok(None),
        }
    }

    /// Makes room for field names numbered below `ids` (see
    /// [`FieldNames::ids`](super::names::FieldNames::ids)).
    #[inline]
    pub(crate) fn reserve_names(&mut self, ids: usize) {
        self.statics.reserve(ids);
    }

    /// A derived type's field name, an interned `str`: written the first
    /// time, a memo reference after.
    #[inline]
    pub(crate) fn field_name(&mut self, name: &StaticName) -> Result<()> {
        self.begin()?;
        match self.statics.get(name.id) {
            Some(idx) => self.get(idx),
            None => self.field_name_new(name),
        }
    }

    /// [`Out::field_name`] the first time, in the common case: a name of
    /// up to [`SHORT_NAME`] bytes that no module name or interned value
    /// wrote before, from protocol 4, with room to spare. It makes no call
    /// (the rest is a tail call), so it saves no register.
    #[inline(never)]
    fn field_name_new(&mut self, name: &StaticName) -> Result<()> {
        let idx = self.memo_len;
        let n = usize::from(name.short.1);
        if self.proto >= 4
            && n > 0
            && idx < MEMO_MAX
            && !self.names.may_hold_str(name.hash)
            && self.buf.capacity() - self.buf.len() >= SHORT_NAME
        {
            if let Some(slot) = self.statics.slot(name.id) {
                *slot = idx + 1;
                self.memo_len = idx + 1;
                // Bytes made once per process: one copy of a fixed size.
                self.buf.extend_from_slice(&name.short.0);
                self.buf.truncate(self.buf.len() - SHORT_NAME + n);
                return Ok(());
            }
        }
        self.field_name_other(name)
    }

    /// [`Out::field_name_new`] otherwise: written, unless a module name
    /// or an interned value wrote its text before.
    #[cold]
    #[inline(never)]
    fn field_name_other(&mut self, name: &StaticName) -> Result<()> {
        let seen = if self.names.may_hold_str(name.hash) {
            self.names.find_hashed(Key::Str(name.text), name.hash)
        } else {
            Seen::New(name.hash)
        };
        let idx = match seen {
            Seen::Before(idx) => {
                self.get(idx)?;
                idx
            }
            Seen::New(_) => {
                self.str_utf8(name.text)?;
                self.last_memo()
            }
        };
        self.statics.set(name.id, idx);
        Ok(())
    }

    fn empty_tuple(&mut self) -> Result<()> {
        self.begin()?;
        self.write(rules::tuple_open(self.proto, 0));
        Ok(())
    }

    /// Opens a tuple of `n >= 1` items that the writer makes itself (an
    /// argument tuple).
    pub(crate) fn fresh_tuple_start(&mut self, n: usize) -> Result<()> {
        self.begin()?;
        self.write(rules::tuple_open(self.proto, n));
        Ok(())
    }

    /// Closes and memoizes a tuple opened by `fresh_tuple_start`.
    pub(crate) fn fresh_tuple_end(&mut self, n: usize) -> Result<()> {
        self.close_memoized(rules::tuple_close(self.proto, n))
    }

    /// `op`, which completes an object, then the object's memo put, as a
    /// whole `save`. The common case (`MEMOIZE`, room to spare, no frame
    /// to end) makes no call, so it saves no register where it is inlined.
    #[inline]
    pub(crate) fn close_memoized(&mut self, op: u8) -> Result<()> {
        let idx = self.memo_len;
        if self.proto >= 4 && idx < MEMO_MAX && self.buf.capacity() - self.buf.len() >= 2 {
            self.memo_len = idx + 1;
            self.buf.extend_from_slice(&[op, MEMOIZE]);
            return Ok(());
        }
        self.close_memoized_slow(op)
    }

    #[cold]
    #[inline(never)]
    fn close_memoized_slow(&mut self, op: u8) -> Result<()> {
        self.write(&[op]);
        self.memo_put().map(|_| ())
    }

    /// A `bytes` or `bytearray` object, memoized; returns its memo index.
    ///
    /// Before protocol 3 `bytes` is `_codecs.encode(s, "latin1")` with the
    /// bytes read as Latin-1 text (`bytes()` when empty); before protocol 5
    /// `bytearray` is `bytearray(b"...")` (`bytearray()` when empty).
    pub(crate) fn bytes(&mut self, data: &[u8], bytearray: bool) -> Result<u32> {
        self.begin()?;
        if bytearray && self.proto < 5 {
            self.global("builtins", "bytearray")?;
            if data.is_empty() {
                self.empty_tuple()?;
            } else {
                self.fresh_tuple_start(1)?;
                self.bytes(data, false)?;
                self.fresh_tuple_end(1)?;
            }
            return self.reduce_end();
        }
        if bytearray {
            let mut header = [BYTEARRAY8; 9];
            header[1..].copy_from_slice(&(data.len() as u64).to_le_bytes());
            self.write_payload(&header, data)?;
        } else if self.proto < 3 {
            if data.is_empty() {
                self.global("builtins", "bytes")?;
                self.empty_tuple()?;
            } else {
                self.global("_codecs", "encode")?;
                self.fresh_tuple_start(2)?;
                let text: String = data.iter().map(|&b| b as char).collect();
                if data.len() == 1 {
                    // One Latin-1 character: CPython's one object of it.
                    self.shared_char(&text, true)?;
                } else {
                    self.str(&PyStr::from(text))?;
                }
                match self.latin1_memo {
                    Some(idx) => self.get(idx)?,
                    None => {
                        self.str_utf8("latin1")?;
                        self.latin1_memo = Some(self.last_memo());
                    }
                }
                self.fresh_tuple_end(2)?;
            }
            return self.reduce_end();
        } else {
            let n = data.len();
            if n <= 0xff {
                self.write_payload(&[SHORT_BINBYTES, n as u8], data)?;
            } else if let Ok(n32) = u32::try_from(n) {
                let b = n32.to_le_bytes();
                self.write_payload(&[BINBYTES, b[0], b[1], b[2], b[3]], data)?;
            } else if self.proto >= 4 {
                let mut header = [BINBYTES8; 9];
                header[1..].copy_from_slice(&(n as u64).to_le_bytes());
                self.write_payload(&header, data)?;
            } else {
                return Err(unpicklable(
                    "serializing a bytes object larger than 4 GiB requires pickle protocol 4 or higher",
                ));
            }
        }
        self.memo_put()
    }

    /// `REDUCE` and the memo entry of the object it made.
    fn reduce_end(&mut self) -> Result<u32> {
        self.write(&[REDUCE]);
        self.memo_put()
    }

    // ---- globals ---------------------------------------------------------------

    /// A global by name: an extension code, `STACK_GLOBAL`, `GLOBAL`, or
    /// `getattr(parent, name)` for a dotted name before protocol 4. Returns
    /// its memo index (none for an extension code, which is not memoized).
    pub(crate) fn global(&mut self, module: &str, name: &str) -> Result<Option<u32>> {
        self.begin()?;
        if let Some(idx) = self.global_again(module, name)? {
            return Ok(Some(idx));
        }
        if self.proto >= 2 {
            let code = self
                .extensions
                .filter(|e| !e.is_empty())
                .and_then(|e| e.get(&(module.to_owned(), name.to_owned())).copied());
            if let Some(code) = code {
                if code <= 0xff {
                    self.write(&[EXT1, code as u8]);
                } else if code <= 0xffff {
                    let b = (code as u16).to_le_bytes();
                    self.write(&[EXT2, b[0], b[1]]);
                } else {
                    let b = code.to_le_bytes();
                    self.write(&[EXT4, b[0], b[1], b[2], b[3]]);
                }
                return Ok(None);
            }
        }
        if self.proto >= 4 && !rules::method_by_getattr(module, name) {
            // The module name is the module's interned `__name__`.
            self.interned_str(module)?;
            self.str_utf8(name)?;
            self.write(&[STACK_GLOBAL]);
        } else if let Some((parent, last)) = name.rsplit_once('.') {
            // A nested name before protocol 4, or a method at any:
            // getattr(parent, "last").
            self.global("builtins", "getattr")?;
            self.fresh_tuple_start(2)?;
            self.global(module, parent)?;
            self.str_utf8(last)?;
            self.fresh_tuple_end(2)?;
            self.write(&[REDUCE]);
        } else {
            self.global_opcode(module, name)?;
        }
        self.global_end(module, name).map(Some)
    }

    /// A global written before: its memo reference, fetched.
    pub(crate) fn global_again(&mut self, module: &str, name: &str) -> Result<Option<u32>> {
        match self.names.find(Key::Global(module, name)) {
            Seen::Before(idx) => {
                self.get(idx)?;
                Ok(Some(idx))
            }
            Seen::New(_) => Ok(None),
        }
    }

    /// A global spelled `GLOBAL module\nname\n` at any protocol, as inert
    /// mode keeps one a pickle spelled so; memoized.
    pub(crate) fn global_line(&mut self, module: &str, name: &str) -> Result<u32> {
        self.begin()?;
        self.global_opcode(module, name)?;
        self.global_end(module, name)
    }

    /// Memoizes the global just written (by `GLOBAL` or `STACK_GLOBAL`), so
    /// later uses of the name fetch it, and ends its `save`.
    pub(crate) fn global_end(&mut self, module: &str, name: &str) -> Result<u32> {
        let idx = self.memo_put()?;
        // A global written again (inert mode keeps a pickle's repeated
        // `GLOBAL`) is fetched from its latest memo entry after.
        self.names.set(Key::Global(module, name), idx);
        Ok(idx)
    }

    /// The `GLOBAL` opcode and its two lines, Python 2 names mapped before
    /// protocol 3 as `fix_imports` says.
    fn global_opcode(&mut self, module: &str, name: &str) -> Result<()> {
        {
            let (m, n) = if self.proto < 3 && self.fix_imports {
                compat::to_python2(module, name)
            } else {
                (module, name)
            };
            if self.proto < 3 && !(m.is_ascii() && n.is_ascii()) {
                return Err(unpicklable(format!(
                    "can't pickle global identifier '{module}.{name}' using pickle protocol {}",
                    self.proto
                )));
            }
            if m.contains('\n') || n.contains('\n') {
                return Err(unpicklable(format!(
                    "global name {module:?}.{name:?} contains a newline"
                )));
            }
            let mut buf = Vec::with_capacity(m.len() + n.len() + 3);
            buf.push(GLOBAL);
            buf.extend_from_slice(m.as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(n.as_bytes());
            buf.push(b'\n');
            self.write(&buf);
        }
        Ok(())
    }
}

/// `i`, an int outside 0 to 65535, as protocol 2 and later write it:
/// `BININT` for the rest of the 32-bit ints, `LONG1` with the minimal
/// two's complement bytes beyond. The bytes come back little endian in two
/// words (the opcode and the first seven bytes after it, then the rest),
/// with how many of them count. Both encodings are built whole and one is
/// chosen without a branch, as ints of mixed sizes would mispredict one.
#[inline]
fn encode_wide(i: i64) -> (u64, u16, usize) {
    let v = i as u64;
    let fits = i as i32 as i64 == i;
    // Bits of magnitude, plus one for the sign: the minimal two's
    // complement bytes of LONG1 (what CPython's `_PyLong_AsByteArray`
    // gives, trimmed).
    let n = u64::from((64 - (i ^ (i >> 63)).leading_zeros()) / 8 + 1);
    let short = u64::from(BININT) | v << 8;
    let long = u64::from(LONG1) | n << 8 | v << 16;
    let lo = std::hint::select_unpredictable(fits, short, long);
    let len = std::hint::select_unpredictable(fits, 5, 2 + n as usize);
    (lo, (v >> 48) as u16, len)
}

/// The room [`Out::int_wide`] makes sure of before it writes: its ten
/// bytes, and some to spare.
const INT_ROOM: usize = 16;

/// Strings up to this long are written in [`Out::str_utf8`]'s straight
/// line.
const SMALL: usize = 128;

/// Copies `src` into `dst`, of the same length, writing each of its bytes:
/// `<[MaybeUninit<u8>]>::write_copy_of_slice`, which needs Rust 1.93 (a
/// loop of `MaybeUninit::write` is not made a `memcpy`: strings wrote 60%
/// slower).
#[inline(always)]
#[allow(unsafe_code)]
fn write_uninit(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `dst` is valid for `dst.len()` writes of bytes (an exclusive
    // slice; `MaybeUninit<u8>` has the layout of `u8`, and any byte may be
    // written to it), `src` for `src.len()` reads, the lengths are equal
    // (checked above), and an exclusive borrow cannot overlap a shared
    // one, as `copy_nonoverlapping` requires.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len()) }
}

/// Copies `src` (below 16 bytes) to the front of spare room `dst` in at
/// most two moves of a fixed size, the second overlapping the first when
/// the length is not a power of two, where a copy of a length known only
/// at run time would be a call to `memcpy`. Every byte of
/// `dst[..src.len()]` is written.
#[inline(always)]
fn copy_tiny_into(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) {
    let n = src.len();
    debug_assert!(n < 16 && n <= dst.len());
    if n >= 8 {
        write_uninit(&mut dst[..8], &src[..8]);
        write_uninit(&mut dst[n - 8..n], &src[n - 8..]);
    } else if n >= 4 {
        write_uninit(&mut dst[..4], &src[..4]);
        write_uninit(&mut dst[n - 4..n], &src[n - 4..]);
    } else if n > 0 {
        // Bytes 0, n / 2 and n - 1 are every byte of 1 to 3.
        dst[0].write(src[0]);
        dst[n / 2].write(src[n / 2]);
        dst[n - 1].write(src[n - 1]);
    }
}

/// `i` in minimal two's complement, little-endian (CPython's `LONG1`
/// encoding, see [`Out::bigint`]): its bytes, and how many of them count
/// after dropping the high bytes that only repeat the sign.
fn minimal_le(i: i128) -> ([u8; 16], usize) {
    // The bits that differ from the sign, plus the sign bit, in bytes.
    let magnitude = i ^ (i >> 127);
    let bits = 128 - magnitude.leading_zeros() as usize + 1;
    (i.to_le_bytes(), bits.div_ceil(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `short_str_memo` and `write_uninit` (`unsafe` blocks, run under
    /// Miri by `.ci/run`) writes the opcode, the length, every byte of the
    /// text and `MEMOIZE`, after what the buffer held, for every length it
    /// takes, with the room exactly enough and with room to spare.
    #[test]
    fn short_str_memo_writes_every_byte() {
        // Fewer lengths under Miri, which runs each far slower.
        let lengths: Vec<usize> = if cfg!(miri) {
            (0..20).chain([31, 32, 33, 100, 255]).collect()
        } else {
            (0..=255).collect()
        };
        for n in lengths {
            let text: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            for spare in [0, 1, 17] {
                let mut out = Out::new(4, false, None, None);
                out.buf = Vec::with_capacity(5 + n + 3 + spare);
                out.buf.extend_from_slice(b"head!");
                assert!(out.buf.capacity() - out.buf.len() >= n + 3);
                out.short_str_memo(&text);
                let mut want = b"head!".to_vec();
                want.extend_from_slice(&[SHORT_BINUNICODE, n as u8]);
                want.extend_from_slice(&text);
                want.push(MEMOIZE);
                assert_eq!(out.buf, want, "{n} bytes, {spare} spare");
            }
        }
    }

    #[test]
    fn ints_are_encoded_by_size() {
        let mut edges = vec![i64::MIN, i64::MAX, 0, 1, -1];
        for k in 0..63 {
            let p = 1i64 << k;
            edges.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        for i in edges.into_iter().filter(|i| !(0..=0xffff).contains(i)) {
            let (lo, hi, len) = encode_wide(i);
            let op = [&lo.to_le_bytes()[..], &hi.to_le_bytes()].concat();
            let want: Vec<u8> = if let Ok(v) = i32::try_from(i) {
                [&[BININT][..], &v.to_le_bytes()].concat()
            } else {
                let b = BigInt::from(i).to_signed_bytes_le();
                [&[LONG1, b.len() as u8][..], &b].concat()
            };
            assert_eq!(&op[..len], &want[..], "{i}");
        }
    }

    #[test]
    fn minimal_le_agrees_with_the_bignum_encoding() {
        let mut edges = vec![i128::MIN, i128::MAX, 0, 1, -1];
        for k in 0..127 {
            let p = 1i128 << k;
            edges.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        for i in edges {
            let (bytes, n) = minimal_le(i);
            let want = BigInt::from(i).to_signed_bytes_le();
            assert_eq!(&bytes[..n], &want[..], "{i}");
        }
    }
}
