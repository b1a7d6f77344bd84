//! Pickle opcodes and protocol numbers, named exactly as in CPython's `Lib/pickle.py`.

#![allow(missing_docs)]

/// The highest protocol this crate reads and writes.
pub const HIGHEST_PROTOCOL: u8 = 5;
/// The protocol written unless another is chosen.
pub const DEFAULT_PROTOCOL: u8 = 5;

// Protocol 0 and 1.
pub const MARK: u8 = b'('; // push special markobject on stack
pub const STOP: u8 = b'.'; // every pickle ends with STOP
pub const POP: u8 = b'0'; // discard topmost stack item
pub const POP_MARK: u8 = b'1'; // discard stack top through topmost markobject
pub const DUP: u8 = b'2'; // duplicate top stack item
pub const FLOAT: u8 = b'F'; // push float object; decimal string argument
pub const INT: u8 = b'I'; // push integer or bool; decimal string argument
pub const BININT: u8 = b'J'; // push four-byte signed int
pub const BININT1: u8 = b'K'; // push 1-byte unsigned int
pub const LONG: u8 = b'L'; // push long; decimal string argument
pub const BININT2: u8 = b'M'; // push 2-byte unsigned int
pub const NONE: u8 = b'N'; // push None
pub const PERSID: u8 = b'P'; // push persistent object; id is taken from string arg
pub const BINPERSID: u8 = b'Q'; // push persistent object; id is taken from stack
pub const REDUCE: u8 = b'R'; // apply callable to argtuple, both on stack
pub const STRING: u8 = b'S'; // push string; NL-terminated string argument
pub const BINSTRING: u8 = b'T'; // push string; counted binary string argument
pub const SHORT_BINSTRING: u8 = b'U'; // push string; counted binary string argument < 256 bytes
pub const UNICODE: u8 = b'V'; // push Unicode string; raw-unicode-escaped'd argument
pub const BINUNICODE: u8 = b'X'; // push Unicode string; counted UTF-8 string argument
pub const APPEND: u8 = b'a'; // append stack top to list below it
pub const BUILD: u8 = b'b'; // call __setstate__ or __dict__.update()
pub const GLOBAL: u8 = b'c'; // push self.find_class(modname, name); 2 string args
pub const DICT: u8 = b'd'; // build a dict from stack items
pub const EMPTY_DICT: u8 = b'}'; // push empty dict
pub const APPENDS: u8 = b'e'; // extend list on stack by topmost stack slice
pub const GET: u8 = b'g'; // push item from memo on stack; index is string arg
pub const BINGET: u8 = b'h'; // push item from memo on stack; index is 1-byte arg
pub const INST: u8 = b'i'; // build & push class instance
pub const LONG_BINGET: u8 = b'j'; // push item from memo on stack; index is 4-byte arg
pub const LIST: u8 = b'l'; // build list from topmost stack items
pub const EMPTY_LIST: u8 = b']'; // push empty list
pub const OBJ: u8 = b'o'; // build & push class instance
pub const PUT: u8 = b'p'; // store stack top in memo; index is string arg
pub const BINPUT: u8 = b'q'; // store stack top in memo; index is 1-byte arg
pub const LONG_BINPUT: u8 = b'r'; // store stack top in memo; index is 4-byte arg
pub const SETITEM: u8 = b's'; // add key+value pair to dict
pub const TUPLE: u8 = b't'; // build tuple from topmost stack items
pub const EMPTY_TUPLE: u8 = b')'; // push empty tuple
pub const SETITEMS: u8 = b'u'; // modify dict by adding topmost key+value pairs
pub const BINFLOAT: u8 = b'G'; // push float; arg is 8-byte float encoding

// Protocol 2.
pub const PROTO: u8 = 0x80; // identify pickle protocol
pub const NEWOBJ: u8 = 0x81; // build object by applying cls.__new__ to argtuple
pub const EXT1: u8 = 0x82; // push object from extension registry; 1-byte index
pub const EXT2: u8 = 0x83; // ditto, but 2-byte index
pub const EXT4: u8 = 0x84; // ditto, but 4-byte index
pub const TUPLE1: u8 = 0x85; // build 1-tuple from stack top
pub const TUPLE2: u8 = 0x86; // build 2-tuple from two topmost stack items
pub const TUPLE3: u8 = 0x87; // build 3-tuple from three topmost stack items
pub const NEWTRUE: u8 = 0x88; // push True
pub const NEWFALSE: u8 = 0x89; // push False
pub const LONG1: u8 = 0x8a; // push long from < 256 bytes
pub const LONG4: u8 = 0x8b; // push really big long

// Protocol 3.
pub const BINBYTES: u8 = b'B'; // push bytes; counted binary string argument
pub const SHORT_BINBYTES: u8 = b'C'; // push bytes; counted binary string argument < 256 bytes

