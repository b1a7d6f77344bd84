//! Auditing a pickle without loading it: its opcodes with offsets and
//! arguments (as `pickletools.dis` shows them), and the globals it would
//! call.
//!
//! ```
//! use reduce::inspect;
//!
//! // A pickle that would run os.system("echo hi") in CPython.
//! let evil = b"cos\nsystem\n(S'echo hi'\ntR.";
//! let globals = inspect::globals(evil)?;
//! assert_eq!(globals[0].to_string(), "os.system");
//!
//! let ops = inspect::disassemble(evil)?;
//! assert_eq!(ops[0].name, "GLOBAL");
//! assert_eq!(ops[0].arg.to_string(), "'os system'");
//! assert_eq!(inspect::dis(evil)?.lines().next(), Some("    0: c    GLOBAL     'os system'"));
//! # Ok::<(), reduce::Error>(())
//! ```

use std::fmt;

use num_bigint::BigInt;

use crate::error::{Error, ErrorKind, Result};
use crate::op::{self, *};
use crate::text;
use crate::value::{Global, PyStr, Value};

/// One opcode of a pickle.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// Byte offset of the opcode.
    pub offset: u64,
    /// The opcode byte.
    pub opcode: u8,
    /// Its name, as in `pickle.py`.
    pub name: &'static str,
    /// Its argument, decoded as `pickletools` decodes it.
    pub arg: Arg,
}

/// An opcode's argument.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Arg {
    /// No argument.
    None,
    /// An integer (ints, lengths, memo indexes, protocols, extension codes).
    Int(BigInt),
    /// A float.
    Float(f64),
    /// A `str` (also `GLOBAL`'s and `INST`'s "module name").
    Str(PyStr),
    /// A bytes argument.
    Bytes(Vec<u8>),
    /// `BYTEARRAY8`'s argument.
    ByteArray(Vec<u8>),
    /// `INT`'s `True`/`False` spelling (`I01`, `I00`).
    Bool(bool),
}

impl fmt::Display for Arg {
    /// Python's `repr` of the argument, as `pickletools.dis` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::None => f.write_str("None"),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Float(x) => f.write_str(&text::float_repr(*x)),
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::Bytes(b) => write!(f, "{:?}", Value::Bytes(b.clone())),
            Arg::ByteArray(b) => write!(f, "{:?}", Value::ByteArray(b.clone())),
            Arg::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
        }
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Error::new(ErrorKind::Eof))?;
        if n > self.data.len() - self.pos {
            return Err(Error::new(ErrorKind::Eof));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn le(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n as u64)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos..];
        let i = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Error::new(ErrorKind::Eof))?;
        self.pos += i + 1;
        Ok(&rest[..i])
    }
}

fn int(i: impl Into<BigInt>) -> Arg {
    Arg::Int(i.into())
}

fn utf8(b: &[u8]) -> Result<Arg> {
    PyStr::from_surrogatepass(b.to_vec())
        .map(Arg::Str)
        .ok_or_else(|| Error::invalid("string is not valid UTF-8 (with surrogatepass)"))
}

fn decimal(line: &[u8], what: &str) -> Result<BigInt> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|t| t.trim().parse::<BigInt>().ok())
        .ok_or_else(|| Error::invalid(format!("expected a decimal integer for {what}")))
}

/// Every opcode up to and including `STOP`, with its argument. Nothing is
/// loaded or checked beyond the encoding of each argument.
pub fn disassemble(bytes: &[u8]) -> Result<Vec<Instruction>> {
    let mut c = Cursor {
        data: bytes,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        let offset = c.pos as u64;
        let opcode = *c
            .take(1)
            .map_err(|e| e.at(offset, None))?
            .first()
            .unwrap_or(&0);
        let name = op::name(opcode)
            .ok_or_else(|| Error::new(ErrorKind::UnknownOpcode(opcode)).at(offset, None))?;
        let arg = decode_arg(opcode, &mut c).map_err(|e| e.at(offset, Some(opcode)))?;
        out.push(Instruction {
            offset,
            opcode,
            name,
            arg,
        });
        if opcode == STOP {
            return Ok(out);
        }
    }
}

