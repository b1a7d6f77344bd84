//! [`Graph`]: a root value and the objects reached from more than one
//! place; and the two algorithms between graphs and trees: `compact` (what
//! the reader calls at `STOP`: only objects reached twice stay shared) and
//! `expand` (a graph copied into a plain tree).

use std::fmt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::hash::{AddrMap, AddrSet};
use crate::value::{shallow_eq, Id, Step, Value};

/// An object graph: a root [`Value`] plus the objects that are reachable from
/// more than one place, which the tree reaches through [`Value::Ref`].
///
/// Loading a pickle gives a `Graph` in which every object that the pickle
/// referenced twice (through its memo) is shared, and every other object is
/// inline in the tree. Writing a `Graph` writes each shared object once and
/// then memo references to it, which is how CPython writes the same graph.
///
/// ```
/// use reduce::{Graph, Value};
///
/// // l = []; l.append(l)
/// let mut graph = Graph::new(Value::None);
/// let l = graph.insert(Value::List(vec![]));
/// if let Value::List(items) = graph.get_mut(l) {
///     items.push(Value::Ref(l));
/// }
/// *graph.root_mut() = Value::Ref(l);
/// let bytes = reduce::to_vec(&graph)?;
/// assert_eq!(bytes, b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a.");
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Graph {
    pub(crate) root: Value,
    pub(crate) objects: Vec<Value>,
}

impl Graph {
    /// A graph with `root` and no shared objects.
    pub fn new(root: Value) -> Graph {
        Graph {
            root,
            objects: Vec::new(),
        }
    }

    /// The root object.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The root object, mutably.
    pub fn root_mut(&mut self) -> &mut Value {
        &mut self.root
    }

    /// The shared objects, indexed by [`Id::index`].
    pub fn objects(&self) -> &[Value] {
        &self.objects
    }

    /// Adds a shared object and returns the id that refers to it.
    ///
    /// # Panics
    ///
    /// If the graph already holds `u32::MAX` shared objects.
    pub fn insert(&mut self, value: Value) -> Id {
        let id = Id(u32::try_from(self.objects.len()).expect("too many shared objects"));
        self.objects.push(value);
        id
    }

    /// The shared object `id` refers to.
    ///
    /// # Panics
    ///
    /// If `id` does not belong to this graph.
    pub fn get(&self, id: Id) -> &Value {
        &self.objects[id.index()]
    }

    /// The shared object `id` refers to, mutably.
    ///
    /// # Panics
    ///
    /// If `id` does not belong to this graph.
    pub fn get_mut(&mut self, id: Id) -> &mut Value {
        &mut self.objects[id.index()]
    }

    /// Follows `value` if it is a [`Value::Ref`] into this graph.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value {
            Value::Ref(id) => self.objects.get(id.index()).unwrap_or(value),
            _ => value,
        }
    }

    /// The root and the shared objects, taken apart.
    pub fn into_parts(mut self) -> (Value, Vec<Value>) {
        (
            std::mem::take(&mut self.root),
            std::mem::take(&mut self.objects),
        )
    }

    /// Builds a graph from a root and a table of shared objects.
    ///
    /// Fails if a [`Value::Ref`] points outside the table.
    pub fn from_parts(
        root: Value,
        objects: Vec<Value>,
    ) -> Result<Graph, crate::base::error::Error> {
        let graph = Graph { root, objects };
        let n = graph.objects.len();
        let mut stack: Vec<&Value> = vec![&graph.root];
        stack.extend(graph.objects.iter());
        while let Some(v) = stack.pop() {
            if let Value::Ref(id) = v {
                if id.index() >= n {
                    return Err(crate::base::error::Error::new(
                        crate::base::error::ErrorKind::DanglingRef(id.0),
                    ));
                }
            }
            v.for_each_child(|c| stack.push(c));
        }
        Ok(graph)
    }

    /// The root as a plain tree, with each shared object copied into every
    /// place that refers to it.
    ///
    /// Fails if the root reaches a cycle, or if copying would make more than
    /// `max_nodes` values (a DAG that doubles at each level is small as a
    /// graph and astronomically large as a tree).
    pub fn into_tree(self, max_nodes: usize) -> Result<Value, crate::base::error::Error> {
        expand(self, max_nodes)
    }
}

