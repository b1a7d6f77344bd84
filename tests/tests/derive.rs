//! `#[derive(Reduce)]` against CPython, form by form: a Python class with
//! the same path (in `tests/fixtures/fixtures_classes.py`) loads Rust's
//! bytes as the equal object, Rust loads Python's bytes as the equal value,
//! and a value survives Rust -> Python -> Rust unchanged.

use std::fmt::Debug;

use reduce::{Construct, ErrorKind, Reduce};
use reduce_tests::{fixtures, python_check, Expect};

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes")]
struct Vec2 {
    x: f64,
    y: f64,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes")]
struct Pair(i64, String);

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes")]
struct Unit;

/// Renamed type, renamed and skipped fields, bytes and a custom `with`.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", name = "Labelled")]
struct Tagged {
    #[reduce(rename = "label")]
    name: String,
    #[reduce(bytes)]
    data: Vec<u8>,
    #[reduce(with = "seconds")]
    when: std::time::Duration,
    #[reduce(skip)]
    cache: Option<u32>,
    #[reduce(skip, default = "answer")]
    answer: u32,
}

fn answer() -> u32 {
    42
}

/// A `Duration` as a float of seconds.
mod seconds {
    pub fn reduce(d: &std::time::Duration, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
        s.f64(d.as_secs_f64())
    }
    pub fn construct(node: reduce::Node<'_>) -> reduce::Result<std::time::Duration> {
        let secs: f64 = node.construct()?;
        Ok(std::time::Duration::from_secs_f64(secs))
    }
}

/// The dataclass form: `copyreg.__newobj__` plus a `__dict__` state.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", state)]
struct Account {
    owner: String,
    balance: i64,
    tags: Vec<String>,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes")]
enum Shape {
    Circle { r: f64 },
    Rect(f64, f64),
    Empty,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes", flat_variants)]
enum Token {
    Word { text: String },
    Number { n: i64 },
}

#[derive(Reduce, Debug, PartialEq, Clone, Copy)]
#[reduce(module = "fixtures_classes", python_enum)]
enum Color {
    Red = 1,
    Green = 2,
    #[reduce(value = "blue")]
    Blue,
}

/// Generic: bounds are inferred for `T`, and each instantiation is
/// registered by hand.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "fixtures_classes")]
struct Wrapper<T> {
    inner: T,
}

/// Python's pickle of `expr`, at `proto`.
fn cpython(expr: &str, proto: u8) -> Vec<u8> {
    let script = format!(
        "import sys, pickle; sys.path.insert(0, {dir:?}); from fixtures_classes import *; \
         sys.stdout.buffer.write(pickle.dumps({expr}, protocol={proto}))",
        dir = fixtures().display().to_string()
    );
    let out = reduce_tests::python3()
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Python loads `bytes` and pickles the result again at `proto`.
fn through_python(bytes: &[u8], proto: u8) -> Vec<u8> {
    let script = format!(
        "import sys, pickle; sys.path.insert(0, {dir:?}); import fixtures_classes; \
         sys.stdout.buffer.write(pickle.dumps(pickle.loads(sys.stdin.buffer.read()), protocol={proto}))",
        dir = fixtures().display().to_string()
    );
    reduce_tests::python_with_input(&script, bytes)
}

/// The three checks for one value and its Python twin expression.
fn interop<T: Reduce + Construct + PartialEq + Debug>(
    value: &T,
    expr: &str,
    cases: &mut Vec<(Vec<u8>, Expect)>,
) {
    for proto in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(value, proto).unwrap();
        cases.push((
            bytes.clone(),
            Expect::Expr(format!("fixtures_classes.{expr}")),
        ));
        let from_python: T = reduce::from_slice(&cpython(expr, proto))
            .unwrap_or_else(|e| panic!("{expr} at protocol {proto}: {e}"));
        assert_eq!(
            &from_python, value,
            "Rust reads CPython's {expr} at protocol {proto}"
        );
        let back: T = reduce::from_slice(&through_python(&bytes, proto)).unwrap();
        assert_eq!(&back, value, "Rust -> Python -> Rust at protocol {proto}");
    }
}

#[test]
fn structs_match_their_python_classes() {
    let mut cases = Vec::new();
    interop(&Vec2 { x: 1.5, y: -2.0 }, "Vec2(1.5, -2.0)", &mut cases);
    interop(&Pair(7, "seven".into()), "Pair(7, 'seven')", &mut cases);
    interop(&Unit, "Unit()", &mut cases);
    python_check(&cases);
}

#[test]
fn field_attributes_match_their_python_class() {
    let value = Tagged {
        name: "x".into(),
        data: vec![0, 255],
        when: std::time::Duration::from_millis(1500),
        cache: None,
        answer: 42,
    };
    let mut cases = Vec::new();
    interop(&value, "Labelled('x', b'\\x00\\xff', 1.5)", &mut cases);
    python_check(&cases);
    // Skipped fields are not written, and come back from their defaults.
    let with_cache = Tagged {
        cache: Some(9),
        answer: 0,
        ..value.clone()
    };
    let back: Tagged = reduce::from_slice(&reduce::to_vec(&with_cache).unwrap()).unwrap();
    assert_eq!(back, value);
}

#[test]
fn the_state_form_is_a_dataclass() {
    let value = Account {
        owner: "ada".into(),
        balance: -5,
        tags: vec!["a".into()],
    };
    let mut cases = Vec::new();
    interop(&value, "Account('ada', -5, ['a'])", &mut cases);
    python_check(&cases);
    // Byte for byte what CPython writes for the dataclass, at protocols 2-5.
    for proto in 2..=5 {
        let other = Account {
            owner: "bob".into(),
            balance: 70_000,
            tags: vec![],
        };
        assert_eq!(
            reduce::to_vec_with_protocol(&vec![value.clone(), other], proto).unwrap(),
            cpython(
                "[Account('ada', -5, ['a']), Account('bob', 70000, [])]",
                proto
            ),
            "protocol {proto}"
        );
    }
}

#[test]
fn enums_match_nested_classes_flat_classes_and_python_enums() {
    let mut cases = Vec::new();
    interop(&Shape::Circle { r: 1.5 }, "Shape.Circle(1.5)", &mut cases);
    interop(&Shape::Rect(2.0, 3.0), "Shape.Rect(2.0, 3.0)", &mut cases);
    interop(&Shape::Empty, "Shape.Empty()", &mut cases);
    interop(&Token::Word { text: "hi".into() }, "Word('hi')", &mut cases);
    interop(&Token::Number { n: 3 }, "Number(3)", &mut cases);
    interop(&Color::Red, "Color.RED", &mut cases);
    interop(&Color::Blue, "Color.BLUE", &mut cases);
    python_check(&cases);
    assert_eq!(
        reduce::to_vec_with_protocol(&Color::Green, 4).unwrap(),
        cpython("Color.GREEN", 4),
        "a Python Enum member, byte for byte"
    );
    // A member is one object: written once, then fetched from the memo.
    let colors = vec![Color::Red, Color::Blue, Color::Red, Color::Blue];
    for proto in 0..=5 {
        assert_eq!(
            reduce::to_vec_with_protocol(&colors, proto).unwrap(),
            cpython("[Color.RED, Color.BLUE, Color.RED, Color.BLUE]", proto),
            "protocol {proto}"
        );
    }
}

#[test]
fn generic_types_are_registered_per_instantiation() {
    let value = Wrapper {
        inner: vec![1u8, 2],
    };
    let bytes = reduce::to_vec(&value).unwrap();
    // Not registered yet: the error says why, and what to do.
    let err = reduce::from_slice::<Wrapper<Vec<u8>>>(&bytes).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownGlobal { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is a generic type, which cannot register itself"),
        "{err}"
    );
    reduce::registry()
        .register::<Wrapper<Vec<u8>>>("fixtures_classes", "Wrapper")
        .unwrap();
    let back: Wrapper<Vec<u8>> = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back, value);
    let cases = vec![(
        bytes,
        Expect::Expr("fixtures_classes.Wrapper([1, 2])".into()),
    )];
    python_check(&cases);
}

#[test]
fn derived_types_registered_themselves_at_link_time() {
    for name in [
        "Vec2",
        "Pair",
        "Unit",
        "Labelled",
        "Account",
        "Shape.Circle",
        "Word",
        "Color",
    ] {
        assert!(
            reduce::registry().contains("fixtures_classes", name),
            "{name} is not registered"
        );
    }
    assert_eq!(reduce::registry().snapshot().conflicts().count(), 0);
    // The default module is the Rust module path, dotted.
    #[derive(Reduce, Debug, PartialEq)]
    struct Local(u8);
    let bytes = reduce::to_vec_with_protocol(&Local(1), 3).unwrap();
    assert!(
        bytes.windows(6).any(|w| w == b"derive"),
        "module path `derive` in {bytes:?}"
    );
    let back: Local = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back, Local(1));
}

#[test]
fn mismatches_name_the_field() {
    // fixtures_classes.Vec2('one', 2.0): a str where x should be a float.
    let err = reduce::from_slice::<Vec2>(&cpython("Vec2('one', 2.0)", 4)).unwrap_err();
    assert_eq!(err.to_string(), "x: expected float, found str");
    let err = reduce::from_slice::<Vec<Account>>(&cpython(
        "[Account('a', 1, ['t']), Account('b', 'x', [])]",
        4,
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "[1].balance: expected int, found str (in Rust field derive::Account::balance)"
    );
    let err = reduce::from_slice::<Vec2>(&cpython("Pair(1, 'a')", 4)).unwrap_err();
    assert!(err.to_string().contains("fixtures_classes.Vec2"), "{err}");
}

/// A lifetime and a where-clause: writing works for any lifetime, reading
/// for `'static`.
#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "fixtures_classes", name = "Pair")]
struct Borrowed<'a, T>
where
    T: Clone,
{
    first: T,
    second: std::borrow::Cow<'a, str>,
}

/// The runtime reached through a re-export.
mod runtime {
    pub use reduce as rt;
}

#[derive(Reduce, Debug, PartialEq)]
#[reduce(
    crate = "runtime::rt",
    module = "fixtures_classes",
    name = "Reexported"
)]
struct ViaReexport {
    x: f64,
    y: f64,
}

