//! The state of an ordinary Python instance, as `object.__reduce_ex__`
//! gives it to `BUILD`, read and written for `#[derive(Reduce)]`'s `state`
//! forms, and the [`Rest`] trait that keeps attributes a type has no field
//! for.
//!
//! CPython 3.11 (`object.__getstate__`) gives an instance's state as:
//!
//! | the class has | state |
//! |---|---|
//! | a `__dict__` only | the `__dict__`, or `None` when it is empty |
//! | `__slots__` (with or without a `__dict__`) | `(__dict__ or None, {slot: value})`, or as above when no slot is set |
//!
//! and `BUILD` applies the `__dict__` part by `inst.__dict__.update`, the
//! slots part by `setattr`. Protocols 0 and 1 cannot write a class with
//! `__slots__` unless it defines `__getstate__`; CPython refuses.

use std::collections::BTreeMap;

use crate::base::error::{Error, Result};
use crate::read::stream::{Miss, Pulled, Stream};
use crate::typed::construct::{Call, Construct, Node};
use crate::typed::save::{FnReduce, Reduce, Saver, StateDict};
use crate::value::Value;
use crate::write::names::FieldNames;

/// A field type that keeps the attributes of a Python instance that a
/// `#[reduce(state)]` type has no field for: the type of a
/// `#[reduce(rest)]` field.
///
/// Implemented for `Vec<(K, V)>` and `indexmap::IndexMap<K, V>` (which
/// write the attributes back in the order they were read, as the
/// instance's `__dict__` had them) and `BTreeMap<K, V>` (in key order),
/// where `K` and `V` are read and written as usual: `String` and
/// [`Value`] are the common choices.
///
/// ```
/// # #[cfg(feature = "derive")] {
/// use std::collections::BTreeMap;
/// use reduce::{Reduce, Value};
///
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "shop", state)]
/// struct Item {
///     name: String,
///     #[reduce(rest)]
///     other: BTreeMap<String, Value>,
/// }
///
/// let item = Item {
///     name: "pen".into(),
///     other: BTreeMap::from([("colour".to_string(), Value::str("red"))]),
/// };
/// // Python sees one __dict__: {'name': 'pen', 'colour': 'red'}.
/// let bytes = reduce::to_vec(&item)?;
/// assert_eq!(reduce::from_slice::<Item>(&bytes)?, item);
/// # }
/// # Ok::<(), reduce::Error>(())
/// ```
pub trait Rest: Default {
    /// Keeps one attribute: `name` is the node of its name (a `str` in any
    /// pickle CPython can load), `value` the node of its value.
    fn read_attribute(&mut self, name: Node<'_>, value: Node<'_>) -> Result<()>;

    /// The attributes kept, as (name, value) pairs in the order to write them.
    fn attributes(&self) -> Vec<(&dyn Reduce, &dyn Reduce)>;

    /// Keeps one attribute read from the stream
    /// ([`Stream::attribute`]): as [`read_attribute`](Rest::read_attribute)
    /// does, or a miss. The default always misses.
    #[doc(hidden)]
    fn read_attribute_stream(&mut self, stream: &mut Stream<'_>) -> Pulled<()> {
        let _ = stream;
        Err(Miss)
    }
}

impl<K: Construct + Reduce, V: Construct + Reduce> Rest for Vec<(K, V)> {
    fn read_attribute(&mut self, name: Node<'_>, value: Node<'_>) -> Result<()> {
        self.push((name.construct()?, value.construct()?));
        Ok(())
    }

    fn read_attribute_stream(&mut self, s: &mut Stream<'_>) -> Pulled<()> {
        self.push(s.attribute(K::construct_stream, V::construct_stream)?);
        Ok(())
    }

    fn attributes(&self) -> Vec<(&dyn Reduce, &dyn Reduce)> {
        self.iter()
            .map(|(k, v)| (k as &dyn Reduce, v as &dyn Reduce))
            .collect()
    }
}

impl<K: Construct + Reduce + Ord, V: Construct + Reduce> Rest for BTreeMap<K, V> {
    fn read_attribute(&mut self, name: Node<'_>, value: Node<'_>) -> Result<()> {
        self.insert(name.construct()?, value.construct()?);
        Ok(())
    }

    fn read_attribute_stream(&mut self, s: &mut Stream<'_>) -> Pulled<()> {
        let (k, v) = s.attribute(K::construct_stream, V::construct_stream)?;
        self.insert(k, v);
        Ok(())
    }

    fn attributes(&self) -> Vec<(&dyn Reduce, &dyn Reduce)> {
        self.iter()
            .map(|(k, v)| (k as &dyn Reduce, v as &dyn Reduce))
            .collect()
    }
}