impl From<Value> for Graph {
    fn from(root: Value) -> Graph {
        Graph::new(root)
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.objects.is_empty() {
            return write!(f, "{:?}", self.root);
        }
        write!(f, "{:?} where ", self.root)?;
        for (i, o) in self.objects.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "#{i} = {o:?}")?;
        }
        Ok(())
    }
}

/// Graph equality: the same program builds both.
///
/// Two graphs are equal when, read in pickling order, the same values,
/// steps and sharing are met: a [`Value::Ref`] on one side must meet a `Ref`
/// on the other, and each shared object must always meet the same partner.
/// Unreachable shared objects are ignored. Globals compare by name, and
/// ints, strings, bytes and the empty tuple by value, shared or not: nothing
/// can change them, so which copy a program holds makes no difference to
/// what it does (and a protocol without `STACK_GLOBAL` cannot say that a
/// global's name is the same string as another). The steps of a [`Seq`](crate::Seq) compare by their order among
/// the values, not by which value holds them: `Seq { value: a, after: [s] }`
/// then `b` is the program `a`, `s`, `b`, as is `a` then
/// `Seq { before: [s], value: b }`; and a change of several items after the
/// fact is the same program as one change per item.
impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        let (a, b) = (self.program(), other.program());
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| match (x, y) {
                (Tok::Node(x), Tok::Node(y)) => shallow_eq(x, y),
                (x, y) => x == y,
            })
    }
}

/// One token of a graph read in pickling order (see [`Graph::program`]).
#[derive(PartialEq)]
enum Tok<'a> {
    /// A value; its children follow, then `End`.
    Node(&'a Value),
    End,
    /// A step of a [`Seq`] (by kind); its values follow, then `End`.
    Step(std::mem::Discriminant<Step>),
    /// The `n`th shared object met; its value follows the first time.
    Shared(u32),
    /// A reference to nothing.
    Dangling,
}

impl Graph {
    /// The graph in pickling order, as the program a pickler writes for it:
    /// where a [`Seq`]'s steps sit between two values does not matter, only
    /// their order among the values. Shared objects are numbered as they are
    /// first met, so equal programs have the same sharing.
    fn program<'a>(&'a self) -> Vec<Tok<'a>> {
        enum Work<'a> {
            Visit(&'a Value),
            Emit(Tok<'a>),
        }
        let mut out = Vec::new();
        let mut seen: std::collections::HashMap<usize, u32> = std::collections::HashMap::new();
        let mut work = vec![Work::Visit(&self.root)];
        while let Some(w) = work.pop() {
            let v = match w {
                Work::Emit(t) => {
                    out.push(t);
                    continue;
                }
                Work::Visit(v) => v,
            };
            match v {
                Value::Seq(s) => {
                    // A change of several items is the program that makes
                    // it one item at a time (protocol 0 has no other way).
                    let steps = |steps: &'a [Step], work: &mut Vec<Work<'a>>| {
                        for step in steps.iter().rev() {
                            let one = |work: &mut Vec<Work<'a>>, vals: &[&'a Value]| {
                                work.push(Work::Emit(Tok::End));
                                work.extend(vals.iter().rev().map(|v| Work::Visit(v)));
                                work.push(Work::Emit(Tok::Step(std::mem::discriminant(step))));
                            };
                            match step {
                                Step::Append { target, items }
                                | Step::AddItems { target, items }
                                    if !items.is_empty() =>
                                {
                                    for item in items.iter().rev() {
                                        one(work, &[target, item]);
                                    }
                                }
                                Step::SetItems { target, items } if !items.is_empty() => {
                                    for (k, v) in items.iter().rev() {
                                        one(work, &[target, k, v]);
                                    }
                                }
                                _ => {
                                    let mut vals = Vec::new();
                                    step.for_each(&mut |v| vals.push(v));
                                    one(work, &vals);
                                }
                            }
                        }
                    };
                    steps(&s.after, &mut work);
                    work.push(Work::Visit(&s.value));
                    steps(&s.before, &mut work);
                }
                Value::Ref(id) => match self.objects.get(id.index()) {
                    None => out.push(Tok::Dangling),
                    // A global is one object by name (the writer writes every
                    // use of a name after the first as a memo reference), and
                    // immutable atoms compare by value, shared or not.
                    Some(
                        o @ (Value::Global(_)
                        | Value::Int(_)
                        | Value::BigInt(_)
                        | Value::Str(_)
                        | Value::Bytes(_)),
                    ) => work.push(Work::Visit(o)),
                    Some(o @ Value::Tuple(t)) if t.is_empty() => work.push(Work::Visit(o)),
                    Some(o) => {
                        let n = seen.len() as u32;
                        match seen.entry(id.index()) {
                            std::collections::hash_map::Entry::Occupied(e) => {
                                out.push(Tok::Shared(*e.get()))
                            }
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(n);
                                out.push(Tok::Shared(n));
                                work.push(Work::Visit(o));
                            }
                        }
                    }
                },
                Value::Global(_) => out.push(Tok::Node(v)),
                v => {
                    out.push(Tok::Node(v));
                    work.push(Work::Emit(Tok::End));
                    let mut children = Vec::new();
                    v.for_each_child(|c| children.push(c));
                    work.extend(children.into_iter().rev().map(Work::Visit));
                }
            }
        }
        out
    }
}