/// A field of a foreign type goes through the registry.
#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "fixtures_classes", name = "Holder")]
struct WithForeign {
    #[reduce(registry)]
    inner: std::time::Duration,
}

#[test]
fn lifetimes_where_clauses_reexports_and_registry_fields() {
    let local = String::from("borrowed");
    let b = Borrowed {
        first: 1i64,
        second: std::borrow::Cow::Borrowed(local.as_str()),
    };
    let bytes = reduce::to_vec(&b).unwrap();
    assert_eq!(bytes, reduce::to_vec(&Pair(1, "borrowed".into())).unwrap());
    let back: Borrowed<'static, i64> = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back.second, "borrowed");

    let v = ViaReexport { x: 1.0, y: 2.0 };
    let bytes = reduce::to_vec_with_protocol(&v, 3).unwrap();
    assert!(bytes.windows(10).any(|w| w == b"Reexported"));
    assert_eq!(reduce::from_slice::<ViaReexport>(&bytes).unwrap(), v);

    reduce::registry()
        .register_reducer(|d: &std::time::Duration, s: &mut reduce::Saver<'_, '_>| {
            s.reduction("datetime", "timedelta")
                .args(&(0u64, d.as_secs(), d.subsec_micros()))
                .save()
        })
        .unwrap();
    reduce::registry()
        .register_constructor("datetime", "timedelta", |n: reduce::Node<'_>| {
            let (days, secs, micros): (u64, u64, u32) = n.any_reduction()?.args().construct()?;
            Ok(std::time::Duration::new(
                days * 86_400 + secs,
                micros * 1000,
            ))
        })
        .unwrap();
    let w = WithForeign {
        inner: std::time::Duration::from_secs(61),
    };
    let bytes = reduce::to_vec(&w).unwrap();
    assert_eq!(reduce::from_slice::<WithForeign>(&bytes).unwrap(), w);
    python_check(&[(
        bytes,
        Expect::Expr(
            "fixtures_classes.Holder(__import__('datetime').timedelta(seconds=61))".into(),
        ),
    )]);
}

