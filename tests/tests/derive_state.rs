//! `#[derive(Reduce)]`'s `state` forms against CPython's own instances:
//! `@dataclass(slots=True)`, `__slots__` classes, a class with both
//! `__slots__` and `__dict__`, and attributes the Rust type has no field
//! for (dropped, refused or kept). Twins in `tests/fixtures/fixtures_classes.py`.
//!
//! CPython refuses to pickle a `__slots__` class at protocols 0 and 1 (it
//! has no `__getstate__` those protocols can use), so pickles of those come
//! from protocols 2 to 5; Rust writes them at every protocol, and CPython
//! loads all of them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use reduce::{Construct, Interned, Reduce, Value};
use reduce_tests::{first_difference, fixtures, python_check, Expect};

/// `@dataclass(slots=True)`: the state is `(None, {slot: value})`.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots")]
struct SlotPoint {
    x: f64,
    y: f64,
    label: String,
}

/// A hand-written `__slots__` class.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots")]
struct Slotted {
    x: i64,
    y: i64,
}

/// `__slots__ = ("a", "__dict__")`: slot `a`, and whatever else in the
/// `__dict__`, kept in insertion order.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots")]
struct Both {
    a: i64,
    #[reduce(rest, in_dict)]
    attrs: indexmap::IndexMap<String, Value>,
}

/// A slots dataclass read by a type without its `colour` slot: kept in
/// `rest`, and written back as a slot.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots")]
struct Pixel {
    x: i64,
    y: i64,
    #[reduce(rest)]
    more: Vec<(String, Value)>,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots", deny_unknown_fields)]
struct StrictPixel {
    x: i64,
    y: i64,
}

/// Frozen slots dataclasses define `__getstate__` and pickle a list.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "slots")]
struct FrozenSlots {
    x: i64,
}

/// Lenient, the default: attributes without a field are dropped.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state)]
struct Note {
    text: String,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state, deny_unknown_fields)]
struct StrictNote {
    text: String,
}

/// Kept, in the `__dict__`'s order.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state = "dict")]
struct OpenNote {
    text: String,
    #[reduce(rest)]
    other: Vec<(String, Value)>,
}

