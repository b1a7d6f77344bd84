//! The entry point for writing: [`Pickler`], the writer engine's output and
//! the typed layer's [`Saver`] put together.

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use crate::base::error::Result;
use crate::base::op::DEFAULT_PROTOCOL;
use crate::typed::registry::{Lookup, Registry};
use crate::typed::save::{Hooks, Reduce, ReducerOverride, Saver};
use crate::value::{PickleBuffer, Value};
use crate::write::out::{check_protocol, no_extensions, Out};

/// A hook deciding, for each [`PickleBuffer`], whether it is written in band
/// (`true`) or out of band (`false`): Python's `buffer_callback`.
pub type BufferCallback<'h> = Box<dyn FnMut(&PickleBuffer) -> bool + 'h>;

/// Writes pickles, with options: protocol, `fix_imports`, a buffer callback
/// for out-of-band data and extension codes.
///
/// ```
/// use reduce::{Pickler, Value};
///
/// let mut out = Vec::new();
/// Pickler::new(&mut out).protocol(2).dump(&Value::List(vec![1.into()]))?;
/// assert_eq!(out, b"\x80\x02]q\x00K\x01a.");
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// Each [`dump`](Pickler::dump) writes a complete, independent pickle (as
/// `pickle.dumps` does); several dumps to one writer can be read back in turn
/// by one [`Unpickler`](crate::Unpickler).
///
/// The writer gets each frame (64 KiB) as it is done, and a `str` or
/// `bytes` payload of 64 KiB or more as it is, in a `write` of its own,
/// never copied into a buffer first: memory stays at about one frame
/// whatever the size of the value, as with CPython's `pickle.dump`.
pub struct Pickler<'h, W> {
    writer: W,
    options: WriteOptions<'h>,
}

/// The options, with each hook shown as whether it is set (the writer is
/// not shown: it need not be `Debug`).
impl<W> std::fmt::Debug for Pickler<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        f.debug_struct("Pickler")
            .field("protocol", &o.proto)
            .field("fix_imports", &o.fix_imports)
            .field("buffer_callback", &o.buffer_callback.is_some())
            .field("extensions", &o.extensions)
            .field("registry", &o.registry.is_some())
            .field("reducer_override", &o.reducer_override.is_some())
            .field("persistent_id", &o.persistent_id.is_some())
            .finish_non_exhaustive()
    }
}

struct WriteOptions<'h> {
    proto: u8,
    fix_imports: bool,
    buffer_callback: Option<BufferCallback<'h>>,
    extensions: HashMap<(String, String), u32>,
    registry: Option<Arc<Registry>>,
    reducer_override: Option<ReducerOverride<'h>>,
    persistent_id: Option<PersistentId<'h>>,
}

/// A hook asked about every value written through the registry, before the
/// registry: Python's `persistent_id`. Return `Some(pid)` to write the value
/// as that persistent id instead.
pub type PersistentId<'h> = Box<dyn FnMut(&dyn Any) -> Option<Value> + 'h>;

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            proto: DEFAULT_PROTOCOL,
            fix_imports: true,
            buffer_callback: None,
            extensions: HashMap::new(),
            registry: None,
            reducer_override: None,
            persistent_id: None,
        }
    }
}

impl<W: io::Write> Pickler<'static, W> {
    /// A pickler writing to `writer` at protocol [`DEFAULT_PROTOCOL`].
    pub fn new(writer: W) -> Self {
        Pickler {
            writer,
            options: WriteOptions::default(),
        }
    }
}

impl<'h, W: io::Write> Pickler<'h, W> {
    /// The protocol, 0 to 5. A protocol above 5 makes `dump` fail.
    pub fn protocol(mut self, proto: u8) -> Self {
        self.options.proto = proto;
        self
    }

    /// Write globals under their Python 2 names at protocols 0 to 2
    /// (`builtins` as `__builtin__`, ...), as Python's `fix_imports` does.
    /// Default on.
    ///
    /// As in CPython, the mapping is not a bijection: a global that already
    /// has a Python 2 name (`__builtin__.object`, kept as such from a
    /// protocol 3+ pickle) is written unchanged at protocols 0 to 2, and a
    /// reader with `fix_imports` on loads it as `builtins.object`. Turn the
    /// option off on both sides to keep every name exactly.
    pub fn fix_imports(mut self, fix: bool) -> Self {
        self.options.fix_imports = fix;
        self
    }

