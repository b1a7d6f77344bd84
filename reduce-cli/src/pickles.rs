//! The one place that asks `reduce::inspect` about a pickle: its opcodes,
//! the globals it resolves (with their offsets) and where it ends.
//!
//! [`scan_one`] is `inspect::lookups` (the inspector follows the reader's
//! stack exactly, so every name it lists is the one CPython resolves), plus
//! the names resolved before a fault, which a scan must still judge.

use reduce::inspect::{self, Built, Instructions, Lookups, Named, Origin};
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
    /// For a global the pickle uses only to read attributes with
    /// `builtins.getattr` (getattr itself, or the class read from): the
    /// first attribute it reads, `module.Class.name`, which is judged in
    /// its place. An attribute read is a resolution of its own, at its
    /// `REDUCE`.
    pub only_reads: Option<String>,
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
/// decoded one at a time, then the error that stops the walk early, if one
/// does. The opcodes before a fault are still listed: CPython would have
/// run them.
pub fn instructions(bytes: &[u8]) -> Instructions<'_> {
    inspect::instructions(bytes)
}

/// The names the pickle at the start of `bytes` resolves, with offsets,
/// and its length in bytes; or, for a pickle that cannot be read to its
/// end, the names resolved before the fault and the fault.
///
/// Attribute reads with `getattr` off a global are listed among them, in
/// order of offset, as the dotted global they read (see
/// [`Resolution::only_reads`]).
pub fn scan_one(bytes: &[u8]) -> (Vec<Resolution>, Result<usize, Error>) {
    let scanned = scan(bytes);
    (scanned.found, scanned.end)
}

/// A `BUILD` of a pickle, on an instance of a global class or on a global.
#[derive(Clone, Debug, PartialEq)]
pub struct Build {
    /// Offset of the `BUILD` opcode, from the start of the pickle.
    pub offset: u64,
    /// The class of the instance built, or the global whose attributes
    /// it sets.
    pub of: Target,
    /// Whether it sets a global's own attributes (not an instance's).
    pub on_global: bool,
}

/// What [`scan_one`] finds, with the pickle's `BUILD`s on instances of
/// globals and on globals.
pub struct Scanned {
    pub found: Vec<Resolution>,
    pub builds: Vec<Build>,
    pub end: Result<usize, Error>,
}

/// [`scan_one`], with the `BUILD`s.
pub fn scan(bytes: &[u8]) -> Scanned {
    match inspect::lookups(bytes) {
        Ok(found) => {
            let len = found.length;
            let (found, builds) = resolutions(found);
            Scanned {
                found,
                builds,
                end: Ok(len),
            }
        }
        Err(e) => {
            // What CPython would have resolved before the fault.
            let (found, builds) = inspect::lookups(&before_fault(bytes, &e))
                .map(resolutions)
                .unwrap_or_default();
            Scanned {
                found,
                builds,
                end: Err(e),
            }
        }
    }
}

/// The globals and attribute reads of `found`, in order of offset, and its
/// builds.
fn resolutions(found: Lookups) -> (Vec<Resolution>, Vec<Build>) {
    let Lookups {
        resolutions,
        attributes,
        only_for_attributes,
        builds,
        ..
    } = found;
    let target_of = |origin: Origin| match origin {
        Origin::Resolution(i) => target(&resolutions[i].named),
        Origin::Attribute(i) => Target::Global {
            module: attributes[i].named.module.clone(),
            name: attributes[i].named.name.clone(),
        },
        _ => Target::Computed,
    };
    let builds: Vec<Build> = builds
        .iter()
        .filter_map(|b| {
            let (origin, on_global) = match b.target {
                Built::InstanceOf(o) => (o, false),
                Built::Object(o) => (o, true),
                _ => return None,
            };
            Some(Build {
                offset: b.offset,
                of: target_of(origin),
                on_global,
            })
        })
        .collect();
    // The first attribute each global, or attribute, is read for.
    let mut first: Vec<Option<String>> = vec![None; resolutions.len()];
    let mut first_of_attribute: Vec<Option<String>> = vec![None; attributes.len()];
    for a in &attributes {
        let note = |slot: &mut Option<String>, only: bool| {
            if only && slot.is_none() {
                *slot = Some(a.named.to_string());
            }
        };
        note(&mut first[a.getattr], only_for_attributes[a.getattr]);
        match a.of {
            Origin::Resolution(i) => note(&mut first[i], only_for_attributes[i]),
            Origin::Attribute(i) => note(
                &mut first_of_attribute[i],
                attributes[i].only_for_attributes,
            ),
            _ => {}
        }
    }
    let mut out: Vec<Resolution> = resolutions
        .into_iter()
        .zip(first)
        .map(|(r, only_reads)| Resolution {
            offset: r.offset,
            opcode: r.opcode,
            named: target(&r.named),
            only_reads,
        })
        .collect();
    out.extend(
        attributes
            .into_iter()
            .zip(first_of_attribute)
            .map(|(a, only_reads)| Resolution {
                offset: a.offset,
                opcode: op::REDUCE,
                named: Target::Global {
                    module: a.named.module,
                    name: a.named.name,
                },
                only_reads,
            }),
    );
    // Stable: a read comes after the globals it reads, which came first.
    out.sort_by_key(|r| r.offset);
    (out, builds)
}

fn target(named: &Named) -> Target {
    match named {
        Named::Global(g) => Target::Global {
            module: g.module.clone(),
            name: g.name.clone(),
        },
        Named::Extension(code) => Target::Extension(*code),
        _ => Target::Computed,
    }
}