#[cfg(feature = "indexmap")]
impl<K, V, S> Rest for indexmap::IndexMap<K, V, S>
where
    K: Construct + Reduce + std::hash::Hash + Eq,
    V: Construct + Reduce,
    S: std::hash::BuildHasher + Default,
{
    fn read_attribute(&mut self, name: Node<'_>, value: Node<'_>) -> Result<()> {
        self.insert(name.construct()?, value.construct()?);
        Ok(())
    }

    fn read_attribute_stream(&mut self, s: &mut Stream<'_>) -> Pulled<()> {
        let (k, v) = s.attribute(K::construct_stream, V::construct_stream)?;
        self.insert(k, v);
        Ok(())
    }

    fn attributes(&self) -> Vec<(&dyn Reduce, &dyn Reduce)> {
        self.iter()
            .map(|(k, v)| (k as &dyn Reduce, v as &dyn Reduce))
            .collect()
    }
}

/// Unknown attributes named in one error, at most.
const NAMED_AT_MOST: usize = 10;

/// A name as an error shows it: a hostile pickle's megabyte-long key is
/// cut short.
fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    match s.char_indices().nth(MAX_CHARS) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

/// An instance's state, seen by a derived `Construct`: its `__dict__` part
/// and its slots part (either may be empty), and which Python class and
/// Rust type it is read for, for errors.
#[doc(hidden)]
pub struct InstanceState<'n> {
    node: Node<'n>,
    dict: &'n [(Value, Value)],
    slots: &'n [(Value, Value)],
    module: &'n str,
    name: &'n str,
    rust: &'static str,
}

impl<'n> InstanceState<'n> {
    /// Runs `f` on the state of the object `call` builds: a dict, a
    /// `(dict or None, slots dict or None)` pair, `None`, or no state at all
    /// (an instance whose `__dict__` was empty).
    pub fn read<R>(
        call: &Call<'_>,
        module: &str,
        name: &str,
        rust: &'static str,
        f: impl FnOnce(&InstanceState<'_>) -> Result<R>,
    ) -> Result<R> {
        match call.state() {
            Some(state) => state.with(|node| {
                let st = InstanceState::new(node, module, name, rust)?;
                f(&st)
            }),
            None => f(&InstanceState {
                node: call.node(),
                dict: &[],
                slots: &[],
                module,
                name,
                rust,
            }),
        }
    }

    fn new(
        node: Node<'n>,
        module: &'n str,
        name: &'n str,
        rust: &'static str,
    ) -> Result<InstanceState<'n>> {
        let graph = node.graph();
        // A part is a dict, or None for an empty one.
        let part = |v: &'n Value| match graph.resolve(v) {
            Value::None => Some(&[][..]),
            Value::Dict(pairs) => Some(&pairs[..]),
            _ => None,
        };
        let parts = match node.value() {
            Value::Tuple(items) if items.len() == 2 => {
                part(&items[0]).and_then(|d| Some((d, part(&items[1])?)))
            }
            v => part(v).map(|d| (d, &[][..])),
        };
        let Some((dict, slots)) = parts else {
            let err: Error = node.expected(&format!(
                "the state of {module}.{name} as a dict or a (dict, slots) pair"
            ));
            return Err(err.with_detail(format!("reading Rust type {rust}")));
        };
        Ok(InstanceState {
            node,
            dict,
            slots,
            module,
            name,
            rust,
        })
    }

    /// The node of the state, for reading fields from.
    pub fn node(&self) -> Node<'n> {
        self.node
    }

    /// The value of attribute `name`: a slot first, as `BUILD` sets the
    /// slots after the `__dict__`.
    fn get(&self, name: &str) -> Option<&'n Value> {
        let graph = self.node.graph();
        let find = |pairs: &'n [(Value, Value)]| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| graph.resolve(k).as_str() == Some(name))
                .map(|(_, v)| v)
        };
        find(self.slots).or_else(|| find(self.dict))
    }

    /// Reads attribute `name` with `read` (given the state's node and the
    /// value), if present, naming the Rust field `field` on failure.
    pub fn field<T>(
        &self,
        name: &str,
        field: &str,
        read: impl FnOnce(Node<'n>, &'n Value) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => read(self.node, v)
                .map(Some)
                .map_err(|e| e.or_detail(|| format!("in Rust field {}::{field}", self.rust))),
        }
    }

    /// The error for a required attribute the state lacks.
    pub fn missing(&self, name: &str, field: &str) -> Error {
        self.node.error_msg(format!(
            "expected attribute `{name}` in the state of {}.{}, found none (Rust field {}::{field} has no default)",
            self.module, self.name, self.rust
        ))
    }

    /// The attributes not in `known`, `__dict__` part first.
    fn unknown<'k>(
        &'k self,
        known: &'k [&'k str],
    ) -> impl Iterator<Item = &'n (Value, Value)> + 'k {
        let graph = self.node.graph();
        self.dict
            .iter()
            .chain(self.slots)
            .filter(move |(k, _)| match graph.resolve(k).as_str() {
                Some(k) => !known.contains(&k),
                None => true,
            })
    }

    /// Fails, naming them, if the state has attributes not in `known`
    /// (`deny_unknown_fields`).
    pub fn deny_unknown(&self, known: &[&str]) -> Result<()> {
        let graph = self.node.graph();
        let mut names = Vec::new();
        let mut count = 0usize;
        for (k, _) in self.unknown(known) {
            if names.len() < NAMED_AT_MOST {
                names.push(match graph.resolve(k).as_str() {
                    Some(s) => format!("`{}`", shorten(s)),
                    None => shorten(&format!("{:?}", graph.resolve(k))),
                });
            }
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let mut found = names.join(", ");
        if count > names.len() {
            found.push_str(&format!(" and {} more", count - names.len()));
        }
        let expected = if known.is_empty() {
            "no attributes".to_owned()
        } else {
            format!("only {}", known.join(", "))
        };
        Err(self.node.error_msg(format!(
            "expected {expected} in the state of {}.{}, found {found}: Rust type {} has no field for {} (add a field, or a #[reduce(rest)] field to keep unknown attributes)",
            self.module,
            self.name,
            self.rust,
            if count == 1 { "it" } else { "them" },
        )))
    }

    /// Keeps the attributes not in `known` in `rest`, with `read` (its
    /// [`Rest::read_attribute`], named by the derive at the field's type so
    /// that a type which is no `Rest` is one error there).
    pub fn rest<R>(
        &self,
        known: &[&str],
        field: &str,
        rest: &mut R,
        mut read: impl FnMut(&mut R, Node<'_>, Node<'_>) -> Result<()>,
    ) -> Result<()> {
        let graph = self.node.graph();
        for (k, v) in self.unknown(known) {
            let key = graph.resolve(k);
            let shown;
            let name = match key.as_str() {
                Some(s) => s,
                None => {
                    shown = format!("{key:?}");
                    &shown
                }
            };
            self.node
                .with_field(name, k, |kn| {
                    self.node.with_field(name, v, |vn| read(&mut *rest, kn, vn))
                })
                .map_err(|e| e.or_detail(|| format!("in Rust field {}::{field}", self.rust)))?;
        }
        Ok(())
    }
}