/// CPython's pickle of `expr` at `proto`, or its error message.
fn cpython(expr: &str, proto: u8) -> Result<Vec<u8>, String> {
    let script = format!(
        "import sys, pickle; sys.path.insert(0, {dir:?}); from fixtures_classes import *; \
         sys.stdout.buffer.write(pickle.dumps({expr}, protocol={proto}))",
        dir = fixtures().display().to_string()
    );
    let out = reduce_tests::python3()
        .args(["-c", &script])
        .output()
        .expect("python3");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn cpython_ok(expr: &str, proto: u8) -> Vec<u8> {
    cpython(expr, proto).unwrap_or_else(|e| panic!("CPython pickling {expr}: {e}"))
}

/// CPython loads `bytes` and pickles the result again at `proto`.
fn through_python(bytes: &[u8], proto: u8) -> Vec<u8> {
    let proto = proto.max(2);
    let script = format!(
        "import sys, pickle; sys.path.insert(0, {dir:?}); import fixtures_classes; \
         sys.stdout.buffer.write(pickle.dumps(pickle.loads(sys.stdin.buffer.read()), protocol={proto}))",
        dir = fixtures().display().to_string()
    );
    reduce_tests::python_with_input(&script, bytes)
}

/// Whether CPython can pickle `expr` at `proto`: not a `__slots__` class
/// before protocol 2.
fn cpython_writes(slots: bool, proto: u8) -> bool {
    !slots || proto >= 2
}

/// Rust reads CPython's `expr` as `want` (at every protocol CPython writes
/// it at), Rust's `want` loads in CPython as `python` (at every protocol;
/// an expression over the module `fixtures_classes`), and survives Rust ->
/// CPython -> Rust (re-pickled at protocol 2 or above, which every class
/// allows).
fn interop<T: Reduce + Construct + PartialEq + Debug>(
    want: &T,
    expr: &str,
    python: &str,
    slots: bool,
    cases: &mut Vec<(Vec<u8>, Expect)>,
) {
    for proto in 0..=5 {
        if cpython_writes(slots, proto) {
            let read: T = reduce::from_slice(&cpython_ok(expr, proto))
                .unwrap_or_else(|e| panic!("{expr} at protocol {proto}: {e}"));
            assert_eq!(
                &read, want,
                "Rust reads CPython's {expr} at protocol {proto}"
            );
        } else {
            let err = cpython(expr, proto).unwrap_err();
            assert!(
                err.contains("a class that defines __slots__ without defining __getstate__"),
                "{err}"
            );
        }
        let bytes = reduce::to_vec_with_protocol(want, proto).unwrap();
        cases.push((bytes.clone(), Expect::Expr(python.to_owned())));
        let back: T = reduce::from_slice(&through_python(&bytes, proto)).unwrap();
        assert_eq!(&back, want, "Rust -> CPython -> Rust at protocol {proto}");
    }
}

/// Rust writes `value` byte for byte as CPython pickles `expr`, at 2 to 5.
fn same_bytes<T: Reduce + ?Sized>(value: &T, expr: &str) {
    for proto in 2..=5 {
        let want = cpython_ok(expr, proto);
        let got = reduce::to_vec_with_protocol(value, proto).unwrap();
        assert!(
            want == got,
            "{expr} at protocol {proto}: {}",
            first_difference(&want, &got)
        );
    }
}

fn point(x: f64, y: f64, label: &str) -> SlotPoint {
    SlotPoint {
        x,
        y,
        label: label.into(),
    }
}

#[test]
fn dataclass_slots_reads_and_writes_its_slots_state() {
    let mut cases = Vec::new();
    let p = point(1.5, -2.0, "a");
    interop(
        &p,
        "SlotPoint(1.5, -2.0, 'a')",
        "fixtures_classes.SlotPoint(1.5, -2.0, 'a')",
        true,
        &mut cases,
    );
    python_check(&cases);
    // The state CPython writes, `(None, {slot: value})`, byte for byte,
    // slot names written once and then from the memo.
    same_bytes(
        &vec![p.clone(), point(3.0, 4.0, "")],
        "[SlotPoint(1.5, -2.0, 'a'), SlotPoint(3.0, 4.0)]",
    );
    let value = reduce::from_slice::<Value>(&reduce::to_vec(&p).unwrap()).unwrap();
    let Value::Reduce(r) = &value else {
        panic!("an object, found {value:?}")
    };
    assert_eq!(
        format!("{:?}", r.state),
        "Some((None, {'x': 1.5, 'y': -2.0, 'label': 'a'}))"
    );
}

#[test]
fn slots_classes_read_and_write_their_slots() {
    let mut cases = Vec::new();
    interop(
        &Slotted { x: 1, y: -7 },
        "Slotted(1, -7)",
        "fixtures_classes.Slotted(1, -7)",
        true,
        &mut cases,
    );
    python_check(&cases);
    same_bytes(&Slotted { x: 1, y: 2 }, "Slotted(1, 2)");
}

#[test]
fn a_class_with_slots_and_a_dict_keeps_both_parts() {
    let with = Both {
        a: 1,
        attrs: [
            ("note".to_string(), Value::str("a note")),
            ("n".to_string(), Value::Int(2)),
        ]
        .into_iter()
        .collect(),
    };
    let empty = Both {
        a: 2,
        attrs: Default::default(),
    };
    let mut cases = Vec::new();
    interop(
        &with,
        "Both(1, note='a note', n=2)",
        "fixtures_classes.Both(1, note='a note', n=2)",
        true,
        &mut cases,
    );
    interop(
        &empty,
        "Both(2)",
        "fixtures_classes.Both(2)",
        true,
        &mut cases,
    );
    python_check(&cases);
    // ({'note': 'a note', 'n': 2}, {'a': 1}), and (None, {'a': 2}) for an empty
    // __dict__, as CPython writes them.
    same_bytes(&with, "Both(1, note='a note', n=2)");
    same_bytes(&empty, "Both(2)");
}

#[test]
fn unknown_slots_are_kept_in_rest_and_written_back_as_slots() {
    let pixel = Pixel {
        x: 3,
        y: 4,
        more: vec![("colour".into(), Value::str("red"))],
    };
    let mut cases = Vec::new();
    interop(
        &pixel,
        "Pixel(3, 4, 'red')",
        "fixtures_classes.Pixel(3, 4, 'red')",
        true,
        &mut cases,
    );
    python_check(&cases);
    same_bytes(&pixel, "Pixel(3, 4, 'red')");
}

#[test]
fn unknown_attributes_are_dropped_by_default() {
    let mut cases = Vec::new();
    for proto in 0..=5 {
        let bytes = cpython_ok("with_attrs(Note('hi'), extra=[1], more=2)", proto);
        let note: Note = reduce::from_slice(&bytes).unwrap();
        assert_eq!(note, Note { text: "hi".into() }, "protocol {proto}");
        // Written back without them: CPython's Note('hi') exactly.
        let back = reduce::to_vec_with_protocol(&note, proto).unwrap();
        cases.push((back, Expect::Expr("fixtures_classes.Note('hi')".into())));
    }
    python_check(&cases);
}

#[test]
fn deny_unknown_fields_names_the_attributes_and_the_type() {
    for proto in 0..=5 {
        let bytes = cpython_ok(
            "[StrictNote('a'), with_attrs(StrictNote('hi'), extra=[1], more=2)]",
            proto,
        );
        let err = reduce::from_slice::<Vec<StrictNote>>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[1]: expected only text in the state of fixtures_classes.StrictNote, found `extra`, `more`: \
             Rust type derive_state::StrictNote has no field for them (add a field, or a #[reduce(rest)] field to keep unknown attributes)",
            "protocol {proto}"
        );
        // Without extra attributes it reads.
        let ok = cpython_ok("StrictNote('a')", proto);
        assert_eq!(
            reduce::from_slice::<StrictNote>(&ok).unwrap(),
            StrictNote { text: "a".into() }
        );
    }
    for proto in 2..=5 {
        let bytes = cpython_ok("StrictPixel(1, 2, 'red')", proto);
        let err = reduce::from_slice::<StrictPixel>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected only x, y in the state of fixtures_classes.StrictPixel, found `colour`: \
             Rust type derive_state::StrictPixel has no field for it (add a field, or a #[reduce(rest)] field to keep unknown attributes)",
        );
    }
}

#[test]
fn a_rest_field_keeps_unknown_attributes_and_writes_them_back() {
    let want = OpenNote {
        text: "hi".into(),
        other: vec![
            ("extra".into(), Value::List(vec![Value::Int(1)])),
            ("more".into(), Value::Int(2)),
        ],
    };
    let mut cases = Vec::new();
    let expr = "with_attrs(OpenNote('hi'), extra=[1], more=2)";
    let python = "fixtures_classes.with_attrs(fixtures_classes.OpenNote('hi'), extra=[1], more=2)";
    interop(&want, expr, python, false, &mut cases);
    python_check(&cases);
    // The keys of a __dict__ are interned in CPython; a rest field writes
    // its own strings, so only the memo differs: CPython reads the same.
    let bytes = reduce::to_vec_with_protocol(&want, 2).unwrap();
    assert_eq!(
        reduce::from_slice::<Value>(&bytes).unwrap(),
        reduce::from_slice::<Value>(&cpython_ok(expr, 2)).unwrap()
    );
}

#[test]
fn state_mismatches_name_the_path_the_python_class_and_the_rust_type() {
    // A field of the wrong type: the path, and the Rust field.
    let bytes = cpython_ok("[SlotPoint(1.0, 2.0), SlotPoint('x', 2.0)]", 4);
    let err = reduce::from_slice::<Vec<SlotPoint>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[1].x: expected float, found str (in Rust field derive_state::SlotPoint::x)"
    );
    // A state that is neither a dict nor a (dict, slots) pair.
    let bytes = cpython_ok("{'k': [FrozenSlots(1)]}", 4);
    let err = reduce::from_slice::<BTreeMap<String, Vec<FrozenSlots>>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "['k'][0]: expected the state of fixtures_classes.FrozenSlots as a dict or a (dict, slots) pair, \
         found list (reading Rust type derive_state::FrozenSlots)"
    );
    // An unset slot is missing from the state.
    let bytes = cpython_ok("[without(Slotted(1, 2), 'y')]", 4);
    let err = reduce::from_slice::<Vec<Slotted>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[0]: expected attribute `y` in the state of fixtures_classes.Slotted, found none \
         (Rust field derive_state::Slotted::y has no default)"
    );
    // No slot set at all: CPython writes no state.
    let bytes = cpython_ok("without(Slotted(1, 2), 'x', 'y')", 4);
    let err = reduce::from_slice::<Slotted>(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("expected attribute `x` in the state of fixtures_classes.Slotted"),
        "{err}"
    );
}