// Protocol 4.
pub const SHORT_BINUNICODE: u8 = 0x8c; // push short string; UTF-8 length < 256 bytes
pub const BINUNICODE8: u8 = 0x8d; // push very long string
pub const BINBYTES8: u8 = 0x8e; // push very long bytes string
pub const EMPTY_SET: u8 = 0x8f; // push empty set on the stack
pub const ADDITEMS: u8 = 0x90; // modify set by adding topmost stack items
pub const FROZENSET: u8 = 0x91; // build frozenset from topmost stack items
pub const NEWOBJ_EX: u8 = 0x92; // like NEWOBJ but work with keyword only arguments
pub const STACK_GLOBAL: u8 = 0x93; // same as GLOBAL but using names on the stacks
pub const MEMOIZE: u8 = 0x94; // store top of the stack in memo
pub const FRAME: u8 = 0x95; // indicate the beginning of a new frame

// Protocol 5.
pub const BYTEARRAY8: u8 = 0x96; // push bytearray
pub const NEXT_BUFFER: u8 = 0x97; // push next out-of-band buffer
pub const READONLY_BUFFER: u8 = 0x98; // make top of stack readonly

/// The opcode's name as `pickle.py` spells it, or `None` for a byte that is
/// no opcode.
pub fn name(op: u8) -> Option<&'static str> {
    Some(match op {
        MARK => "MARK",
        STOP => "STOP",
        POP => "POP",
        POP_MARK => "POP_MARK",
        DUP => "DUP",
        FLOAT => "FLOAT",
        INT => "INT",
        BININT => "BININT",
        BININT1 => "BININT1",
        LONG => "LONG",
        BININT2 => "BININT2",
        NONE => "NONE",
        PERSID => "PERSID",
        BINPERSID => "BINPERSID",
        REDUCE => "REDUCE",
        STRING => "STRING",
        BINSTRING => "BINSTRING",
        SHORT_BINSTRING => "SHORT_BINSTRING",
        UNICODE => "UNICODE",
        BINUNICODE => "BINUNICODE",
        APPEND => "APPEND",
        BUILD => "BUILD",
        GLOBAL => "GLOBAL",
        DICT => "DICT",
        EMPTY_DICT => "EMPTY_DICT",
        APPENDS => "APPENDS",
        GET => "GET",
        BINGET => "BINGET",
        INST => "INST",
        LONG_BINGET => "LONG_BINGET",
        LIST => "LIST",
        EMPTY_LIST => "EMPTY_LIST",
        OBJ => "OBJ",
        PUT => "PUT",
        BINPUT => "BINPUT",
        LONG_BINPUT => "LONG_BINPUT",
        SETITEM => "SETITEM",
        TUPLE => "TUPLE",
        EMPTY_TUPLE => "EMPTY_TUPLE",
        SETITEMS => "SETITEMS",
        BINFLOAT => "BINFLOAT",
        PROTO => "PROTO",
        NEWOBJ => "NEWOBJ",
        EXT1 => "EXT1",
        EXT2 => "EXT2",
        EXT4 => "EXT4",
        TUPLE1 => "TUPLE1",
        TUPLE2 => "TUPLE2",
        TUPLE3 => "TUPLE3",
        NEWTRUE => "NEWTRUE",
        NEWFALSE => "NEWFALSE",
        LONG1 => "LONG1",
        LONG4 => "LONG4",
        BINBYTES => "BINBYTES",
        SHORT_BINBYTES => "SHORT_BINBYTES",
        SHORT_BINUNICODE => "SHORT_BINUNICODE",
        BINUNICODE8 => "BINUNICODE8",
        BINBYTES8 => "BINBYTES8",
        EMPTY_SET => "EMPTY_SET",
        ADDITEMS => "ADDITEMS",
        FROZENSET => "FROZENSET",
        NEWOBJ_EX => "NEWOBJ_EX",
        STACK_GLOBAL => "STACK_GLOBAL",
        MEMOIZE => "MEMOIZE",
        FRAME => "FRAME",
        BYTEARRAY8 => "BYTEARRAY8",
        NEXT_BUFFER => "NEXT_BUFFER",
        READONLY_BUFFER => "READONLY_BUFFER",
        _ => return None,
    })
}

/// How many items CPython's pickler puts in one `APPENDS`, `SETITEMS` or
/// `ADDITEMS` (`pickle.py`'s `_BATCHSIZE`); the reader's inert mode knows a
/// batch it wrote by this size too.
pub(crate) const BATCHSIZE: usize = 1000;

#[cfg(test)]
mod tests {
    #[test]
    fn sixty_eight_opcodes_have_names() {
        assert_eq!((0..=255u8).filter_map(super::name).count(), 68);
    }
}
