//! The one error type of the crate.

use std::fmt;
use std::io;

/// Everything that can go wrong while reading or writing a pickle.
///
/// A read error carries the byte offset of the opcode being read and its
/// name; [`Error::kind`] says what went wrong. The type is one pointer wide,
/// `Send + Sync + 'static`, and its [`source`](std::error::Error::source) is the
/// underlying I/O error where there is one.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    offset: Option<u64>,
    opcode: Option<u8>,
    /// Where inside the value (typed reading), e.g. `[3].points[0].x`.
    path: Option<String>,
    detail: Option<String>,
}

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing the underlying stream failed.
    Io(io::Error),
    /// The input ended before `STOP`.
    Eof,
    /// The input ended where a pickle should begin: no byte at all (an
    /// empty input, or the clean end of a stream of pickles; Python's
    /// `EOFError: Ran out of input`). A pickle cut short after its first
    /// byte is [`ErrorKind::Eof`].
    EndOfInput,
    /// A byte that is no pickle opcode.
    UnknownOpcode(u8),
    /// `PROTO` named a protocol above 5.
    UnsupportedProtocol(u8),
    /// An opcode needed more items on the stack than there were.
    StackUnderflow,
    /// An opcode needed a `MARK` and there was none.
    MissingMark,
    /// A memo read (`GET`, `BINGET`, `LONG_BINGET`) of a key never stored.
    MissingMemo(u64),
    /// A global that is not allowed: no constructor is registered under this
    /// name, and inert mode is off.
    UnknownGlobal {
        /// The module.
        module: String,
        /// The qualified name inside the module.
        name: String,
        /// Registered names close to it.
        near: Vec<String>,
    },
    /// A typed read found another Python type than the one it needs.
    Type {
        /// What was needed, e.g. `float`.
        expected: String,
        /// The Python type found, e.g. `str`.
        found: &'static str,
    },
    /// A registration was refused (a duplicate name or type, a bad code).
    Registry(String),
    /// An extension code (`EXT1`/`EXT2`/`EXT4`) that is not registered.
    UnknownExtension(u32),
    /// `PERSID`/`BINPERSID` without a `persistent_load` hook.
    NoPersistentLoad,
    /// `NEXT_BUFFER` without out-of-band buffers left.
    NoBuffer,
    /// A configured limit was reached.
    Limit {
        /// Which limit (the name of its [`Limits`](crate::Limits) field).
        limit: &'static str,
        /// The limit's value.
        max: u64,
    },
    /// A [`Value::Ref`](crate::Value::Ref) that points outside its graph.
    DanglingRef(u32),
    /// The input is malformed; the message says what was expected and what
    /// was found.
    Invalid(String),
    /// A value that cannot be written at the chosen protocol.
    Unpicklable(String),
    /// An error raised by a caller's hook.
    Custom(String),
}

