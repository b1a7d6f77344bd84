//! `reduce show`: a pickle's value, loaded inert (nothing is called), as
//! Python's `repr` would show it, as JSON, or as the Python program that
//! loading would amount to.
//!
//! Every printer recurses once per level of the value, inside
//! `stacker::maybe_grow`, so a deep value grows the heap instead of
//! overflowing the stack.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use reduce::{Global, Graph, Id, Reduction, Step, Value};

fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// Values printed in full wherever they occur: Python gives them no
/// identity worth showing.
fn is_atom(v: &Value) -> bool {
    matches!(
        v,
        Value::None
            | Value::Bool(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Str(_)
            | Value::Bytes(_)
            | Value::Global(_)
    ) || matches!(v, Value::Tuple(t) if t.is_empty())
}

/// Whether loading does more to a reduction's object than make it.
fn has_extras(r: &Reduction) -> bool {
    r.state.is_some()
        || !r.list_items.is_empty()
        || !r.dict_items.is_empty()
        || r.state_setter.is_some()
}

fn global(v: &Value) -> Option<&Global> {
    match v {
        Value::Global(g) => Some(g),
        _ => None,
    }
}

/// Bits past which an int is written in hexadecimal: about CPython's limit
/// of 4,300 decimal digits (`sys.get_int_max_str_digits`), past which its
/// `repr` refuses to convert, as the conversion takes time quadratic in
/// the length. Hexadecimal takes linear time and is a literal of the same
/// value.
const DECIMAL_BITS: u64 = 14_000;

/// An int as Python source: decimal, or `0x...` past [`DECIMAL_BITS`].
fn int_literal(i: &reduce::BigInt) -> String {
    if i.bits() <= DECIMAL_BITS {
        return i.to_string();
    }
    let hex = i.to_str_radix(16);
    match hex.strip_prefix('-') {
        Some(digits) => format!("-0x{digits}"),
        None => format!("0x{hex}"),
    }
}

/// Bytes past which a shared str, bytes, int or global is printed once,
/// labelled, and referred to by its label after: printed in full at every
/// reference, a long string the pickle refers to many times (one `DUP` or
/// memo get a copy) would make output that grows with the square of the
/// input. Shorter ones print in full, as `repr` prints them.
const LABEL_BYTES: usize = 64;

/// [`LABEL_BYTES`] for a global's module and name: a class's qualified name
/// can run past 64 bytes (`sklearn.ensemble._hist_gradient_boosting.
/// gradient_boosting.HistGradientBoostingClassifier`), and one every
/// object of the class names prints in full, as before.
const NAME_LABEL_BYTES: usize = 256;

/// Whether a shared atom shown more than once prints labelled.
fn long_atom(v: &Value) -> bool {
    match v {
        Value::Str(s) => s.len() > LABEL_BYTES,
        Value::Bytes(b) => b.len() > LABEL_BYTES,
        Value::BigInt(i) => i.bits() / 4 > LABEL_BYTES as u64,
        Value::Global(g) => g.module.len() + g.name.len() > NAME_LABEL_BYTES,
        _ => false,
    }
}

/// The shared objects a printer reaches more than once (it prints each
/// shared container's items once). The reader may share an object it
/// finds once, which prints as an unshared one.
struct Reached {
    /// Shared objects reached more than once.
    repeated: HashSet<Id>,
    /// The repeated atoms that print labelled: longer than [`LABEL_BYTES`]
    /// ([`NAME_LABEL_BYTES`] for globals).
    /// An atom reached once prints in full as before.
    labelled: HashSet<Id>,
}

impl Reached {
    fn new(graph: &Graph) -> Reached {
        let repeated = repeated(graph);
        let labelled = repeated
            .iter()
            .copied()
            .filter(|&id| {
                let target = graph.get(id);
                is_atom(target) && long_atom(target)
            })
            .collect();
        Reached { repeated, labelled }
    }

    /// The items of a reduction's arguments, to write in its call: a tuple
    /// the call holds or the only one to use a shared one; `None` for
    /// arguments shared with others (written once, labelled, and unpacked
    /// with `*`, instead of in full at each call) or not a tuple.
    fn call_args<'a>(&self, graph: &'a Graph, args: &'a Value) -> Option<&'a [Value]> {
        if matches!(args, Value::Ref(id) if self.repeated.contains(id)) {
            return None;
        }
        match graph.resolve(args) {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }
}

/// The shared objects the printers reach more than once.
fn repeated(graph: &Graph) -> HashSet<Id> {
    let objects = graph.objects();
    let mut count: HashMap<Id, u32> = HashMap::new();
    let mut stack = vec![graph.root()];
    while let Some(v) = stack.pop() {
        match v {
            Value::Ref(id) => {
                let Some(target) = objects.get(id.index()) else {
                    continue;
                };
                let n = count.entry(*id).or_default();
                *n = n.saturating_add(1);
                if *n == 1 && !is_atom(target) {
                    stack.push(target);
                }
            }
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => stack.extend(items),
            Value::Dict(d) => stack.extend(d.iter().flat_map(|(k, v)| [k, v])),
            Value::Reduce(r) => {
                stack.extend([&r.callable, &r.args]);
                stack.extend(&r.state);
                stack.extend(&r.list_items);
                stack.extend(r.dict_items.iter().flat_map(|(k, v)| [k, v]));
                stack.extend(&r.state_setter);
            }
            Value::PersistentId(p) => stack.push(&p.pid),
            Value::Seq(s) => {
                stack.push(&s.value);
                for step in s.before.iter().chain(&s.after) {
                    match step {
                        Step::Discard(v) => stack.push(v),
                        Step::Append { target, items } | Step::AddItems { target, items } => {
                            stack.push(target);
                            stack.extend(items);
                        }
                        Step::SetItems { target, items } => {
                            stack.push(target);
                            stack.extend(items.iter().flat_map(|(k, v)| [k, v]));
                        }
                        Step::Build { target, state } => stack.extend([target, state]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    count
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(id, _)| id)
        .collect()
}

// ---------------------------------------------------------------------------
// repr

/// Bytes of output gathered before they are written out.
const SPILL: usize = 64 << 10;

/// `repr` of the graph's root, on a line, written to `w` as it is made. A
/// shared object is labelled `<#n>` where it first appears and shown as
/// `<#n>` wherever it appears again; a reference back into an object being
/// printed (a cycle) is `<#n>[...]`, as Python prints a list that contains
/// itself as `[[...]]`. Shared strings, bytes, ints and globals print in
/// full, as `repr` does, unless long and shown more than once (see
/// [`LABEL_BYTES`]).
pub fn repr(graph: &Graph, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut p = Repr {
        graph,
        labels: HashMap::new(),
        open: HashSet::new(),
        reached: Reached::new(graph),
        out: String::new(),
        w,
        error: None,
    };
    p.value(graph.root());
    p.out.push('\n');
    p.spill(0);
    p.error.map_or(Ok(()), Err)
}

struct Repr<'a, 'w> {
    graph: &'a Graph,
    labels: HashMap<Id, usize>,
    open: HashSet<Id>,
    /// Shared objects reached more than once, and atoms printed once with
    /// a label.
    reached: Reached,
    /// Output not yet written to `w`.
    out: String,
    w: &'w mut dyn std::io::Write,
    /// The first write to `w` that failed.
    error: Option<std::io::Error>,
}

impl<'a> Repr<'a, '_> {
    /// Writes out the output gathered so far once it is past `at` bytes;
    /// after a failed write, drops it.
    fn spill(&mut self, at: usize) {
        if self.out.len() > at {
            if self.error.is_none() {
                self.error = self.w.write_all(self.out.as_bytes()).err();
            }
            self.out.clear();
        }
    }

    fn value(&mut self, v: &'a Value) {
        grow(|| self.value_inner(v));
        self.spill(SPILL);
    }

    fn value_inner(&mut self, v: &'a Value) {
        match v {
            Value::Ref(id) => {
                let target = self.graph.resolve(v);
                if matches!(target, Value::Ref(_))
                    || (is_atom(target) && !self.reached.labelled.contains(id))
                {
                    return self.plain(target);
                }
                if let Some(n) = self.labels.get(id).copied() {
                    let _ = write!(self.out, "<#{n}>");
                    if self.open.contains(id) {
                        self.out.push_str(match target {
                            Value::List(_) => "[...]",
                            Value::Dict(_) | Value::Set(_) => "{...}",
                            Value::Tuple(_) => "(...)",
                            _ => "...",
                        });
                    }
                    return;
                }
                let n = self.labels.len() + 1;
                self.labels.insert(*id, n);
                let _ = write!(self.out, "<#{n}>");
                self.open.insert(*id);
                self.plain(target);
                self.open.remove(id);
            }
            _ => self.plain(v),
        }
    }

    fn seq(&mut self, open: &str, items: &'a [Value], close: &str) {
        self.out.push_str(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.value(item);
        }
        self.out.push_str(close);
    }

    fn pairs(&mut self, items: &'a [(Value, Value)]) {
        self.out.push('{');
        for (i, (k, v)) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.value(k);
            self.out.push_str(": ");
            self.value(v);
        }
        self.out.push('}');
    }

    fn plain(&mut self, v: &'a Value) {
        match v {
            Value::Tuple(t) if t.len() == 1 => self.seq("(", t, ",)"),
            Value::Tuple(t) => self.seq("(", t, ")"),
            Value::List(l) => self.seq("[", l, "]"),
            Value::Set(s) if s.is_empty() => self.out.push_str("set()"),
            Value::Set(s) => self.seq("{", s, "}"),
            Value::FrozenSet(s) if s.is_empty() => self.out.push_str("frozenset()"),
            Value::FrozenSet(s) => self.seq("frozenset({", s, "})"),
            Value::Dict(d) => self.pairs(d),
            Value::Reduce(r) => self.reduction(r),
            Value::PersistentId(p) => {
                self.out.push_str("persistent_load(");
                self.value(&p.pid);
                self.out.push(')');
            }
            Value::Seq(s) => {
                self.out.push_str("<seq");
                if !s.before.is_empty() {
                    self.out.push_str(" before=");
                    self.steps(&s.before);
                }
                self.out.push_str(" value=");
                self.value(&s.value);
                if !s.after.is_empty() {
                    self.out.push_str(" after=");
                    self.steps(&s.after);
                }
                self.out.push('>');
            }
            // A name from the pickle, printed as text: escaped.
            Value::Global(g) => self.out.push_str(&crate::printable(&g.to_string())),
            Value::BigInt(i) => self.out.push_str(&int_literal(i)),
            other => {
                let _ = write!(self.out, "{other:?}");
            }
        }
    }

    /// The steps of a `Seq`, in order, each as `kind(target, items)`:
    /// `discard(value)`, `append(obj, [items])`, `setitems(obj, {k: v})`,
    /// `additems(obj, [items])`, `build(obj, state)`.
    fn steps(&mut self, steps: &'a [Step]) {
        self.out.push('[');
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            match step {
                Step::Discard(v) => {
                    self.out.push_str("discard(");
                    self.value(v);
                }
                Step::Append { target, items } | Step::AddItems { target, items } => {
                    let kind = if matches!(step, Step::Append { .. }) {
                        "append("
                    } else {
                        "additems("
                    };
                    self.out.push_str(kind);
                    self.value(target);
                    self.out.push_str(", ");
                    self.seq("[", items, "]");
                }
                Step::SetItems { target, items } => {
                    self.out.push_str("setitems(");
                    self.value(target);
                    self.out.push_str(", ");
                    self.pairs(items);
                }
                Step::Build { target, state } => {
                    self.out.push_str("build(");
                    self.value(target);
                    self.out.push_str(", ");
                    self.value(state);
                }
                other => {
                    let _ = write!(
                        self.out,
                        "unknown({}",
                        crate::printable(&format!("{other:?}"))
                    );
                }
            }
            self.out.push(')');
        }
        self.out.push(']');
    }

    fn call_args(&mut self, args: &'a Value) {
        match self.reached.call_args(self.graph, args) {
            Some(t) => self.seq("(", t, ")"),
            None => {
                self.out.push_str("(*");
                self.value(args);
                self.out.push(')');
            }
        }
    }

    fn reduction(&mut self, r: &'a Reduction) {
        let extras = has_extras(r);
        if extras {
            self.out.push('<');
        }
        let newobj = global(&r.callable).map(|g| (g.module.as_str(), g.name.as_str()));
        let args = self.reached.call_args(self.graph, &r.args);
        match (newobj, args) {
            (Some(("copyreg", "__newobj__")), Some([cls, rest @ ..])) => {
                self.value(cls);
                self.out.push_str(".__new__(");
                self.value(cls);
                for a in rest {
                    self.out.push_str(", ");
                    self.value(a);
                }
                self.out.push(')');
            }
            (Some(("copyreg", "__newobj_ex__")), Some([cls, args, kwargs])) => {
                self.value(cls);
                self.out.push_str(".__new__(");
                self.value(cls);
                self.out.push_str(", *");
                self.value(args);
                self.out.push_str(", **");
                self.value(kwargs);
                self.out.push(')');
            }
            _ => {
                self.value(&r.callable);
                self.call_args(&r.args);
            }
        }
        if let Some(s) = &r.state {
            self.out.push_str(" state=");
            self.value(s);
        }
        if !r.list_items.is_empty() {
            self.out.push_str(" listitems=");
            self.seq("[", &r.list_items, "]");
        }
        if !r.dict_items.is_empty() {
            self.out.push_str(" dictitems=");
            self.pairs(&r.dict_items);
        }
        if let Some(s) = &r.state_setter {
            self.out.push_str(" state_setter=");
            self.value(s);
        }
        if extras {
            self.out.push('>');
        }
    }
}

// ---------------------------------------------------------------------------
// JSON

/// The graph as JSON, in this mapping:
///
/// | Python | JSON |
/// |---|---|
/// | `None`, `bool`, `str` | `null`, `true`/`false`, a string |
/// | `int` within ±2<sup>53</sup> | a number; larger: `{"$int": "digits"}` |
/// | `float` | a number; `nan`, `inf`, `-inf`: `{"$float": "nan"}` ... |
/// | `list` | an array |
/// | `dict` with only `str` keys, none starting with `$` or labelled | an object |
/// | any other `dict` | `{"$dict": [[key, value], ...]}` |
/// | `tuple`, `set`, `frozenset` | `{"$tuple": [...]}`, `{"$set": [...]}`, `{"$frozenset": [...]}` |
/// | `bytes`, `bytearray` | `{"$bytes": "hex"}`, `{"$bytearray": "hex"}` |
/// | `str` with lone surrogates | `{"$str": [code points]}` |
/// | a global | `{"$global": "module.name"}` |
/// | a reduction | `{"$reduce": {"callable", "args", "state", "listitems", "dictitems", "state_setter"}}` (absent parts left out) |
/// | a persistent id | `{"$persistent_id": value}` |
/// | a `PickleBuffer` | `{"$buffer": "hex", "readonly": bool}` |
/// | a shared object (and a long atom shown more than once: [`LABEL_BYTES`]) | `{"$id": n, "value": ...}` where it first appears, `{"$ref": n}` after (and for cycles) |
/// | a value with steps taken for their effect (inert `Seq`) | `{"$seq": {"before": [step, ...], "value": ..., "after": [step, ...]}}` |
/// | a step | `{"discard": value}`, `{"append": [obj, [items]]}`, `{"setitems": [obj, dict]}`, `{"additems": [obj, [items]]}`, `{"build": [obj, state]}` |
///
/// Written to `w`, on a line, as it is made. Long shared strings, bytes,
/// ints and globals are shared objects too (see [`LABEL_BYTES`]); a key
/// that is one makes its dict a `$dict`.
pub fn json(graph: &Graph, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut p = Json {
        graph,
        labels: HashMap::new(),
        reached: Reached::new(graph),
        out: String::new(),
        w,
        error: None,
    };
    p.value(graph.root());
    p.out.push('\n');
    p.spill(0);
    p.error.map_or(Ok(()), Err)
}

struct Json<'a, 'w> {
    graph: &'a Graph,
    labels: HashMap<Id, usize>,
    /// Shared atoms written once with an `$id`.
    reached: Reached,
    /// Output not yet written to `w`.
    out: String,
    w: &'w mut dyn std::io::Write,
    /// The first write to `w` that failed.
    error: Option<std::io::Error>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `s` as a JSON string, with every character Python's `str.isprintable`
/// rejects escaped (see [`crate::json_safe`]): the same string to a JSON
/// reader, inert on a terminal.
fn json_str(s: &str) -> String {
    let quoted = serde_json::Value::from(s).to_string();
    crate::json_safe(&quoted).into_owned()
}

impl<'a> Json<'a, '_> {
    /// Writes out the output gathered so far once it is past `at` bytes;
    /// after a failed write, drops it.
    fn spill(&mut self, at: usize) {
        if self.out.len() > at {
            if self.error.is_none() {
                self.error = self.w.write_all(self.out.as_bytes()).err();
            }
            self.out.clear();
        }
    }

    fn value(&mut self, v: &'a Value) {
        grow(|| self.value_inner(v));
        self.spill(SPILL);
    }

    fn value_inner(&mut self, v: &'a Value) {
        if let Value::Ref(id) = v {
            let target = self.graph.resolve(v);
            if matches!(target, Value::Ref(_))
                || (is_atom(target) && !self.reached.labelled.contains(id))
            {
                return self.plain(target);
            }
            if let Some(n) = self.labels.get(id) {
                let _ = write!(self.out, "{{\"$ref\":{n}}}");
                return;
            }
            let n = self.labels.len() + 1;
            self.labels.insert(*id, n);
            let _ = write!(self.out, "{{\"$id\":{n},\"value\":");
            self.plain(target);
            self.out.push('}');
            return;
        }
        self.plain(v)
    }

    fn array(&mut self, items: &'a [Value]) {
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.value(item);
        }
        self.out.push(']');
    }

    fn tagged(&mut self, tag: &str, items: &'a [Value]) {
        let _ = write!(self.out, "{{\"${tag}\":");
        self.array(items);
        self.out.push('}');
    }

    fn pairs(&mut self, items: &'a [(Value, Value)]) {
        // A labelled key is written once, as `{"$id": n, ...}`: not a name.
        let plain_keys = items.iter().all(|(k, _)| {
            !matches!(k, Value::Ref(id) if self.reached.labelled.contains(id))
                && matches!(self.graph.resolve(k), Value::Str(s) if s.as_str().is_some_and(|s| !s.starts_with('$')))
        });
        if plain_keys {
            self.out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let key = self.graph.resolve(k).as_str().unwrap_or_default();
                self.out.push_str(&json_str(key));
                self.out.push(':');
                self.value(v);
            }
            self.out.push('}');
        } else {
            self.out.push_str("{\"$dict\":[");
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push('[');
                self.value(k);
                self.out.push(',');
                self.value(v);
                self.out.push(']');
            }
            self.out.push_str("]}");
        }
    }

    /// The steps of an inert `Seq`, each as `{"kind": [target, items]}`
    /// (`discard` holds the value alone).
    fn steps(&mut self, steps: &'a [Step]) {
        self.out.push('[');
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            match step {
                Step::Discard(v) => {
                    self.out.push_str("{\"discard\":");
                    self.value(v);
                }
                Step::Append { target, items } | Step::AddItems { target, items } => {
                    let kind = if matches!(step, Step::Append { .. }) {
                        "append"
                    } else {
                        "additems"
                    };
                    let _ = write!(self.out, "{{\"{kind}\":[");
                    self.value(target);
                    self.out.push(',');
                    self.array(items);
                    self.out.push(']');
                }
                Step::SetItems { target, items } => {
                    self.out.push_str("{\"setitems\":[");
                    self.value(target);
                    self.out.push(',');
                    self.pairs(items);
                    self.out.push(']');
                }
                Step::Build { target, state } => {
                    self.out.push_str("{\"build\":[");
                    self.value(target);
                    self.out.push(',');
                    self.value(state);
                    self.out.push(']');
                }
                other => {
                    let _ = write!(
                        self.out,
                        "{{\"unknown\":{}",
                        json_str(&format!("{other:?}"))
                    );
                }
            }
            self.out.push('}');
        }
        self.out.push(']');
    }

    fn plain(&mut self, v: &'a Value) {
        match v {
            Value::None => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) if i.unsigned_abs() <= 1 << 53 => {
                let _ = write!(self.out, "{i}");
            }
            Value::Int(i) => {
                let _ = write!(self.out, "{{\"$int\":\"{i}\"}}");
            }
            Value::BigInt(i) => {
                let _ = write!(self.out, "{{\"$int\":\"{}\"}}", int_literal(i));
            }
            Value::Float(x) if x.is_finite() => {
                self.out.push_str(&serde_json::Value::from(*x).to_string());
            }
            Value::Float(x) => {
                let name = if x.is_nan() {
                    "nan"
                } else if *x > 0.0 {
                    "inf"
                } else {
                    "-inf"
                };
                let _ = write!(self.out, "{{\"$float\":\"{name}\"}}");
            }
            Value::Str(s) => match s.as_str() {
                Some(s) => self.out.push_str(&json_str(s)),
                None => {
                    let points: Vec<String> = s.code_points().map(|c| c.to_string()).collect();
                    let _ = write!(self.out, "{{\"$str\":[{}]}}", points.join(","));
                }
            },
            Value::Bytes(b) => {
                let _ = write!(self.out, "{{\"$bytes\":\"{}\"}}", hex(b));
            }
            Value::ByteArray(b) => {
                let _ = write!(self.out, "{{\"$bytearray\":\"{}\"}}", hex(b));
            }
            Value::Tuple(t) => self.tagged("tuple", t),
            Value::List(l) => self.array(l),
            Value::Set(s) => self.tagged("set", s),
            Value::FrozenSet(s) => self.tagged("frozenset", s),
            Value::Dict(d) => self.pairs(d),
            Value::Global(g) => {
                let _ = write!(self.out, "{{\"$global\":{}}}", json_str(&g.to_string()));
            }
            Value::Reduce(r) => {
                self.out.push_str("{\"$reduce\":{\"callable\":");
                self.value(&r.callable);
                self.out.push_str(",\"args\":");
                self.value(&r.args);
                if let Some(s) = &r.state {
                    self.out.push_str(",\"state\":");
                    self.value(s);
                }
                if !r.list_items.is_empty() {
                    self.out.push_str(",\"listitems\":");
                    self.array(&r.list_items);
                }
                if !r.dict_items.is_empty() {
                    self.out.push_str(",\"dictitems\":");
                    self.pairs(&r.dict_items);
                }
                if let Some(s) = &r.state_setter {
                    self.out.push_str(",\"state_setter\":");
                    self.value(s);
                }
                self.out.push_str("}}");
            }
            Value::Seq(seq) => {
                self.out.push_str("{\"$seq\":{\"before\":");
                self.steps(&seq.before);
                self.out.push_str(",\"value\":");
                self.value(&seq.value);
                self.out.push_str(",\"after\":");
                self.steps(&seq.after);
                self.out.push_str("}}");
            }
            Value::PersistentId(p) => {
                self.out.push_str("{\"$persistent_id\":");
                self.value(&p.pid);
                self.out.push('}');
            }
            Value::Buffer(b) => {
                let _ = write!(
                    self.out,
                    "{{\"$buffer\":\"{}\",\"readonly\":{}}}",
                    hex(&b.data),
                    b.readonly
                );
            }
            Value::Ref(_) => self.value_inner(v),
        }
    }
}