fn decode_arg(opcode: u8, c: &mut Cursor<'_>) -> Result<Arg> {
    Ok(match opcode {
        PROTO | BININT1 | BINGET | BINPUT | EXT1 => int(c.le(1)?),
        BININT2 | EXT2 => int(c.le(2)?),
        BININT => int(c.le(4)? as u32 as i32),
        LONG_BINGET | LONG_BINPUT => int(c.le(4)?),
        EXT4 => int(c.le(4)? as u32 as i32),
        FRAME => int(c.le(8)?),
        INT => {
            let line = c.line()?;
            match line {
                b"00" => Arg::Bool(false),
                b"01" => Arg::Bool(true),
                _ => Arg::Int(decimal(line, "INT")?),
            }
        }
        LONG => {
            let line = c.line()?;
            Arg::Int(decimal(line.strip_suffix(b"L").unwrap_or(line), "LONG")?)
        }
        LONG1 | LONG4 => {
            let n = if opcode == LONG1 {
                c.le(1)?
            } else {
                c.le(4)? as u32 as i32 as i64 as u64
            };
            if (n as i64) < 0 {
                return Err(Error::invalid("LONG pickle has negative byte count"));
            }
            Arg::Int(BigInt::from_signed_bytes_le(c.take(n)?))
        }
        FLOAT => {
            let line = c.line()?;
            Arg::Float(
                std::str::from_utf8(line)
                    .ok()
                    .and_then(text::parse_float)
                    .ok_or_else(|| Error::invalid("could not convert FLOAT argument"))?,
            )
        }
        BINFLOAT => Arg::Float(f64::from_be_bytes(c.take(8)?.try_into().unwrap_or([0; 8]))),
        STRING => {
            let raw = text::unquote_string(c.line()?).map_err(Error::invalid)?;
            // pickletools shows Python 2 strs decoded as Latin-1.
            Arg::Str(PyStr::from(
                raw.iter().map(|&b| b as char).collect::<String>(),
            ))
        }
        BINSTRING | SHORT_BINSTRING => {
            let n = if opcode == SHORT_BINSTRING {
                c.le(1)?
            } else {
                c.le(4)? as u32 as i32 as i64 as u64
            };
            if (n as i64) < 0 {
                return Err(Error::invalid("BINSTRING pickle has negative byte count"));
            }
            Arg::Str(PyStr::from(
                c.take(n)?.iter().map(|&b| b as char).collect::<String>(),
            ))
        }
        UNICODE => Arg::Str(text::raw_unicode_unescape(c.line()?).map_err(Error::invalid)?),
        SHORT_BINUNICODE => {
            let n = c.le(1)?;
            utf8(c.take(n)?)?
        }
        BINUNICODE => {
            let n = c.le(4)?;
            utf8(c.take(n)?)?
        }
        BINUNICODE8 => {
            let n = c.le(8)?;
            utf8(c.take(n)?)?
        }
        SHORT_BINBYTES => {
            let n = c.le(1)?;
            Arg::Bytes(c.take(n)?.to_vec())
        }
        BINBYTES => {
            let n = c.le(4)?;
            Arg::Bytes(c.take(n)?.to_vec())
        }
        BINBYTES8 => {
            let n = c.le(8)?;
            Arg::Bytes(c.take(n)?.to_vec())
        }
        BYTEARRAY8 => {
            let n = c.le(8)?;
            Arg::ByteArray(c.take(n)?.to_vec())
        }
        GLOBAL | INST => {
            let module = String::from_utf8_lossy(c.line()?).into_owned();
            let name = String::from_utf8_lossy(c.line()?).into_owned();
            Arg::Str(PyStr::from(format!("{module} {name}")))
        }
        PERSID => Arg::Str(PyStr::from(String::from_utf8_lossy(c.line()?).into_owned())),
        GET | PUT => Arg::Int(decimal(c.line()?, "the memo key")?),
        _ => Arg::None,
    })
}

