//! Where the reader's bytes come from: a byte slice, or any [`io::Read`],
//! read a frame at a time.

use std::io::{self, Read as _};

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::op::*;

/// Where the unpickler reads from: a byte slice ([`SliceRead`]) or any
/// [`io::Read`] ([`IoRead`]). Sealed.
pub trait Input: private::Source {}

mod private {
    use crate::base::error::Result;

    /// The operations the machine needs from its input.
    pub trait Source {
        fn pos(&self) -> u64;
        fn byte(&mut self) -> Result<u8>;
        fn take(&mut self, n: u64) -> Result<&[u8]>;
        /// A line without its `\n`.
        fn line(&mut self) -> Result<&[u8]>;
        fn frame(&mut self, len: u64) -> Result<()>;
        /// The next pickle's bytes in memory and where it starts in them,
        /// for the streaming reader: the whole input for a slice; for a
        /// stream, the pickle read ahead through its `STOP` (and kept to
        /// be read again if the streaming reader gives up). `None` where
        /// that read-ahead met something it does not know (an unknown
        /// opcode, the end of the input, an I/O error): the machine meets
        /// it again on its own and says what it is.
        fn whole(&mut self) -> Option<(&[u8], usize)> {
            None
        }
        /// The whole input and the position in it, for a slice (which the
        /// machine may read twice); `None` for a stream.
        fn slice(&self) -> Option<(&[u8], usize)> {
            None
        }
        /// Moves to `pos` in the bytes of [`Source::whole`].
        fn seek(&mut self, pos: usize) {
            let _ = pos;
        }
    }
}
pub(crate) use private::Source;

/// Input from a byte slice: the fast path of [`from_slice`](crate::from_slice).
pub struct SliceRead<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Input from an [`io::Read`]. Reads exactly the bytes of one pickle at a
/// time (a whole frame at once where the pickle is framed), so the reader is
/// left just past `STOP`. Wrap an unbuffered source in
/// [`io::BufReader`] for protocols 0 to 3, which have no frames.
pub struct IoRead<R> {
    reader: R,
    pos: u64,
    /// Bytes of the current frame read ahead, and where in them we are.
    frame: Vec<u8>,
    frame_pos: usize,
    scratch: Vec<u8>,
    /// Most opcodes [`IoRead::capture`] reads ahead before it leaves the
    /// pickle to the machine, whose limits stop a flood (an endless run of
    /// `MARK`s from a socket) long before memory does.
    capture_ops: usize,
}

/// [`IoRead::capture_ops`] by default: 16 Mi opcodes, tens of MiB.
const CAPTURE_OPS: usize = 1 << 24;

impl Input for SliceRead<'_> {}
impl<R: io::Read> Input for IoRead<R> {}

// Frames are read as CPython's C unpickler reads them (`load_frame` in
// `_pickle.c`): `FRAME n` checks that `n` more bytes exist and is otherwise
// ignored, so an opcode may straddle a frame's end and frames may nest.
// Tools that edit pickles without fixing the frame lengths (fickling's
// injections) write such files, and `pickle.loads` runs them; a reader that
// refused them would miss what they do. (The pure-Python unpickler is
// stricter; the C one is what `pickle.loads` uses.)

impl<'a> SliceRead<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        SliceRead { data, pos: 0 }
    }

    /// A cursor over `data` at `pos` (the streaming reader's decoders).
    pub(crate) fn at(data: &'a [u8], pos: usize) -> Self {
        SliceRead { data, pos }
    }

    /// How many bytes have been read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }
}

/// The end of the input, where more was needed: built only when it happens.
#[cold]
fn eof() -> Error {
    Error::new(ErrorKind::Eof)
}

impl Source for SliceRead<'_> {
    fn whole(&mut self) -> Option<(&[u8], usize)> {
        Some((self.data, self.pos))
    }

    fn slice(&self) -> Option<(&[u8], usize)> {
        Some((self.data, self.pos))
    }

    fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    // `byte` and `take` run once or twice per opcode: in line, with the
    // bounds check done once by `get` (the slice indexing after it would
    // check again).
    #[inline]
    fn byte(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or_else(eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let n = usize::try_from(n).map_err(|_| eof())?;
        let s = self
            .data
            .get(self.pos..)
            .and_then(|rest| rest.get(..n))
            .ok_or_else(eof)?;
        self.pos += n;
        Ok(s)
    }

    fn line(&mut self) -> Result<&[u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(Error::new(ErrorKind::Eof)),
        }
    }

    fn frame(&mut self, len: u64) -> Result<()> {
        let remaining = (self.data.len() - self.pos) as u64;
        if len > remaining {
            return Err(Error::new(ErrorKind::Eof).with_detail(format!(
                "frame of {len} bytes is longer than the {remaining} bytes left"
            )));
        }
        Ok(())
    }
}

