//! `collections.OrderedDict`, `defaultdict`, `Counter`, `deque`, and the
//! builtins `range` and `slice`.

use super::{args_of, call_of, no_extras};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::registry::Registry;
use crate::typed::save::{FnReduce, Reduce, Saver};
use crate::value::{Global, Value};

pub(super) fn install(r: &mut Registry) -> Result<()> {
    r.register_constructor(
        "collections",
        "OrderedDict",
        OrderedDict::<Value, Value>::construct,
    )?;
    r.register_constructor(
        "collections",
        "defaultdict",
        DefaultDict::<Value, Value>::construct,
    )?;
    r.register_constructor("collections", "Counter", Counter::<Value, Value>::construct)?;
    r.register_constructor("collections", "deque", Deque::<Value>::construct)?;
    r.register_constructor("builtins", "range", Range::construct)?;
    r.register_constructor("builtins", "slice", Slice::construct)?;
    Ok(())
}

/// The entries of a dict given as an argument, or a list of pairs.
fn pairs_of<K: Construct, V: Construct>(node: &Node<'_>) -> Result<Vec<(K, V)>> {
    match node.value() {
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((node.sibling::<K>(k)?, node.entry::<V>(k, v)?)))
            .collect(),
        _ => node
            .items()?
            .iter()
            .enumerate()
            .map(|(i, item)| node.item::<(K, V)>(i, item))
            .collect(),
    }
}

/// Dict items set after construction (`SETITEMS`), read in order.
fn dict_items_of<K: Construct, V: Construct>(
    node: &Node<'_>,
    items: &[(Value, Value)],
) -> Result<Vec<(K, V)>> {
    items
        .iter()
        .map(|(k, v)| Ok((node.sibling::<K>(k)?, node.entry::<V>(k, v)?)))
        .collect()
}

fn as_dyn<K: Reduce, V: Reduce>(pairs: &[(K, V)]) -> Vec<(&dyn Reduce, &dyn Reduce)> {
    pairs
        .iter()
        .map(|(k, v)| (k as &dyn Reduce, v as &dyn Reduce))
        .collect()
}

// ---- OrderedDict ------------------------------------------------------------

/// A `collections.OrderedDict`: its entries in order. (A plain `dict`
/// keeps order too, but is another type in Python: `OrderedDict` compares
/// order, and has `move_to_end`.)
///
/// ```
/// use reduce::stdlib::OrderedDict;
///
/// let d = OrderedDict(vec![("b".to_string(), 1), ("a".to_string(), 2)]);
/// let bytes = reduce::to_vec_with_protocol(&d, 2)?;
/// // pickle.dumps(OrderedDict(b=1, a=2), protocol=2), byte for byte
/// assert_eq!(bytes, b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00bq\x02K\x01X\x01\x00\x00\x00aq\x03K\x02u.");
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedDict<K, V>(pub Vec<(K, V)>);

/// `OrderedDict()` then its items, as CPython writes it.
impl<K: Reduce, V: Reduce> Reduce for OrderedDict<K, V> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let items = as_dyn(&self.0);
        s.reduction("collections", "OrderedDict")
            .args(&())
            .dict_items(&items)
            .save()
    }
}

/// From CPython's form, or `OrderedDict([(k, v), ...])`.
impl<K: Construct, V: Construct> Construct for OrderedDict<K, V> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("collections", "OrderedDict")])?;
        let (args, items) = args_of(&call, 0, 1)?;
        let mut out = match items.first() {
            Some(v) => args.with_field("0", v, |n| pairs_of(&n))?,
            None => Vec::new(),
        };
        out.extend(dict_items_of(&node, call.dict_items())?);
        Ok(OrderedDict(out))
    }
}

// ---- defaultdict ------------------------------------------------------------

/// A `collections.defaultdict`: its factory (a global such as
/// `builtins.list`, kept as a name: nothing is called) and its entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefaultDict<K, V> {
    /// `default_factory`, or `None`.
    pub factory: Option<Global>,
    /// The entries, in order.
    pub items: Vec<(K, V)>,
}

/// `defaultdict(factory)` then its items, as CPython writes it.
impl<K: Reduce, V: Reduce> Reduce for DefaultDict<K, V> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let items = as_dyn(&self.items);
        let args = FnReduce(|s: &mut Saver<'_, '_>| match &self.factory {
            Some(g) => s.tuple(1, |s| s.global(&g.module, &g.name)),
            None => s.tuple(0, |_| Ok(())),
        });
        s.reduction("collections", "defaultdict")
            .args(&args)
            .dict_items(&items)
            .save()
    }
}

impl<K: Construct, V: Construct> Construct for DefaultDict<K, V> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("collections", "defaultdict")])?;
        let (args, items) = args_of(&call, 0, 2)?;
        let factory = match items.first().map(|v| args.graph().resolve(v)) {
            None | Some(Value::None) => None,
            Some(Value::Global(g)) => Some(Global::clone(g)),
            Some(other) => {
                return Err(args.error_msg(format!(
                    "expected a global as the factory of a defaultdict, found {}",
                    crate::text::a(other.type_name())
                )))
            }
        };
        let mut out = match items.get(1) {
            Some(v) => args.with_field("1", v, |n| pairs_of(&n))?,
            None => Vec::new(),
        };
        out.extend(dict_items_of(&node, call.dict_items())?);
        Ok(DefaultDict {
            factory,
            items: out,
        })
    }
}

// ---- Counter ----------------------------------------------------------------