/// A `with` function's own error (made with `Error::custom`, which knows
/// no path) gets the field's path, on both reading paths.
#[test]
fn a_with_functions_error_names_the_field() {
    mod hex {
        pub fn reduce(v: &u8, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
            s.str(&format!("{v:02x}"))
        }
        pub fn construct(node: reduce::Node<'_>) -> reduce::Result<u8> {
            let text: String = node.construct()?;
            u8::from_str_radix(&text, 16).map_err(reduce::Error::custom)
        }
    }
    #[derive(Reduce, Debug, PartialEq)]
    #[reduce(module = "app", name = "Gen", state)]
    struct Gen {
        #[reduce(with = "hex")]
        a: u8,
    }
    let good = reduce::to_vec(&vec![Gen { a: 0x1f }]).unwrap();
    let bad = good.replace_first_hex();
    for streaming in [true, false] {
        let err = reduce::Unpickler::from_slice(&bad)
            .streaming(streaming)
            .load::<Vec<Gen>>()
            .unwrap_err();
        assert_eq!(err.path(), Some("[0].a"), "streaming {streaming}: {err}");
        assert!(err.to_string().contains("invalid digit"), "{err}");
    }
}

trait ReplaceHex {
    fn replace_first_hex(&self) -> Vec<u8>;
}

impl ReplaceHex for Vec<u8> {
    /// The pickle with the text `1f` made `zz`, the same length.
    fn replace_first_hex(&self) -> Vec<u8> {
        let at = self
            .windows(2)
            .position(|w| w == b"1f")
            .expect("the hex text");
        let mut out = self.clone();
        out[at..at + 2].copy_from_slice(b"zz");
        out
    }
}
