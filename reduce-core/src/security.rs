//! The security model: what loading a pickle can and cannot do.
//!
//! A pickle is a program for a small stack machine, and in CPython some of
//! its instructions import and call anything by name: `pickle.loads` on
//! untrusted bytes runs the sender's code. This page says what the same
//! bytes can do here, how that compares with the ways Python users try to
//! make loading safe, and what is left for you to guard.
//!
//! # What loading can do
//!
//! **Reading never calls anything the pickle names.** [`Unpickler`](crate::Unpickler) runs the
//! opcodes to build data ([`Value`](crate::Value), [`Graph`](crate::Graph)). Every global a pickle names
//! (through `GLOBAL`, `STACK_GLOBAL`, `INST`, `OBJ`, `EXT1`/`EXT2`/`EXT4`,
//! or `getattr` on a global) is checked by its exact `module.qualname` as
//! soon as it is read, and is either
//!
//! - one of the few that plain data needs, which the reader interprets
//!   itself rather than calls: `builtins.set`, `builtins.frozenset`,
//!   `builtins.bytearray`, `builtins.bytes`, `_codecs.encode`,
//!   `builtins.getattr` applied to a global, `builtins.object`,
//!   `copyreg._reconstructor`, `copyreg.__newobj__`, `copyreg.__newobj_ex__`;
//! - a constructor in the [registry](crate::registry()) or in the
//!   [`Registry`](crate::Registry) layered over it for this unpickler, which is recorded as
//!   data and not called yet;
//! - a global on the list of a [preset](crate::preset) installed in either
//!   registry (such as `datetime.datetime` in
//!   [`preset::STDLIB`](crate::preset::STDLIB)), recorded as data likewise;
//! - or an [`ErrorKind::UnknownGlobal`](crate::ErrorKind::UnknownGlobal) error that names it, and the load
//!   stops.
//!
//! In [inert mode](crate::Unpickler::inert) every global and every reduction is
//! kept as data instead, so that a pickle can be read, inspected and written
//! back unchanged. Nothing is called in either mode.
//!
//! **Typed reading calls Rust code you chose.** [`from_slice::<T>`](crate::from_slice)
//! turns the graph into a `T` through `T`'s [`Construct`](crate::Construct) implementation,
//! which checks the global of each object against its own path (a derived
//! `geometry.Point` accepts only `geometry.Point`). The registry is asked
//! only where the type says so: a [`Dynamic`](crate::Dynamic), a trait object, a field read
//! `#[reduce(registry)]`. Those call the constructor registered under the
//! exact name the pickle gives, with arguments taken from the pickle.
//!
//! **What no pickle can make this crate do:** import a module, look up an
//! attribute (a dotted name such as `a.b.c` is one string, matched whole),
//! call a method of a loaded object, set an attribute (`BUILD` state goes
//! only to the reading code of the type that owns it), or touch files,
//! processes or the network. `reduce-core` denies `unsafe` code but for
//! three small blocks, each with its proof beside it and a test `.ci/run`
//! runs under Miri: in the reader, a `str` of up to 16 bytes that two word
//! loads found all ASCII is taken as text without walking it again (ASCII
//! is UTF-8 byte for byte); in the writer, a short string and its memo
//! opcode are copied into the output's spare capacity and its length set
//! once. None of them reads the input beyond what was checked.
//!
//! **Resources are bounded.** No input makes the reader panic, recurse
//! without bound or allocate much more than its length justifies. Length
//! prefixes are checked against the data left before anything is allocated
//! (a slice) or read in pieces that grow only as data arrives (a stream),
//! so a `BINBYTES8` that claims 2<sup>64</sup> bytes costs nothing. A typed
//! list or dict is sized ahead only within what the input can hold: a batch
//! of atoms by its count (at most CPython's thousand), a long container by a
//! guess from its first batch, capped at four times the bytes left whatever
//! the size of an item, and given back if too large. A `FRAME`
//! longer than the data, or inside another frame, is an error. Shared
//! objects stay shared: a DAG that doubles sixty times loads as sixty
//! objects. The rest is bounded by [`Limits`](crate::Limits):
//!
//! | limit | default | stops |
//! |---|---|---|
//! | [`max_stack`](crate::Limits::max_stack) | 10,000,000 | a million `MARK`s, a stack of pushed values |
//! | [`max_memo`](crate::Limits::max_memo) | 10,000,000 | memo entries (a `LONG_BINPUT` of 2<sup>32</sup> - 1 is one entry, not four billion) |
//! | [`max_depth`](crate::Limits::max_depth) | 100,000 | nesting of the loaded value (a million nested lists) |
//! | [`max_int_digits`](crate::Limits::max_int_digits) | 4,300 | decimal ints at protocol 0, quadratic to parse (CPython's own limit) |
//! | [`max_tree_nodes`](crate::Limits::max_tree_nodes) | 10,000,000 | copying a shared DAG into a tree (`from_slice::<Value>`, typed and serde reads), a long string counted by its length (50,000 `DUP`s of a 50 KB string) |
//! | [`max_typed_depth`](crate::Limits::max_typed_depth) | 10,000 | nesting followed by a typed read of a recursive type |
//!
//! A torch checkpoint is a zip archive: a compressed member that inflates
//! past 100 times its size (and past 64 MiB), a zip bomb, is refused before
//! it fills memory (`torch::inflate_cap`, feature `torch`; the command-line
//! tool holds every archive to it).
//!
//! Typed reading and writing recurse once per level of the Rust type; they
//! move to a fresh stack segment on the heap when the thread's stack runs
//! low, so the depth limits hold on any thread. These claims are tested:
//! fuzz targets (`fuzz/`), every strict prefix of every fixture, random byte
//! changes, nesting, memo and length bombs, and lying frames, all in
//! `tests/`; `tests/memory.rs` loads each bomb under a counting allocator
//! and bounds its peak heap use by 128 bytes per input byte. The worst
//! there, a million `DUP`s of one big int, peaks at 97: each one-byte `DUP`
//! becomes a 32-byte value on the stack and then in the list, and vectors
//! grow by doubling.
//!
//! # Compared with the Python tools
//!
//! | | CPython `pickle` | `find_class` allow-list | picklescan | fickling | reduce |
//! |---|---|---|---|---|---|
//! | a global nobody listed | imported and called | refused, if `find_class` is written to refuse it | reported only if it is on the scanner's list of dangerous names | judged by heuristics on the decompiled program | refused, with its name |
//! | where the check runs | none | inside the loader | a separate pass before loading | a separate pass before loading | inside the loader |
//! | extension codes (`EXT1`/`2`/`4`) | resolved through `copyreg` | `find_class` is skipped once a code is in `copyreg`'s extension cache | listed as codes | — | code to name to registry on every load; no cache |
//! | dotted names (protocol 4) | resolved by `getattr`, step by step | `find_class` sees the dotted name and must check all of it | — | — | one exact string |
//! | what an allowed callable receives | anything the pickle builds | the same | — | — | data, read by the constructor's own typed code |
//! | `BUILD` state | `__setstate__`, or `setattr` of any attribute | the same | — | — | only the owning type's reading code |
//! | resource bounds | the int digit limit only (memo and stack grow with the input) | the same | — | — | [`Limits`](crate::Limits) |
//!
//! **CPython's `find_class`.** The pickle documentation's answer to
//! untrusted data ("Restricting Globals") is an `Unpickler` subclass whose
//! `find_class` allows a few names. That is the right shape, and it is what
//! this crate does by default, with three differences. The check here
//! cannot be skipped: CPython resolves an extension code to a name, calls
//! `find_class` once, then keeps the result in `copyreg`'s process-wide
//! extension cache, and every later load that uses the code gets the cached
//! object without asking `find_class`, so one trusted load that allowed a
//! name opens it to every restricted unpickler after it. Here the code is
//! looked up and its name checked on every load (see the example below).
//! Second, an allowed name here is matched as a whole string, never walked
//! with `getattr`. Third, allowing a name in CPython hands the callable
//! whatever arguments the pickle builds, and lets `BUILD` set any attribute
//! of any object; here the constructor receives data and decides.
//!
//! **picklescan** reads a pickle (also inside the archives machine-learning
//! frameworks save) without loading it and reports the globals it names
//! that are on a list of known-dangerous ones. A list of what is bad cannot
//! be complete: its reported bypasses use standard library callables that
//! were not on it. And it is a second parser beside the loader that runs
//! afterwards, which only helps as far as both read the bytes alike. Here
//! the allow-list is enforced by the loader itself, and the listing for
//! audits ([`inspect::globals`](crate::inspect::globals), below) reads the
//! bytes with the loader's own decoder.
//!
//! **fickling** decompiles a pickle into the Python program it stands for
//! and analyses that program for patterns it considers unsafe before
//! handing the bytes to CPython's `pickle`. Its verdict is a judgement about
//! the program; here there is nothing to judge, because nothing named in the
//! pickle is ever called.
//!
//! # Auditing without loading
//!
//! [`inspect::globals`](crate::inspect::globals) lists every global and
//! extension code that loading the pickle would look up, in order, each
//! with the byte offset of its opcode, without loading anything. It decodes
//! with the reader's decoder and follows the reader's stack exactly (marks,
//! `POP`, `POP_MARK`, `DUP`, the memo, frames, Python 2 strings, containers
//! and calls consuming their operands), so a name hidden behind the memo
//! or a decoy is reported as the reader would see it; this is checked
//! against CPython's own unpickler on a corpus of such tricks. A
//! `STACK_GLOBAL` whose operands are not constant strings (made by a call,
//! say) is reported as [`Named::Computed`](crate::inspect::Named::Computed),
//! never as a guessed name; a malformed pickle is an error with its offset.
//!
//! [`inspect::lookups`](crate::inspect::lookups) adds the attributes a
//! pickle reads with `getattr` off a global (`zoneinfo.ZoneInfo._unpickle`
//! in every `datetime` with a `ZoneInfo`, nested classes before protocol
//! 4), as the dotted names a protocol 4 pickle would write, and says which
//! globals were used for nothing else: those a scanner may judge by the
//! attributes read (`reduce scan` does), as the reader does.
//!
//! What it does not do: it does not judge (a list of names is not a
//! verdict, and `builtins.getattr` on anything but a global, or
//! `builtins.__import__`, are reported as themselves, with what they reach
//! left as arguments), and it does not
//! look into nested pickles: the bytes handed to `pickle.loads` are data,
//! to be inspected on their own if you care what they hold.
//!
//! # What inert mode guarantees, and what it does not
//!
//! [Inert mode](crate::Unpickler::inert) reads a pickle as the program it is,
//! without running any of it. It guarantees:
//!
//! - **Nothing is called.** Every global is kept by name, every call as a
//!   [`Reduction`](crate::Reduction), every persistent id as data (unless
//!   you give a hook).
//! - **Nothing is dropped.** A call made only for its effect (`REDUCE` then
//!   `POP`, as dill fills closure cells and fickling injects `exec`), a
//!   value left under the result, a change made to an object after it was
//!   built (`GET`, `SETITEMS`, `POP`) and a second `BUILD` are all kept, as
//!   [`Step`](crate::Step)s of a [`Seq`](crate::Seq), in order. Where the
//!   model cannot hold something (steps between `NEWOBJ`'s arguments and
//!   the opcode, a change to an int), loading fails with an error and its
//!   offset.
//! - **The same program comes back.** Written back, the value makes CPython
//!   perform the same lookups, calls (with the same arguments, as they are
//!   at the time of the call), changes and persistent-id loads in the same
//!   order. The test suite checks this with a tracing unpickler on every
//!   fixture and on files written by dill, cloudpickle, numpy, pandas and
//!   fickling. What CPython's own pickler wrote comes back byte for byte:
//!   globals keep their opcode (`GLOBAL` or `STACK_GLOBAL`, on the same
//!   string objects), and persistent ids theirs (`PERSID` or `BINPERSID`).
//!
//! It does not guarantee:
//!
//! - **Safety of the result.** An injected `exec` survives the round trip,
//!   on purpose: inert mode is for inspecting and transforming, not for
//!   cleaning. Decide with [`inspect::globals`](crate::inspect::globals) or
//!   the allow-list, not by round-tripping.
//! - **The same bytes for pickles other tools wrote.** Memo indices,
//!   frames and batch sizes are chosen as CPython's pickler chooses them,
//!   and a change of several items made after the fact may be written as
//!   one batch. Only the program is kept.
//! - **Frames as another reader sees them.** Frames are read as CPython's
//!   C unpickler (`pickle.loads`) reads them: a `FRAME` only checks that
//!   its bytes exist, so files whose frame lengths were not fixed after
//!   editing load, as they do in CPython.
//!
//! # What is safe to load from an untrusted source
//!
//! - [`from_slice::<Value>`](crate::from_slice), [`from_slice::<Graph>`](crate::from_slice)
//!   and the inspection functions: yes. The worst outcome is an error, after
//!   time and memory bounded by the input and the [`Limits`](crate::Limits).
//! - Inert mode: safe to read here, but what it reads is still a pickle
//!   that CPython would execute. Writing it back gives the same bytes; do not
//!   hand them to Python's `pickle` unless you trust where they came from.
//! - A typed read into your own types: as safe as their [`Construct`](crate::Construct)
//!   implementations. Derived ones only check globals and convert data.
//! - [`Dynamic`](crate::Dynamic), trait objects and registry fields: as safe as every
//!   constructor in the registries consulted. Every `#[derive(Reduce)]` type
//!   linked into the program registers itself, dependencies' types
//!   included: that set is the allow-list. List it with
//!   `reduce::registry().snapshot().names()` ([`Registry::names`](crate::Registry::names)).
//! - A [preset](crate::preset) widens the allow-list by exactly its own
//!   list, which its documentation shows. `STDLIB`'s constructors build
//!   data from plain arguments (no callable from the pickle is ever called:
//!   a `defaultdict`'s factory is kept as a name), and its builtin bases
//!   (`builtins.list`, `builtins.int`, ...) are allowed as data only.
//!
//! # What a registered constructor must guard itself
//!
//! A constructor is called with arguments an attacker chose. It should:
//!
//! - **validate sizes before allocating**: a count read from the pickle is
//!   not a reason to call `Vec::with_capacity(count)`;
//! - **check invariants** its type relies on: ranges, lengths that must
//!   agree, indices that must be in bounds;
//! - **return errors, not panic**: a panic in a constructor is not caught;
//! - **have no side effects**: no files, processes, sockets or global state
//!   changed while loading;
//! - **expect half-built objects** when it takes part in cycles: an object
//!   made with [`Node::once`](crate::Node::once) exists before its state is applied, and other
//!   objects may hold it in between;
//! - **treat code as code**: a function pickled by value (as in this
//!   project's code-objects example) is a program. Loading it is safe;
//!   calling it runs the sender's bytecode, so the interpreter that runs it
//!   must be the sandbox (bytecode verified, steps and memory bounded).
//!
//! # Examples
//!
//! Audit a pickle without loading it, then load it with an extension
//! registry: the code maps to a name, and the name is checked like any
//! other.
//!
//! ```
//! use reduce::{inspect, ErrorKind, Graph, Registry, Unpickler};
//!
//! // os.system("echo pwned") through extension code 7, as CPython writes
//! // it after copyreg.add_extension("os", "system", 7).
//! let evil = b"\x80\x02\x82\x07X\x0a\x00\x00\x00echo pwned\x85R.";
//! let named: Vec<String> = inspect::globals(evil)?.iter().map(|r| r.named.to_string()).collect();
//! assert_eq!(named, ["extension code 7"]);
//!
//! let mut codes = Registry::new();
//! codes.add_extension("os", "system", 7)?;
//! let err = Unpickler::from_slice(evil).registry(codes).load::<Graph>().unwrap_err();
//! assert!(matches!(err.kind(), ErrorKind::UnknownGlobal { .. }));
//! assert!(err.to_string().contains("os.system"), "{err}");
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! Allowing a name for one load does not allow it for the next: there is
//! no extension cache to remember it.
//!
//! ```
//! use reduce::{Dynamic, Graph, Registry, Unpickler};
//!
//! // shapes.Point(1, 2) through extension code 9.
//! let bytes = b"\x80\x02\x82\x09K\x01K\x02\x86R.";
//!
//! let mut trusted = Registry::new();
//! trusted.add_extension("shapes", "Point", 9)?;
//! trusted.register_constructor("shapes", "Point", |node| {
//!     node.any_reduction()?.args().construct::<(i64, i64)>()
//! })?;
//! let point: Dynamic = Unpickler::from_slice(bytes).registry(trusted).load()?;
//! assert_eq!(point.downcast_ref::<(i64, i64)>(), Some(&(1, 2)));
//!
//! // A later load that knows the code but allows nothing is refused.
//! let mut codes_only = Registry::new();
//! codes_only.add_extension("shapes", "Point", 9)?;
//! let err = Unpickler::from_slice(bytes).registry(codes_only).load::<Graph>().unwrap_err();
//! assert!(err.to_string().contains("shapes.Point"), "{err}");
//! # Ok::<(), reduce::Error>(())
//! ```

/// The name CPython 3 looks up for a global that a protocol 0–2 pickle
/// spells in Python 2, as `pickle.Unpickler` maps it with `fix_imports`
/// (on by default), from the tables of CPython's `_compat_pickle`:
/// `__builtin__.xrange` is `builtins.range`, `copy_reg._reconstructor` is
/// `copyreg._reconstructor`. Any other name comes back as it is.
///
/// The reader maps a name so before it checks it against the registry. A
/// scanner that judges a pickle's names as [`inspect`](crate::inspect)
/// reports them (as spelled) should judge this spelling too.
///
/// ```
/// use reduce::security::python3_name;
///
/// assert_eq!(python3_name("__builtin__", "xrange"), ("builtins", "range"));
/// assert_eq!(python3_name("__builtin__", "long"), ("builtins", "int"));
/// assert_eq!(python3_name("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"));
/// assert_eq!(python3_name("UserDict", "UserDict"), ("collections", "UserDict"));
/// assert_eq!(python3_name("numpy", "dtype"), ("numpy", "dtype"));
/// ```
pub fn python3_name<'a>(module: &'a str, name: &'a str) -> (&'a str, &'a str) {
    crate::text::compat::to_python3(module, name)
}
