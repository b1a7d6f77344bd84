//! The text encodings of protocol 0: Python's float `repr`, the
//! `raw-unicode-escape` codec of `UNICODE`, and the escaped, quoted strings
//! of Python 2's `STRING`; and below them Python's `str` itself
//! ([`PyStr`]), the names Python 2 and 3 give the same global ([`compat`]),
//! and which characters `repr` prints as they are ([`printable`]).
//! The text layer imports only the leaves.

pub(crate) mod compat;
pub(crate) mod printable;
pub(crate) mod pystr;

use pystr::push_code_point;
pub use pystr::PyStr;

/// `bytes` as text, if they are UTF-8: the check every `str` read makes,
/// vectorized from 64 bytes on where the processor allows. (It says only
/// whether: a reader that needs to know where the bytes stop being UTF-8
/// asks `std` then.)
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    if let Some(s) = short_ascii(bytes) {
        return Some(s);
    }
    simdutf8::basic::from_utf8(bytes).ok()
}

/// `bytes` as text if they are at most 16 bytes, all ASCII: most dict keys,
/// attribute names and short values. Two overlapping word loads check
/// them, where `std`'s validator walks them byte by byte (a tenth of the
/// instructions of a typed read of `(int, "user12", ...)` records).
#[inline]
#[allow(unsafe_code)]
fn short_ascii(bytes: &[u8]) -> Option<&str> {
    let n = bytes.len();
    let high = if n >= 8 {
        let (a, b) = (bytes.first_chunk::<8>()?, bytes.last_chunk::<8>()?);
        (u64::from_le_bytes(*a) | u64::from_le_bytes(*b)) & 0x8080_8080_8080_8080
    } else if n >= 4 {
        let (a, b) = (bytes.first_chunk::<4>()?, bytes.last_chunk::<4>()?);
        u64::from((u32::from_le_bytes(*a) | u32::from_le_bytes(*b)) & 0x8080_8080)
    } else {
        bytes.iter().fold(0, |acc, &b| acc | u64::from(b & 0x80))
    };
    if n > 16 || high != 0 {
        return None;
    }
    // SAFETY: every byte of `bytes` is below 0x80. With 8 to 16 bytes, the
    // two 8-byte words cover every byte (the first from 0, the last up to
    // `n`, overlapping when `n < 16`), and with 4 to 7 bytes the two 4-byte
    // words do; below 4, every byte is folded in. No word has a high bit
    // set, so no byte does. A sequence of bytes below 0x80 is valid UTF-8
    // (each is the one-byte encoding of a code point), which is all
    // `from_utf8_unchecked` requires.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// A Python type's name with its article: "an int", "a list".
pub(crate) fn a(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// Python's `repr(float)`: the shortest string that reads back to the same
/// float, in fixed notation when the decimal exponent is in `-4..16` and in
/// exponent notation (`1e+16`, `5e-324`) otherwise.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives as many digits as Python's repr (the fewest that
    // read back as `x`), but where `x` lies exactly halfway between two
    // such strings (750.34869384765625) it rounds the tie up, and CPython
    // to even. The same number of digits formatted exactly (which rounds
    // ties to even) is then Python's, if it reads back as `x`: at a power
    // of two the floats below are closer together than those above, and
    // the nearest string may belong to the float below
    // (5.282945311356653e269 is nearest 5.282945311356652e269), where the
    // shortest is the one string of its length that reads back.
    let shortest = format!("{x:e}");
    let n = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let exact = format!("{x:.*e}", n.saturating_sub(1));
    let sci = if exact != shortest && exact.parse::<f64>().ok() == Some(x) {
        exact
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    // Python's `decpt`: the value is 0.DIGITS * 10**decpt.
    let decpt = exp + 1;
    let mut out = String::from(sign);
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// Parses the argument of `FLOAT` the way Python's `float()` does for the
/// forms `repr` writes (and the usual spellings of infinities and NaN).
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let lower = t.to_ascii_lowercase();
    let (neg, body) = match lower.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    let value = match body {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => {
            // Python accepts only digits, '.', 'e', signs and underscores between digits.
            if body.is_empty()
                || !body
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
            {
                return None;
            }
            body.parse::<f64>().ok()?
        }
    };
    Some(if neg { -value } else { value })
}

/// Encodes a string the way CPython's pickler writes the argument of
/// `UNICODE`: `raw-unicode-escape`, with `\`, NUL, `\n`, `\r` and `\x1a` also
/// escaped so the line stays one line.
pub(crate) fn raw_unicode_escape(s: &PyStr, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for cp in s.code_points() {
        if cp >= 0x1_0000 {
            out.extend_from_slice(b"\\U");
            for shift in (0..8).rev() {
                out.push(HEX[((cp >> (shift * 4)) & 0xF) as usize]);
            }
        } else if cp >= 0x100 || matches!(cp, 0x5C | 0 | 0x0A | 0x0D | 0x1A) {
            out.extend_from_slice(b"\\u");
            for shift in (0..4).rev() {
                out.push(HEX[((cp >> (shift * 4)) & 0xF) as usize]);
            }
        } else {
            out.push(cp as u8);
        }
    }
}

/// Decodes `raw-unicode-escape`: bytes are Latin-1 code points, except that
/// `\uXXXX` and `\UXXXXXXXX` after an odd number of backslashes are escapes.
pub(crate) fn raw_unicode_unescape(bytes: &[u8]) -> Result<PyStr, String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' {
            push_code_point(&mut out, b as u32);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] == b'\\' {
            i += 1;
        }
        let run = i - start;
        let escape = run % 2 == 1 && i < bytes.len() && matches!(bytes[i], b'u' | b'U');
        let literal = if escape { run - 1 } else { run };
        out.extend(std::iter::repeat_n(b'\\', literal));
        if !escape {
            continue;
        }
        let count = if bytes[i] == b'u' { 4 } else { 8 };
        i += 1;
        let digits = bytes
            .get(i..i + count)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| {
                format!(
                    "truncated \\{}{} escape at position {start}",
                    if count == 4 { 'u' } else { 'U' },
                    "X".repeat(count)
                )
            })?;
        let cp = u32::from_str_radix(std::str::from_utf8(digits).unwrap_or("0"), 16)
            .map_err(|_| format!("bad escape at position {start}"))?;
        push_code_point(&mut out, cp)
            .ok_or_else(|| format!("\\Uxxxxxxxx out of range at position {start}"))?;
        i += count;
    }
    PyStr::from_surrogatepass(out).ok_or_else(|| "invalid code point".to_string())
}