/// `f32` in a derived type: a finite float beyond its range is an error at
/// the field; infinities, NaN and rounding within range are not.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", name = "Point", state)]
struct Sample {
    x: f32,
    y: f32,
    label: String,
}

#[test]
fn f32_fields_refuse_floats_beyond_their_range() {
    let read = |x: &str| reduce::from_slice::<Sample>(&cpython_ok(&format!("Point({x}, 0.0)"), 2));
    let err = read("1e300").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x: float 1e300 is out of range for f32 (expected a magnitude up to 3.4028235e38) \
         (in Rust field derive_state::Sample::x)"
    );
    assert!(read("-3.5e38").is_err());
    assert_eq!(read("float('inf')").unwrap().x, f32::INFINITY);
    assert_eq!(read("float('-inf')").unwrap().x, f32::NEG_INFINITY);
    assert!(read("float('nan')").unwrap().x.is_nan());
    assert_eq!(read("0.1").unwrap().x, 0.1f32);
    assert_eq!(read("3.4028235e38").unwrap().x, f32::MAX);
    assert_eq!(read("1e-50").unwrap().x, 0.0);
}

/// `state = "slots", default`: unset slots keep their default, the whole
/// state may be missing, and `rest` is filled after the shell is made.
#[derive(Reduce, Debug, PartialEq, Clone, Default)]
#[reduce(module = "fixtures_classes", state = "slots", default)]
struct Sparse {
    x: i64,
    y: i64,
    #[reduce(rest, in_dict)]
    attrs: Vec<(String, Value)>,
}

