//! [`PyStr`]: a Python `str`, lone surrogates included, and its codec
//! (`surrogatepass` UTF-8 and code points) and `repr`.

use std::fmt;

use compact_str::CompactString;

/// A Python `str`, stored as the bytes of `str.encode("utf-8", "surrogatepass")`.
///
/// Every string CPython can pickle is representable, lone surrogates
/// included; a pair of surrogates written as two code points stays two code
/// points (it is not merged into one character).
///
/// A string of up to 24 bytes (12 on 32-bit targets: most dict keys,
/// attribute names and short values) is held inline, so reading, cloning
/// and dropping it allocates nothing; a `PyStr` is three words, and a
/// [`Value`](crate::Value) four.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyStr(PyStrRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PyStrRepr {
    /// Text of up to 24 bytes (12 on 32-bit targets) is inline: reading,
    /// cloning or dropping it allocates nothing.
    Utf8(CompactString),
    /// Surrogatepass UTF-8 holding at least one surrogate. (A box rather
    /// than a `Vec`, so that a `PyStr` stays three words and a `Value`
    /// four.)
    Surrogates(Box<[u8]>),
}

impl PyStr {
    /// Builds a string from the bytes of `str.encode("utf-8", "surrogatepass")`,
    /// which is what `BINUNICODE` carries. Returns `None` if the bytes are not
    /// of that form.
    pub fn from_surrogatepass(bytes: Vec<u8>) -> Option<PyStr> {
        match String::from_utf8(bytes) {
            Ok(s) => Some(PyStr::from(s)),
            Err(e) => {
                let bytes = e.into_bytes();
                if valid_surrogatepass(&bytes) {
                    Some(PyStr(PyStrRepr::Surrogates(bytes.into_boxed_slice())))
                } else {
                    None
                }
            }
        }
    }

    /// [`PyStr::from_surrogatepass`] of borrowed bytes: a short string is
    /// copied inline, with no allocation.
    pub(crate) fn from_surrogatepass_slice(bytes: &[u8]) -> Option<PyStr> {
        match super::utf8(bytes) {
            Some(s) => Some(PyStr::from(s)),
            None if valid_surrogatepass(bytes) => Some(PyStr(PyStrRepr::Surrogates(bytes.into()))),
            None => None,
        }
    }

    /// Builds a string from code points, which may include lone surrogates.
    /// Returns `None` for a code point above `0x10FFFF`.
    pub fn from_code_points(points: impl IntoIterator<Item = u32>) -> Option<PyStr> {
        let mut out = Vec::new();
        for cp in points {
            push_code_point(&mut out, cp)?;
        }
        PyStr::from_surrogatepass(out)
    }

    /// The string, if it holds no lone surrogate.
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            PyStrRepr::Utf8(s) => Some(s),
            PyStrRepr::Surrogates(_) => None,
        }
    }

    /// The bytes of `str.encode("utf-8", "surrogatepass")`.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            PyStrRepr::Utf8(s) => s.as_bytes(),
            PyStrRepr::Surrogates(b) => b,
        }
    }

    /// The string with each lone surrogate replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            PyStrRepr::Utf8(s) => std::borrow::Cow::Borrowed(s.as_str()),
            PyStrRepr::Surrogates(_) => std::borrow::Cow::Owned(
                self.code_points()
                    .map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
                    .collect(),
            ),
        }
    }

    /// The code points of the string, as Python's `ord` gives them.
    pub fn code_points(&self) -> impl Iterator<Item = u32> + '_ {
        CodePoints {
            bytes: self.as_bytes(),
        }
    }

    /// The length in code points, as Python's `len` gives it.
    pub fn char_len(&self) -> usize {
        match &self.0 {
            PyStrRepr::Utf8(s) => s.chars().count(),
            PyStrRepr::Surrogates(_) => self.code_points().count(),
        }
    }

    /// The length in bytes of the surrogatepass UTF-8 encoding.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl From<String> for PyStr {
    /// Takes the string's allocation, or copies a short string inline.
    fn from(s: String) -> Self {
        PyStr(PyStrRepr::Utf8(CompactString::from(s)))
    }
}

impl From<&str> for PyStr {
    fn from(s: &str) -> Self {
        PyStr(PyStrRepr::Utf8(CompactString::from(s)))
    }
}

impl PartialEq<str> for PyStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for PyStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl fmt::Display for PyStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl fmt::Debug for PyStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_str_repr(f, self)
    }
}

/// Appends the surrogatepass UTF-8 encoding of one code point.
pub(crate) fn push_code_point(out: &mut Vec<u8>, cp: u32) -> Option<()> {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        0x1_0000..=0x10_FFFF => out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => return None,
    }
    Some(())
}

/// Whether `bytes` is UTF-8 in which the surrogate range U+D800..U+DFFF is
/// also allowed, one code point per three-byte sequence (Python's
/// `surrogatepass`).
fn valid_surrogatepass(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(_) => return true,
            Err(e) => {
                let at = e.valid_up_to();
                let tail = &rest[at..];
                // A surrogate is ED A0..BF 80..BF, which std rejects.
                if tail.len() >= 3
                    && tail[0] == 0xED
                    && (0xA0..=0xBF).contains(&tail[1])
                    && (0x80..=0xBF).contains(&tail[2])
                {
                    rest = &tail[3..];
                } else {
                    return false;
                }
            }
        }
    }
    true
}

/// Decodes code points from surrogatepass UTF-8 known to be valid.
struct CodePoints<'a> {
    bytes: &'a [u8],
}

impl Iterator for CodePoints<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let b = self.bytes;
        let first = *b.first()?;
        let (cp, n) = if first < 0x80 {
            (first as u32, 1)
        } else if first < 0xE0 {
            (((first as u32 & 0x1F) << 6) | (b[1] as u32 & 0x3F), 2)
        } else if first < 0xF0 {
            (
                ((first as u32 & 0x0F) << 12) | ((b[1] as u32 & 0x3F) << 6) | (b[2] as u32 & 0x3F),
                3,
            )
        } else {
            (
                ((first as u32 & 0x07) << 18)
                    | ((b[1] as u32 & 0x3F) << 12)
                    | ((b[2] as u32 & 0x3F) << 6)
                    | (b[3] as u32 & 0x3F),
                4,
            )
        };
        self.bytes = &b[n..];
        Some(cp)
    }
}

/// Python's `repr(str)`.
pub(crate) fn write_str_repr(f: &mut fmt::Formatter<'_>, s: &PyStr) -> fmt::Result {
    let quote = if s.as_bytes().contains(&b'\'') && !s.as_bytes().contains(&b'"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{quote}")?;
    for cp in s.code_points() {
        match char::from_u32(cp) {
            Some('\\') => f.write_str("\\\\")?,
            Some('\n') => f.write_str("\\n")?,
            Some('\r') => f.write_str("\\r")?,
            Some('\t') => f.write_str("\\t")?,
            Some(c) if c == quote => write!(f, "\\{c}")?,
            Some(c) if super::printable::is_printable(cp) => write!(f, "{c}")?,
            _ if cp < 0x100 => write!(f, "\\x{cp:02x}")?,
            _ if cp < 0x10000 => write!(f, "\\u{cp:04x}")?,
            _ => write!(f, "\\U{cp:08x}")?,
        }
    }
    write!(f, "{quote}")
}
