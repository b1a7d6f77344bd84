//! Auditing a pickle without loading it: its opcodes with offsets and
//! arguments (as `pickletools.dis` shows them), and every global it would
//! make a loader look up.
//!
//! ```
//! use reduce::inspect;
//!
//! // A pickle that would run os.system("echo hi") in CPython.
//! let evil = b"cos\nsystem\n(S'echo hi'\ntR.";
//! let found = inspect::globals(evil)?;
//! assert_eq!(found[0].to_string(), "0: GLOBAL os.system");
//!
//! let ops = inspect::disassemble(evil)?;
//! assert_eq!(ops[0].name, "GLOBAL");
//! assert_eq!(ops[0].arg.to_string(), "'os system'");
//! assert_eq!(inspect::dis(evil)?.lines().next(), Some("    0: c    GLOBAL     'os system'"));
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! # What [`globals`] guarantees
//!
//! - **Every lookup the reader would make, in order, with its offset.**
//!   Each `GLOBAL`, `INST`, `STACK_GLOBAL`, `EXT1`, `EXT2` and `EXT4` that
//!   the reader (and CPython) would execute gives one [`Resolution`], at the
//!   byte offset of its opcode. The inspector decodes with the reader's own
//!   decoder and runs a shadow of its stack machine: marks, `POP`,
//!   `POP_MARK`, `DUP`, the memo (`PUT`, `MEMOIZE`, `GET` and their binary
//!   forms, sparse keys included), frames, containers and calls consuming
//!   their operands. So the tricks that fool a scanner reading strings in
//!   passing (names fetched back from the memo, decoys dropped by `POP`,
//!   names pushed as Python 2 strings, names inside frames) are seen as the
//!   reader sees them.
//! - **Names as the pickle spells them**: `__builtin__.eval` stays
//!   `__builtin__.eval` (Python 2 names are not mapped); extension codes
//!   stay codes, since only the loader's registry knows their names.
//! - **Never a guessed name.** A `STACK_GLOBAL` whose module or name is not
//!   a constant `str` of the pickle (the result of a call, a non-ASCII
//!   Python 2 string, a str with a lone surrogate, a tuple, an int) is
//!   reported as [`Named::Computed`], at its offset.
//! - **Malformed input is an error**, with the offset and opcode, wherever
//!   the reader would fail on the pickle's structure: truncation, a stack
//!   underflow, a missing mark or memo entry, a bad frame, a bad string.
//!   Conversely, whatever the reader loads the inspector walks to the same
//!   `STOP`, with one exception: names are copied into the report, so a
//!   long name fetched from the memo for many `STACK_GLOBAL`s (which
//!   CPython's pickler never writes) is refused once the names reported
//!   reach 32 bytes per input byte. No input makes it panic, and the memory
//!   it uses is bounded by a small multiple of the input's length.
//!
//! These claims are tested against CPython's pure-Python unpickler with a
//! recording `find_class`, on a corpus of hand-assembled attacks
//! (`tests/fixtures/attacks/`) and on every fixture of the repository.
//!
//! # What it does not do
//!
//! - **It does not judge.** It lists names; which are dangerous is yours to
//!   decide (or the reader's allow-list: see [`crate::security`]).
//!   `builtins.getattr(builtins.__import__("os"), "system")` is reported as
//!   `builtins.getattr` and `builtins.__import__`: `"system"` is an
//!   argument, data like any other.
//! - **Nested pickles are data.** `pickle.loads(b"...")` is reported as
//!   `pickle.loads`; the inner pickle's globals are listed only if you
//!   inspect those bytes too.
//! - **It does not type-check calls.** Where CPython would stop with a
//!   `TypeError` inside a call (arguments that are not a tuple, say), the
//!   inspector goes on: its list may name more than CPython would reach,
//!   never less.
//! - [`globals`] lists `builtins.getattr(some.Class, "Inner")` (how CPython
//!   names a nested class or a class's method before protocol 4) as the two
//!   lookups CPython makes, `builtins.getattr` and `some.Class`.
//!   [`lookups`] also reports the attribute read, as the dotted name
//!   `some.Class.Inner`, and says whether the two globals were used for
//!   nothing else (see [`Lookups`]).

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use num_bigint::BigInt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::limits::Limits;
use crate::base::op::{self, *};
use crate::read::decode;
use crate::read::input::{SliceRead, Source};
use crate::text;
use crate::text::PyStr;
use crate::value::{Global, Value};

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

fn int(i: impl Into<BigInt>) -> Arg {
    Arg::Int(i.into())
}

/// How `pickletools` shows a Python 2 `str`: decoded as Latin-1.
fn latin1(bytes: &[u8]) -> PyStr {
    PyStr::from(bytes.iter().map(|&b| b as char).collect::<String>())
}