// ---------------------------------------------------------------------------
// Python

/// What pickle's `BUILD` does with a state, spelled out once at the top of
/// a program that needs it.
const BUILD: &str = "\
def _build(obj, state):
    \"\"\"What the BUILD opcode does.\"\"\"
    setstate = getattr(obj, '__setstate__', None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    if slots:
        for key, value in slots.items():
            setattr(obj, key, value)
";

/// A Python program that rebuilds the value with the calls loading would
/// make, in order: imports, one statement per call (`objN = f(args)`), the
/// state each object gets, the items appended and set, and `result`.
pub fn python(graph: &Graph) -> Result<String, String> {
    let mut p = Python {
        graph,
        names: HashMap::new(),
        reached: Reached::new(graph),
        open: HashSet::new(),
        deferred: HashMap::new(),
        imports: BTreeSet::new(),
        lines: Vec::new(),
        count: 0,
        depth: 0,
        uses_build: false,
        uses_persistent: false,
        unknown: None,
    };
    let root = p.expr(graph.root()).map_err(|id| {
        format!(
            "a cycle runs through the immutable object #{} and cannot be written as statements",
            id.index()
        )
    })?;
    if let Some(step) = &p.unknown {
        return Err(format!(
            "a step this version of reduce cannot write as statements: {step}"
        ));
    }
    if let Some(id) = p.deferred.keys().next() {
        return Err(format!(
            "objects wait for #{} in a cycle that cannot be written as statements",
            id.index()
        ));
    }
    let mut out = String::new();
    out.push_str("# What loading this pickle does, call by call.\n");
    for m in &p.imports {
        let _ = writeln!(out, "import {m}");
    }
    if p.uses_persistent {
        out.push_str("# persistent_load is the loader's hook for persistent ids.\n");
    }
    if p.uses_build {
        out.push('\n');
        out.push_str(BUILD);
    }
    out.push('\n');
    for line in &p.lines {
        out.push_str(line);
        out.push('\n');
    }
    let _ = writeln!(out, "result = {root}");
    Ok(out)
}

struct Python<'a> {
    graph: &'a Graph,
    /// Variables of the objects made so far: shared objects by id, and
    /// reductions (which always get one) by address.
    names: HashMap<Key, String>,
    /// Shared atoms given a variable, not written out at each use, and
    /// call arguments shared by several calls.
    reached: Reached,
    /// Shared immutable objects whose parts are being written.
    open: HashSet<Id>,
    /// Fills of shared mutable objects waiting for an open object.
    deferred: HashMap<Id, Vec<(String, &'a Value)>>,
    imports: BTreeSet<String>,
    lines: Vec<String>,
    count: usize,
    /// How deep in one expression the value being written is.
    depth: usize,
    uses_build: bool,
    uses_persistent: bool,
    /// A step of a kind this printer does not know.
    unknown: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Shared(Id),
    Inline(*const Value),
}

/// `Err(id)`: the expression needs the open object `id`.
type Expr = Result<String, Id>;

/// Names the program binds or calls itself, which a module imported under
/// the same name would shadow (the program's variables are `obj1`, ...).
const PROGRAM_NAMES: &[&str] = &[
    "_build",
    "result",
    "persistent_load",
    "importlib",
    "pickle",
    "float",
    "set",
    "frozenset",
    "bytearray",
    "getattr",
    "setattr",
    "isinstance",
    "tuple",
    "len",
];

/// Whether a module imported as `name` would shadow a name of the program.
fn shadows(name: &str) -> bool {
    PROGRAM_NAMES.contains(&name)
        || name
            .strip_prefix("obj")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Python's keywords, which cannot be written as names.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// An ASCII identifier that is not a keyword: written as is in the program
/// (a non-ASCII one Python would NFKC-normalize into another name).
fn plain_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
        && !KEYWORDS.contains(&s)
}

/// `s` as a Python string literal, as `repr` writes it.
fn py_str(s: &str) -> String {
    format!("{:?}", Value::Str(s.into()))
}

fn float_literal(x: f64) -> String {
    if x.is_nan() {
        "float('nan')".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "float('inf')"
        } else {
            "-float('inf')"
        }
        .into()
    } else {
        format!("{:?}", Value::Float(x))
    }
}