/// Turns the loader's table, where every memoized object is shared, into a
/// graph where only objects reached from two or more places are.
pub(crate) fn compact(root: Value, objects: Vec<Value>, max_depth: usize) -> Result<Graph> {
    compact_in_order(root, objects, max_depth, None)
}

/// [`compact`], with the objects that stay shared numbered in `order` (a
/// permutation of the table's indices) rather than in the table's.
pub(crate) fn compact_in_order(
    mut root: Value,
    mut objects: Vec<Value>,
    max_depth: usize,
    order: Option<&[usize]>,
) -> Result<Graph> {
    if renumber_all(&mut root, &mut objects, max_depth, order)? {
        return Ok(Graph { root, objects });
    }
    // Some object is reached once (or not at all): numbered as the table
    // now stands, which `renumber_all` left consistent.
    compact_counted(root, objects, max_depth)
}

/// The common case of [`compact_in_order`] in one walk: every object
/// stays shared, numbered in `order` (the table's own without one). The
/// walk counts the references to each object reached from the root,
/// checks the depth, and renumbers each reference it meets (clearing the
/// reader's birth mark), then the table is put in that order. Returns
/// whether every object was reached twice or more (what a reader that
/// shares only fetched objects mostly makes): if not, the references
/// reached are renumbered all the same and the table reordered, so that
/// [`compact_counted`] can finish from there. (dag60: one walk instead of
/// two: 84,900 -> 79,900 instructions a read.)
fn renumber_all(
    root: &mut Value,
    objects: &mut [Value],
    max_depth: usize,
    order: Option<&[usize]>,
) -> Result<bool> {
    let n = objects.len();
    // The new number of each object, by its number in the table.
    let mut rank: Vec<u32> = vec![0; n];
    match order {
        Some(order) => {
            for (new, &old) in order.iter().enumerate() {
                rank[old] = new as u32;
            }
        }
        None => {
            for (i, r) in rank.iter_mut().enumerate() {
                *r = i as u32;
            }
        }
    }
    let mut count = vec![0u32; n];
    {
        // Each object is walked once, from its first reference: its slot
        // is taken then.
        let mut slots: Vec<Option<&mut Value>> = objects.iter_mut().map(Some).collect();
        let mut stack: Vec<(&mut Value, usize)> = Vec::with_capacity(64);
        stack.push((root, 0));
        while let Some((v, depth)) = stack.pop() {
            if depth > max_depth {
                return Err(Error::new(ErrorKind::Limit {
                    limit: "max_depth",
                    max: max_depth as u64,
                }));
            }
            if let Value::Ref(id) = v {
                let i = id.index();
                let seen = count
                    .get_mut(i)
                    .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.0)))?;
                *seen += 1;
                *id = Id(rank[i]);
                if let Some(object) = slots[i].take() {
                    stack.push((object, depth));
                }
                continue;
            }
            match v {
                Value::Tuple(items) | Value::List(items) => {
                    stack.extend(items.iter_mut().map(|c| (c, depth + 1)))
                }
                v => v.for_each_child_mut(|c| stack.push((c, depth + 1))),
            }
        }
    }
    // Each object to its new place, following the permutation's cycles.
    if order.is_some() {
        for i in 0..n {
            while rank[i] as usize != i {
                let j = rank[i] as usize;
                objects.swap(i, j);
                rank.swap(i, j);
            }
        }
    }
    Ok(count.iter().all(|&c| c >= 2))
}