/// The most decimal digits of a protocol 0 `INT`/`LONG`/memo key: the
/// reader's default limit (CPython's `sys.get_int_max_str_digits()`).
fn max_digits() -> usize {
    Limits::default().max_int_digits
}

/// Every opcode up to and including `STOP`, with its argument. Nothing is
/// loaded or checked beyond the encoding of each argument (as
/// `pickletools.genops`, frames are not enforced here; [`globals`] enforces
/// them as the reader does).
///
/// This is [`instructions`] collected: to print or look at a long pickle
/// opcode by opcode, use that, which holds one at a time.
pub fn disassemble(bytes: &[u8]) -> Result<Vec<Instruction>> {
    instructions(bytes).collect()
}

/// The opcodes of the pickle at the start of `bytes`, decoded one at a time
/// as [`disassemble`] decodes them: the same instructions, then the same
/// error if it fails, but never more than one opcode held, so the memory
/// used does not grow with the number of opcodes (a list of a million
/// `None`s is a million one-byte opcodes).
///
/// The iterator ends after `STOP`, or after the first error: the
/// instructions before a fault are yielded first, as `pickletools.genops`
/// yields them before it raises.
///
/// ```
/// use reduce::inspect;
///
/// // Cut short in its second BININT1.
/// let cut = b"\x80\x02K\x01K";
/// let mut ops = inspect::instructions(cut);
/// assert_eq!(ops.next().unwrap()?.name, "PROTO");
/// assert_eq!(ops.next().unwrap()?.arg.to_string(), "1");
/// let fault = ops.next().unwrap().unwrap_err();
/// assert_eq!(fault.offset(), Some(4));
/// assert!(ops.next().is_none());
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn instructions(bytes: &[u8]) -> Instructions<'_> {
    Instructions {
        src: SliceRead::new(bytes),
        done: false,
    }
}

/// The opcodes of a pickle, one at a time: see [`instructions`].
pub struct Instructions<'a> {
    src: SliceRead<'a>,
    /// Past `STOP` or an error.
    done: bool,
}

impl fmt::Debug for Instructions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instructions")
            .field("offset", &self.src.pos())
            .field("done", &self.done)
            .finish()
    }
}

impl Iterator for Instructions<'_> {
    type Item = Result<Instruction>;

    fn next(&mut self) -> Option<Result<Instruction>> {
        if self.done {
            return None;
        }
        let src = &mut self.src;
        let offset = src.pos();
        let decoded = src
            .byte()
            .map_err(|e| e.at(offset, None))
            .and_then(|opcode| {
                let name = op::name(opcode)
                    .ok_or_else(|| Error::new(ErrorKind::UnknownOpcode(opcode)).at(offset, None))?;
                let arg = decode_arg(opcode, src).map_err(|e| e.at(offset, Some(opcode)))?;
                Ok(Instruction {
                    offset,
                    opcode,
                    name,
                    arg,
                })
            });
        self.done = decoded.as_ref().map_or(true, |i| i.opcode == STOP);
        Some(decoded)
    }
}

impl std::iter::FusedIterator for Instructions<'_> {}

/// An opcode's argument as `pickletools` shows it, read with the reader's
/// decoder. Checks that belong to the meaning rather than the encoding (a
/// protocol above 5, an extension code of 0) are left to the reader and to
/// [`globals`], as `pickletools` leaves them to the unpickler.
fn decode_arg<S: Source>(opcode: u8, src: &mut S) -> Result<Arg> {
    Ok(match opcode {
        PROTO | BININT1 | EXT1 => int(decode::uint1(src)?),
        BININT2 | EXT2 => int(decode::uint2(src)?),
        BININT | EXT4 => int(decode::int4(src)?),
        BINGET | BINPUT | LONG_BINGET | LONG_BINPUT => {
            int(decode::memo_key(src, opcode, max_digits())?)
        }
        // Shown as written, a negative key too, as `pickletools` shows it;
        // refusing it is the loader's business.
        GET | PUT => Arg::Int(decode::decimal(src.line()?, "the memo key", max_digits())?),
        FRAME => int(decode::uint8(src)?),
        INT => match decode::int_line(src, max_digits())? {
            decode::IntLine::Bool(b) => Arg::Bool(b),
            decode::IntLine::Int(i) => Arg::Int(i),
        },
        LONG => Arg::Int(decode::long_line(src, max_digits())?),
        LONG1 | LONG4 => Arg::Int(BigInt::from_signed_bytes_le(decode::long_bytes(
            src, opcode,
        )?)),
        FLOAT => Arg::Float(decode::float_line(src)?),
        BINFLOAT => Arg::Float(decode::float8(src)?),
        STRING | BINSTRING | SHORT_BINSTRING => Arg::Str(latin1(&decode::py2_string(src, opcode)?)),
        UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
            Arg::Str(decode::unicode(src, opcode)?)
        }
        SHORT_BINBYTES | BINBYTES | BINBYTES8 => Arg::Bytes(decode::bytes(src, opcode)?.to_vec()),
        BYTEARRAY8 => Arg::ByteArray(decode::bytes(src, opcode)?.to_vec()),
        GLOBAL | INST => {
            let module = decode::name_line(src, "module name")?;
            let name = decode::name_line(src, "name")?;
            Arg::Str(PyStr::from(format!("{module} {name}")))
        }
        PERSID => Arg::Str(PyStr::from(decode::persid_line(src)?)),
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

/// A global, an extension code or a computed name that a pickle makes the
/// reader look up, where it does so: one entry of [`globals`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resolution {
    /// Byte offset of the opcode that looks it up.
    pub offset: u64,
    /// That opcode: `GLOBAL`, `INST`, `STACK_GLOBAL`, `EXT1`, `EXT2` or
    /// `EXT4`.
    pub opcode: u8,
    /// What it names.
    pub named: Named,
}

impl fmt::Display for Resolution {
    /// `offset: OPCODE named`, e.g. `0: GLOBAL os.system`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = op::name(self.opcode).unwrap_or("?");
        write!(f, "{}: {} {}", self.offset, op, self.named)
    }
}