impl<'a> Python<'a> {
    fn fresh(&mut self) -> String {
        self.count += 1;
        format!("obj{}", self.count)
    }

    fn expr(&mut self, v: &'a Value) -> Expr {
        self.depth += 1;
        let made = grow(|| self.expr_inner(v));
        self.depth -= 1;
        let made = made?;
        // CPython's parser takes at most 200 nested brackets: every
        // HOIST levels a literal gets a statement of its own. Literals call
        // nothing, so the calls keep their order.
        const HOIST: usize = 64;
        if self.depth > 0
            && self.depth.is_multiple_of(HOIST)
            && made.starts_with(['[', '(', '{', 'f'])
        {
            let name = self.fresh();
            self.lines.push(format!("{name} = {made}"));
            return Ok(name);
        }
        Ok(made)
    }

    fn list(&mut self, items: &'a [Value]) -> Result<Vec<String>, Id> {
        items.iter().map(|i| self.expr(i)).collect()
    }

    fn dict(&mut self, items: &'a [(Value, Value)]) -> Expr {
        let mut parts = Vec::new();
        for (k, v) in items {
            parts.push(format!("{}: {}", self.expr(k)?, self.expr(v)?));
        }
        Ok(format!("{{{}}}", parts.join(", ")))
    }

    fn expr_inner(&mut self, v: &'a Value) -> Expr {
        if let Some(name) = self.names.get(&Key::Inline(v as *const Value)) {
            return Ok(name.clone());
        }
        Ok(match v {
            Value::Ref(id) => return self.shared(*id),
            Value::Float(x) => float_literal(*x),
            Value::BigInt(i) => int_literal(i),
            Value::Global(g) => self.global(g),
            Value::Tuple(t) if t.len() == 1 => format!("({},)", self.expr(&t[0])?),
            Value::Tuple(t) => format!("({})", self.list(t)?.join(", ")),
            Value::List(_) | Value::Set(_) | Value::Dict(_) => {
                let literal = match v {
                    Value::List(l) => self.list(l).map(|i| format!("[{}]", i.join(", "))),
                    Value::Set(s) if s.is_empty() => Ok("set()".into()),
                    Value::Set(s) => self.list(s).map(|i| format!("{{{}}}", i.join(", "))),
                    Value::Dict(d) => self.dict(d),
                    _ => unreachable!("matched above"),
                };
                match literal {
                    Ok(literal) => literal,
                    // An item needs an object still being made (a cycle
                    // through a tuple): make this one empty, fill it later.
                    Err(open) => {
                        let name = self.fresh();
                        let empty = match v {
                            Value::List(_) => "[]",
                            Value::Dict(_) => "{}",
                            _ => "set()",
                        };
                        self.lines.push(format!("{name} = {empty}"));
                        self.names
                            .insert(Key::Inline(v as *const Value), name.clone());
                        self.deferred
                            .entry(open)
                            .or_default()
                            .push((name.clone(), v));
                        name
                    }
                }
            }
            Value::FrozenSet(s) => format!("frozenset([{}])", self.list(s)?.join(", ")),
            Value::Reduce(r) => self.reduction(r, Key::Inline(v as *const Value))?,
            Value::Seq(seq) => {
                for step in &seq.before {
                    self.step(step)?;
                }
                let value = self.expr(&seq.value)?;
                for step in &seq.after {
                    self.step(step)?;
                }
                value
            }
            Value::PersistentId(p) => {
                self.uses_persistent = true;
                let pid = self.expr(&p.pid)?;
                let name = self.fresh();
                self.lines.push(format!("{name} = persistent_load({pid})"));
                name
            }
            Value::Buffer(b) => {
                self.imports.insert("pickle".into());
                let data = format!("{:?}", Value::Bytes(b.data.clone()));
                if b.readonly {
                    format!("pickle.PickleBuffer({data})")
                } else {
                    format!("pickle.PickleBuffer(bytearray({data}))")
                }
            }
            other => format!("{other:?}"),
        })
    }