#[test]
fn unset_slots_keep_their_default_with_default() {
    let read = |expr: &str| reduce::from_slice::<Sparse>(&cpython_ok(expr, 4)).unwrap();
    assert_eq!(
        read("without(Sparse(1, 2, tag='t'), 'y')"),
        Sparse {
            x: 1,
            y: 0,
            attrs: vec![("tag".into(), Value::str("t"))],
        }
    );
    // No slot set and an empty __dict__: CPython writes no state at all.
    assert_eq!(read("without(Sparse(1, 2), 'x', 'y')"), Sparse::default());
    let mut cases = Vec::new();
    let value = Sparse {
        x: 5,
        y: 6,
        attrs: vec![("tag".into(), Value::Int(1))],
    };
    interop(
        &value,
        "Sparse(5, 6, tag=1)",
        "fixtures_classes.Sparse(5, 6, tag=1)",
        true,
        &mut cases,
    );
    python_check(&cases);
}

/// A generic type with a `rest` field: the bound on `T` is inferred from
/// both fields. (A generic type does not register itself; the global is
/// allowed here because `OpenNote` registered it, and `from_slice::<T>`
/// builds `T` itself.)
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", name = "OpenNote", state)]
struct GenericNote<T> {
    text: T,
    #[reduce(rest)]
    other: Vec<(String, T)>,
}

#[test]
fn generic_types_take_a_rest_field() {
    let bytes = cpython_ok("with_attrs(OpenNote('hi'), extra='x')", 3);
    let note: GenericNote<String> = reduce::from_slice(&bytes).unwrap();
    assert_eq!(
        note,
        GenericNote {
            text: "hi".into(),
            other: vec![("extra".into(), "x".into())],
        }
    );
    let err = reduce::from_slice::<GenericNote<i64>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "text: expected int, found str (in Rust field derive_state::GenericNote<i64>::text)"
    );
}