/// The disassembly as text, one opcode a line, in the layout of
/// `pickletools.dis` (offset, opcode byte, name, argument); without its
/// indentation of marks and its memo checks.
pub fn dis(bytes: &[u8]) -> Result<String> {
    let mut out = String::new();
    for i in disassemble(bytes)? {
        let code = if i.opcode.is_ascii_graphic() {
            (i.opcode as char).to_string()
        } else {
            format!("\\x{:02x}", i.opcode)
        };
        let line = match i.arg {
            Arg::None => format!("{:>5}: {:<4} {}", i.offset, code, i.name),
            ref arg => format!("{:>5}: {:<4} {:<10} {}", i.offset, code, i.name, arg),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// A global a pickle names, as [`globals`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Named {
    /// By module and qualified name (`GLOBAL`, `INST`, `STACK_GLOBAL`).
    Global(Global),
    /// By extension code (`EXT1`, `EXT2`, `EXT4`).
    Extension(u32),
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Global(g) => write!(f, "{g}"),
            Named::Extension(code) => write!(f, "extension code {code}"),
        }
    }
}

/// The globals a pickle names (and so would import and call in CPython), in
/// order, as the pickle spells them (Python 2 names are not mapped).
///
/// `STACK_GLOBAL` takes its module and name from the strings pushed before
/// it, followed through the memo; operands that are not plain strings show
/// as `?` (a name shown is always the one the reader would see). Extension
/// codes are listed as codes, since only the registry that reads the pickle
/// knows what they stand for.
///
/// ```
/// use reduce::inspect::{globals, Named};
///
/// // pickle.dumps(collections.OrderedDict(), protocol=4), then EXT1 7.
/// let bytes = b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93)R\x82\x07.";
/// let found = globals(bytes)?;
/// assert_eq!(found[0].to_string(), "collections.OrderedDict");
/// assert_eq!(found[1], Named::Extension(7));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn globals(bytes: &[u8]) -> Result<Vec<Named>> {
    let mut found = Vec::new();
    // A shadow stack of the strings pushed (None for anything else), and a
    // shadow memo of strings.
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Option<String>> = Default::default();
    let mut memo_len = 0u64;
    let question = || Some("?".to_string());
    for i in disassemble(bytes)? {
        match (i.opcode, &i.arg) {
            (GLOBAL | INST, Arg::Str(s)) => {
                let text = s.to_string_lossy().into_owned();
                let (m, n) = text.split_once(' ').unwrap_or((&text, ""));
                found.push(Named::Global(Global::new(m, n)));
                stack.push(None);
            }
            (STACK_GLOBAL, _) => {
                let name = stack.pop().flatten().or_else(question).unwrap_or_default();
                let module = stack.pop().flatten().or_else(question).unwrap_or_default();
                found.push(Named::Global(Global::new(module, name)));
                stack.push(None);
            }
            (EXT1 | EXT2 | EXT4, Arg::Int(code)) => {
                let code = u32::try_from(code).unwrap_or(u32::MAX);
                found.push(Named::Extension(code));
                stack.push(None);
            }
            (SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 | UNICODE, Arg::Str(s)) => {
                stack.push(Some(s.to_string_lossy().into_owned()))
            }
            (MEMOIZE, _) => {
                memo.insert(memo_len, stack.last().cloned().flatten());
                memo_len += 1;
            }
            (PUT | BINPUT | LONG_BINPUT, Arg::Int(k)) => {
                let k = u64::try_from(k).unwrap_or(u64::MAX);
                if memo.insert(k, stack.last().cloned().flatten()).is_none() {
                    memo_len += 1;
                }
            }
            (GET | BINGET | LONG_BINGET, Arg::Int(k)) => {
                let k = u64::try_from(k).unwrap_or(u64::MAX);
                stack.push(memo.get(&k).cloned().flatten());
            }
            (FRAME | PROTO | STOP | MARK, _) => {
                if i.opcode == MARK {
                    stack.push(None)
                }
            }
            _ => stack.push(None),
        }
    }
    Ok(found)
}