/// What a [`Resolution`] names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Named {
    /// A module and qualified name, exactly as the pickle spells them and
    /// the reader sees them (`GLOBAL`, `INST`, `STACK_GLOBAL`). Python 2
    /// names (`__builtin__`, `copy_reg`) are not mapped to Python 3 ones.
    Global(Global),
    /// An extension code (`EXT1`, `EXT2`, `EXT4`): only the registry that
    /// reads the pickle (CPython's `copyreg`) knows the name behind it.
    Extension(u32),
    /// A `STACK_GLOBAL` whose module or name is not a constant `str` of
    /// the pickle: the result of a call, a Python 2 string that is not
    /// ASCII (its text depends on the `encoding` the loader picks), a
    /// string with a lone surrogate, or no string at all (a tuple, an int).
    /// CPython would look up whatever that value is at load time.
    Computed,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Global(g) => write!(f, "{g}"),
            Named::Extension(code) => write!(f, "extension code {code}"),
            Named::Computed => f.write_str("computed name"),
        }
    }
}

/// Every global and extension code the first pickle in `bytes` makes the
/// reader look up, in order, each with the offset of its opcode.
///
/// The pickle is run on a shadow of the reader's machine: the same
/// decoder, the same frame checks, the same stack, marks and memo, but
/// holding only "this is the constant string `s`" or "this is something
/// else". So a name fetched from the memo, duplicated, or hidden behind
/// `POP`/`POP_MARK` decoys is reported as the reader sees it, and a
/// `STACK_GLOBAL` whose operands are not constant strings is reported as
/// [`Named::Computed`], never as a guess. Nothing is called, imported or
/// judged: which names are dangerous is for the caller to decide. Inner
/// pickles (the bytes given to `pickle.loads`) are data: their globals are
/// listed only if you inspect those bytes too.
///
/// The input is checked as the reader checks it (truncation, stack
/// underflow, a missing mark or memo entry, frames, string encodings), and
/// a malformed pickle is an error with its offset. Bytes after `STOP` are
/// ignored; [`scan_one`] says where the pickle ended.
///
/// ```
/// use reduce::inspect::{globals, Named, Resolution};
/// use reduce::{op, Global};
///
/// // pickle.dumps(collections.OrderedDict(), protocol=4), then EXT1 7.
/// let bytes = b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R\x82\x07.";
/// let found = globals(bytes)?;
/// assert_eq!(
///     found[0],
///     Resolution {
///         offset: 30,
///         opcode: op::STACK_GLOBAL,
///         named: Named::Global(Global::new("collections", "OrderedDict")),
///     }
/// );
/// assert_eq!(found[1].named, Named::Extension(7));
/// assert_eq!(found[1].to_string(), "33: EXT1 extension code 7");
///
/// // A decoy: "posix" is pushed and popped; "os" is what is looked up.
/// let decoy = b"\x8c\x05posix0\x8c\x02os\x8c\x06system\x93.";
/// assert_eq!(globals(decoy)?[0].named.to_string(), "os.system");
///
/// // A name made by a call is reported as computed, not guessed.
/// let made = b"\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93.";
/// let named: Vec<String> = globals(made)?.iter().map(|r| r.named.to_string()).collect();
/// assert_eq!(named, ["builtins.str", "computed name"]);
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn globals(bytes: &[u8]) -> Result<Vec<Resolution>> {
    scan_one(bytes).map(|(found, _)| found)
}