    /// The hook asked for each [`PickleBuffer`] at protocol 5: return `false`
    /// to write it out of band (`NEXT_BUFFER`), keeping the data yourself, or
    /// `true` to write it in band. Without a hook, buffers go in band.
    pub fn buffer_callback<'g>(self, hook: impl FnMut(&PickleBuffer) -> bool + 'g) -> Pickler<'g, W>
    where
        'h: 'g,
    {
        let mut options: WriteOptions<'g> = self.options;
        options.buffer_callback = Some(Box::new(hook));
        Pickler {
            writer: self.writer,
            options,
        }
    }

    /// Writes the global `module.name` as extension code `code`
    /// (`EXT1`/`EXT2`/`EXT4`) at protocol 2 and up, as
    /// `copyreg.add_extension` does.
    pub fn extension(mut self, code: u32, module: &str, name: &str) -> Self {
        self.options
            .extensions
            .insert((module.to_owned(), name.to_owned()), code);
        self
    }

    /// A registry layered over the process-wide one for this pickler: its
    /// reducers are tried first, and its extension codes written (Python's
    /// `Pickler.dispatch_table`).
    /// Unlike Python's, it is not asked about every object: only values
    /// written through the registry ([`Registered`](crate::Registered),
    /// and registry fields) reach it. A type with a `Reduce` of its own (a
    /// derived type, a std type, a `Value`) writes itself, as its
    /// `__reduce__` would, without asking.
    pub fn registry(mut self, registry: impl Into<Arc<Registry>>) -> Self {
        self.options.registry = Some(registry.into());
        self
    }

    /// A hook asked before the registry about every value written through
    /// it (Python's `reducer_override`): write the value with the `Saver`
    /// and return `Ok(true)`, or return `Ok(false)` to let the registry
    /// write it.
    /// Unlike Python's, it is not asked about every object: only values
    /// written through the registry ([`Registered`](crate::Registered),
    /// and registry fields) reach it. A type with a `Reduce` of its own (a
    /// derived type, a std type, a `Value`) writes itself, as its
    /// `__reduce__` would, without asking.
    pub fn reducer_override<'g>(
        self,
        hook: impl FnMut(&dyn Any, &mut Saver<'_, '_>) -> Result<bool> + 'g,
    ) -> Pickler<'g, W>
    where
        'h: 'g,
    {
        let mut options: WriteOptions<'g> = self.options;
        options.reducer_override = Some(Box::new(hook));
        Pickler {
            writer: self.writer,
            options,
        }
    }

    /// A hook asked first about every value written through the registry
    /// (Python's `persistent_id`): return `Some(pid)` to write the value as a
    /// reference to something kept outside the pickle.
    /// Unlike Python's, it is not asked about every object: only values
    /// written through the registry ([`Registered`](crate::Registered),
    /// and registry fields) reach it. A type with a `Reduce` of its own (a
    /// derived type, a std type, a `Value`) writes itself, as its
    /// `__reduce__` would, without asking.
    pub fn persistent_id<'g>(
        self,
        hook: impl FnMut(&dyn Any) -> Option<Value> + 'g,
    ) -> Pickler<'g, W>
    where
        'h: 'g,
    {
        let mut options: WriteOptions<'g> = self.options;
        options.persistent_id = Some(Box::new(hook));
        Pickler {
            writer: self.writer,
            options,
        }
    }

    /// Writes one pickle of `value`.
    pub fn dump<T: Reduce + ?Sized>(&mut self, value: &T) -> Result<()> {
        let opts = &mut self.options;
        let lookup = Lookup::new(opts.registry.clone());
        check_protocol(opts.proto)?;
        let mut extensions = lookup.extension_names();
        extensions.extend(opts.extensions.iter().map(|(k, v)| (k.clone(), *v)));
        let out = Out::new(
            opts.proto,
            opts.fix_imports,
            Some(&extensions),
            Some(&mut self.writer),
        );
        let mut saver = Saver::new(
            out,
            &lookup,
            Hooks {
                reducer_override: opts.reducer_override.as_deref_mut().map(|h| h as _),
                persistent_id: opts.persistent_id.as_deref_mut().map(|h| h as _),
                buffer_callback: opts.buffer_callback.as_deref_mut().map(|h| h as _),
            },
        );
        saver.out.start();
        value.reduce(&mut saver)?;
        saver.out.finish()
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

/// Writes one pickle of `value` at protocol `proto` with the default
/// options into a new `Vec`: the output layer's buffer is the result, with
/// no copy into a writer.
pub(crate) fn to_vec<T: Reduce + ?Sized>(value: &T, proto: u8) -> Result<Vec<u8>> {
    check_protocol(proto)?;
    let lookup = Lookup::new(None);
    let owned;
    let extensions = if lookup.has_extensions() {
        owned = lookup.extension_names();
        Some(&owned)
    } else {
        no_extensions()
    };
    let mut saver = Saver::new(
        Out::new(proto, true, extensions, None),
        &lookup,
        Hooks {
            reducer_override: None,
            persistent_id: None,
            buffer_callback: None,
        },
    );
    saver.out.start();
    value.reduce(&mut saver)?;
    saver.out.finish()?;
    Ok(saver.out.take_buf())
}