/// Writes an instance whose state is a `__dict__` of the fields named in
/// `names` (in order, `n` of them), as [`save_instance`] writes it, with
/// each value written by its own type's code rather than through `dyn
/// Reduce`: `#[derive(Reduce)]`'s `state` form without slots or `rest`.
#[doc(hidden)]
pub fn save_state(
    s: &mut Saver<'_, '_>,
    module: &str,
    name: &str,
    names: &'static FieldNames,
    n: usize,
    fields: impl Fn(&mut StateDict<'_, '_, '_>) -> Result<()>,
) -> Result<()> {
    let state = FnReduce(|s: &mut Saver<'_, '_>| s.state_dict(names, n, &fields));
    s.reduction(module, name).new_obj().state(&state).save()
}

/// Writes an instance as CPython does: `copyreg.__newobj__(cls)` (or
/// `copyreg._reconstructor` before protocol 2), then `BUILD` with its
/// state. With `slots`, the state is `(dict or None, slots)`, or the dict
/// alone when there are no slots to write, or nothing when both are empty,
/// as `object.__getstate__` gives it; without, it is the dict.
#[doc(hidden)]
pub fn save_instance(
    s: &mut Saver<'_, '_>,
    module: &str,
    name: &str,
    slots_form: bool,
    dict: &[(&dyn Reduce, &dyn Reduce)],
    slots: &[(&dyn Reduce, &dyn Reduce)],
) -> Result<()> {
    let write_dict = |s: &mut Saver<'_, '_>| s.dict(dict.iter().map(|(k, v)| (*k, *v)));
    if !slots_form {
        let state = FnReduce(write_dict);
        return s.reduction(module, name).new_obj().state(&state).save();
    }
    if slots.is_empty() {
        if dict.is_empty() {
            return s.reduction(module, name).new_obj().save();
        }
        let state = FnReduce(write_dict);
        return s.reduction(module, name).new_obj().state(&state).save();
    }
    let state = FnReduce(|s: &mut Saver<'_, '_>| {
        s.tuple(2, |s| {
            if dict.is_empty() {
                s.none()?;
            } else {
                write_dict(s)?;
            }
            s.dict(slots.iter().map(|(k, v)| (*k, *v)))
        })
    });
    s.reduction(module, name).new_obj().state(&state).save()
}