/// A `collections.Counter`: its keys and counts, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counter<K, V = i64>(pub Vec<(K, V)>);

/// `Counter({k: n, ...})`, as CPython writes it.
impl<K: Reduce, V: Reduce> Reduce for Counter<K, V> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let args = FnReduce(|s: &mut Saver<'_, '_>| {
            s.tuple(1, |s| s.dict(self.0.iter().map(|(k, v)| (k, v))))
        });
        s.reduction("collections", "Counter").args(&args).save()
    }
}

impl<K: Construct, V: Construct> Construct for Counter<K, V> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("collections", "Counter")])?;
        let (args, items) = args_of(&call, 0, 1)?;
        let mut out = match items.first() {
            Some(v) => args.with_field("0", v, |n| pairs_of(&n))?,
            None => Vec::new(),
        };
        out.extend(dict_items_of(&node, call.dict_items())?);
        Ok(Counter(out))
    }
}

// ---- deque ------------------------------------------------------------------

/// A `collections.deque`: its items and its `maxlen`. (A plain
/// `VecDeque` is a Python `list`, as `Vec` is.)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deque<T> {
    /// The items, front first.
    pub items: std::collections::VecDeque<T>,
    /// The bound, or `None` for an unbounded deque.
    pub maxlen: Option<usize>,
}

/// `deque((), maxlen)` or `deque()`, then its items, as CPython writes it.
impl<T: Reduce> Reduce for Deque<T> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let items: Vec<&dyn Reduce> = self.items.iter().map(|t| t as &dyn Reduce).collect();
        let args = FnReduce(|s: &mut Saver<'_, '_>| match self.maxlen {
            Some(n) => s.tuple(2, |s| {
                s.tuple(0, |_| Ok(()))?;
                s.save(&n)
            }),
            None => s.tuple(0, |_| Ok(())),
        });
        s.reduction("collections", "deque")
            .args(&args)
            .list_items(&items)
            .save()
    }
}

/// From CPython's form, or `deque([...], maxlen)` written by hand.
impl<T: Construct> Construct for Deque<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("collections", "deque")])?;
        let (args, items) = args_of(&call, 0, 2)?;
        let mut out: std::collections::VecDeque<T> = match items.first() {
            Some(v) => args.item(0, v)?,
            None => Default::default(),
        };
        let maxlen = match items.get(1) {
            Some(v) => args.item::<Option<usize>>(1, v)?,
            None => None,
        };
        for (i, item) in call.list_items().iter().enumerate() {
            out.push_back(node.item(i, item)?);
        }
        if maxlen.is_some_and(|m| out.len() > m) {
            return Err(node.error_msg(format!(
                "the deque has {} items, more than its maxlen {}",
                out.len(),
                maxlen.unwrap_or(0)
            )));
        }
        Ok(Deque { items: out, maxlen })
    }
}

// ---- range and slice --------------------------------------------------------

/// A Python `range(start, stop, step)` (bounds within `i64`; the step is
/// never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    /// The first value.
    pub start: i64,
    /// The bound, not included.
    pub stop: i64,
    /// The step, not 0.
    pub step: i64,
}

impl From<std::ops::Range<i64>> for Range {
    fn from(r: std::ops::Range<i64>) -> Range {
        Range {
            start: r.start,
            stop: r.end,
            step: 1,
        }
    }
}

/// `range(start, stop, step)`, as CPython writes it.
impl Reduce for Range {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        if self.step == 0 {
            return Err(Error::new(ErrorKind::Unpicklable(
                "a range's step must not be zero".into(),
            )));
        }
        s.reduction("builtins", "range")
            .args(&(self.start, self.stop, self.step))
            .save()
    }
}

/// From `range(stop)`, `range(start, stop)` or `range(start, stop, step)`.
impl Construct for Range {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("builtins", "range")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 3)?;
        let n = |i: usize| args.item::<i64>(i, &items[i]);
        let r = match items.len() {
            1 => Range {
                start: 0,
                stop: n(0)?,
                step: 1,
            },
            2 => Range {
                start: n(0)?,
                stop: n(1)?,
                step: 1,
            },
            _ => Range {
                start: n(0)?,
                stop: n(1)?,
                step: n(2)?,
            },
        };
        if r.step == 0 {
            return Err(args.error_msg("a range's step must not be zero"));
        }
        Ok(r)
    }
}

/// A Python `slice(start, stop, step)` of ints or `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slice {
    /// The start, or `None`.
    pub start: Option<i64>,
    /// The stop, or `None`.
    pub stop: Option<i64>,
    /// The step, or `None`.
    pub step: Option<i64>,
}

/// `slice(start, stop, step)`, as CPython writes it.
impl Reduce for Slice {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.reduction("builtins", "slice")
            .args(&(self.start, self.stop, self.step))
            .save()
    }
}

/// From `slice(stop)`, `slice(start, stop)` or `slice(start, stop, step)`.
impl Construct for Slice {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = call_of(&node, &[("builtins", "slice")])?;
        no_extras(&call)?;
        let (args, items) = args_of(&call, 1, 3)?;
        let n = |i: usize| args.item::<Option<i64>>(i, &items[i]);
        Ok(match items.len() {
            1 => Slice {
                stop: n(0)?,
                ..Slice::default()
            },
            2 => Slice {
                start: n(0)?,
                stop: n(1)?,
                step: None,
            },
            _ => Slice {
                start: n(0)?,
                stop: n(1)?,
                step: n(2)?,
            },
        })
    }
}