/// One pickle at the start of `bytes`: what [`globals`] reports for it, and
/// its length (the bytes up to and including `STOP`), so that a stream of
/// several pickles can be walked.
///
/// ```
/// use reduce::inspect::scan_one;
///
/// let stream = b"cos\nsystem\n.K\x01.";
/// let (first, len) = scan_one(stream)?;
/// assert_eq!((first.len(), len), (1, 12));
/// let (second, len) = scan_one(&stream[12..])?;
/// assert_eq!((second.len(), len), (0, 3));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn scan_one(bytes: &[u8]) -> Result<(Vec<Resolution>, usize)> {
    lookups(bytes).map(|l| (l.resolutions, l.length))
}

/// What the first pickle in `bytes` looks up: every global and extension
/// code, as [`globals`] lists them, and every attribute it reads off a
/// global with `builtins.getattr`, as CPython names a nested class or a
/// class's method before protocol 4: `getattr(zoneinfo.ZoneInfo,
/// "_unpickle")`, which CPython writes into every `datetime` with a
/// `ZoneInfo`, reads the dotted global `zoneinfo.ZoneInfo._unpickle`.
///
/// An attribute is reported where `getattr` is called (`REDUCE`) on
/// exactly two arguments: a global (or an attribute read this way) and a
/// constant `str` without a dot. [`Lookups::only_for_attributes`] then says,
/// for each global, whether the pickle used it for nothing but such reads:
/// a `getattr` called only that way can reach only the attributes listed,
/// so a scanner may judge those dotted names instead of `getattr` itself,
/// as a protocol 4 pickle names them. A `getattr` (or a class) that is
/// called in any other way, stored in a container, passed to anything, set
/// attributes on or returned keeps its flag `false`, even where one of its
/// uses was an attribute read.
///
/// ```
/// use reduce::inspect::{lookups, Origin};
///
/// // pickle.dumps(ZoneInfo._unpickle, protocol=2), shortened:
/// // getattr(zoneinfo.ZoneInfo, "_unpickle").
/// let bytes = b"\x80\x02cbuiltins\ngetattr\nczoneinfo\nZoneInfo\nX\t\x00\x00\x00_unpickle\x86R.";
/// let found = lookups(bytes)?;
/// let names: Vec<String> = found.resolutions.iter().map(|r| r.named.to_string()).collect();
/// assert_eq!(names, ["builtins.getattr", "zoneinfo.ZoneInfo"]);
/// assert_eq!(found.attributes[0].named.to_string(), "zoneinfo.ZoneInfo._unpickle");
/// assert_eq!(found.attributes[0].offset, 54);
/// assert_eq!(found.attributes[0].of, Origin::Resolution(1));
/// assert_eq!(found.only_for_attributes, [true, true]);
///
/// // getattr(__import__("os"), "system"): not a global's attribute, so
/// // `getattr` is reported as used for more.
/// let chain = b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\nX\x02\x00\x00\x00os\x85RX\x06\x00\x00\x00system\x86R.";
/// let found = lookups(chain)?;
/// assert!(found.attributes.is_empty());
/// assert_eq!(found.only_for_attributes, [false, false]);
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn lookups(bytes: &[u8]) -> Result<Lookups> {
    let mut src = SliceRead::new(bytes);
    let mut shadow = Shadow {
        name_budget: NAME_BYTES_PER_INPUT_BYTE.saturating_mul(bytes.len()),
        ..Shadow::default()
    };
    loop {
        let offset = src.pos();
        let opcode = src.byte().map_err(|e| e.at(offset, None))?;
        match shadow.step(opcode, offset, &mut src) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(e.at(offset, Some(opcode))),
        }
    }
    let mut only_for_attributes = vec![false; shadow.found.len()];
    for o in &shadow.objects {
        let only = o.read && !o.escaped;
        match o.from {
            Origin::Resolution(i) => only_for_attributes[i] = only,
            Origin::Attribute(i) => shadow.attributes[i].only_for_attributes = only,
        }
    }
    Ok(Lookups {
        resolutions: shadow.found,
        attributes: shadow.attributes,
        only_for_attributes,
        builds: shadow.builds,
        length: src.pos() as usize,
    })
}

/// What [`lookups`] reports of one pickle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lookups {
    /// Every global and extension code it looks up, in order: what
    /// [`globals`] returns.
    pub resolutions: Vec<Resolution>,
    /// Every attribute it reads off a global with `builtins.getattr`, in
    /// order.
    pub attributes: Vec<Attribute>,
    /// One flag for each of `resolutions`: whether what it looked up was
    /// used only to read the `attributes` (as the `getattr` called, or as
    /// the object read from), and at least once. Discarding it (`POP`) or
    /// leaving it in the memo is no use; anything else is.
    pub only_for_attributes: Vec<bool>,
    /// Every `BUILD` whose target is an instance of a global, or a global
    /// itself, in order.
    pub builds: Vec<Build>,
    /// The pickle's length in bytes, through its `STOP`.
    pub length: usize,
}

