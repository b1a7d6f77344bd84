//! The one place that asks `reduce::inspect` about a pickle: its opcodes,
//! the globals it resolves (with their offsets) and where it ends.
//!
//! `inspect::globals` is growing offsets and a "one pickle, and its length"
//! entry point (`Resolution`, `scan_one`); until they land, [`scan_one`]
//! pairs today's list of names with the offsets of the opcodes that
//! resolve them. The switch is this file alone.

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

fn resolves(opcode: u8) -> bool {
    matches!(
        opcode,
        op::GLOBAL | op::INST | op::STACK_GLOBAL | op::EXT1 | op::EXT2 | op::EXT4
    )
}

/// The opcodes of the pickle at the start of `bytes`, through its `STOP`,
/// and the error that stopped the walk early, if one did. The opcodes
/// before a fault are still listed: CPython would have run them.
pub fn disassemble_partial(bytes: &[u8]) -> (Vec<Instruction>, Option<Error>) {
    match inspect::disassemble(bytes) {
        Ok(ops) => (ops, None),
        Err(e) => {
            // The error's offset is that of the opcode that failed, so the
            // bytes before it are whole opcodes; a STOP after them makes a
            // pickle inspect can walk.
            let at = e
                .offset()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0)
                .min(bytes.len());
            let mut prefix = bytes[..at].to_vec();
            prefix.push(op::STOP);
            let mut ops = inspect::disassemble(&prefix).unwrap_or_default();
            ops.pop();
            (ops, Some(e))
        }
    }
}

/// The names the pickle at the start of `bytes` resolves, with offsets,
/// and its length in bytes; or, for a pickle that cannot be read to its
/// end, the names resolved before the fault and the fault.
pub fn scan_one(bytes: &[u8]) -> (Vec<Resolution>, Result<usize, Error>) {
    let (ops, fault) = disassemble_partial(bytes);
    let end = match &fault {
        Some(e) => e
            .offset()
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(0),
        None => ops.last().map_or(0, |i| i.offset as usize + 1),
    }
    .min(bytes.len());
    // Only the offsets are kept: the opcodes go before globals walks the
    // pickle again, so the two walks do not add up in memory.
    let resolving: Vec<(u64, u8)> = ops
        .iter()
        .filter(|i| resolves(i.opcode))
        .map(|i| (i.offset, i.opcode))
        .collect();
    drop(ops);
    let names = match fault {
        None => inspect::globals(&bytes[..end]),
        Some(_) => {
            let mut walked = bytes[..end].to_vec();
            walked.push(op::STOP);
            inspect::globals(&walked)
        }
    }
    .unwrap_or_default();
    let found = resolving
        .into_iter()
        .zip(names)
        .map(|((offset, opcode), named)| Resolution {
            offset,
            opcode,
            named: match named {
                Named::Global(g)
                    if opcode == op::STACK_GLOBAL && (g.module == "?" || g.name == "?") =>
                {
                    Target::Computed
                }
                Named::Global(g) => Target::Global {
                    module: g.module,
                    name: g.name,
                },
                Named::Extension(code) => Target::Extension(code),
                _ => Target::Computed,
            },
        })
        .collect();
    match fault {
        Some(e) => (found, Err(e)),
        None => (found, Ok(end)),
    }
}