    /// The expression that finds a global as pickle's `find_class` does:
    /// `module.name` when both are plain dotted names, else the module by
    /// `importlib.import_module('...')` and each part of the name by
    /// `getattr(obj, '...')`, as string literals: a name is data, never
    /// code of the program.
    fn global(&mut self, g: &Global) -> String {
        let mut e = if !g.module.is_empty()
            && g.module.split('.').all(plain_name)
            && !shadows(g.module.split('.').next().unwrap_or_default())
        {
            self.imports.insert(g.module.clone());
            g.module.clone()
        } else {
            self.imports.insert("importlib".into());
            format!("importlib.import_module({})", py_str(&g.module))
        };
        for part in g.name.split('.') {
            if plain_name(part) {
                e.push('.');
                e.push_str(part);
            } else {
                e = format!("getattr({e}, {})", py_str(part));
            }
        }
        e
    }

    /// The expression for shared object `id`, writing its statements the
    /// first time.
    fn shared(&mut self, id: Id) -> Expr {
        let key = Key::Shared(id);
        if let Some(name) = self.names.get(&key) {
            return Ok(name.clone());
        }
        if self.open.contains(&id) {
            return Err(id);
        }
        let target = self.graph.get(id);
        if is_atom(target) && !self.reached.labelled.contains(&id) {
            return self.expr(target);
        }
        // Names are given as statements are written, so they read in order.
        match target {
            Value::List(_) | Value::Dict(_) | Value::Set(_) => {
                let name = self.fresh();
                let empty = match target {
                    Value::List(_) => "[]",
                    Value::Dict(_) => "{}",
                    _ => "set()",
                };
                self.lines.push(format!("{name} = {empty}"));
                self.names.insert(key, name.clone());
                self.fill(name.clone(), target);
                Ok(name)
            }
            Value::Reduce(r) => {
                self.open.insert(id);
                let made = self.reduction(r, key);
                self.open.remove(&id);
                let name = made?;
                self.release(id);
                Ok(name)
            }
            _ => {
                self.open.insert(id);
                let made = self.expr(target);
                self.open.remove(&id);
                let made = made?;
                let name = self.fresh();
                self.lines.push(format!("{name} = {made}"));
                self.names.insert(key, name.clone());
                self.release(id);
                Ok(name)
            }
        }
    }