/// An attribute read by calling `builtins.getattr` on a global (or on an
/// attribute read so) and a constant name: one entry of
/// [`Lookups::attributes`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Attribute {
    /// Byte offset of the `REDUCE` that calls `getattr`.
    pub offset: u64,
    /// The dotted global it reads, as a protocol 4 pickle would name it:
    /// the object's module, and its name, a dot and the attribute's.
    pub named: Global,
    /// The index in [`Lookups::resolutions`] of the `getattr` called.
    pub getattr: usize,
    /// What the attribute is read from.
    pub of: Origin,
    /// Whether the pickle used what it read only to read further
    /// attributes off it (`Outer.Inner` of `Outer.Inner.Deep`), as
    /// [`Lookups::only_for_attributes`] says of a global.
    pub only_for_attributes: bool,
}

/// Where an object the pickle looked up comes from: what an [`Attribute`]
/// is read from, what a [`Build`] sets the state of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The global at this index of [`Lookups::resolutions`].
    Resolution(usize),
    /// The attribute at this index of [`Lookups::attributes`] (a class
    /// nested two deep, say).
    Attribute(usize),
}

/// A `BUILD` whose target the inspector follows: one entry of
/// [`Lookups::builds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Build {
    /// Byte offset of the `BUILD` opcode.
    pub offset: u64,
    /// What it sets the state of.
    pub target: Built,
}

/// What a [`Build`] sets the state of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Built {
    /// An object made by calling a global (or an attribute read off one)
    /// with `NEWOBJ`, `NEWOBJ_EX`, `REDUCE`, `OBJ` or `INST`; for
    /// `copyreg._reconstructor`, `__newobj__` and `__newobj_ex__`, the
    /// class they are given. This is how a loader such as joblib's, which
    /// reads more bytes after the `BUILD` of its own classes, is followed.
    InstanceOf(Origin),
    /// The global (or attribute) itself: CPython sets its attributes, so a
    /// pickle can replace a class's methods.
    Object(Origin),
}

impl fmt::Display for Attribute {
    /// `offset: REDUCE getattr module.name`, e.g. `115: REDUCE getattr
    /// zoneinfo.ZoneInfo._unpickle`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: REDUCE getattr {}", self.offset, self.named)
    }
}

/// What the shadow machine knows of a stack item.
#[derive(Clone, Debug, Default)]
enum Slot {
    /// Anything it does not follow.
    #[default]
    Other,
    /// A constant string.
    Str(Rc<str>),
    /// What a lookup gave: entry `i` of [`Shadow::objects`].
    Object(usize),
    /// A 2-tuple of an object and a constant name: `getattr`'s arguments
    /// for an attribute read.
    Pair(usize, Rc<str>),
    /// Any other tuple whose first item is an object: the arguments of
    /// copyreg's reconstructors (`(cls, object, None)`, `(cls,)`).
    Args(usize),
    /// What calling an object made.
    Instance(usize),
}

/// Something a lookup gave (a global, or an attribute read off one), and
/// how the pickle used it.
#[derive(Debug)]
struct Object {
    from: Origin,
    /// Whether it is `getattr`, or one of copyreg's reconstructors.
    kind: Callable,
    /// Used by an attribute read.
    read: bool,
    /// Used otherwise.
    escaped: bool,
}

/// What calling an [`Object`] does, where the inspector cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Callable {
    /// `builtins.getattr`: reads an attribute.
    GetAttr,
    /// `copyreg._reconstructor`, `__newobj__`, `__newobj_ex__`: makes an
    /// instance of its first argument.
    Reconstructor,
    /// Anything else.
    Other,
}

/// The reader's machine with every value replaced by a [`Slot`]: the same
/// stack discipline (marks fence the stack, as in `Machine`), the same memo
/// keys, so that what reaches `STACK_GLOBAL` is what the reader would pop.
#[derive(Default)]
struct Shadow {
    stack: Vec<Slot>,
    marks: Vec<usize>,
    memo: HashMap<u64, Slot>,
    found: Vec<Resolution>,
    attributes: Vec<Attribute>,
    objects: Vec<Object>,
    builds: Vec<Build>,
    /// Bytes of names the resolutions may still copy.
    name_budget: usize,
}

/// Each reported name is a copy, and a name stored once in the memo can be
/// fetched for `STACK_GLOBAL` again and again for five bytes each time: a
/// 1 MiB name would cost 1 MiB per five input bytes. CPython's pickler never
/// writes that (it memoizes the global itself), so names copied beyond this
/// many bytes per input byte are refused as out of proportion.
const NAME_BYTES_PER_INPUT_BYTE: usize = 32;

