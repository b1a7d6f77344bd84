//! The one place that asks `reduce::inspect` about a pickle: its opcodes,
//! the globals it resolves (with their offsets) and where it ends.
//!
//! [`scan_one`] is `inspect::scan_one` (the inspector follows the reader's
//! stack exactly, so every name it lists is the one CPython resolves), plus
//! the names resolved before a fault, which a scan must still judge.

use reduce::inspect::{self, Instruction, Named};
use reduce::op;
use reduce::Error;

/// A name a pickle resolves, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// Offset of the opcode, from the start of the pickle.
    pub offset: u64,
    /// The opcode (`GLOBAL`, `INST`, `STACK_GLOBAL`, `EXT1`, `EXT2`, `EXT4`).
    pub opcode: u8,
    /// What it names.
    pub named: Target,
}

/// What a resolving opcode names.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `module.name`, as the pickle spells it.
    Global { module: String, name: String },
    /// An extension code (`copyreg.add_extension`).
    Extension(u32),
    /// A `STACK_GLOBAL` whose operands are not plain strings: the name is
    /// only known once the pickle runs.
    Computed,
}

/// The bytes before the opcode where `e` stopped the walk, with a `STOP`
/// after them: the error's offset is that of the opcode that failed, so the
/// bytes before it are whole opcodes, and this is a pickle inspect can walk.
fn before_fault(bytes: &[u8], e: &Error) -> Vec<u8> {
    let at = e
        .offset()
        .and_then(|o| usize::try_from(o).ok())
        .unwrap_or(0)
        .min(bytes.len());
    let mut prefix = bytes[..at].to_vec();
    prefix.push(op::STOP);
    prefix
}

/// The opcodes of the pickle at the start of `bytes`, through its `STOP`,
/// and the error that stopped the walk early, if one did. The opcodes
/// before a fault are still listed: CPython would have run them.
pub fn disassemble_partial(bytes: &[u8]) -> (Vec<Instruction>, Option<Error>) {
    match inspect::disassemble(bytes) {
        Ok(ops) => (ops, None),
        Err(e) => {
            let mut ops = inspect::disassemble(&before_fault(bytes, &e)).unwrap_or_default();
            ops.pop();
            (ops, Some(e))
        }
    }
}

/// The names the pickle at the start of `bytes` resolves, with offsets,
/// and its length in bytes; or, for a pickle that cannot be read to its
/// end, the names resolved before the fault and the fault.
pub fn scan_one(bytes: &[u8]) -> (Vec<Resolution>, Result<usize, Error>) {
    match inspect::scan_one(bytes) {
        Ok((found, len)) => (found.into_iter().map(target).collect(), Ok(len)),
        Err(e) => {
            // What CPython would have resolved before the fault.
            let found = inspect::scan_one(&before_fault(bytes, &e))
                .map(|(found, _)| found)
                .unwrap_or_default();
            (found.into_iter().map(target).collect(), Err(e))
        }
    }
}

fn target(r: inspect::Resolution) -> Resolution {
    Resolution {
        offset: r.offset,
        opcode: r.opcode,
        named: match r.named {
            Named::Global(g) => Target::Global {
                module: g.module,
                name: g.name,
            },
            Named::Extension(code) => Target::Extension(code),
            _ => Target::Computed,
        },
    }
}
