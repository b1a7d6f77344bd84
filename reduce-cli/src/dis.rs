//! `reduce dis`: the disassembly of `python3 -m pickletools`, line for line.
//!
//! The opcodes and their arguments come from
//! [`reduce::inspect::instructions`], one at a time; this file adds what
//! `pickletools.dis` adds on top: the indentation of each `MARK` level,
//! `(MARK at N)` and `(as N)` notes, its checks of the memo and the stack,
//! and the closing "highest protocol" line.

use std::fmt::Write as _;

use reduce::inspect::{Arg, Instruction};

use crate::pickles;

/// What `pickletools` knows of an opcode that the disassembly needs: the
/// protocol that introduced it, its stack effect and a short description.
struct Meta {
    proto: u8,
    /// Items popped (those above the mark, when `to_mark`, are popped too).
    pops: usize,
    /// Pops everything down to and including the topmost mark first.
    to_mark: bool,
    /// Items pushed.
    pushes: usize,
    description: &'static str,
}

const fn m(proto: u8, pops: usize, to_mark: bool, pushes: usize, d: &'static str) -> Meta {
    Meta {
        proto,
        pops,
        to_mark,
        pushes,
        description: d,
    }
}

/// The stack effects are those of `pickletools.opcodes` (`stack_before`,
/// `stack_after`); the descriptions are ours.
fn meta(opcode: u8) -> Meta {
    use reduce::op::*;
    match opcode {
        INT => m(
            0,
            0,
            false,
            1,
            "push an int (or a bool spelled 00/01), decimal text",
        ),
        BININT => m(1, 0, false, 1, "push a 4-byte signed int"),
        BININT1 => m(1, 0, false, 1, "push a 1-byte unsigned int"),
        BININT2 => m(1, 0, false, 1, "push a 2-byte unsigned int"),
        LONG => m(0, 0, false, 1, "push an int, decimal text ending in L"),
        LONG1 => m(
            2,
            0,
            false,
            1,
            "push an int, two's complement, 1-byte length",
        ),
        LONG4 => m(
            2,
            0,
            false,
            1,
            "push an int, two's complement, 4-byte length",
        ),
        STRING => m(0, 0, false, 1, "push a Python 2 str, quoted text"),
        BINSTRING => m(1, 0, false, 1, "push a Python 2 str, 4-byte length"),
        SHORT_BINSTRING => m(1, 0, false, 1, "push a Python 2 str, 1-byte length"),
        BINBYTES => m(3, 0, false, 1, "push bytes, 4-byte length"),
        SHORT_BINBYTES => m(3, 0, false, 1, "push bytes, 1-byte length"),
        BINBYTES8 => m(4, 0, false, 1, "push bytes, 8-byte length"),
        BYTEARRAY8 => m(5, 0, false, 1, "push a bytearray, 8-byte length"),
        NEXT_BUFFER => m(5, 0, false, 1, "push the next out-of-band buffer"),
        READONLY_BUFFER => m(5, 1, false, 1, "make the buffer on top read-only"),
        NONE => m(0, 0, false, 1, "push None"),
        NEWTRUE => m(2, 0, false, 1, "push True"),
        NEWFALSE => m(2, 0, false, 1, "push False"),
        UNICODE => m(0, 0, false, 1, "push a str, raw-unicode-escape text"),
        SHORT_BINUNICODE => m(4, 0, false, 1, "push a str, UTF-8, 1-byte length"),
        BINUNICODE => m(1, 0, false, 1, "push a str, UTF-8, 4-byte length"),
        BINUNICODE8 => m(4, 0, false, 1, "push a str, UTF-8, 8-byte length"),
        FLOAT => m(0, 0, false, 1, "push a float, decimal text"),
        BINFLOAT => m(1, 0, false, 1, "push a float, 8 bytes big-endian"),
        EMPTY_LIST => m(1, 0, false, 1, "push an empty list"),
        APPEND => m(0, 2, false, 1, "append the top item to the list below it"),
        APPENDS => m(
            1,
            1,
            true,
            1,
            "extend the list below the mark by the items above it",
        ),
        LIST => m(0, 0, true, 1, "build a list of the items above the mark"),
        EMPTY_TUPLE => m(1, 0, false, 1, "push ()"),
        TUPLE => m(0, 0, true, 1, "build a tuple of the items above the mark"),
        TUPLE1 => m(2, 1, false, 1, "build a 1-tuple of the top item"),
        TUPLE2 => m(2, 2, false, 1, "build a 2-tuple of the top two items"),
        TUPLE3 => m(2, 3, false, 1, "build a 3-tuple of the top three items"),
        EMPTY_DICT => m(1, 0, false, 1, "push an empty dict"),
        DICT => m(
            0,
            0,
            true,
            1,
            "build a dict of the key, value pairs above the mark",
        ),
        SETITEM => m(
            0,
            3,
            false,
            1,
            "set dict[key] = value from the top three items",
        ),
        SETITEMS => m(
            1,
            1,
            true,
            1,
            "set the key, value pairs above the mark in the dict below",
        ),
        EMPTY_SET => m(4, 0, false, 1, "push an empty set"),
        ADDITEMS => m(
            4,
            1,
            true,
            1,
            "add the items above the mark to the set below it",
        ),
        FROZENSET => m(
            4,
            0,
            true,
            1,
            "build a frozenset of the items above the mark",
        ),
        POP => m(0, 1, false, 0, "discard the top item (or the topmost mark)"),
        DUP => m(0, 1, false, 2, "push the top item again"),
        MARK => m(0, 0, false, 0, "push a mark"),
        POP_MARK => m(
            1,
            0,
            true,
            0,
            "discard everything down to and including the mark",
        ),
        GET => m(0, 0, false, 1, "push memo[n], decimal text"),
        BINGET => m(1, 0, false, 1, "push memo[n], 1-byte index"),
        LONG_BINGET => m(1, 0, false, 1, "push memo[n], 4-byte index"),
        PUT => m(0, 0, false, 0, "memo[n] = top item, decimal text"),
        BINPUT => m(1, 0, false, 0, "memo[n] = top item, 1-byte index"),
        LONG_BINPUT => m(1, 0, false, 0, "memo[n] = top item, 4-byte index"),
        MEMOIZE => m(4, 1, false, 1, "memo[len(memo)] = top item"),
        EXT1 => m(
            2,
            0,
            false,
            1,
            "push the global registered as extension code (1 byte)",
        ),
        EXT2 => m(
            2,
            0,
            false,
            1,
            "push the global registered as extension code (2 bytes)",
        ),
        EXT4 => m(
            2,
            0,
            false,
            1,
            "push the global registered as extension code (4 bytes)",
        ),
        GLOBAL => m(0, 0, false, 1, "push the global module.name, imported"),
        STACK_GLOBAL => m(
            4,
            2,
            false,
            1,
            "push the global named by the two strs on top, imported",
        ),
        REDUCE => m(
            0,
            2,
            false,
            1,
            "call the callable below with the argument tuple on top",
        ),
        BUILD => m(
            0,
            2,
            false,
            1,
            "apply the state on top: __setstate__ or __dict__ update",
        ),
        INST => m(
            0,
            0,
            true,
            1,
            "call module.name with the items above the mark",
        ),
        OBJ => m(
            1,
            0,
            true,
            1,
            "call the class after the mark with the items after it",
        ),
        NEWOBJ => m(2, 2, false, 1, "cls.__new__(cls, *args)"),
        NEWOBJ_EX => m(4, 3, false, 1, "cls.__new__(cls, *args, **kwargs)"),
        PROTO => m(2, 0, false, 0, "the protocol of the pickle"),
        STOP => m(
            0,
            1,
            false,
            0,
            "end of the pickle: the top item is the result",
        ),
        FRAME => m(4, 0, false, 0, "start of a frame of n bytes"),
        PERSID => m(0, 0, false, 1, "push persistent_load(id), the id as text"),
        BINPERSID => m(1, 1, false, 1, "push persistent_load(top item)"),
        _ => m(0, 0, false, 0, "unknown opcode"),
    }
}