    /// Writes the fills that waited for `id`, now that it has a name.
    fn release(&mut self, id: Id) {
        for (name, target) in self.deferred.remove(&id).unwrap_or_default() {
            self.fill(name, target);
        }
    }

    /// Fills the shared mutable object `name` with its items, or defers
    /// that until the open object an item needs is made.
    fn fill(&mut self, name: String, target: &'a Value) {
        let line = match target {
            Value::List(l) if l.is_empty() => return,
            Value::Dict(d) if d.is_empty() => return,
            Value::Set(s) if s.is_empty() => return,
            Value::List(l) => self
                .list(l)
                .map(|i| format!("{name}.extend([{}])", i.join(", "))),
            Value::Dict(d) => self.dict(d).map(|d| format!("{name}.update({d})")),
            Value::Set(s) => self
                .list(s)
                .map(|i| format!("{name}.update([{}])", i.join(", "))),
            _ => return,
        };
        match line {
            Ok(line) => self.lines.push(line),
            Err(open) => self.deferred.entry(open).or_default().push((name, target)),
        }
    }

    /// Writes a step of a `Seq` as the statements that do what loading
    /// does: a value thrown away as an expression statement (a call alone
    /// on its line), items appended or set, state given with `_build`.
    fn step(&mut self, step: &'a Step) -> Result<(), Id> {
        match step {
            Step::Discard(Value::Reduce(r)) if !has_extras(r) => {
                let call = self.call(r)?;
                self.lines.push(call);
            }
            Step::Discard(v) => {
                let e = self.expr(v)?;
                // A variable alone does nothing; its statements are written.
                if !e.starts_with("obj") || !e[3..].bytes().all(|b| b.is_ascii_digit()) {
                    self.lines.push(e);
                }
            }
            Step::Append { target, items } => {
                let t = self.expr(target)?;
                let items = self.list(items)?;
                self.lines
                    .push(format!("{t}.extend([{}])", items.join(", ")));
            }
            Step::SetItems { target, items } => {
                let t = self.expr(target)?;
                for (k, v) in items {
                    let (k, v) = (self.expr(k)?, self.expr(v)?);
                    self.lines.push(format!("{t}[{k}] = {v}"));
                }
            }
            Step::AddItems { target, items } => {
                let t = self.expr(target)?;
                let items = self.list(items)?;
                // ADDITEMS updates a set, and calls `add` on anything else.
                if matches!(self.graph.resolve(target), Value::Set(_)) {
                    self.lines
                        .push(format!("{t}.update([{}])", items.join(", ")));
                } else {
                    for item in items {
                        self.lines.push(format!("{t}.add({item})"));
                    }
                }
            }
            Step::Build { target, state } => {
                let t = self.expr(target)?;
                let state = self.expr(state)?;
                self.uses_build = true;
                self.lines.push(format!("_build({t}, {state})"));
            }
            other => self.unknown = Some(format!("{other:?}")),
        }
        Ok(())
    }