/// [`compact_in_order`] where some object is reached once or not at all,
/// in the table's order.
fn compact_counted(mut root: Value, mut objects: Vec<Value>, max_depth: usize) -> Result<Graph> {
    const UNSEEN: u32 = 0;
    let n = objects.len();
    // How many references to each object are reachable from the root.
    let mut count = vec![UNSEEN; n];
    {
        let mut stack: Vec<(&Value, usize)> = Vec::with_capacity(64);
        stack.push((&root, 0));
        while let Some((v, depth)) = stack.pop() {
            if depth > max_depth {
                return Err(Error::new(ErrorKind::Limit {
                    limit: "max_depth",
                    max: max_depth as u64,
                }));
            }
            if let Value::Ref(id) = v {
                let i = id.index();
                let seen = count
                    .get_mut(i)
                    .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.0)))?;
                *seen += 1;
                if *seen == 1 {
                    stack.push((&objects[i], depth));
                }
                continue;
            }
            match v {
                // The common containers in one step, in the same order.
                Value::Tuple(items) | Value::List(items) => {
                    stack.extend(items.iter().map(|c| (c, depth + 1)))
                }
                v => v.for_each_child(|c| stack.push((c, depth + 1))),
            }
        }
    }
    let mut new_id = vec![u32::MAX; n];
    let mut kept = 0u32;
    for i in 0..n {
        if count[i] >= 2 {
            new_id[i] = kept;
            kept += 1;
        }
    }
    let mut shared = Vec::with_capacity(kept as usize);
    for i in 0..n {
        if count[i] >= 2 {
            shared.push(std::mem::take(&mut objects[i]));
        }
    }
    // One walk over the root and the shared objects: each object reached
    // once moves into its one place, and the references to the others are
    // renumbered.
    let mut stack: Vec<&mut Value> = Vec::with_capacity(64 + kept as usize);
    stack.push(&mut root);
    stack.extend(shared.iter_mut());
    while let Some(v) = stack.pop() {
        if let Value::Ref(id) = v {
            let i = id.index();
            if count[i] != 1 {
                *id = Id(new_id[i]);
                continue;
            }
            let inlined = std::mem::take(&mut objects[i]);
            // What it replaces is a reference, which owns nothing.
            std::mem::forget(std::mem::replace(v, inlined));
        }
        match v {
            Value::Tuple(items) | Value::List(items) => stack.extend(items.iter_mut()),
            v => v.for_each_child_mut(|c| stack.push(c)),
        }
    }
    drop(stack);
    Ok(Graph {
        root,
        objects: shared,
    })
}

/// The root of `graph` as a plain tree: see [`tree`].
pub(crate) fn expand(graph: Graph, max_nodes: usize) -> Result<Value> {
    let (root, objects) = graph.into_parts();
    tree(root, &objects, max_nodes)
}