/// Notes that the pickle used `slot` for something other than an
/// attribute read: whatever object it is or holds has escaped.
fn spend(objects: &mut [Object], slot: &Slot) {
    if let Slot::Object(i) | Slot::Pair(i, _) | Slot::Args(i) = *slot {
        objects[i].escaped = true;
    }
}

fn underflow() -> Error {
    Error::new(ErrorKind::StackUnderflow)
}

impl Shadow {
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Checks that `n` items are above the last mark.
    fn need(&self, n: usize) -> Result<()> {
        if self.stack.len() < self.fence() + n {
            return Err(underflow());
        }
        Ok(())
    }

    /// Pops the top item, which the opcode uses.
    fn pop(&mut self) -> Result<Slot> {
        self.need(1)?;
        let slot = self.stack.pop().unwrap_or_default();
        spend(&mut self.objects, &slot);
        Ok(slot)
    }

    /// The top item, copied (`DUP`, the memo): not a use.
    fn top(&self) -> Result<Slot> {
        self.need(1)?;
        Ok(self.stack.last().cloned().unwrap_or_default())
    }

    /// Marks the top `n` items used in place (the list `APPEND` adds to, the
    /// object `BUILD` sets the state of).
    fn use_top(&mut self, n: usize) -> Result<()> {
        self.need(n)?;
        for slot in &self.stack[self.stack.len() - n..] {
            spend(&mut self.objects, slot);
        }
        Ok(())
    }

    /// Drops `n` items, which the opcode uses, and pushes one non-constant
    /// in their place: the result of a call or a container made of them.
    fn replace(&mut self, n: usize) -> Result<()> {
        self.need(n)?;
        let start = self.stack.len() - n;
        for slot in self.stack.drain(start..) {
            spend(&mut self.objects, &slot);
        }
        self.stack.push(Slot::Other);
        Ok(())
    }