    /// The call a reduction makes, with its arguments written first.
    fn call(&mut self, r: &'a Reduction) -> Expr {
        let callable = self.expr(&r.callable)?;
        let args = self.reached.call_args(self.graph, &r.args);
        let newobj = global(&r.callable).map(|g| (g.module.as_str(), g.name.as_str()));
        let call = match (newobj, args) {
            (Some(("copyreg", "__newobj__")), Some([cls, rest @ ..])) => {
                let cls = self.expr(cls)?;
                let mut parts = vec![cls.clone()];
                parts.extend(self.list(rest)?);
                format!("{cls}.__new__({})", parts.join(", "))
            }
            (Some(("copyreg", "__newobj_ex__")), Some([cls, args, kwargs])) => {
                let cls = self.expr(cls)?;
                let (args, kwargs) = (self.expr(args)?, self.expr(kwargs)?);
                format!("{cls}.__new__({cls}, *{args}, **{kwargs})")
            }
            (_, Some(items)) => format!("{callable}({})", self.list(items)?.join(", ")),
            (_, None) => format!("{callable}(*{})", self.expr(&r.args)?),
        };
        Ok(call)
    }

    /// Writes the call (named once its arguments are written) and then
    /// what loading does to the object; returns its name.
    fn reduction(&mut self, r: &'a Reduction, key: Key) -> Expr {
        let call = self.call(r)?;
        let name = self.fresh();
        self.lines.push(format!("{name} = {call}"));
        self.names.insert(key, name.clone());
        if let Some(state) = &r.state {
            let state = self.expr(state)?;
            match &r.state_setter {
                Some(setter) => {
                    let setter = self.expr(setter)?;
                    self.lines.push(format!("{setter}({name}, {state})"));
                }
                None => {
                    self.uses_build = true;
                    self.lines.push(format!("_build({name}, {state})"));
                }
            }
        }
        if !r.list_items.is_empty() {
            let items = self.list(&r.list_items)?;
            self.lines
                .push(format!("{name}.extend([{}])", items.join(", ")));
        }
        for (k, v) in &r.dict_items {
            let (k, v) = (self.expr(k)?, self.expr(v)?);
            self.lines.push(format!("{name}[{k}] = {v}"));
        }
        Ok(name)
    }
}