/// `root` as a tree: each shared object of `objects` it reaches copied
/// into every place that refers to it. Only what `root` reaches is sized
/// and copied, never the whole object table, so a `Vec<Value>` read from a
/// pickle of many shared objects costs its own size, not its length times
/// the table's. The sizes come first, children before parents: a cycle, or
/// more than `max_nodes` values (a DAG that doubles at each level; a copy
/// of a shared str or bytes counts one more per 32 bytes, so that a long
/// string a million references share is refused too), is refused before
/// anything is copied.
pub(crate) fn tree(mut root: Value, objects: &[Value], max_nodes: usize) -> Result<Value> {
    if objects.is_empty() {
        return Ok(root);
    }
    // A value's own nodes (each copy's weight, in a shared object), and
    // the shared objects it refers to.
    let refs_of = |v: &Value, copied: bool| {
        let mut own = 0u64;
        let mut refs = Vec::new();
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::Ref(id) => refs.push(id.index()),
                v => {
                    own += if copied { v.copy_weight() as u64 } else { 1 };
                    v.for_each_child(|c| stack.push(c));
                }
            }
        }
        (own, refs)
    };
    // The size as a tree of each object reached, children first.
    let (own, root_refs) = refs_of(&root, false);
    if root_refs.is_empty() {
        // Nothing to copy: the tree is the root as it is.
        return Ok(root);
    }
    let mut size: AddrMap<usize, u64> = AddrMap::default();
    let mut on_path: AddrSet<usize> = AddrSet::default();
    let mut total = own;
    for &start in &root_refs {
        let mut path: Vec<(usize, Vec<usize>, u64, usize)> = Vec::new();
        let enter = |i: usize, path: &mut Vec<_>, on_path: &mut AddrSet<usize>| {
            let target = objects
                .get(i)
                .ok_or_else(|| Error::new(ErrorKind::DanglingRef(i as u32)))?;
            let (own, refs) = refs_of(target, true);
            on_path.insert(i);
            path.push((i, refs, own, 0));
            Ok::<(), Error>(())
        };
        if !size.contains_key(&start) {
            enter(start, &mut path, &mut on_path)?;
        }
        while let Some((obj, refs, sum, next)) = path.last_mut() {
            if let Some(&child) = refs.get(*next) {
                *next += 1;
                match size.get(&child) {
                    Some(&s) => *sum = sum.saturating_add(s),
                    None if on_path.contains(&child) => {
                        return Err(Error::invalid(
                            "the value has a cycle, so it cannot be a tree; load it as a Graph",
                        ))
                    }
                    None => enter(child, &mut path, &mut on_path)?,
                }
            } else {
                let (obj, sum) = (*obj, *sum);
                size.insert(obj, sum);
                on_path.remove(&obj);
                path.pop();
                if let Some(parent) = path.last_mut() {
                    parent.2 = parent.2.saturating_add(sum);
                }
            }
        }
        total = total.saturating_add(size[&start]);
    }
    if total > max_nodes as u64 {
        return Err(Error::new(ErrorKind::Limit {
            limit: "max_tree_nodes",
            max: max_nodes as u64,
        })
        .with_detail(format!(
            "its shared objects copied into every place that refers to them make {total} values; load it as a Graph, which keeps them shared"
        )));
    }
    let mut stack: Vec<&mut Value> = vec![&mut root];
    while let Some(v) = stack.pop() {
        if let Value::Ref(id) = *v {
            *v = objects[id.index()].clone();
        }
        v.for_each_child_mut(|c| stack.push(c));
    }
    Ok(root)
}

/// `value` as a graph of its own: the shared objects of `objects` it
/// reaches, in the order it first reaches them, renumbered. The work is
/// what `value` reaches, never the whole object table (see [`tree`]).
pub(crate) fn subgraph(value: &Value, objects: &[Value]) -> Result<Graph> {
    let mut new_index: AddrMap<usize, u32> = AddrMap::default();
    let mut order: Vec<usize> = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Ref(id) => {
                let i = id.index();
                if new_index.contains_key(&i) {
                    continue;
                }
                let target = objects
                    .get(i)
                    .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.0)))?;
                new_index.insert(i, order.len() as u32);
                order.push(i);
                stack.push(target);
            }
            v => v.for_each_child(|c| stack.push(c)),
        }
    }
    let renumber = |mut v: Value| {
        let mut stack: Vec<&mut Value> = vec![&mut v];
        while let Some(v) = stack.pop() {
            match v {
                Value::Ref(id) => *id = Id(new_index[&id.index()]),
                v => v.for_each_child_mut(|c| stack.push(c)),
            }
        }
        v
    };
    let root = renumber(value.clone());
    let objects = order
        .iter()
        .map(|&i| renumber(objects[i].clone()))
        .collect();
    Graph::from_parts(root, objects)
}