impl Error {
    /// An error of the given kind, without a position.
    pub fn new(kind: ErrorKind) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                offset: None,
                opcode: None,
                path: None,
                detail: None,
            }),
        }
    }

    /// A custom error, for hooks (`persistent_load`, ...) to return.
    pub fn custom(msg: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Custom(msg.to_string()))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid(msg.into()))
    }

    pub(crate) fn at(mut self, offset: u64, opcode: Option<u8>) -> Error {
        if self.inner.offset.is_none() {
            self.inner.offset = Some(offset);
            self.inner.opcode = opcode;
        }
        self
    }

    /// The error of a value read inside the one at `outer`: its path
    /// (relative to that value) joined under `outer`, as `outer.field` or
    /// `outer[3]`.
    #[cfg(feature = "serde")]
    pub(crate) fn under(mut self, outer: &str) -> Error {
        self.inner.path = Some(match self.inner.path.take() {
            None => outer.to_owned(),
            Some(inner) if outer.is_empty() => inner,
            Some(inner) if inner.starts_with('[') => format!("{outer}{inner}"),
            Some(inner) => format!("{outer}.{inner}"),
        });
        self
    }

    pub(crate) fn with_path(mut self, path: String) -> Error {
        if self.inner.path.is_none() && !path.is_empty() {
            self.inner.path = Some(path);
        }
        self
    }

    pub(crate) fn with_detail(mut self, detail: String) -> Error {
        self.inner.detail = Some(detail);
        self
    }

    /// Adds `detail` unless the error already has one: the innermost
    /// context, which knows the most, wins.
    pub(crate) fn or_detail(mut self, detail: impl FnOnce() -> String) -> Error {
        if self.inner.detail.is_none() {
            self.inner.detail = Some(detail());
        }
        self
    }

    /// Where inside the value a typed read failed, e.g. `[3].points[0].x`.
    pub fn path(&self) -> Option<&str> {
        self.inner.path.as_deref()
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The byte offset of the opcode that failed (reading only), from the
    /// start of the input: for the second pickle of a stream, from the
    /// start of the stream, as [`Unpickler::position`](crate::Unpickler::position)
    /// counts.
    pub fn offset(&self) -> Option<u64> {
        self.inner.offset
    }

    /// The opcode that failed, as its byte (reading only).
    pub fn opcode(&self) -> Option<u8> {
        self.inner.opcode
    }

    /// The opcode that failed, by its `pickle.py` name (reading only).
    pub fn opcode_name(&self) -> Option<&'static str> {
        self.inner.opcode.and_then(crate::base::op::name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(e) => write!(f, "i/o error: {e}"),
            ErrorKind::Eof => f.write_str("pickle data was truncated"),
            ErrorKind::EndOfInput => f.write_str("ran out of input: no pickle begins here"),
            ErrorKind::UnknownOpcode(b) => write!(f, "invalid opcode byte 0x{b:02x}"),
            ErrorKind::UnsupportedProtocol(p) => {
                write!(f, "unsupported pickle protocol {p} (expected 0 to 5)")
            }
            ErrorKind::StackUnderflow => f.write_str("the stack has too few items for this opcode"),
            ErrorKind::MissingMark => f.write_str("expected a MARK on the stack, found none"),
            ErrorKind::MissingMemo(k) => write!(f, "memo has no entry {k}"),
            ErrorKind::UnknownGlobal { module, name, near } => {
                write!(
                    f,
                    "global `{module}.{name}` is not allowed: register a constructor for it, or read in inert mode to keep it as data"
                )?;
                if !near.is_empty() {
                    write!(f, " (registered names near it: {})", near.join(", "))?;
                }
                Ok(())
            }
            ErrorKind::Type { expected, found } => write!(f, "expected {expected}, found {found}"),
            ErrorKind::UnknownExtension(c) => write!(f, "unregistered extension code {c}"),
            ErrorKind::NoPersistentLoad => {
                f.write_str("a persistent id was found but no persistent_load hook is set")
            }
            ErrorKind::NoBuffer => {
                f.write_str("NEXT_BUFFER found but no out-of-band buffer is left")
            }
            ErrorKind::Limit { limit, max } => write!(f, "limit `{limit}` ({max}) exceeded"),
            ErrorKind::DanglingRef(id) => write!(f, "reference #{id} points outside its graph"),
            ErrorKind::Invalid(msg)
            | ErrorKind::Unpicklable(msg)
            | ErrorKind::Custom(msg)
            | ErrorKind::Registry(msg) => f.write_str(msg),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.inner.path {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.inner.kind)?;
        if let Some(detail) = &self.inner.detail {
            write!(f, " ({detail})")?;
        }
        match (self.inner.offset, self.opcode_name(), self.inner.opcode) {
            (Some(at), Some(name), _) => write!(f, " (at byte {at}, {name})"),
            (Some(at), None, Some(_)) | (Some(at), None, None) => write!(f, " (at byte {at})"),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(at) = self.inner.offset {
            d.field("offset", &at);
        }
        if let Some(name) = self.opcode_name() {
            d.field("opcode", &name);
        }
        if let Some(path) = &self.inner.path {
            d.field("path", path);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::new(ErrorKind::Eof)
        } else {
            Error::new(ErrorKind::Io(e))
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_names_offset_and_opcode() {
        let e = Error::new(ErrorKind::MissingMemo(5)).at(12, Some(crate::base::op::BINGET));
        assert_eq!(e.to_string(), "memo has no entry 5 (at byte 12, BINGET)");
        assert_eq!(e.opcode_name(), Some("BINGET"));
    }

    #[test]
    fn io_source_is_kept() {
        use std::error::Error as _;
        let e = Error::from(io::Error::new(io::ErrorKind::PermissionDenied, "nope"));
        assert!(e.source().is_some());
    }
}