/// Options of the disassembly, as `python3 -m pickletools` has them.
#[derive(Clone, Debug)]
pub struct Options {
    /// Blanks by which each `MARK` level indents.
    pub indent: usize,
    /// Whether each line ends with a description of its opcode.
    pub annotate: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Mark,
    Object,
}

/// The disassembly of the first pickle of `bytes`, written to `out` line
/// by line as `pickletools` writes it: the text grows with the square of
/// the `MARK` nesting (each level indents every line below it), so it is
/// never held whole; nor are the opcodes, each decoded, written and dropped
/// before the next (a list of a million `None`s is a million of them). On
/// malformed input, the lines before the fault are written, and the error
/// names it with its offset, as `pickletools` prints the offending line
/// before it raises. Errors writing to `out`
/// are left to `out` (standard output drops the rest once it is closed).
pub fn dis(bytes: &[u8], options: &Options, out: &mut impl std::io::Write) -> Result<(), String> {
    let annotate: usize = if options.annotate { 30 } else { 0 };
    let mut annocol = annotate;
    let indent = " ".repeat(options.indent);
    let mut stack: Vec<Slot> = Vec::new();
    let mut marks: Vec<u64> = Vec::new();
    let mut memo: std::collections::HashSet<u64> = Default::default();
    let mut memo_len = 0u64;
    let mut maxproto = -1i32;
    for decoded in pickles::instructions(bytes) {
        // What precedes a fault has been written: name it.
        let Instruction {
            offset,
            opcode,
            name,
            arg,
        } = &decoded.map_err(|e| e.to_string())?;
        let meta = meta(*opcode);
        let code = if opcode.is_ascii_graphic() {
            (*opcode as char).to_string()
        } else {
            format!("\\x{opcode:02x}")
        };
        let _ = std::io::Write::write_fmt(out, format_args!("{offset:5}: "));
        let mut line = format!("{code:<4} {}{name}", indent.repeat(marks.len()));
        maxproto = maxproto.max(meta.proto as i32);
        let mut numtopop = meta.pops;
        let mut note = None;
        let mut error = None;
        let pops_mark =
            meta.to_mark || (*opcode == reduce::op::POP && stack.last() == Some(&Slot::Mark));
        if pops_mark {
            if let Some(at) = marks.pop() {
                note = Some(format!("(MARK at {at})"));
                while let Some(slot) = stack.pop() {
                    if slot == Slot::Mark {
                        break;
                    }
                }
                numtopop = if meta.to_mark { meta.pops } else { 0 };
            } else {
                note = Some("no MARK exists on stack".to_string());
                error = note.clone();
            }
        }
        let memo_key = match (*opcode, arg) {
            (reduce::op::MEMOIZE, _) => {
                note = Some(format!("(as {memo_len})"));
                Some(memo_len)
            }
            (reduce::op::PUT | reduce::op::BINPUT | reduce::op::LONG_BINPUT, Arg::Int(k)) => {
                Some(u64::try_from(k).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        if let Some(k) = memo_key {
            if memo.contains(&k) {
                // pickletools prints repr(arg): None for MEMOIZE.
                error = Some(format!("memo key {arg} already defined"));
            } else if stack.is_empty() {
                error = Some("stack is empty -- can't store into memo".into());
            } else if stack.last() == Some(&Slot::Mark) {
                error = Some("can't store markobject in the memo".into());
            } else {
                memo.insert(k);
                memo_len += 1;
            }
        }
        if let (reduce::op::GET | reduce::op::BINGET | reduce::op::LONG_BINGET, Arg::Int(k)) =
            (*opcode, arg)
        {
            if !memo.contains(&u64::try_from(k).unwrap_or(u64::MAX)) {
                error = Some(format!("memo key {k} has never been stored into"));
            }
        }
        if !matches!(arg, Arg::None) || note.is_some() {
            line.push_str(&" ".repeat(10usize.saturating_sub(name.len())));
            if !matches!(arg, Arg::None) {
                let _ = write!(line, " {arg}");
            }
            if let Some(note) = &note {
                let _ = write!(line, " {note}");
            }
        }
        if annotate > 0 {
            line.push_str(&" ".repeat(annocol.saturating_sub(line.chars().count())));
            annocol = line.chars().count();
            if annocol > 50 {
                annocol = annotate;
            }
            let _ = write!(line, " {}", meta.description);
        }
        line.push('\n');
        let _ = out.write_all(line.as_bytes());
        if let Some(e) = error {
            return Err(format!("{e}, at offset {offset} ({name})"));
        }
        if stack.len() < numtopop {
            return Err(format!(
                "{name} at offset {offset} pops {numtopop} items from a stack of {}",
                stack.len()
            ));
        }
        stack.truncate(stack.len() - numtopop);
        if *opcode == reduce::op::MARK {
            marks.push(*offset);
            stack.push(Slot::Mark);
        }
        stack.extend(std::iter::repeat_n(Slot::Object, meta.pushes));
    }
    let _ = std::io::Write::write_fmt(
        out,
        format_args!("highest protocol among opcodes = {maxproto}\n"),
    );
    if !stack.is_empty() {
        return Err(format!("stack not empty after STOP: {} items", stack.len()));
    }
    Ok(())
}