/// Decodes the argument of `STRING` (Python 2 `repr` of a byte string):
/// strips the matching quotes, then undoes backslash escapes as
/// `codecs.escape_decode` does.
pub(crate) fn unquote_string(line: &[u8]) -> Result<Vec<u8>, String> {
    let quoted =
        line.len() >= 2 && line[0] == line[line.len() - 1] && (line[0] == b'\'' || line[0] == b'"');
    if !quoted {
        return Err("the STRING opcode argument must be quoted".into());
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&c) = body.get(i) else {
            return Err("trailing \\ in string".into());
        };
        i += 1;
        match c {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(c),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0B),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = body
                    .get(i..i + 2)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .ok_or_else(|| format!("invalid \\x escape at position {}", i - 2))?;
                out.push(
                    u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("0"), 16).unwrap_or(0),
                );
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `short_ascii` (one of the crate's `unsafe` blocks) gives text exactly
    /// for the ASCII inputs of up to 16 bytes, whatever the byte that is
    /// not ASCII and wherever it is; `utf8` agrees with `std` on all of
    /// them. Run under Miri by `.ci/run`.
    #[test]
    fn short_ascii_is_text_exactly_when_every_byte_is_ascii() {
        for n in 0..=20usize {
            let ascii: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let want = std::str::from_utf8(&ascii).ok().filter(|_| n <= 16);
            assert_eq!(short_ascii(&ascii), want, "{n} ASCII bytes");
            assert_eq!(utf8(&ascii), std::str::from_utf8(&ascii).ok());
            for at in 0..n {
                for bad in [0x80u8, 0xC3, 0xFF] {
                    let mut bytes = ascii.clone();
                    bytes[at] = bad;
                    assert_eq!(short_ascii(&bytes), None, "{bytes:?}");
                    assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
                }
                // A two-byte character still reads, through `std`.
                if at + 1 < n {
                    let mut bytes = ascii.clone();
                    bytes[at..at + 2].copy_from_slice("é".as_bytes());
                    assert_eq!(short_ascii(&bytes), None);
                    assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
                    assert!(utf8(&bytes).is_some());
                }
            }
        }
    }

    /// A `str` held inline keeps a `PyStr` at three words (so that a
    /// `Value` stays at four: the value layer checks that).
    #[test]
    fn a_str_is_three_words() {
        assert_eq!(
            std::mem::size_of::<PyStr>(),
            3 * std::mem::size_of::<usize>()
        );
    }

    /// Strings on both sides of the inline size compare, hash and order by
    /// their text, however they were built.
    #[test]
    fn inline_and_heap_strings_compare_by_text() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |s: &PyStr| {
            let mut h = DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        let texts: Vec<String> = (20..30)
            .map(|n| "é".repeat(n / 2) + &"a".repeat(n % 2))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            let from_str = PyStr::from(t.as_str());
            let from_string = PyStr::from(t.clone());
            let from_bytes = PyStr::from_surrogatepass(t.as_bytes().to_vec()).unwrap();
            let from_slice = PyStr::from_surrogatepass_slice(t.as_bytes()).unwrap();
            for s in [&from_string, &from_bytes, &from_slice] {
                assert_eq!(s, &from_str, "{t}");
                assert_eq!(hash(s), hash(&from_str), "{t}");
                assert_eq!(s.as_str(), Some(t.as_str()));
            }
            for (j, u) in texts.iter().enumerate() {
                assert_eq!(from_str.cmp(&PyStr::from(u.as_str())), t.cmp(u), "{i} {j}");
            }
        }
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (123456789.123, "123456789.123"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.5e-7, "1.5e-07"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "repr of {x:e}");
        }
    }

    #[test]
    fn raw_unicode_escape_round_trips_surrogates() {
        let s = PyStr::from_code_points([0x5C, 0x0A, 0xD800, 0x1F600, 0xFF, 0x41]).unwrap();
        let mut out = Vec::new();
        raw_unicode_escape(&s, &mut out);
        assert_eq!(out, b"\\u005c\\u000a\\ud800\\U0001f600\xffA");
        assert_eq!(raw_unicode_unescape(&out).unwrap(), s);
    }

    #[test]
    fn raw_unicode_unescape_needs_odd_backslashes() {
        let s = raw_unicode_unescape(b"\\\\u0041").unwrap();
        assert_eq!(s.as_str(), Some("\\\\u0041"));
        assert!(raw_unicode_unescape(b"\\u00").is_err());
        assert!(raw_unicode_unescape(b"\\U00110000").is_err());
    }

    #[test]
    fn string_unquoting() {
        assert_eq!(unquote_string(b"'a\\nb\\x41\\101\\''").unwrap(), b"a\nbAA'");
        assert!(unquote_string(b"'abc").is_err());
        assert!(unquote_string(b"'abc\"").is_err());
        assert!(unquote_string(b"'\\'").is_err());
        assert!(unquote_string(b"'\\x4'").is_err());
    }
}