impl<R: io::Read> IoRead<R> {
    pub(crate) fn new(reader: R) -> Self {
        IoRead {
            reader,
            pos: 0,
            frame: Vec::new(),
            frame_pos: 0,
            scratch: Vec::new(),
            capture_ops: CAPTURE_OPS,
        }
    }

    pub(crate) fn into_reader(self) -> R {
        self.reader
    }

    fn frame_left(&self) -> usize {
        self.frame.len() - self.frame_pos
    }

    /// Reads ahead into `frame` until it holds `n` bytes; false at the end
    /// of the input or on an I/O error.
    fn ahead(&mut self, n: usize) -> bool {
        let have = self.frame.len();
        if n <= have {
            return true;
        }
        match (&mut self.reader)
            .take((n - have) as u64)
            .read_to_end(&mut self.frame)
        {
            Ok(got) => {
                self.pos += got as u64;
                have + got == n
            }
            Err(_) => false,
        }
    }

    /// Reads ahead through the `\n` that ends a line starting at `at`;
    /// returns the position after it. Byte by byte, as [`Source::line`]
    /// reads, so that nothing past the pickle is taken from the reader.
    fn ahead_line(&mut self, at: usize) -> Option<usize> {
        let mut i = at;
        loop {
            if i == self.frame.len() && !self.ahead(i + 1) {
                return None;
            }
            if self.frame[i] == b'\n' {
                return Some(i + 1);
            }
            i += 1;
        }
    }

    /// Reads the rest of the current pickle, through its `STOP`, into the
    /// read-ahead buffer, walking the opcodes by their argument lengths
    /// only. The buffer grows with the bytes that arrive, never with what
    /// a length prefix claims.
    fn capture(&mut self) -> Option<()> {
        self.frame.drain(..self.frame_pos);
        self.frame_pos = 0;
        let mut at = 0usize;
        for _ in 0..self.capture_ops {
            if !self.ahead(at + 1) {
                return None;
            }
            let op = self.frame[at];
            at += 1;
            let len = |this: &mut Self, at: usize, width: usize| -> Option<usize> {
                if !this.ahead(at + width) {
                    return None;
                }
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(&this.frame[at..at + width]);
                let n = u64::from_le_bytes(b);
                // A negative signed length (LONG4, BINSTRING) is the
                // machine's error to report.
                if width == 4 && matches!(this.frame[at - 1], LONG4 | BINSTRING) && n >= 1 << 31 {
                    return None;
                }
                usize::try_from(n).ok()?.checked_add(at + width)
            };
            at = match op {
                STOP => return Some(()),
                PROTO | BININT1 | BINGET | BINPUT | EXT1 => at + 1,
                BININT2 | EXT2 => at + 2,
                BININT | LONG_BINGET | LONG_BINPUT | EXT4 => at + 4,
                BINFLOAT => at + 8,
                FRAME => {
                    // Read the frame in one call, as the machine will.
                    let end = len(self, at, 8)?;
                    if !self.ahead(end) {
                        return None;
                    }
                    at + 8
                }
                SHORT_BINSTRING | SHORT_BINBYTES | SHORT_BINUNICODE | LONG1 => len(self, at, 1)?,
                BINSTRING | BINBYTES | BINUNICODE | LONG4 => len(self, at, 4)?,
                BINUNICODE8 | BINBYTES8 | BYTEARRAY8 => len(self, at, 8)?,
                INT | LONG | FLOAT | STRING | UNICODE | GET | PUT | PERSID => {
                    self.ahead_line(at)?
                }
                GLOBAL | INST => {
                    let next = self.ahead_line(at)?;
                    self.ahead_line(next)?
                }
                MARK | POP | POP_MARK | DUP | NONE | NEWTRUE | NEWFALSE | EMPTY_TUPLE
                | EMPTY_LIST | EMPTY_DICT | EMPTY_SET | APPEND | APPENDS | LIST | TUPLE
                | TUPLE1 | TUPLE2 | TUPLE3 | DICT | SETITEM | SETITEMS | BUILD | REDUCE
                | NEWOBJ | NEWOBJ_EX | OBJ | BINPERSID | STACK_GLOBAL | MEMOIZE | ADDITEMS
                | FROZENSET | NEXT_BUFFER | READONLY_BUFFER => at,
                _ => return None,
            };
        }
        None
    }

