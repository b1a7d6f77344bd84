//! The argument of each opcode, decoded in one place for the reader
//! (`Machine::step`) and the inspector (`crate::inspect`), so that the two
//! cannot read the same bytes two ways.
//!
//! One function per kind of argument, as `pickletools` has one
//! `ArgumentDescriptor` per kind: fixed-size integers, counted strings,
//! newline-terminated lines. Each reads from a [`Source`], so frames and
//! truncation are checked the same way for both callers; what the value
//! then means (a pushed object, a memo key, a frame) is the caller's.

use std::borrow::Cow;

use num_bigint::BigInt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::op::*;
use crate::text;
use crate::text::PyStr;

use super::input::Source;

/// `uint1`: one unsigned byte (`PROTO`, `BININT1`, `BINGET`, `EXT1`, ...).
#[inline(always)]
pub(crate) fn uint1<S: Source>(src: &mut S) -> Result<u8> {
    src.byte()
}

/// `uint2`: two bytes, little-endian, unsigned (`BININT2`, `EXT2`).
#[inline(always)]
pub(crate) fn uint2<S: Source>(src: &mut S) -> Result<u16> {
    let b = src.take(2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

/// `int4`: four bytes, little-endian, signed (`BININT`, `EXT4`, the
/// lengths of `BINSTRING` and `LONG4`).
#[inline(always)]
pub(crate) fn int4<S: Source>(src: &mut S) -> Result<i32> {
    let b = src.take(4)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `uint4`: four bytes, little-endian, unsigned (`LONG_BINGET`,
/// `LONG_BINPUT`, the lengths of `BINUNICODE` and `BINBYTES`).
#[inline(always)]
pub(crate) fn uint4<S: Source>(src: &mut S) -> Result<u64> {
    let b = src.take(4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]).into())
}

/// `uint8`: eight bytes, little-endian, unsigned (`FRAME`, the lengths of
/// `BINUNICODE8`, `BINBYTES8`, `BYTEARRAY8`).
#[inline(always)]
pub(crate) fn uint8<S: Source>(src: &mut S) -> Result<u64> {
    // Taken as a whole array: a copy of a length the compiler does not
    // know was a call to `memcpy`.
    let b = src.take(8)?;
    Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// `PROTO`'s protocol number, refused above 5.
#[inline(always)]
pub(crate) fn proto<S: Source>(src: &mut S) -> Result<u8> {
    let p = src.byte()?;
    if p > 5 {
        return Err(Error::new(ErrorKind::UnsupportedProtocol(p)));
    }
    Ok(p)
}

/// `float8`: `BINFLOAT`'s argument. Big-endian, unlike every other number
/// in a pickle: it comes from `struct.pack('>d')`.
#[inline(always)]
pub(crate) fn float8<S: Source>(src: &mut S) -> Result<f64> {
    let b = src.take(8)?;
    Ok(f64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

/// `floatnl`: `FLOAT`'s decimal line.
pub(crate) fn float_line<S: Source>(src: &mut S) -> Result<f64> {
    let line = src.line()?;
    std::str::from_utf8(line)
        .ok()
        .and_then(text::parse_float)
        .ok_or_else(|| {
            Error::invalid(format!(
                "could not convert {:?} to float",
                String::from_utf8_lossy(line)
            ))
        })
}

/// A decimal integer line (`GET` and `PUT`'s memo keys), read as CPython
/// reads them, with `int(line)`'s syntax: spaces around, a sign, and single
/// underscores between digits (`1_0` is 10). At most `max_digits` digits
/// (CPython's `sys.get_int_max_str_digits()`: parsing is quadratic).
pub(crate) fn decimal(line: &[u8], what: &str, max_digits: usize) -> Result<BigInt> {
    python_int(until_nul(line), Radix::Ten, max_digits)?.ok_or_else(|| not_an_int(line, what))
}

/// The error for a line that is not an integer.
#[cold]
fn not_an_int(line: &[u8], what: &str) -> Error {
    Error::invalid(format!(
        "expected an integer for {what}, found {:?}",
        String::from_utf8_lossy(line)
    ))
}

/// A line as C sees it: up to its first NUL byte, where CPython's parsers
/// of protocol 0's numbers stop.
fn until_nul(line: &[u8]) -> &[u8] {
    line.iter()
        .position(|&b| b == 0)
        .map_or(line, |end| &line[..end])
}

/// The base of an integer's text for [`python_int`].
#[derive(Clone, Copy, PartialEq)]
enum Radix {
    /// Decimal only, leading zeros allowed: `int(text)`.
    Ten,
    /// As Python source spells an int: `0x`, `0o` and `0b` prefixes, no
    /// leading zero on a decimal but zero itself: `int(text, 0)`.
    Literal,
}

/// CPython's `PyLong_FromString(text, NULL, base)` for base 10 or 0:
/// `None` where CPython raises `ValueError`.
fn python_int(text: &[u8], radix: Radix, max_digits: usize) -> Result<Option<BigInt>> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let Some(first) = text.iter().position(|b| !space(b)) else {
        return Ok(None);
    };
    let last = text.iter().rposition(|b| !space(b)).unwrap_or(first);
    let mut t = &text[first..=last];
    let negative = t.first() == Some(&b'-');
    if matches!(t.first(), Some(b'-' | b'+')) {
        t = &t[1..];
    }
    let mut base = 10;
    let mut prefixed = false;
    if radix == Radix::Literal && t.len() >= 2 && t[0] == b'0' {
        base = match t[1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 10,
        };
        if base != 10 {
            t = &t[2..];
            prefixed = true;
        }
    }
    // Digits with single underscores between them (and one right after a
    // prefix).
    let mut digits = Vec::with_capacity(t.len());
    let mut after_digit = prefixed;
    for &b in t {
        if b == b'_' {
            if !after_digit {
                return Ok(None);
            }
            after_digit = false;
            continue;
        }
        if !(b as char).is_digit(base) {
            return Ok(None);
        }
        digits.push(b);
        after_digit = true;
    }
    if digits.is_empty() || !after_digit {
        return Ok(None);
    }
    if radix == Radix::Literal
        && base == 10
        && digits[0] == b'0'
        && digits.iter().any(|&d| d != b'0')
    {
        // `010` is not a literal: Python 3 has no octal without `0o`.
        return Ok(None);
    }
    if base == 10 && digits.len() > max_digits {
        return Err(Error::new(ErrorKind::Limit {
            limit: "max_int_digits",
            max: max_digits as u64,
        }));
    }
    let Some(n) = BigInt::parse_bytes(&digits, base) else {
        return Ok(None);
    };
    Ok(Some(if negative { -n } else { n }))
}

/// C's `strtol(text, &end, 0)` where it reads the whole of `text` and the
/// value fits: decimal, `0x` hexadecimal, or octal after a leading `0`
/// (`010` is 8), after spaces and a sign. `None` where CPython's `INT`
/// falls back to [`python_int`].
fn c_strtol(text: &[u8]) -> Option<i64> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut t = &text[text.iter().position(|b| !space(b))?..];
    let negative = t.first() == Some(&b'-');
    if matches!(t.first(), Some(b'-' | b'+')) {
        t = &t[1..];
    }
    let base = match t {
        [b'0', b'x' | b'X', h, ..] if h.is_ascii_hexdigit() => {
            t = &t[2..];
            16
        }
        [b'0', ..] => 8,
        _ => 10,
    };
    if t.is_empty() {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &b in t {
        let d = (b as char).to_digit(base)?;
        magnitude = magnitude
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(d))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `INT`'s argument: protocol 0 spells `True` and `False` as `I01` and
/// `I00`.
pub(crate) enum IntLine {
    Bool(bool),
    Int(BigInt),
}

/// `decimalnl_short`: `INT`'s line, read as CPython's `load_int` reads it:
/// C's `strtol` with base 0 first (so `010` is 8 and `0x10` is 16), then
/// `int(line, 0)` where that stops short (so `1_0` is 10). A line of two
/// characters that `strtol` reads as 0 or 1 is `False` or `True`.
#[inline(always)]
pub(crate) fn int_line<S: Source>(src: &mut S, max_digits: usize) -> Result<IntLine> {
    let raw = src.line()?;
    match raw {
        b"00" => return Ok(IntLine::Bool(false)),
        b"01" => return Ok(IntLine::Bool(true)),
        _ => {}
    }
    let line = until_nul(raw);
    if let Some(x) = c_strtol(line) {
        return Ok(match x {
            0 | 1 if raw.len() == 2 => IntLine::Bool(x == 1),
            x => IntLine::Int(BigInt::from(x)),
        });
    }
    python_int(line, Radix::Literal, max_digits)?
        .map(IntLine::Int)
        .ok_or_else(|| not_an_int(raw, "INT"))
}

/// `decimalnl_long`: `LONG`'s line, with Python 2's trailing `L`, read as
/// `int(line, 0)`.
#[inline]
pub(crate) fn long_line<S: Source>(src: &mut S, max_digits: usize) -> Result<BigInt> {
    let raw = src.line()?;
    let line = raw.strip_suffix(b"L").unwrap_or(raw);
    python_int(until_nul(line), Radix::Literal, max_digits)?.ok_or_else(|| not_an_int(raw, "LONG"))
}

/// `long1`/`long4`: the little-endian two's complement bytes of `LONG1`
/// (`op` = `LONG1`) or `LONG4`.
#[inline]
pub(crate) fn long_bytes<S: Source>(src: &mut S, op: u8) -> Result<&[u8]> {
    let n = if op == LONG1 {
        src.byte()? as u64
    } else {
        let n = int4(src)?;
        u64::try_from(n)
            .map_err(|_| Error::invalid(format!("LONG pickle has negative byte count {n}")))?
    };
    src.take(n)
}

/// A `LONG1`/`LONG4` value of up to 8 bytes, sign-extended to an `i64`
/// (no bignum); `None` for more bytes.
#[inline]
pub(crate) fn small_long(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

/// The bytes of a Python 2 `str` (`STRING`, `BINSTRING`,
/// `SHORT_BINSTRING`), before any decoding: how they become text is the
/// caller's choice (Python's `encoding` argument).
#[inline]
pub(crate) fn py2_string<S: Source>(src: &mut S, op: u8) -> Result<Cow<'_, [u8]>> {
    Ok(match op {
        STRING => {
            let line = src.line()?;
            Cow::Owned(text::unquote_string(line).map_err(Error::invalid)?)
        }
        _ => {
            let n = if op == SHORT_BINSTRING {
                src.byte()? as u64
            } else {
                let n = int4(src)?;
                u64::try_from(n).map_err(|_| {
                    Error::invalid(format!("BINSTRING pickle has negative byte count {n}"))
                })?
            };
            Cow::Borrowed(src.take(n)?)
        }
    })
}

/// A `str` argument (`UNICODE`, `SHORT_BINUNICODE`, `BINUNICODE`,
/// `BINUNICODE8`): raw-unicode-escape for the first, UTF-8 with lone
/// surrogates allowed (`surrogatepass`) for the others.
#[inline]
pub(crate) fn unicode<S: Source>(src: &mut S, op: u8) -> Result<PyStr> {
    let n = match op {
        UNICODE => {
            let line = src.line()?;
            return text::raw_unicode_unescape(line).map_err(Error::invalid);
        }
        SHORT_BINUNICODE => src.byte()? as u64,
        BINUNICODE => uint4(src)?,
        _ => uint8(src)?,
    };
    utf8(src.take(n)?)
}

/// UTF-8 with `surrogatepass`, as CPython decodes `BINUNICODE`.
pub(crate) fn utf8(bytes: &[u8]) -> Result<PyStr> {
    PyStr::from_surrogatepass_slice(bytes)
        .ok_or_else(|| Error::invalid("string is not valid UTF-8 (with surrogatepass)"))
}

/// A counted bytes argument (`SHORT_BINBYTES`, `BINBYTES`, `BINBYTES8`,
/// `BYTEARRAY8`).
#[inline]
pub(crate) fn bytes<S: Source>(src: &mut S, op: u8) -> Result<&[u8]> {
    let n = match op {
        SHORT_BINBYTES => src.byte()? as u64,
        BINBYTES => uint4(src)?,
        _ => uint8(src)?,
    };
    src.take(n)
}

/// The memo key of `PUT`, `BINPUT`, `LONG_BINPUT`, `GET`, `BINGET` or
/// `LONG_BINGET` (a decimal line for the protocol 0 two).
#[inline]
pub(crate) fn memo_key<S: Source>(src: &mut S, op: u8, max_digits: usize) -> Result<u64> {
    match op {
        BINPUT | BINGET => Ok(src.byte()? as u64),
        LONG_BINPUT | LONG_BINGET => uint4(src),
        _ => {
            let n = decimal(src.line()?, "the memo key", max_digits)?;
            u64::try_from(&n)
                .map_err(|_| Error::invalid(format!("memo key must be non-negative, found {n}")))
        }
    }
}

/// The code of `EXT1`, `EXT2` or `EXT4`; 0 and negative codes are refused,
/// as CPython refuses them.
#[inline]
pub(crate) fn ext_code<S: Source>(src: &mut S, op: u8) -> Result<u32> {
    let code = match op {
        EXT1 => src.byte()? as u32,
        EXT2 => uint2(src)? as u32,
        _ => u32::try_from(int4(src)?).unwrap_or(0),
    };
    if code == 0 {
        return Err(Error::invalid("EXT specifies code <= 0"));
    }
    Ok(code)
}

/// One of the two lines of `GLOBAL` and `INST` (module, then name),
/// which must be UTF-8; `what` names it in the error.
pub(crate) fn name_line<S: Source>(src: &mut S, what: &str) -> Result<String> {
    String::from_utf8(src.line()?.to_vec())
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// `PERSID`'s line, which must be ASCII.
pub(crate) fn persid_line<S: Source>(src: &mut S) -> Result<&str> {
    let line = src.line()?;
    if !line.is_ascii() {
        return Err(Error::invalid(
            "persistent IDs in protocol 0 must be ASCII strings",
        ));
    }
    Ok(std::str::from_utf8(line).unwrap_or_default())
}
