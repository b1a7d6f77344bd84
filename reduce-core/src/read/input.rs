//! Where the reader's bytes come from: a byte slice, or any [`io::Read`],
//! read a frame at a time.

use std::io::{self, Read as _};

use crate::base::error::{Error, ErrorKind, Result};

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
        /// The whole input and the position in it, for a slice (which the
        /// streaming reader reads directly); `None` for a stream.
        fn slice(&self) -> Option<(&[u8], usize)> {
            None
        }
        /// Moves to `pos` in the slice of [`Source::slice`].
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
}

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
        }
    }

    pub(crate) fn into_reader(self) -> R {
        self.reader
    }

    fn frame_left(&self) -> usize {
        self.frame.len() - self.frame_pos
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