/// A cycle through slots: `Rc<RefCell<Self>>` of a `state = "slots",
/// default` type is made first and filled after, as `BUILD` does.
#[derive(Reduce, Debug, Default)]
#[reduce(module = "fixtures_classes", state = "slots", default)]
struct SlotLink {
    name: String,
    next: Option<std::rc::Rc<std::cell::RefCell<SlotLink>>>,
}

#[test]
fn cycles_go_through_slots_state() {
    for proto in 2..=5 {
        let bytes = cpython_ok("ring('a', 'b')", proto);
        let a: std::rc::Rc<std::cell::RefCell<SlotLink>> = reduce::from_slice(&bytes).unwrap();
        let b = a.borrow().next.clone().expect("a.next");
        assert_eq!(b.borrow().name, "b");
        let back = b.borrow().next.clone().expect("b.next");
        assert!(std::rc::Rc::ptr_eq(&a, &back), "protocol {proto}: a ring");
        // Written back, CPython sees the same ring.
        let again = reduce::to_vec_with_protocol(&a, proto).unwrap();
        python_check(&[(
            again,
            Expect::SameAs({
                let dir = reduce_tests::scratch_dir("ring");
                let path = dir.join("ring.pickle");
                std::fs::write(&path, &bytes).unwrap();
                path
            }),
        )]);
        b.borrow_mut().next = None; // break the cycle
    }
}

#[test]
fn deny_unknown_fields_names_ten_attributes_at_most_and_cuts_long_names() {
    let long = "n".repeat(1000);
    let bytes = cpython_ok(
        &format!("with_attrs(StrictNote('a'), {long}=0, **{{f'a{{i}}': i for i in range(20)}})"),
        4,
    );
    let err = reduce::from_slice::<StrictNote>(&bytes).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("found `{}...`, `a0`, ", "n".repeat(60))),
        "{msg}"
    );
    assert!(msg.contains("`a8` and 11 more: "), "{msg}");
    assert!(msg.len() < 400, "{} bytes: {msg}", msg.len());
}

#[test]
fn one_attribute_name_is_one_object_across_types_and_interned_values() {
    // `text` is a field of three types (one written through `dyn Reduce`,
    // as it keeps its other attributes) and an interned value: CPython
    // writes the one interned string once, whoever meets it first.
    let note = |t: &str| Note { text: t.into() };
    let strict = StrictNote { text: "b".into() };
    let open = OpenNote {
        text: "c".into(),
        other: vec![],
    };
    same_bytes(
        &(
            note("a"),
            Interned("text"),
            strict.clone(),
            open.clone(),
            note("d"),
        ),
        "(Note('a'), sys.intern('text'), StrictNote('b'), OpenNote('c'), Note('d'))",
    );
    same_bytes(
        &(Interned("text"), open, note("a"), strict),
        "(sys.intern('text'), OpenNote('c'), Note('a'), StrictNote('b'))",
    );
}

fn seven() -> i64 {
    7
}

/// With the container's `default`, a field's own `default = "path"` still
/// wins, for a skipped field and for one missing from the state, on both
/// reading paths.
#[derive(Reduce, Debug, PartialEq, Default)]
#[reduce(module = "t_defaults", name = "B", state, default)]
struct WithDefaults {
    name: String,
    #[reduce(default = "seven")]
    count: i64,
    #[reduce(skip, default = "seven")]
    cache: i64,
    other: i64,
}

#[test]
fn a_fields_default_path_wins_over_the_containers_default() {
    // An instance whose __dict__ holds `name` alone.
    let bytes = reduce_tests::python_pickles(
        "import pickle, sys, types\n\
         m = types.ModuleType('t_defaults'); sys.modules['t_defaults'] = m\n\
         class B: pass\n\
         B.__module__ = 't_defaults'; m.B = B\n\
         b = B(); b.name = 'x'\n\
         d = pickle.dumps(b, 4)\n\
         sys.stdout.buffer.write(len(d).to_bytes(4, 'little') + d)\n",
    )
    .remove(0);
    let want = WithDefaults {
        name: "x".into(),
        count: 7,
        cache: 7,
        other: 0,
    };
    for streaming in [true, false] {
        let got: WithDefaults = reduce::Unpickler::from_slice(&bytes)
            .streaming(streaming)
            .load()
            .unwrap();
        assert_eq!(got, want, "streaming {streaming}");
    }
}
