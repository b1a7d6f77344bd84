//! The registry: Python's `copyreg`, for Rust.
//!
//! (The table of `copyreg` and the registry side by side is on
//! [`Registry`], in the public docs.)

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use crate::base::error::{Error, ErrorKind, Result};
use crate::read::Resolve;
use crate::typed::construct::{Construct, Node};
use crate::typed::save::{Reduce, Saver};
use crate::value::Global;

/// A reducer: writes a value of one registered type.
pub type ReducerFn = Arc<dyn Fn(&dyn Any, &mut Saver<'_, '_>) -> Result<()> + Send + Sync>;

/// A constructor: builds an object from a reduced object in a pickle (its
/// arguments, state and items, seen through a [`Node`]).
pub type ConstructorFn = Arc<dyn Fn(Node<'_>) -> Result<Box<dyn Any>> + Send + Sync>;

/// Reducers, constructors and extension codes: Python's `copyreg`, for
/// Rust.
///
/// | Python | reduce |
/// |---|---|
/// | `copyreg.pickle(T, reducer)` | [`Registry::register_reducer::<T>`](Registry::register_reducer) |
/// | `find_class` allowing `module.name` | [`Registry::register_constructor`] |
/// | both, for a type with `Reduce` and `Construct` | [`Registry::register`] |
/// | `copyreg.add_extension` / `remove_extension` | [`Registry::add_extension`] / [`Registry::remove_extension`] |
/// | `copyreg.dispatch_table` (process-wide) | [`registry()`](crate::registry()) |
/// | `Pickler.dispatch_table` (per pickler) | an owned [`Registry`] given to [`Pickler::registry`](crate::Pickler::registry) or [`Unpickler::registry`](crate::Unpickler::registry) |
///
/// Reducers are keyed by type (`TypeId`), constructors by global path
/// (`module` plus qualified `name`). Loading calls only registered
/// constructors; a name that is not registered is an error that lists the
/// registered names near it.
///
/// A [`Preset`] is a named allow-list with the constructors for it (the
/// standard library's data, [`preset::STDLIB`](crate::preset::STDLIB)),
/// installed with [`Registry::add_preset`].
///
/// An owned `Registry` is layered over the process-wide one (see
/// [`registry()`](crate::registry())) when given to a `Pickler` or
/// `Unpickler`: its entries are looked up first.
#[derive(Clone, Default)]
pub struct Registry {
    reducers: HashMap<TypeId, (ReducerFn, &'static str)>,
    constructors: BTreeMap<String, (ConstructorFn, &'static str)>,
    extension_codes: HashMap<u32, Global>,
    extension_names: HashMap<(String, String), u32>,
    upcasts: HashMap<(TypeId, TypeId), UpcastFn>,
    /// Paths two derived types both claimed, with the message to report.
    conflicts: BTreeMap<String, String>,
    /// Paths of generic derived types, which cannot register themselves.
    generic: BTreeMap<String, ()>,
    /// Globals allowed by an installed preset, with the preset's name: they
    /// load (as data, or through a constructor if one is registered).
    allowed: BTreeMap<String, &'static str>,
    /// The presets installed, in order.
    presets: Vec<&'static str>,
    /// The global path of the last constructor refused as taken, for the
    /// process-wide registry's report of contested names.
    last_taken: Option<String>,
}

/// Turns a constructed value into another type it can be seen as (a
/// concrete type into a `Box<dyn Trait>`).
pub type UpcastFn = Arc<dyn Fn(Box<dyn Any>) -> Option<Box<dyn Any>> + Send + Sync>;

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field(
                "reducers",
                &self.reducers.values().map(|(_, t)| *t).collect::<Vec<_>>(),
            )
            .field(
                "constructors",
                &self.constructors.keys().collect::<Vec<_>>(),
            )
            .field("extensions", &self.extension_codes)
            .field("presets", &self.presets)
            .finish()
    }
}

/// A registration refused: a name or type taken, a code out of range.
fn refused(what: String) -> Error {
    Error::new(ErrorKind::Registry(what))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Teaches the registry how to write values of type `T`, a type you may
    /// not own: `copyreg.pickle(T, reducer)`. Fails if `T` already has a
    /// reducer here.
    pub fn register_reducer<T: Any>(
        &mut self,
        reducer: impl Fn(&T, &mut Saver<'_, '_>) -> Result<()> + Send + Sync + 'static,
    ) -> Result<()> {
        let type_name = std::any::type_name::<T>();
        if self.reducers.contains_key(&TypeId::of::<T>()) {
            return Err(refused(format!(
                "a reducer for {type_name} is already registered"
            )));
        }
        let f: ReducerFn = Arc::new(move |value, s| match value.downcast_ref::<T>() {
            Some(v) => reducer(v, s),
            None => Err(Error::new(ErrorKind::Unpicklable(format!(
                "reducer for {type_name} was given another type"
            )))),
        });
        self.reducers.insert(TypeId::of::<T>(), (f, type_name));
        Ok(())
    }

    /// Registers the constructor called for the global `module.name` when a
    /// pickle builds an object with it. Fails if the path is taken.
    pub fn register_constructor<T: Any>(
        &mut self,
        module: &str,
        name: &str,
        constructor: impl Fn(Node<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<()> {
        let path = format!("{module}.{name}");
        if let Some((_, existing)) = self.constructors.get(&path) {
            self.last_taken = Some(path.clone());
            return Err(refused(format!(
                "the global `{path}` is already registered (for {existing}), and a registry holds one constructor per global. \
                 To read it as {} instead, register it in a Registry of its own given to the Unpickler (consulted first) \
                 or before the preset that registers it; a derived type can take another path with #[reduce(module = \"...\", name = \"...\")]",
                std::any::type_name::<T>()
            )));
        }
        let f: ConstructorFn =
            Arc::new(move |node| constructor(node).map(|v| Box::new(v) as Box<dyn Any>));
        self.constructors
            .insert(path, (f, std::any::type_name::<T>()));
        Ok(())
    }

    /// Registers both ways a type that implements [`Reduce`] and
    /// [`Construct`] under the global `module.name`: the path its
    /// reduction writes and its constructor reads. A derived type's is its
    /// `#[reduce(module, name)]` path (a generic derived type is not
    /// registered by itself, so it is registered with this), and another
    /// path is an error: `register` cannot rename a type.
    ///
    /// ```
    /// # #[cfg(feature = "derive")] {
    /// #[derive(reduce::Reduce)]
    /// #[reduce(module = "geo")]
    /// struct Pair<T> { a: T, b: T }
    ///
    /// let mut registry = reduce::Registry::new();
    /// registry.register::<Pair<i64>>("geo", "Pair")?;
    /// assert!(registry.register::<Pair<f64>>("geo", "Other").is_err());
    /// # }
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn register<T: Reduce + Construct + Any>(
        &mut self,
        module: &str,
        name: &str,
    ) -> Result<()> {
        if let Some((m, n)) = T::__path() {
            if (m, n) != (module, name) {
                return Err(refused(format!(
                    "{} is written and read as the global `{m}.{n}` (its #[reduce] path), not `{module}.{name}`: \
                     register it as `{m}.{n}`, or give it that path with #[reduce(module = \"{module}\", name = \"{name}\")]",
                    std::any::type_name::<T>()
                )));
            }
        }
        self.register_constructor(module, name, T::construct)?;
        if !self.reducers.contains_key(&TypeId::of::<T>()) {
            self.register_reducer::<T>(|v, s| v.reduce(s))?;
        }
        Ok(())
    }

    /// Lets values built as `T` be read where a `U` is wanted, usually a
    /// trait object: `register_upcast(|c: Circle| Box::new(c) as Box<dyn Shape>)`.
    /// [`Node::registered::<U>`](crate::Node::registered) then accepts any
    /// registered constructor that makes a `T`.
    pub fn register_upcast<T: Any, U: Any>(
        &mut self,
        upcast: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Result<()> {
        let key = (TypeId::of::<T>(), TypeId::of::<U>());
        if self.upcasts.contains_key(&key) {
            return Err(refused(format!(
                "an upcast from {} to {} is already registered",
                std::any::type_name::<T>(),
                std::any::type_name::<U>()
            )));
        }
        let f: UpcastFn = Arc::new(move |b| {
            b.downcast::<T>()
                .ok()
                .map(|t| Box::new(upcast(*t)) as Box<dyn Any>)
        });
        self.upcasts.insert(key, f);
        Ok(())
    }

    /// `copyreg.add_extension(module, name, code)`: the global is written as
    /// `EXT1`/`EXT2`/`EXT4` `code` at protocol 2 and up, and the code reads
    /// back as the global. Codes are 1 to 2<sup>31</sup> - 1; a code or a name
    /// registered to something else is an error.
    pub fn add_extension(&mut self, module: &str, name: &str, code: u32) -> Result<()> {
        if code == 0 || code > 0x7fff_ffff {
            return Err(refused(format!(
                "extension code {code} is out of range (1 to 2**31-1)"
            )));
        }
        let key = (module.to_owned(), name.to_owned());
        match (
            self.extension_names.get(&key),
            self.extension_codes.get(&code),
        ) {
            (Some(&c), Some(g)) if c == code && g.module == module && g.name == name => {
                return Ok(())
            }
            (Some(&c), _) => {
                return Err(refused(format!(
                    "`{module}.{name}` is already registered with code {c}"
                )))
            }
            (_, Some(g)) => {
                return Err(refused(format!(
                    "extension code {code} is already in use for `{g}`"
                )))
            }
            _ => {}
        }
        self.extension_names.insert(key, code);
        self.extension_codes.insert(code, Global::new(module, name));
        Ok(())
    }

    /// `copyreg.remove_extension(module, name, code)`.
    pub fn remove_extension(&mut self, module: &str, name: &str, code: u32) -> Result<()> {
        let key = (module.to_owned(), name.to_owned());
        if self.extension_names.get(&key) != Some(&code) {
            return Err(refused(format!(
                "`{module}.{name}` is not registered as extension code {code}"
            )));
        }
        self.extension_names.remove(&key);
        self.extension_codes.remove(&code);
        Ok(())
    }

    /// Installs a [`Preset`]: its globals are allowed when loading, and its
    /// constructors (for [`Dynamic`](crate::Dynamic) and
    /// [`Node::registered`]) are registered.
    ///
    /// Installing a preset again does nothing. Where you registered a
    /// constructor for one of its globals first, yours is kept and the
    /// preset's is not added: the preset never replaces what you chose. A
    /// constructor you register *after* the preset for one of its globals is
    /// refused as a duplicate, as any second registration is; put it in an
    /// owned `Registry` given to the [`Unpickler`](crate::Unpickler), which
    /// is looked up first, or register it before installing the preset.
    ///
    /// ```
    /// use reduce::{preset, Registry, Value};
    ///
    /// // pickle.dumps(decimal.Decimal("1.10"), protocol=2)
    /// let bytes = b"\x80\x02cdecimal\nDecimal\nq\x00X\x04\x00\x00\x001.10q\x01\x85q\x02Rq\x03.";
    /// assert!(reduce::from_slice::<Value>(bytes).is_err()); // not allowed by default
    ///
    /// let mut registry = Registry::new();
    /// registry.add_preset(&preset::STDLIB)?;
    /// let value: Value = reduce::Unpickler::from_slice(bytes).registry(registry).load()?;
    /// assert_eq!(format!("{value:?}"), "<reduce decimal.Decimal, ('1.10',)>");
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn add_preset(&mut self, preset: &Preset) -> Result<()> {
        if self.presets.contains(&preset.name()) {
            return Ok(());
        }
        // The preset installs into a registry of its own first, so that it
        // can be checked against its list and merged without replacing
        // anything here; on error nothing changes.
        let mut theirs = Registry::new();
        preset.install_into(&mut theirs)?;
        if let Some(path) = theirs
            .constructors
            .keys()
            .find(|path| !preset.globals().any(|(m, n)| **path == format!("{m}.{n}")))
        {
            return Err(refused(format!(
                "preset `{}` registers a constructor for `{path}`, which is not in its list of globals",
                preset.name()
            )));
        }
        for (path, entry) in theirs.constructors {
            self.constructors.entry(path).or_insert(entry);
        }
        for (t, entry) in theirs.reducers {
            self.reducers.entry(t).or_insert(entry);
        }
        for (k, f) in theirs.upcasts {
            self.upcasts.entry(k).or_insert(f);
        }
        for (m, n) in preset.globals() {
            self.allowed
                .entry(format!("{m}.{n}"))
                .or_insert(preset.name());
        }
        self.presets.push(preset.name());
        Ok(())
    }

    /// The names of the presets installed, in the order they were.
    pub fn presets(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.presets.iter().copied()
    }

    /// Whether loading allows the global `module.name`: a constructor is
    /// registered for it, or an installed preset lists it.
    pub fn allows(&self, module: &str, name: &str) -> bool {
        let path = format!("{module}.{name}");
        self.constructors.contains_key(&path) || self.allowed.contains_key(&path)
    }

    /// Whether a constructor is registered for the global `module.name`.
    pub fn contains(&self, module: &str, name: &str) -> bool {
        self.constructors.contains_key(&format!("{module}.{name}"))
    }

    /// Registrations refused when derived types joined the registry (two
    /// types claiming one global path), as messages.
    pub fn conflicts(&self) -> impl Iterator<Item = &str> {
        self.conflicts.values().map(String::as_str)
    }

    /// The registered global paths, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }
}

/// The process-wide registry: `copyreg`'s module-level tables.
///
/// Registration takes a write lock only long enough to swap in a new
/// snapshot; a pickler or unpickler works, for one whole dump or load, on
/// the snapshot it took when it first consulted the registry, so
/// registering from one thread while others pickle and unpickle is safe
/// and never blocks them.
pub struct GlobalRegistry {
    current: RwLock<Arc<Registry>>,
    /// Bumped (under the write lock) each time `current` is replaced, so a
    /// thread can tell that the snapshot it holds is still the current one.
    generation: AtomicU64,
    /// Whether `current` holds an extension code, so that a write can
    /// tell without taking a snapshot.
    has_extensions: AtomicBool,
}

thread_local! {
    /// This thread's last snapshot of the process-wide registry and its
    /// generation: taking a snapshot is then one atomic load and one
    /// reference count, not a lock, which a write of one small value
    /// felt (a fifth of its time).
    static SNAPSHOT: RefCell<Option<(u64, Arc<Registry>)>> = const { RefCell::new(None) };
}

static GLOBAL: LazyLock<GlobalRegistry> = LazyLock::new(|| {
    // Every #[derive(Reduce)] type of the program registered itself at link
    // time; they join the registry the first time it is used.
    let mut registry = Registry::new();
    for entry in inventory::iter::<Registration> {
        registry.last_taken = None;
        if let Err(e) = (entry.register)(&mut registry) {
            let msg = format!("{} could not register: {e}", entry.type_name);
            let path = registry.last_taken.take().unwrap_or_default();
            registry.conflicts.insert(path, msg);
        }
    }
    for entry in inventory::iter::<GenericName> {
        registry.generic.insert((entry.path)(), ());
    }
    GlobalRegistry {
        has_extensions: AtomicBool::new(!registry.extension_names.is_empty()),
        current: RwLock::new(Arc::new(registry)),
        generation: AtomicU64::new(0),
    }
});

/// The process-wide registry.
pub fn registry() -> &'static GlobalRegistry {
    &GLOBAL
}

/// The registry as it is now, as [`Registry`]'s `Debug` shows it.
impl fmt::Debug for GlobalRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GlobalRegistry")
            .field(&self.snapshot())
            .finish()
    }
}

impl GlobalRegistry {
    /// The registry as it is now.
    pub fn snapshot(&self) -> Arc<Registry> {
        let now = self.generation.load(Ordering::Acquire);
        let cached = SNAPSHOT
            .try_with(|c| match &*c.borrow() {
                Some((generation, r)) if *generation == now => Some(r.clone()),
                _ => None,
            })
            .ok()
            .flatten();
        if let Some(r) = cached {
            return r;
        }
        let (generation, r) = {
            let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
            // Read under the lock: the generation that goes with `guard`.
            (self.generation.load(Ordering::Acquire), guard.clone())
        };
        // A thread being torn down has no cache: it just takes the lock.
        let _ = SNAPSHOT.try_with(|c| *c.borrow_mut() = Some((generation, r.clone())));
        r
    }

    /// Changes the registry: `change` works on a copy, which replaces the
    /// current registry only if `change` succeeds.
    pub fn update<R>(&self, change: impl FnOnce(&mut Registry) -> Result<R>) -> Result<R> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        let r = change(&mut next)?;
        self.has_extensions
            .store(!next.extension_names.is_empty(), Ordering::Release);
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(r)
    }

    /// [`Registry::register_reducer`] on the process-wide registry.
    pub fn register_reducer<T: Any>(
        &self,
        reducer: impl Fn(&T, &mut Saver<'_, '_>) -> Result<()> + Send + Sync + 'static,
    ) -> Result<()> {
        self.update(|r| r.register_reducer(reducer))
    }

    /// [`Registry::register_constructor`] on the process-wide registry.
    pub fn register_constructor<T: Any>(
        &self,
        module: &str,
        name: &str,
        constructor: impl Fn(Node<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> Result<()> {
        self.update(|r| r.register_constructor(module, name, constructor))
    }

    /// [`Registry::register`] on the process-wide registry.
    pub fn register<T: Reduce + Construct + Any>(&self, module: &str, name: &str) -> Result<()> {
        self.update(|r| r.register::<T>(module, name))
    }

    /// [`Registry::add_preset`] on the process-wide registry.
    pub fn add_preset(&self, preset: &Preset) -> Result<()> {
        self.update(|r| r.add_preset(preset))
    }

    /// [`Registry::register_upcast`] on the process-wide registry.
    pub fn register_upcast<T: Any, U: Any>(
        &self,
        upcast: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Result<()> {
        self.update(|r| r.register_upcast(upcast))
    }

    /// [`Registry::add_extension`] on the process-wide registry.
    pub fn add_extension(&self, module: &str, name: &str, code: u32) -> Result<()> {
        self.update(|r| r.add_extension(module, name, code))
    }

    /// [`Registry::remove_extension`] on the process-wide registry.
    pub fn remove_extension(&self, module: &str, name: &str, code: u32) -> Result<()> {
        self.update(|r| r.remove_extension(module, name, code))
    }

    /// Whether a constructor is registered for `module.name`.
    pub fn contains(&self, module: &str, name: &str) -> bool {
        self.snapshot().contains(module, name)
    }
}

/// An owned registry layered over a snapshot of the process-wide one.
#[doc(hidden)]
#[derive(Clone)]
pub struct Lookup {
    local: Option<Arc<Registry>>,
    /// The process-wide registry as it was when this load or write first
    /// asked it something: a value of plain data never does, and does not
    /// pay for the snapshot's reference count (whose atomic operations
    /// took half the time of writing `(1, 2.5, "x")`).
    global: std::cell::OnceCell<Arc<Registry>>,
}

impl Lookup {
    pub(crate) fn new(local: Option<Arc<Registry>>) -> Lookup {
        Lookup {
            local,
            global: std::cell::OnceCell::new(),
        }
    }

    fn global(&self) -> &Registry {
        self.global.get_or_init(|| registry().snapshot())
    }

    /// Whether any extension code is registered: the common case is none,
    /// and a write of one small value should not build a table for it.
    #[inline]
    pub(crate) fn has_extensions(&self) -> bool {
        let global = match self.global.get() {
            Some(g) => !g.extension_names.is_empty(),
            None => registry().has_extensions.load(Ordering::Acquire),
        };
        global
            || self
                .local
                .as_ref()
                .is_some_and(|l| !l.extension_names.is_empty())
    }

    fn layers(&self) -> impl Iterator<Item = &Registry> {
        self.local
            .as_deref()
            .into_iter()
            .chain(std::iter::once(self.global()))
    }

    pub(crate) fn reducer(&self, t: TypeId) -> Option<ReducerFn> {
        self.layers()
            .find_map(|r| r.reducers.get(&t).map(|(f, _)| f.clone()))
    }

    pub(crate) fn constructor(&self, path: &str) -> Option<ConstructorFn> {
        self.layers()
            .find_map(|r| r.constructors.get(path).map(|(f, _)| f.clone()))
    }

    pub(crate) fn upcast(&self, from: TypeId, to: TypeId) -> Option<UpcastFn> {
        self.layers()
            .find_map(|r| r.upcasts.get(&(from, to)).cloned())
    }

    /// The conflict recorded for a path two derived types claim, if any.
    pub(crate) fn conflict(&self, path: &str) -> Option<String> {
        self.layers().find_map(|r| r.conflicts.get(path).cloned())
    }

    /// Why a path cannot be loaded although a type claims it, or which
    /// preset would allow it, if so.
    pub(crate) fn refusal(&self, path: &str) -> Option<String> {
        self.layers()
            .find_map(|r| {
                r.conflicts.get(path).cloned().or_else(|| {
                    r.generic.contains_key(path).then(|| {
                        format!(
                            "`{path}` is a generic type, which cannot register itself; register one instantiation (any one: every instantiation then reads it) with reduce::registry().register::<Type<..>>(module, name)"
                        )
                    })
                })
            })
            .or_else(|| {
                // The module may be dotted itself (`numpy._core.multiarray`):
                // each dot of the path splits it into a module and a name.
                let p = path
                    .match_indices('.')
                    .map(|(i, _)| (&path[..i], &path[i + 1..]))
                    .flat_map(|(module, name)| {
                        inventory::iter::<KnownPreset>
                            .into_iter()
                            .filter(move |k| k.preset.contains(module, name))
                    })
                    .min_by_key(|k| k.rank)?
                    .preset;
                Some(format!(
                    "it is in the `{}` preset: install it with reduce::registry().add_preset(&reduce::preset::{})",
                    p.name(),
                    p.name().to_uppercase()
                ))
            })
    }

    /// The preset that allows `path`, when no constructor is registered for
    /// it, for the error of a typed read that needs one.
    pub(crate) fn allowed_by(&self, path: &str) -> Option<&'static str> {
        self.layers().find_map(|r| r.allowed.get(path).copied())
    }

    /// Whether `path` (`module.name`) is registered, or is the parent of a
    /// registered nested name (`Shape` for `Shape.Circle`), which CPython
    /// names as `getattr(Shape, "Circle")` before protocol 4. `path` is
    /// given back as it came; it lends its room to the nested names'
    /// prefix, so a global's check allocates once.
    pub(crate) fn has_constructor(&self, path: &mut String) -> bool {
        let n = path.len();
        let exact = self
            .layers()
            .any(|r| r.constructors.contains_key(&*path) || r.allowed.contains_key(&*path));
        if exact {
            return true;
        }
        path.push('.');
        let prefix: &str = path;
        let from = (
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        );
        let nested = self.layers().any(|r| {
            r.constructors
                .range::<str, _>(from)
                .next()
                .is_some_and(|(k, _)| k.starts_with(prefix))
                || r.allowed
                    .range::<str, _>(from)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(prefix))
        });
        path.truncate(n);
        nested
    }

    fn extension_global(&self, code: u32) -> Option<Global> {
        self.layers()
            .find_map(|r| r.extension_codes.get(&code).cloned())
    }

    /// All extension codes by name, local layer first.
    pub(crate) fn extension_names(&self) -> HashMap<(String, String), u32> {
        let mut all = HashMap::new();
        if !self.has_extensions() {
            return all;
        }
        for layer in [Some(self.global()), self.local.as_deref()]
            .into_iter()
            .flatten()
        {
            all.extend(layer.extension_names.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// Registered names close to `path`, for error messages.
    pub(crate) fn near(&self, path: &str) -> Vec<String> {
        let mut found: Vec<(usize, String)> = self
            .layers()
            .flat_map(|r| r.constructors.keys())
            .filter_map(|k| {
                let same_tail = k.rsplit('.').next() == path.rsplit('.').next();
                // The distance is at least the difference in length, so
                // only a name of about the same length can be within 3;
                // a hostile name of many kilobytes is not compared
                // letter by letter with every registered one.
                let gap = k.len().abs_diff(path.len());
                let d = if gap <= 3 || (same_tail && path.len() <= 1024) {
                    edit_distance(k, path)
                } else if same_tail {
                    gap
                } else {
                    return None;
                };
                (d <= 3 || same_tail).then(|| (d, k.clone()))
            })
            .collect();
        found.sort();
        found.dedup_by(|a, b| a.1 == b.1);
        found.into_iter().take(5).map(|(_, k)| k).collect()
    }
}

/// Levenshtein distance, for suggestions.
/// The strict reader's `find_class`: a global is allowed when plain data
/// needs it or a constructor (or an installed preset) is registered for it,
/// unless two derived types claim it.
impl Resolve for Lookup {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn find_class(&self, module: &str, name: &str, plain_data: bool) -> Result<()> {
        // Built by hand: `format!` costs more than the lookups (a pickle of
        // one instance checks its class once, and this was a twentieth of
        // reading it as a `Value`). Room for the '.' of a nested prefix.
        let mut path = String::with_capacity(module.len() + name.len() + 2);
        path.push_str(module);
        path.push('.');
        path.push_str(name);
        if let Some(why) = self.conflict(&path) {
            return Err(Error::new(ErrorKind::Registry(why)));
        }
        if plain_data || self.has_constructor(&mut path) {
            return Ok(());
        }
        let err = Error::new(ErrorKind::UnknownGlobal {
            module: module.into(),
            name: name.into(),
            near: self.near(&path),
        });
        Err(match self.refusal(&path) {
            Some(why) => err.with_detail(why),
            None => err,
        })
    }

    fn extension(&self, code: u32) -> Option<Global> {
        self.extension_global(code)
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---- presets and link-time registrations ----------------------------------

/// A named allow-list of globals, with the constructors that read them.
///
/// `globals` is the whole list: loading with the preset installed allows
/// these and only these (beyond what was allowed before). `install`
/// registers constructors, only for globals on the list (installing checks
/// this), and possibly reducers.
#[derive(Clone, Copy)]
pub struct Preset {
    name: &'static str,
    globals: &'static [(&'static str, &'static str)],
    install: fn(&mut Registry) -> Result<()>,
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preset")
            .field("name", &self.name)
            .field("globals", &self.globals.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Preset {
    fn eq(&self, other: &Preset) -> bool {
        self.name == other.name && self.globals == other.globals
    }
}

impl Preset {
    /// A preset named `name` allowing `globals` (`(module, qualname)`
    /// pairs), whose `install` registers their constructors.
    ///
    /// ```
    /// use reduce::preset::Preset;
    ///
    /// const POINTS: Preset = Preset::new("points", &[("geometry", "Point")], |r| {
    ///     r.register_constructor("geometry", "Point", |node| {
    ///         let (x, y): (f64, f64) = node.any_reduction()?.args().construct()?;
    ///         Ok([x, y])
    ///     })
    /// });
    /// let mut registry = reduce::Registry::new();
    /// registry.add_preset(&POINTS)?;
    /// assert!(registry.allows("geometry", "Point"));
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub const fn new(
        name: &'static str,
        globals: &'static [(&'static str, &'static str)],
        install: fn(&mut Registry) -> Result<()>,
    ) -> Preset {
        Preset {
            name,
            globals,
            install,
        }
    }

    /// The preset's name (`"stdlib"`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The globals it allows, as `(module, qualname)`.
    pub fn globals(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        self.globals.iter().copied()
    }

    /// Whether it allows the global `module.name`.
    pub fn contains(&self, module: &str, name: &str) -> bool {
        self.globals.iter().any(|&(m, n)| m == module && n == name)
    }

    pub(crate) fn install_into(&self, registry: &mut Registry) -> Result<()> {
        (self.install)(registry)
    }
}

/// A preset of this build, announced at link time (by `crate::preset`), so
/// that an error for a refused global can name the preset that allows it.
pub(crate) struct KnownPreset {
    /// Which of two presets allowing one global is named: the lowest.
    pub(crate) rank: u8,
    pub(crate) preset: &'static Preset,
}

inventory::collect!(KnownPreset);

/// A derived type that registers itself at link time.
pub struct Registration {
    /// The type's name, for conflict reports.
    pub type_name: &'static str,
    /// Registers the type's reducer and constructors.
    pub register: fn(&mut Registry) -> Result<()>,
}

inventory::collect!(Registration);

/// A generic derived type, which cannot register itself: its global path,
/// so the error for an unregistered instantiation can say why.
pub struct GenericName {
    /// The global path `module.name`.
    pub path: fn() -> String,
}

inventory::collect!(GenericName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sees_every_update_on_every_thread() {
        let path = "snapshot_test.Marker";
        let before = registry().snapshot();
        registry()
            .update(|r| {
                r.generic.insert(path.into(), ());
                Ok(())
            })
            .unwrap();
        // This thread's cached snapshot is stale now, and is not used.
        let after = registry().snapshot();
        assert!(!Arc::ptr_eq(&before, &after));
        assert!(after.generic.contains_key(path) && !before.generic.contains_key(path));
        assert!(Arc::ptr_eq(&after, &registry().snapshot()));
        let other = std::thread::spawn(move || registry().snapshot().generic.contains_key(path));
        assert!(other.join().unwrap());
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("os.system", "os.sytem"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut r = Registry::new();
        r.register_constructor("m", "A", |_| Ok(1u8)).unwrap();
        let e = r.register_constructor("m", "A", |_| Ok(2u8)).unwrap_err();
        assert!(e.to_string().contains("`m.A` is already registered"), "{e}");
        r.register_reducer::<u8>(|_, _| Ok(())).unwrap();
        assert!(r.register_reducer::<u8>(|_, _| Ok(())).is_err());
    }

    #[test]
    fn extension_codes_conflict_like_copyreg() {
        let mut r = Registry::new();
        r.add_extension("m", "f", 5).unwrap();
        r.add_extension("m", "f", 5).unwrap();
        assert!(r.add_extension("m", "g", 5).is_err());
        assert!(r.add_extension("m", "f", 6).is_err());
        assert!(r.add_extension("m", "g", 0).is_err());
        r.remove_extension("m", "f", 5).unwrap();
        r.add_extension("m", "g", 5).unwrap();
    }
}