    /// Pops the last mark; returns where its items start.
    fn take_mark(&mut self) -> Result<usize> {
        self.marks
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::MissingMark))
    }

    /// Pops the last mark and the items above it, which the opcode uses;
    /// returns how many there were.
    fn pop_mark(&mut self) -> Result<usize> {
        let mark = self.take_mark()?;
        let n = self.stack.len() - mark;
        for slot in self.stack.drain(mark..) {
            spend(&mut self.objects, &slot);
        }
        Ok(n)
    }

    /// A tuple of the items from `start` up: `getattr`'s arguments for an
    /// attribute read when they are an object and a constant name,
    /// otherwise a tuple that uses its items.
    fn tuple(&mut self, start: usize) {
        if let [Slot::Object(o), Slot::Str(name)] = &self.stack[start..] {
            if !name.is_empty() && !name.contains('.') {
                let pair = Slot::Pair(*o, name.clone());
                self.stack.truncate(start);
                self.stack.push(pair);
                return;
            }
        }
        let first = match self.stack.get(start) {
            Some(&Slot::Object(o)) => Some(o),
            _ => None,
        };
        for (i, slot) in self.stack.drain(start..).enumerate() {
            if i > 0 || first.is_none() {
                spend(&mut self.objects, &slot);
            }
        }
        self.stack.push(first.map_or(Slot::Other, Slot::Args));
    }

    /// Pushes what calling `callable` with `args` makes: an instance of
    /// the class a reconstructor is given, or of the object called.
    fn push_call(&mut self, callable: &Slot, args: &Slot) {
        let made = match (callable, args) {
            (&Slot::Object(f), &(Slot::Args(c) | Slot::Pair(c, _)))
                if self.objects[f].kind == Callable::Reconstructor =>
            {
                Slot::Instance(c)
            }
            (&Slot::Object(f), _) if self.objects[f].kind != Callable::GetAttr => Slot::Instance(f),
            _ => Slot::Other,
        };
        spend(&mut self.objects, callable);
        spend(&mut self.objects, args);
        self.stack.push(made);
    }

    /// `REDUCE`: an attribute read when `getattr` is called on a pair.
    fn reduce(&mut self, offset: u64) -> Result<()> {
        self.need(2)?;
        let args = self.stack.pop().unwrap_or_default();
        let callable = self.stack.pop().unwrap_or_default();
        if let (Slot::Object(f), Slot::Pair(o, name)) = (&callable, &args) {
            if self.objects[*f].kind == Callable::GetAttr {
                let named = match self.objects[*o].from {
                    Origin::Resolution(i) => match &self.found[i].named {
                        Named::Global(g) => Some(g),
                        _ => None,
                    },
                    Origin::Attribute(i) => Some(&self.attributes[i].named),
                };
                if let Some(g) = named {
                    let named = Global::new(&g.module, format!("{}.{name}", g.name));
                    self.charge(&named)?;
                    let Origin::Resolution(getattr) = self.objects[*f].from else {
                        unreachable!("only a resolution is getattr")
                    };
                    self.objects[*f].read = true;
                    self.objects[*o].read = true;
                    let of = self.objects[*o].from;
                    self.attributes.push(Attribute {
                        offset,
                        named,
                        getattr,
                        of,
                        only_for_attributes: false,
                    });
                    self.objects.push(Object {
                        from: Origin::Attribute(self.attributes.len() - 1),
                        kind: Callable::Other,
                        read: false,
                        escaped: false,
                    });
                    self.stack.push(Slot::Object(self.objects.len() - 1));
                    return Ok(());
                }
            }
        }
        self.push_call(&callable, &args);
        Ok(())
    }

    /// Takes a reported name's bytes from the budget.
    fn charge(&mut self, g: &Global) -> Result<()> {
        let cost = g.module.len() + g.name.len();
        self.name_budget = self.name_budget.checked_sub(cost).ok_or_else(|| {
            Error::invalid(format!(
                "expected names in proportion to the input, found a {cost}-byte global \
                 past {NAME_BYTES_PER_INPUT_BYTE} bytes of names per input byte"
            ))
        })?;
        Ok(())
    }

    fn resolve(&mut self, offset: u64, opcode: u8, named: Named) -> Result<()> {
        let mut kind = Callable::Other;
        if let Named::Global(g) = &named {
            self.charge(g)?;
            kind = match (&*g.module, &*g.name) {
                ("builtins" | "__builtin__", "getattr") => Callable::GetAttr,
                ("copyreg" | "copy_reg", "_reconstructor" | "__newobj__" | "__newobj_ex__") => {
                    Callable::Reconstructor
                }
                _ => Callable::Other,
            };
        }
        self.found.push(Resolution {
            offset,
            opcode,
            named,
        });
        self.objects.push(Object {
            from: Origin::Resolution(self.found.len() - 1),
            kind,
            read: false,
            escaped: false,
        });
        self.stack.push(Slot::Object(self.objects.len() - 1));
        Ok(())
    }

    /// Runs one opcode as `Machine::step` does, on slots; `Ok(true)` at
    /// `STOP`.
    fn step(&mut self, op: u8, offset: u64, src: &mut SliceRead<'_>) -> Result<bool> {
        let digits = max_digits();
        match op {
            // Stack and mark manipulation.
            MARK => self.marks.push(self.stack.len()),
            STOP => {
                // What the pickle returns is used by its caller.
                self.pop()?;
                return Ok(true);
            }
            POP => {
                // POP right after MARK drops the mark, as in the reader and
                // CPython. Dropping an object does not use it.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.need(1)?;
                    self.stack.pop();
                }
            }
            POP_MARK => {
                let mark = self.take_mark()?;
                self.stack.truncate(mark);
            }
            DUP => {
                let top = self.top()?;
                self.stack.push(top);
            }

            // Framing and protocol.
            PROTO => {
                decode::proto(src)?;
            }
            FRAME => {
                let len = decode::uint8(src)?;
                src.frame(len)?;
            }

            // Atoms: decoded (so that a malformed one is the reader's
            // error), then kept as "not a string".
            NONE | NEWTRUE | NEWFALSE | EMPTY_TUPLE | EMPTY_LIST | EMPTY_DICT | EMPTY_SET
            | NEXT_BUFFER => self.stack.push(Slot::Other),
            INT => {
                decode::int_line(src, digits)?;
                self.stack.push(Slot::Other)
            }
            BININT => {
                decode::int4(src)?;
                self.stack.push(Slot::Other)
            }
            BININT1 => {
                decode::uint1(src)?;
                self.stack.push(Slot::Other)
            }
            BININT2 => {
                decode::uint2(src)?;
                self.stack.push(Slot::Other)
            }
            LONG => {
                decode::long_line(src, digits)?;
                self.stack.push(Slot::Other)
            }
            LONG1 | LONG4 => {
                decode::long_bytes(src, op)?;
                self.stack.push(Slot::Other)
            }
            FLOAT => {
                decode::float_line(src)?;
                self.stack.push(Slot::Other)
            }
            BINFLOAT => {
                decode::float8(src)?;
                self.stack.push(Slot::Other)
            }
            SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                decode::bytes(src, op)?;
                self.stack.push(Slot::Other)
            }

            // Strings: the only constants that can name a global.
            STRING | BINSTRING | SHORT_BINSTRING => {
                // CPython's default `encoding="ASCII"`. Other bytes make a
                // str or bytes depending on the loader's encoding: not a
                // constant name.
                let bytes = decode::py2_string(src, op)?;
                let text = std::str::from_utf8(&bytes).ok().filter(|t| t.is_ascii());
                self.stack
                    .push(text.map_or(Slot::Other, |t| Slot::Str(Rc::from(t))))
            }
            UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                // A lone surrogate has no `String`; the name would be a guess.
                let s = decode::unicode(src, op)?;
                self.stack
                    .push(s.as_str().map_or(Slot::Other, |t| Slot::Str(Rc::from(t))))
            }

            // Containers consume their items.
            TUPLE => {
                let mark = self.take_mark()?;
                self.tuple(mark)
            }
            LIST | FROZENSET => {
                self.pop_mark()?;
                self.stack.push(Slot::Other)
            }
            DICT => {
                if self.pop_mark()? % 2 != 0 {
                    return Err(Error::invalid("odd number of items for DICT"));
                }
                self.stack.push(Slot::Other)
            }
            TUPLE2 => {
                self.need(2)?;
                self.tuple(self.stack.len() - 2)
            }
            TUPLE1 | TUPLE3 => {
                let n = (op - TUPLE1 + 1) as usize;
                self.need(n)?;
                self.tuple(self.stack.len() - n)
            }
            APPEND => {
                self.need(2)?;
                self.pop()?;
                self.use_top(1)?;
            }
            SETITEM => {
                self.need(3)?;
                self.pop()?;
                self.pop()?;
                self.use_top(1)?;
            }
            APPENDS | SETITEMS | ADDITEMS => {
                let n = self.pop_mark()?;
                self.use_top(1)?;
                if op == SETITEMS && n % 2 != 0 {
                    return Err(Error::invalid("odd number of items for SETITEMS"));
                }
            }

            // Memo.
            PUT | BINPUT | LONG_BINPUT => {
                let key = decode::memo_key(src, op, digits)?;
                let top = self.top()?;
                self.memo.insert(key, top);
            }
            MEMOIZE => {
                // The next key is the number of keys stored, sparse ones
                // included, as in CPython's `len(memo)`.
                let top = self.top()?;
                self.memo.insert(self.memo.len() as u64, top);
            }
            GET | BINGET | LONG_BINGET => {
                let key = decode::memo_key(src, op, digits)?;
                let slot = self
                    .memo
                    .get(&key)
                    .ok_or_else(|| Error::new(ErrorKind::MissingMemo(key)))?
                    .clone();
                self.stack.push(slot)
            }

            // Globals and the calls that consume them.
            GLOBAL => {
                let module = decode::name_line(src, "GLOBAL module name")?;
                let name = decode::name_line(src, "GLOBAL name")?;
                self.resolve(offset, op, Named::Global(Global::new(module, name)))?
            }
            INST => {
                let module = decode::name_line(src, "INST module name")?;
                let name = decode::name_line(src, "INST name")?;
                // The reader takes the arguments before it looks the class
                // up, and calls it at once.
                self.pop_mark()?;
                self.resolve(offset, op, Named::Global(Global::new(module, name)))?;
                let class = self.stack.pop().unwrap_or_default();
                self.push_call(&class, &Slot::Other)
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let named = match (module, name) {
                    (Slot::Str(m), Slot::Str(n)) => Named::Global(Global::new(&*m, &*n)),
                    _ => Named::Computed,
                };
                self.resolve(offset, op, named)?
            }
            EXT1 | EXT2 | EXT4 => {
                let code = decode::ext_code(src, op)?;
                self.resolve(offset, op, Named::Extension(code))?
            }
            REDUCE => self.reduce(offset)?,
            NEWOBJ | NEWOBJ_EX => {
                let n = if op == NEWOBJ { 2 } else { 3 };
                self.need(n)?;
                let start = self.stack.len() - n;
                let class = std::mem::take(&mut self.stack[start]);
                self.replace(n)?;
                self.stack.pop();
                self.push_call(&class, &Slot::Other)
            }
            OBJ => {
                let mark = self.take_mark()?;
                if self.stack.len() == mark {
                    return Err(underflow());
                }
                let class = std::mem::take(&mut self.stack[mark]);
                for slot in self.stack.drain(mark..) {
                    spend(&mut self.objects, &slot);
                }
                self.push_call(&class, &Slot::Other)
            }
            BUILD => {
                self.need(2)?;
                self.pop()?;
                let target = match self.stack.last() {
                    Some(&Slot::Instance(c)) => Some(Built::InstanceOf(self.objects[c].from)),
                    Some(&Slot::Object(o)) => Some(Built::Object(self.objects[o].from)),
                    _ => None,
                };
                if let Some(target) = target {
                    self.builds.push(Build { offset, target });
                }
                self.use_top(1)?;
            }
            PERSID => {
                decode::persid_line(src)?;
                self.stack.push(Slot::Other)
            }
            BINPERSID => self.replace(1)?,
            READONLY_BUFFER => self.use_top(1)?,
            other => return Err(Error::new(ErrorKind::UnknownOpcode(other))),
        }
        Ok(false)
    }
}