    /// Reads exactly `n` bytes into `scratch`, growing it only as data
    /// arrives, so a length prefix that lies costs no more than the input.
    fn fill_scratch(&mut self, n: u64) -> Result<()> {
        self.scratch.clear();
        let got = (&mut self.reader).take(n).read_to_end(&mut self.scratch)?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(Error::new(ErrorKind::Eof));
        }
        Ok(())
    }
}

impl<R: io::Read> Source for IoRead<R> {
    fn whole(&mut self) -> Option<(&[u8], usize)> {
        self.capture()?;
        Some((&self.frame, 0))
    }

    fn seek(&mut self, pos: usize) {
        self.frame_pos = pos;
    }

    fn pos(&self) -> u64 {
        self.pos - self.frame_left() as u64
    }

    fn byte(&mut self) -> Result<u8> {
        if self.frame_left() > 0 {
            let b = self.frame[self.frame_pos];
            self.frame_pos += 1;
            return Ok(b);
        }
        let mut b = [0u8];
        self.reader.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let left = self.frame_left();
        if left > 0 {
            if n <= left as u64 {
                let start = self.frame_pos;
                self.frame_pos += n as usize;
                return Ok(&self.frame[start..self.frame_pos]);
            }
            // Straddles the frame's end: the rest of the frame, then the
            // stream.
            let head = self.frame.split_off(self.frame_pos);
            self.frame.clear();
            self.frame_pos = 0;
            self.fill_scratch(n - head.len() as u64)?;
            self.scratch.splice(0..0, head);
            return Ok(&self.scratch);
        }
        self.fill_scratch(n)?;
        Ok(&self.scratch)
    }

    fn line(&mut self) -> Result<&[u8]> {
        let left = self.frame_left();
        self.scratch.clear();
        if left > 0 {
            let rest = &self.frame[self.frame_pos..];
            if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                let start = self.frame_pos;
                self.frame_pos += i + 1;
                return Ok(&self.frame[start..start + i]);
            }
            // The line goes on past the frame's end.
            self.scratch.extend_from_slice(rest);
            self.frame.clear();
            self.frame_pos = 0;
        }
        loop {
            let mut b = [0u8];
            self.reader.read_exact(&mut b)?;
            self.pos += 1;
            if b[0] == b'\n' {
                return Ok(&self.scratch);
            }
            self.scratch.push(b[0]);
        }
    }

    fn frame(&mut self, len: u64) -> Result<()> {
        // Keep what is left of a frame read ahead, and read ahead until
        // `len` bytes are buffered.
        self.frame.drain(..self.frame_pos);
        self.frame_pos = 0;
        let have = self.frame.len() as u64;
        if len > have {
            let got = (&mut self.reader)
                .take(len - have)
                .read_to_end(&mut self.frame)?;
            self.pos += got as u64;
            if have + (got as u64) < len {
                return Err(Error::new(ErrorKind::Eof).with_detail(format!(
                    "frame of {len} bytes is longer than the {} bytes left",
                    have + got as u64
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless run of one byte.
    struct Endless(u8);

    impl io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(self.0);
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_stream_is_left_to_the_machine() {
        // MARK forever: the read-ahead stops after its opcode budget, with
        // what it read kept for the machine, whose stack limit ends it.
        let mut input = IoRead::new(Endless(MARK));
        input.capture_ops = 1000;
        assert!(input.whole().is_none());
        assert_eq!(input.frame.len(), 1000);
        assert_eq!(input.pos(), 0);
        assert_eq!(input.byte().unwrap(), MARK);
    }

    #[test]
    fn a_pickle_is_read_ahead_through_stop_and_no_further() {
        // pickle.dumps([1, 'a'], 2) and the start of the next one.
        let bytes = b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01e.\x80\x02";
        let mut input = IoRead::new(&bytes[..]);
        let (data, start) = input.whole().unwrap();
        assert_eq!((data, start), (&bytes[..bytes.len() - 2], 0));
        assert_eq!(input.into_reader(), b"\x80\x02");
        // Nine opcodes: within a budget of nine the pickle is whole; one
        // opcode short, it is not.
        let mut input = IoRead::new(&bytes[..]);
        input.capture_ops = 9;
        assert!(input.whole().is_some());
        let mut input = IoRead::new(&bytes[..]);
        input.capture_ops = 8;
        assert!(input.whole().is_none());
    }
}
