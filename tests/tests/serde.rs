//! `reduce::serde`: serde types written as CPython writes the same Python
//! data (byte for byte, protocols 0 to 5), read back, `Value` as serde data,
//! and both ways with serde-pickle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::process::Stdio;

use reduce::Value;
use reduce_tests::first_difference;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u32,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Shape {
    name: String,
    points: Vec<Point>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum E {
    Unit,
    New(i32),
    Tup(i32, String),
    Struct { a: bool },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Pair(i32, i32);

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Unit;

type Writer = Box<dyn Fn(u8) -> reduce::Result<Vec<u8>>>;

/// A serde value, the Python expression of the same data, and its
/// conversion to a `Value`.
struct Case {
    write: Writer,
    /// The same through `to_writer`, which hands each frame to the sink
    /// as it is done.
    stream: Writer,
    value: Box<dyn Fn() -> reduce::Result<Value>>,
    expr: String,
}

fn case<T: Serialize + 'static>(v: T, expr: impl Into<String>) -> Case {
    let v = std::rc::Rc::new(v);
    let w = v.clone();
    let x = v.clone();
    Case {
        write: Box::new(move |p| reduce::serde::to_vec_with_protocol(&*w, p)),
        stream: Box::new(move |p| {
            let mut out = Vec::new();
            reduce::serde::to_writer_with_protocol(&mut out, &*x, p)?;
            Ok(out)
        }),
        value: Box::new(move || reduce::serde::to_value(&*v)),
        expr: expr.into(),
    }
}

/// Each expression's string values are distinct objects in Python (no
/// literal appears twice, no one-character or empty `str`, which CPython
/// caches); field and variant names are shared constants, as in any dict
/// built from literals.
fn cases() -> Vec<Case> {
    let records = vec![
        Record {
            id: 1,
            name: "ann".into(),
            tags: vec!["red".into(), "blue".into()],
            score: Some(9.5),
        },
        Record {
            id: 2,
            name: "bob".into(),
            tags: vec![],
            score: None,
        },
        Record {
            id: 70000,
            name: "cyd".into(),
            tags: vec!["green".into()],
            score: Some(-1.0),
        },
    ];
    vec![
        case(Point { x: 1.0, y: -2.5 }, "{'x': 1.0, 'y': -2.5}"),
        case(
            records,
            "[{'id': 1, 'name': 'ann', 'tags': ['red', 'blue'], 'score': 9.5}, \
             {'id': 2, 'name': 'bob', 'tags': [], 'score': None}, \
             {'id': 70000, 'name': 'cyd', 'tags': ['green'], 'score': -1.0}]",
        ),
        case(
            (
                0u8,
                255u8,
                256u16,
                65535u16,
                65536u32,
                -1i32,
                i64::MIN,
                i64::MAX,
                u64::MAX,
                i128::MIN,
                u128::MAX,
                2147483648u32,
            ),
            "(0, 255, 256, 65535, 65536, -1, -2**63, 2**63-1, 2**64-1, -2**127, 2**128-1, 2**31)",
        ),
        case(
            (0.1f32, 1e300f64, -0.0f64, f64::INFINITY, f32::MIN_POSITIVE),
            "(0.10000000149011612, 1e300, -0.0, float('inf'), 1.1754943508222875e-38)",
        ),
        case(
            vec![
                E::Unit,
                E::New(5),
                E::Tup(1, "tx".into()),
                E::Struct { a: true },
                E::Unit,
            ],
            "['Unit', {'New': 5}, {'Tup': [1, 'tx']}, {'Struct': {'a': True}}, 'Unit']",
        ),
        case(
            (
                ByteBuf::from(b"abc".to_vec()),
                ByteBuf::new(),
                ByteBuf::from(vec![7u8; 70 * 1024]),
            ),
            "(b'abc', b'', b'\\x07' * (70 * 1024))",
        ),
        case((0..2500).collect::<Vec<i32>>(), "list(range(2500))"),
        // Strings on each side of the writer's length steps (16 bytes,
        // 128, 256), ASCII and not.
        case(
            [0, 1, 15, 16, 17, 127, 128, 129, 255, 256, 300]
                .map(|n| "a".repeat(n))
                .into_iter()
                .chain(["é".repeat(8), "é".repeat(100), "\u{1F600}".repeat(70)])
                .collect::<Vec<String>>(),
            "['a' * n for n in (0, 1, 15, 16, 17, 127, 128, 129, 255, 256, 300)] \
             + ['é' * 8, 'é' * 100, '\\U0001F600' * 70]",
        ),
        // Long sequences go chunk by chunk (`collect_seq`): strings, which
        // are memoized, and a set, which serde writes as a list.
        case(
            (0..1200).map(|i| format!("s{i}")).collect::<Vec<String>>(),
            "[f's{i}' for i in range(1200)]",
        ),
        case(
            (0..1000).collect::<std::collections::BTreeSet<u16>>(),
            "list(range(1000))",
        ),
        case(vec![7u8], "[7]"),
        case(Vec::<u8>::new(), "[]"),
        case(
            (0..2000u32).map(|i| (i, i * 2)).collect::<BTreeMap<_, _>>(),
            "{i: i * 2 for i in range(2000)}",
        ),
        case(
            (0..1000u32).map(|i| (i, ())).collect::<BTreeMap<_, _>>(),
            "{i: None for i in range(1000)}",
        ),
        case(BTreeMap::from([(1u8, 2u8)]), "{1: 2}"),
        // Python hashes dict keys: a sequence there is a tuple, all the
        // way down.
        case(
            BTreeMap::from([(vec![1u8, 2], 1u8), (vec![], 2)]),
            "{(): 2, (1, 2): 1}",
        ),
        case(
            BTreeMap::from([((vec![vec![1u16], vec![]], "kk".to_owned()), vec![3u8])]),
            "{(((1,), ()), 'kk'): [3]}",
        ),
        case(BTreeMap::<u8, u8>::new(), "{}"),
        case((Unit, None::<i32>, ()), "(None, None, None)"),
        case(
            (Pair(1, 2), [0u8; 0], (1, 2, 3, 4), (true,)),
            "((1, 2), (), (1, 2, 3, 4), (True,))",
        ),
        case("x".repeat(70 * 1024), "'x' * (70 * 1024)"),
        // Strings of 16 bytes and more over several frames, so that one
        // ends a frame.
        case(
            (0..4000)
                .map(|i| format!("{i:0w$}", w = 16 + i % 50))
                .collect::<Vec<_>>(),
            "[f'{i:0{16 + i % 50}}' for i in range(4000)]",
        ),
        case(
            (0..20000)
                .map(|i| format!("item{i:05}"))
                .collect::<Vec<_>>(),
            "[f'item{i:05}' for i in range(20000)]",
        ),
        case(vec!['é', '😀'], "['é', '😀']"),
        case(
            "nul\0 and \\ and\nnewline",
            "'nul\\x00 and \\\\ and\\nnewline'",
        ),
        case(
            BTreeMap::from([((1, 2), "ab".to_string()), ((3, 4), "cd".to_string())]),
            "{(1, 2): 'ab', (3, 4): 'cd'}",
        ),
        case(BTreeSet::from([3, 1, 2]), "[1, 2, 3]"),
        case(
            Shape {
                name: "poly".into(),
                points: vec![Point { x: 0.0, y: 1.0 }, Point { x: 2.0, y: 3.0 }],
            },
            "{'name': 'poly', 'points': [{'x': 0.0, 'y': 1.0}, {'x': 2.0, 'y': 3.0}]}",
        ),
    ]
}

/// The hex of `pickle.dumps(eval(expr), protocol=p)` for p in 0..=5, per
/// expression, from one python3 run.
fn cpython_dumps(exprs: &[&str]) -> Vec<Vec<Vec<u8>>> {
    let script = "import sys, pickle\nfor line in sys.stdin.read().splitlines():\n    v = eval(line)\n    print(' '.join(pickle.dumps(v, protocol=p).hex() for p in range(6)))";
    let mut child = reduce_tests::python3()
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exprs.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let answers = String::from_utf8(out.stdout).unwrap();
    let decode = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    answers
        .lines()
        .map(|line| line.split(' ').map(decode).collect())
        .collect()
}

#[test]
fn serde_writes_what_cpython_writes() {
    let cases = cases();
    let exprs: Vec<&str> = cases.iter().map(|c| c.expr.as_str()).collect();
    let answers = cpython_dumps(&exprs);
    assert_eq!(answers.len(), cases.len());
    for (case, want) in cases.iter().zip(&answers) {
        for (proto, want) in want.iter().enumerate() {
            for (how, write) in [("to_vec", &case.write), ("to_writer", &case.stream)] {
                let got = write(proto as u8).unwrap();
                assert!(
                    &got == want,
                    "{} at protocol {proto}, {how}: {}",
                    case.expr,
                    first_difference(want, &got)
                );
            }
        }
    }
}

#[test]
fn to_value_is_the_same_python_object() {
    for case in cases() {
        let value = (case.value)().unwrap();
        for proto in [0, 2, 5] {
            let direct: Value = reduce::from_slice(&(case.write)(proto).unwrap()).unwrap();
            assert_eq!(direct, value, "{} at protocol {proto}", case.expr);
        }
    }
}

#[test]
fn to_writer_writes_to_vec_bytes() {
    let records = vec![Point { x: 1.0, y: 2.0 }; 3];
    let mut out = Vec::new();
    reduce::serde::to_writer(&mut out, &records).unwrap();
    assert_eq!(out, reduce::serde::to_vec(&records).unwrap());
    let mut out = Vec::new();
    reduce::serde::to_writer_with_protocol(&mut out, &records, 1).unwrap();
    assert_eq!(
        out,
        reduce::serde::to_vec_with_protocol(&records, 1).unwrap()
    );
}

#[test]
fn a_bad_protocol_is_an_error() {
    let err = reduce::serde::to_vec_with_protocol(&1u8, 6).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported pickle protocol 6 (expected 0 to 5)"
    );
}

#[test]
fn flatten_and_unknown_lengths_write_valid_pickles() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Outer {
        id: u8,
        #[serde(flatten)]
        inner: Point,
        #[serde(flatten)]
        rest: HashMap<String, i32>,
    }
    let v = Outer {
        id: 3,
        inner: Point { x: 1.0, y: 2.0 },
        rest: HashMap::from([("extra".to_string(), 9)]),
    };
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&v, proto).unwrap();
        let value: Value = reduce::from_slice(&bytes).unwrap();
        assert_eq!(
            format!("{value:?}"),
            "{'id': 3, 'x': 1.0, 'y': 2.0, 'extra': 9}",
            "protocol {proto}"
        );
    }
}

// ---- Value as serde data ------------------------------------------------------

/// `pickle.dumps(eval(expr), protocol=p)` for p in 0..=5.
fn cpython(expr: &str) -> Vec<Vec<u8>> {
    cpython_dumps(&[expr]).remove(0)
}

#[test]
fn a_pickle_transcodes_to_json() {
    let expr = "{'name': 'ada', 'scores': (9.5, 8), 'raw': b'\\x00\\x01', \
                'nested': [None, True, 2**70, -3, 2**64-1], 'set': {1}, 'fs': frozenset([2]), 'bytearray': bytearray(b'\\x05')}";
    for (proto, bytes) in cpython(expr).iter().enumerate() {
        let value: Value = reduce::from_slice(bytes).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"name":"ada","scores":[9.5,8],"raw":[0,1],"nested":[null,true,1180591620717411303424,-3,18446744073709551615],"set":[1],"fs":[2],"bytearray":[5]}"#,
            "protocol {proto}"
        );
    }
}

#[test]
fn a_json_document_becomes_a_pickle() {
    let docs = [
        r#"{"a": [1, 2.5, null, true, "s\u00e9"], "b": {"c": 18446744073709551615, "d": -9223372036854775808}, "e": []}"#,
        r#"[{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, 3.25, "x", false]"#,
        r#""just a string""#,
    ];
    let mut script = String::from("import json, pickle, sys\nok = 0\n");
    for doc in docs {
        let value: Value = serde_json::from_str(doc).unwrap();
        for proto in 0..=5 {
            let bytes = reduce::to_vec_with_protocol(&value, proto).unwrap();
            script.push_str(&format!(
                "assert pickle.loads(bytes.fromhex('{}')) == json.loads({doc:?}), ({proto}, {doc:?})\nok += 1\n",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ));
        }
    }
    script.push_str("print(ok)\n");
    let out = reduce_tests::python3()
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "18");
}

#[test]
fn json_and_back_keeps_the_data_not_the_python_types() {
    let value = Value::Dict(vec![
        (Value::str("t"), Value::Tuple(vec![1.into(), 2.into()])),
        (Value::str("s"), Value::Set(vec![3.into()])),
    ]);
    let json = serde_json::to_string(&value).unwrap();
    let back: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(format!("{back:?}"), "{'t': [1, 2], 's': [3]}");
    // Through reduce::serde, the same: a sequence is read as a list.
    let bytes = reduce::to_vec(&value).unwrap();
    let back: Value = reduce::serde::from_slice(&bytes).unwrap();
    assert_eq!(format!("{back:?}"), "{'t': [1, 2], 's': [3]}");
}

#[test]
fn a_shared_object_is_written_by_value_and_a_cycle_is_an_error() {
    let shared = cpython("(lambda p: [p, p])([1, 2])");
    let cyclic = cpython("(lambda l: (l.append(l), l)[1])([])");
    for proto in 0..=5 {
        let graph = reduce::Unpickler::from_slice(&shared[proto])
            .load_graph()
            .unwrap();
        assert!(!graph.objects().is_empty(), "the list is shared");
        assert_eq!(serde_json::to_string(&graph).unwrap(), "[[1,2],[1,2]]");

        let graph = reduce::Unpickler::from_slice(&cyclic[proto])
            .load_graph()
            .unwrap();
        let err = serde_json::to_string(&graph).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }
}

#[test]
fn what_serde_cannot_carry_is_an_error_that_names_it() {
    let cases = [
        (
            Value::global("builtins", "len"),
            "a global (builtins.len) has no serde form",
        ),
        (
            Value::int("1".repeat(60).parse::<reduce::BigInt>().unwrap()),
            "an int beyond 128 bits has no serde form",
        ),
        (
            Value::Str(reduce::PyStr::from_code_points([0x61, 0xD800]).unwrap()),
            "a str with a lone surrogate ('a\\ud800') has no serde form",
        ),
    ];
    for (value, msg) in cases {
        let err = serde_json::to_string(&value).unwrap_err().to_string();
        assert!(err.starts_with(msg), "{err}");
    }
}

// ---- reading ----------------------------------------------------------------

/// `from_slice` (the fast path, which falls back to the Graph path) and
/// the Graph path itself, which must agree on the value or the error.
fn both<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<T, String> {
    let fast = reduce::serde::from_slice::<T>(bytes).map_err(|e| e.to_string());
    let slow = reduce::Unpickler::from_slice(bytes)
        .load_graph()
        .and_then(|g| reduce::serde::from_graph::<T>(&g))
        .map_err(|e| e.to_string());
    assert_eq!(fast, slow, "fast path and Graph path differ");
    fast
}

fn read_all<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(expr: &str, want: &T) {
    for (proto, bytes) in cpython(expr).iter().enumerate() {
        let got: T = both(bytes).unwrap_or_else(|e| panic!("{expr} at protocol {proto}: {e}"));
        assert_eq!(&got, want, "{expr} at protocol {proto}");
        let got: T = reduce::serde::from_reader(&bytes[..]).unwrap();
        assert_eq!(&got, want, "{expr} at protocol {proto}, from a reader");
    }
}

#[test]
fn cpython_data_reads_into_serde_types() {
    read_all(
        "[{'id': 1, 'name': 'ann', 'tags': ['red', 'blue'], 'score': 9.5}, \
          {'id': 2, 'name': 'bob', 'tags': (), 'score': None}]",
        &vec![
            Record {
                id: 1,
                name: "ann".into(),
                tags: vec!["red".into(), "blue".into()],
                score: Some(9.5),
            },
            Record {
                id: 2,
                name: "bob".into(),
                tags: vec![],
                score: None,
            },
        ],
    );
    read_all(
        "(2**64-1, -2**127, 2**128-1, -1, 7)",
        &(u64::MAX, i128::MIN, u128::MAX, -1i8, 7.0f32),
    );
    read_all(
        "{(1, 2): b'ab', (3, 4): bytearray(b'cd')}",
        &BTreeMap::from([
            ((1u8, 2u8), ByteBuf::from(b"ab".to_vec())),
            ((3, 4), ByteBuf::from(b"cd".to_vec())),
        ]),
    );
    read_all("{3, 1}", &BTreeSet::from([1, 3]));
    read_all("['é', 'a']", &vec!['é', 'a']);
    read_all("(None, None)", &(Unit, ()));
    read_all("(1, 2)", &Pair(1, 2));
    // A struct written as the tuple of its fields, as serde reads it too.
    read_all("(1.0, 2.0)", &Point { x: 1.0, y: 2.0 });
}

#[test]
fn every_enum_form_serde_pickle_reads() {
    read_all(
        "['Unit', {'New': 5}, {'Tup': [1, 'one']}, {'Tup': (2, 'two')}, {'Struct': {'a': True}}, \
          ('Unit',), ('New', 6), ('Tup', [3, 'three']), ('Struct', {'a': False})]",
        &vec![
            E::Unit,
            E::New(5),
            E::Tup(1, "one".into()),
            E::Tup(2, "two".into()),
            E::Struct { a: true },
            E::Unit,
            E::New(6),
            E::Tup(3, "three".into()),
            E::Struct { a: false },
        ],
    );
}

#[test]
fn deserialize_any_untagged_flatten_and_ignored_fields() {
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum Loose {
        Num(f64),
        Text(String),
        Point(Point),
        List(Vec<Loose>),
    }
    read_all(
        "[1.5, 'txt', {'x': 1.0, 'y': 2.0}, [2]]",
        &vec![
            Loose::Num(1.5),
            Loose::Text("txt".into()),
            Loose::Point(Point { x: 1.0, y: 2.0 }),
            Loose::List(vec![Loose::Num(2.0)]),
        ],
    );

    #[derive(Deserialize, Debug, PartialEq)]
    struct Flat {
        id: u8,
        #[serde(flatten)]
        at: Point,
        #[serde(flatten)]
        rest: BTreeMap<String, serde_json::Value>,
    }
    read_all(
        "{'id': 1, 'x': 1.0, 'extra': [None, {'k': (1, 'v2')}], 'y': 2.0}",
        &Flat {
            id: 1,
            at: Point { x: 1.0, y: 2.0 },
            rest: BTreeMap::from([(
                "extra".to_string(),
                serde_json::json!([null, {"k": [1, "v2"]}]),
            )]),
        },
    );

    // Unknown fields are skipped, whatever they hold.
    read_all(
        "{'x': 1.0, 'skipped': [{'deep': (1, 2**100)}, set()], 'y': 2.0}",
        &Point { x: 1.0, y: 2.0 },
    );

    read_all(
        "{'a': [1, 2.5, None, True, 'text'], 'b': {'c': 2**64 - 1}}",
        &serde_json::json!({"a": [1, 2.5, null, true, "text"], "b": {"c": 18446744073709551615u64}}),
    );
}

#[test]
fn shared_objects_read_by_value() {
    read_all(
        "(lambda p: [p, p, p])({'x': 1.0, 'y': 2.0})",
        &vec![Point { x: 1.0, y: 2.0 }; 3],
    );
    // A list shared at two places, mutable, so the graph keeps it shared.
    read_all(
        "(lambda l: {'first': l, 'second': l})([1, 2])",
        &BTreeMap::from([("first", vec![1, 2]), ("second", vec![1, 2])])
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    );
}

#[test]
fn a_cycle_is_an_error_that_says_so() {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Tree(Vec<Tree>);
    for bytes in cpython("(lambda l: (l.append(l), l)[1])([])") {
        let err = reduce::serde::from_slice::<serde_json::Value>(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("[0]: the value contains itself (a cycle)"),
            "{err}"
        );
        let err = reduce::serde::from_slice::<Tree>(&bytes).unwrap_err();
        assert!(err.to_string().contains("a cycle"), "{err}");
    }
}

#[test]
fn a_dag_that_doubles_is_bounded() {
    let bytes = &cpython("__import__('functools').reduce(lambda a, _: [a, a], range(60), [])")[4];
    let err = reduce::serde::from_slice::<serde_json::Value>(bytes).unwrap_err();
    reduce_tests::assert_limit(&err, "max_tree_nodes");
    // Ignored, it costs nothing.
    let _: serde::de::IgnoredAny = reduce::serde::from_slice(bytes).unwrap();
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    // [[[...]]], 20000 deep: 20000 empty lists, each appended to the one
    // below it.
    let n = 20000;
    let mut bytes = b"\x80\x02".to_vec();
    bytes.extend(std::iter::repeat_n(b']', n));
    bytes.extend(std::iter::repeat_n(b'a', n - 1));
    bytes.push(b'.');
    let value: Value = reduce::from_slice(&bytes).unwrap();
    assert!(matches!(value, Value::List(_)));
    let err = reduce::serde::from_slice::<serde_json::Value>(&bytes).unwrap_err();
    reduce_tests::assert_limit(&err, "max_typed_depth");
}

#[test]
fn errors_carry_the_path_as_the_typed_reader_s_do() {
    let bad_shapes = "[{'name': 'a0', 'points': []}, {'name': 'a1', 'points': []}, \
                      {'name': 'a2', 'points': []}, {'name': 'a3', 'points': [{'x': 'oops', 'y': 1.0}]}]";
    for bytes in cpython(bad_shapes) {
        let err = reduce::serde::from_slice::<Vec<Shape>>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[3].points[0].x: expected float, found str"
        );
        assert_eq!(err.path(), Some("[3].points[0].x"));
    }
    let cases: [(&str, &str); 4] = [
        (
            "{'ada': [9.5, 8.0]}",
            "['ada'][0]: expected str, found float",
        ),
        ("[{'x': 1.0}]", "[0]: expected field `y`, found none"),
        ("{'New': 'five'}", "New: expected int, found str"),
        ("[1, 2, 3]", "expected 2 items, found 3"),
    ];
    for (expr, msg) in cases {
        let bytes = &cpython(expr)[2];
        let err = match expr {
            "{'ada': [9.5, 8.0]}" => {
                reduce::serde::from_slice::<BTreeMap<String, Vec<String>>>(bytes).unwrap_err()
            }
            "[{'x': 1.0}]" => reduce::serde::from_slice::<Vec<Point>>(bytes).unwrap_err(),
            "{'New': 'five'}" => reduce::serde::from_slice::<E>(bytes).unwrap_err(),
            _ => reduce::serde::from_slice::<(u8, u8)>(bytes).unwrap_err(),
        };
        assert_eq!(err.to_string(), msg, "{expr}");
    }
    // The typed reader says the same of the same data.
    let bytes = &cpython("{'ada': [9.5, 8.0]}")[2];
    let typed = reduce::from_slice::<BTreeMap<String, Vec<String>>>(bytes).unwrap_err();
    let serde = reduce::serde::from_slice::<BTreeMap<String, Vec<String>>>(bytes).unwrap_err();
    assert_eq!(typed.to_string(), serde.to_string());
}

#[test]
fn globals_are_refused_as_the_strict_reader_refuses_them() {
    let bytes = b"cos\nsystem\n(S'echo pwned'\ntR.";
    let err = reduce::serde::from_slice::<serde_json::Value>(bytes).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("global `os.system` is not allowed"),
        "{err}"
    );
    // Read in inert mode, a reduced object is not plain data.
    let graph = reduce::Unpickler::from_slice(bytes)
        .inert(true)
        .load_graph()
        .unwrap();
    let err = reduce::serde::from_graph::<serde_json::Value>(&graph).unwrap_err();
    assert_eq!(err.to_string(), "expected plain data, found object");
}

#[test]
fn from_value_and_to_value_need_no_bytes() {
    let shape = Shape {
        name: "tri".into(),
        points: vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 0.5 }],
    };
    let value = reduce::serde::to_value(&shape).unwrap();
    assert_eq!(
        format!("{value:?}"),
        "{'name': 'tri', 'points': [{'x': 0.0, 'y': 0.0}, {'x': 1.0, 'y': 0.5}]}"
    );
    let back: Shape = reduce::serde::from_value(&value).unwrap();
    assert_eq!(back, shape);
    let e = vec![
        E::Unit,
        E::New(1),
        E::Tup(2, "two".into()),
        E::Struct { a: true },
    ];
    let back: Vec<E> = reduce::serde::from_value(&reduce::serde::to_value(&e).unwrap()).unwrap();
    assert_eq!(back, e);
}

#[test]
fn serde_reads_what_it_writes() {
    let shape = Shape {
        name: "tri".into(),
        points: vec![Point { x: 0.0, y: 0.0 }; 1500],
    };
    let records: Vec<Record> = (0..3000)
        .map(|i| Record {
            id: i,
            name: format!("n{i}"),
            tags: vec!["t".into(); (i % 3) as usize],
            score: (i % 2 == 0).then_some(i as f64 / 2.0),
        })
        .collect();
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&shape, proto).unwrap();
        assert_eq!(reduce::serde::from_slice::<Shape>(&bytes).unwrap(), shape);
        let bytes = reduce::serde::to_vec_with_protocol(&records, proto).unwrap();
        assert_eq!(
            reduce::serde::from_slice::<Vec<Record>>(&bytes).unwrap(),
            records
        );
    }
}

// ---- serde-pickle, both ways --------------------------------------------------

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Everything {
    shape: Shape,
    enums: Vec<E>,
    some: Option<i32>,
    none: Option<String>,
    int_keys: BTreeMap<i32, String>,
    tuple_keys: BTreeMap<(u8, bool), f64>,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    list_of_u8: Vec<u8>,
    u64_at_i64_max: u64,
    i64_min: i64,
    u32_max: u32,
    float32: f32,
    ch: char,
    unit: Unit,
    pair: Pair,
    empty: (),
    records: Vec<Record>,
}

fn everything() -> Everything {
    Everything {
        shape: Shape {
            name: "sq".into(),
            points: vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: -1.0 }],
        },
        enums: vec![
            E::Unit,
            E::New(-7),
            E::Tup(1, "one".into()),
            E::Struct { a: false },
        ],
        some: Some(3),
        none: None,
        int_keys: BTreeMap::from([(-1, "minus".into()), (300, "big".into())]),
        tuple_keys: BTreeMap::from([((1, true), 0.5), ((2, false), 1.5)]),
        bytes: vec![0, 1, 255],
        list_of_u8: vec![9, 8],
        u64_at_i64_max: i64::MAX as u64,
        i64_min: i64::MIN,
        u32_max: u32::MAX,
        float32: 0.1,
        ch: 'ß',
        unit: Unit,
        pair: Pair(-1, 1),
        empty: (),
        records: (0..1200)
            .map(|i| Record {
                id: i,
                name: format!("r{i}"),
                tags: vec![],
                score: None,
            })
            .collect(),
    }
}

#[test]
fn reduce_reads_what_serde_pickle_writes() {
    let v = everything();
    let options = [
        serde_pickle::SerOptions::new(),
        serde_pickle::SerOptions::new().proto_v2(),
        serde_pickle::SerOptions::new().compat_enum_repr(),
        serde_pickle::SerOptions::new()
            .proto_v2()
            .compat_enum_repr(),
    ];
    for opts in options {
        let bytes = serde_pickle::to_vec(&v, opts.clone()).unwrap();
        let back: Everything =
            reduce::serde::from_slice(&bytes).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
        assert_eq!(back, v, "{opts:?}");
    }
    // Edges serde-pickle writes and cannot read itself.
    let edges = (u64::MAX, i64::MAX as u64 + 1);
    let bytes = serde_pickle::to_vec(&edges, Default::default()).unwrap();
    assert!(serde_pickle::from_slice::<(u64, u64)>(&bytes, Default::default()).is_err());
    assert_eq!(
        reduce::serde::from_slice::<(u64, u64)>(&bytes).unwrap(),
        edges
    );
}

#[test]
fn serde_pickle_reads_what_reduce_writes() {
    let v = everything();
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&v, proto).unwrap();
        let back: Everything = serde_pickle::from_slice(&bytes, Default::default())
            .unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert_eq!(back, v, "protocol {proto}");
    }
    // serde-pickle has no i128 (it refuses one either way) and reads no int
    // outside i64; reduce writes and reads both.
    for x in [i128::MIN, u64::MAX as i128] {
        let bytes = reduce::serde::to_vec(&x).unwrap();
        assert!(serde_pickle::from_slice::<i128>(&bytes, Default::default()).is_err());
        assert_eq!(reduce::serde::from_slice::<i128>(&bytes).unwrap(), x);
    }
}

#[test]
fn both_crates_agree_on_the_python_value() {
    // What each crate writes for the same data loads as the same Python
    // object: the differences are memo, frames and batching only.
    let v = everything();
    let theirs: Value =
        reduce::from_slice(&serde_pickle::to_vec(&v, Default::default()).unwrap()).unwrap();
    let ours: Value = reduce::from_slice(&reduce::serde::to_vec(&v).unwrap()).unwrap();
    assert_eq!(theirs, ours);
}

// ---- the fast path ----------------------------------------------------------

#[test]
fn the_fast_path_borrows_from_the_slice() {
    #[derive(Deserialize, Debug, PartialEq, Clone)]
    struct Borrowed<'a> {
        name: &'a str,
        #[serde(borrow)]
        tags: Vec<&'a str>,
        raw: &'a [u8],
    }
    // The Graph path owns its strings, so only the fast path can lend them.
    let bytes = cpython("[{'name': 'ann', 'tags': ['red', 'blue'], 'raw': b'xy'}] * 2");
    for (proto, bytes) in bytes.iter().enumerate() {
        let names: Vec<std::collections::HashMap<&str, serde::de::IgnoredAny>> = match proto {
            0 => continue,
            _ => reduce::serde::from_slice(bytes).unwrap(),
        };
        assert_eq!(names.len(), 2);
        if proto >= 3 {
            let got: Vec<Borrowed<'_>> = reduce::serde::from_slice(bytes).unwrap();
            assert_eq!(
                got,
                vec![
                    Borrowed {
                        name: "ann",
                        tags: vec!["red", "blue"],
                        raw: b"xy"
                    };
                    2
                ]
            );
        }
    }
}

#[test]
fn both_paths_agree_on_everything_written_here() {
    for case in cases() {
        for proto in 0..=5 {
            let bytes = (case.write)(proto).unwrap();
            // serde_json's Value holds no int beyond 64 bits: an error,
            // the same one both ways.
            let _ = both::<serde_json::Value>(&bytes);
            let value = both::<Value>(&bytes).unwrap();
            assert_eq!(
                value,
                reduce::serde::from_value::<Value>(&(case.value)().unwrap()).unwrap()
            );
        }
    }
    let v = everything();
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&v, proto).unwrap();
        assert_eq!(both::<Everything>(&bytes).unwrap(), v);
    }
    for opts in [
        serde_pickle::SerOptions::new(),
        serde_pickle::SerOptions::new().proto_v2(),
    ] {
        let bytes = serde_pickle::to_vec(&v, opts).unwrap();
        assert_eq!(both::<Everything>(&bytes).unwrap(), v);
    }
}

#[test]
fn both_paths_agree_on_broken_and_odd_input() {
    let exprs = [
        "[{'x': 1.0, 'y': 2.0}, {'x': 3.0, 'y': 'four'}]",
        "(lambda l: (l.append(l), l)[1])([])",
        "(lambda p: [p, p])({'x': 1.0, 'y': 2.0})",
        "[{1, 2}, frozenset([3]), bytearray(b'ab'), b'cd', b'', 2**100, -2**70, 'a\\ud800']",
        "[(1,), (2, 3), ((4,),), {'Unit': None}]",
    ];
    for expr in exprs {
        for bytes in cpython(expr) {
            let _ = both::<Vec<Point>>(&bytes);
            let _ = both::<serde_json::Value>(&bytes);
            let _ = both::<Vec<E>>(&bytes);
            let _ = both::<Value>(&bytes);
            let _ = both::<serde::de::IgnoredAny>(&bytes);
            // Every truncation, and every byte flipped: the same error (or
            // value) both ways, and no panic.
            for end in 0..bytes.len() {
                let _ = both::<serde_json::Value>(&bytes[..end]);
            }
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x41;
                let _ = both::<serde_json::Value>(&bad);
                let _ = both::<Vec<Point>>(&bad);
            }
        }
    }
}

#[test]
fn the_unpickler_s_limits_bound_what_is_read_by_value() {
    // A DAG of 2**20 paths: 21 lists, each holding the next one twice.
    let bytes = &cpython("__import__('functools').reduce(lambda a, _: [a, a], range(20), [])")[2];
    let mut small =
        reduce::Unpickler::from_slice(bytes).limits(reduce::Limits::default().max_tree_nodes(1000));
    let err = reduce::serde::from_unpickler::<serde_json::Value>(&mut small).unwrap_err();
    reduce_tests::assert_limit(&err, "max_tree_nodes");
    // With the default limits it reads, each use by value.
    let json: serde_json::Value = reduce::serde::from_slice(bytes).unwrap();
    assert_eq!(json.to_string().matches("[]").count(), 1 << 20);
    let mut shallow =
        reduce::Unpickler::from_slice(bytes).limits(reduce::Limits::default().max_typed_depth(5));
    let err = reduce::serde::from_unpickler::<serde_json::Value>(&mut shallow).unwrap_err();
    reduce_tests::assert_limit(&err, "max_typed_depth");
}

#[test]
fn tagged_enums_round_trip() {
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(tag = "type")]
    enum Internal {
        Circle { r: f64 },
        Square { side: u32, name: Option<String> },
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        Num(i64),
        Pair(String, bool),
        Nothing,
    }
    let internal = vec![
        Internal::Circle { r: 1.5 },
        Internal::Square {
            side: 2,
            name: Some("sq".into()),
        },
    ];
    let adjacent = vec![
        Adjacent::Num(-3),
        Adjacent::Pair("p".into(), true),
        Adjacent::Nothing,
    ];
    for proto in 0..=5 {
        let bytes = reduce::serde::to_vec_with_protocol(&internal, proto).unwrap();
        assert_eq!(both::<Vec<Internal>>(&bytes).unwrap(), internal);
        let value: Value = reduce::from_slice(&bytes).unwrap();
        assert_eq!(
            format!("{value:?}"),
            "[{'type': 'Circle', 'r': 1.5}, {'type': 'Square', 'side': 2, 'name': 'sq'}]"
        );
        let bytes = reduce::serde::to_vec_with_protocol(&adjacent, proto).unwrap();
        assert_eq!(both::<Vec<Adjacent>>(&bytes).unwrap(), adjacent);
    }
}

mod reduce_serde_field {
    use reduce::{Reduce, Reduction, Value};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Settings {
        retries: u8,
        hosts: Vec<String>,
    }

    #[derive(Reduce, Debug, PartialEq)]
    #[reduce(module = "app")]
    struct Job {
        name: String,
        #[reduce(serde)]
        settings: Settings,
        #[reduce(serde)]
        tags: Option<Vec<(String, i64)>>,
    }

    #[test]
    fn a_serde_field_round_trips_and_reads_python_data() {
        let job = Job {
            name: "sync".into(),
            settings: Settings {
                retries: 3,
                hosts: vec!["a".into(), "b".into()],
            },
            tags: Some(vec![("x".into(), 1)]),
        };
        for p in 0..=5 {
            let bytes = reduce::to_vec_with_protocol(&job, p).unwrap();
            assert_eq!(
                reduce::from_slice::<Job>(&bytes).unwrap(),
                job,
                "protocol {p}"
            );
        }
        // The same object as Python code builds it: app.Job(name, dict, list).
        let python = Value::Reduce(Box::new(Reduction::new(
            Value::global("app", "Job"),
            Value::Tuple(vec![
                Value::str("sync"),
                Value::Dict(vec![
                    (
                        Value::str("hosts"),
                        Value::List(vec![Value::str("a"), Value::str("b")]),
                    ),
                    (Value::str("retries"), Value::Int(3)),
                ]),
                Value::List(vec![Value::Tuple(vec![Value::str("x"), Value::Int(1)])]),
            ]),
        )));
        let bytes = reduce::to_vec(&python).unwrap();
        assert_eq!(reduce::from_slice::<Job>(&bytes).unwrap(), job);
    }

    #[test]
    fn a_serde_field_error_says_where() {
        let python = Value::Reduce(Box::new(Reduction::new(
            Value::global("app", "Job"),
            Value::Tuple(vec![
                Value::str("sync"),
                Value::Dict(vec![
                    (Value::str("hosts"), Value::List(vec![])),
                    (Value::str("retries"), Value::str("three")),
                ]),
                Value::None,
            ]),
        )));
        let bytes = reduce::to_vec(&python).unwrap();
        let err = reduce::from_slice::<Job>(&bytes).unwrap_err();
        // One path, joined as everywhere else.
        assert_eq!(err.path(), Some("settings.retries"), "{err}");
        assert!(
            err.to_string()
                .starts_with("settings.retries: expected int, found str"),
            "{err}"
        );
        assert!(
            matches!(err.kind(), reduce::ErrorKind::Type { .. }),
            "{err}"
        );
    }
}

#[test]
fn a_pickle_transcodes_to_cbor_and_back() {
    let expr = "{'name': 'ada', 'scores': [9.5, 8], 'raw': b'\\x00\\x01', \
                'nested': [None, True, 2**70, -3, 2**64-1, -2**63]}";
    for (proto, bytes) in cpython(expr).iter().enumerate() {
        let value: Value = reduce::from_slice(bytes).unwrap();
        let mut cbor = Vec::new();
        ciborium::into_writer(&value, &mut cbor).unwrap();
        // Read by CBOR itself: bytes stay a byte string (JSON cannot say so).
        let doc: ciborium::Value = ciborium::from_reader(&cbor[..]).unwrap();
        let map = doc.as_map().expect("a CBOR map");
        let raw = map
            .iter()
            .find(|(k, _)| k.as_text() == Some("raw"))
            .unwrap();
        assert_eq!(raw.1.as_bytes().map(Vec::as_slice), Some(&[0u8, 1][..]));
        // And back into a Value, then a pickle CPython's pickler would write.
        let back: Value = ciborium::from_reader(&cbor[..]).unwrap();
        assert_eq!(back, value, "protocol {proto}");
        assert_eq!(
            reduce::to_vec_with_protocol(&back, proto as u8).unwrap(),
            reduce::to_vec_with_protocol(&value, proto as u8).unwrap()
        );
    }
}

/// Recursion through a newtype struct and `Some` alone, with no sequence
/// or map between the levels.
#[derive(serde::Serialize)]
struct Chain(Option<Box<Chain>>);

#[derive(serde::Serialize)]
#[serde(transparent)]
struct Thin(Option<Box<Thin>>);

/// `n` levels, built and dropped without recursion.
fn chain<T>(n: usize, wrap: impl Fn(Option<Box<T>>) -> T) -> T {
    let mut c = wrap(None);
    for _ in 0..n {
        c = wrap(Some(Box::new(c)));
    }
    c
}

#[test]
fn deep_newtypes_and_options_are_an_error_when_written() {
    let unchain = |mut c: Chain| {
        while let Some(next) = c.0.take() {
            c = *next;
        }
    };
    let unthin = |mut c: Thin| {
        while let Some(next) = c.0.take() {
            c = *next;
        }
    };
    // A few levels are plain `None`, as serde-pickle writes them.
    let none = reduce::to_vec(&Value::None).unwrap();
    let short = chain(50, Chain);
    assert_eq!(reduce::serde::to_vec(&short).unwrap(), none);
    assert_eq!(reduce::serde::to_value(&short).unwrap(), Value::None);
    unchain(short);
    // 200000 levels: the depth limit, not a stack overflow.
    let deep = chain(200_000, Chain);
    let err = reduce::serde::to_vec(&deep).unwrap_err();
    assert!(err.to_string().contains("maximum recursion depth"), "{err}");
    let err = reduce::serde::to_value(&deep).unwrap_err();
    assert!(err.to_string().contains("maximum recursion depth"), "{err}");
    unchain(deep);
    let deep = chain(200_000, Thin);
    let err = reduce::serde::to_vec(&deep).unwrap_err();
    assert!(err.to_string().contains("maximum recursion depth"), "{err}");
    unthin(deep);
}

/// `n` lists, one inside the other, around `0`.
struct Lists(usize);

impl serde::Serialize for Lists {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if self.0 == 0 {
            return s.serialize_i64(0);
        }
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Lists(self.0 - 1))?;
        seq.end()
    }
}

/// The write limit is on containers and wrappers, as the typed writer's:
/// 1000 levels write (and read back as 1000 nested lists), 1001 do not; the number inside is not a level.
#[test]
fn the_serde_write_limit_is_exact() {
    let max = reduce::MAX_TYPED_DEPTH;
    let bytes = reduce::serde::to_vec(&Lists(max)).unwrap();
    let value: Value = reduce::from_slice(&bytes).unwrap();
    let mut at = &value;
    let mut levels = 0;
    while let Value::List(items) = at {
        assert_eq!(items.len(), 1);
        at = &items[0];
        levels += 1;
    }
    assert_eq!((levels, at), (max, &Value::Int(0)));
    // CPython's bytes, at a depth its own recursion limit allows.
    let expected = reduce_tests::cpython_dumps(
        "__import__('functools').reduce(lambda x, _: [x], range(50), 0)",
        5,
    );
    assert_eq!(
        reduce::serde::to_vec_with_protocol(&Lists(50), 5).unwrap(),
        expected
    );

    let err = reduce::serde::to_vec(&Lists(max + 1)).unwrap_err();
    assert!(
        err.to_string().contains("maximum recursion depth (1000)"),
        "{err}"
    );
    // A failed write leaves nothing behind: the next one starts afresh.
    assert!(reduce::serde::to_vec(&Lists(max)).is_ok());
}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Loop(Option<Box<Loop>>);

#[derive(serde::Deserialize, Debug)]
#[serde(transparent)]
#[allow(dead_code)]
struct ThinLoop(Option<Box<ThinLoop>>);

#[test]
fn a_type_that_recurses_on_one_value_is_an_error_when_read() {
    // `Loop` reads anything but None as Some(Loop) of the same value, so
    // without a guard `1` would recurse until the stack overflows.
    for bytes in [&b"\x80\x02K\x01."[..], b"\x80\x04\x8c\x01x\x94.", b"I5\n."] {
        for err in [
            reduce::serde::from_slice::<Loop>(bytes).unwrap_err(),
            reduce::serde::from_reader::<Loop, _>(bytes).unwrap_err(),
            reduce::serde::from_value::<Loop>(&reduce::from_slice::<Value>(bytes).unwrap())
                .unwrap_err(),
            reduce::serde::from_slice::<ThinLoop>(bytes).unwrap_err(),
        ] {
            reduce_tests::assert_limit(&err, "max_typed_depth");
        }
    }
    // None is a short loop.
    let bytes = b"\x80\x02N.";
    assert!(reduce::serde::from_slice::<Loop>(bytes)
        .unwrap()
        .0
        .is_none());
}

/// A struct of one field whose name is chosen at run time (leaked, so it
/// is a `&'static str` as serde's derive gives).
struct Named(&'static str, i64);

impl serde::Serialize for Named {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Named", 1)?;
        st.serialize_field(self.0, &self.1)?;
        st.end()
    }
}

fn leaked(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A field name is one interned object by its text, as CPython's
/// identifiers are: two names of one text at different addresses share one
/// memo entry. And more distinct names than the writer's lock-free table
/// holds (2048 slots, half used) are still each written once.
#[test]
fn field_names_are_interned_by_text_whatever_their_address() {
    let twins = vec![
        Named(leaked("key".into()), 1),
        Named(leaked("key".into()), 2),
        Named("key", 3),
    ];
    let names: Vec<&'static str> = (0..1500).map(|i| leaked(format!("f{i}"))).collect();
    let many: Vec<Named> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Named(n, i as i64))
        .chain(names.iter().enumerate().map(|(i, n)| Named(n, -(i as i64))))
        .collect();
    let answers = cpython_dumps(&[
        "[{'key': 1}, {'key': 2}, {'key': 3}]",
        "(lambda ks: [{k: i} for i, k in enumerate(ks)] + [{k: -i} for i, k in enumerate(ks)])\
         (['f%d' % i for i in range(1500)])",
    ]);
    for proto in 0..=5u8 {
        for (got, want) in [
            reduce::serde::to_vec_with_protocol(&twins, proto).unwrap(),
            reduce::serde::to_vec_with_protocol(&many, proto).unwrap(),
        ]
        .iter()
        .zip(&answers)
        {
            let want = &want[proto as usize];
            assert!(
                got == want,
                "protocol {proto}: {}",
                first_difference(want, got)
            );
        }
    }
}

/// A list and a dict that announce `said` items and give `gave`; or an
/// iterator for `collect_seq` whose exact size hint says `said`.
struct Liar {
    said: usize,
    gave: usize,
    map: bool,
    iter: bool,
}

/// An iterator that gives `left` items and says it has `said`.
struct Lying {
    said: usize,
    left: usize,
}

impl Iterator for Lying {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        self.left = self.left.checked_sub(1)?;
        self.said = self.said.saturating_sub(1);
        Some(self.left)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.said, Some(self.said))
    }
}

impl serde::Serialize for Liar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        if self.iter {
            // Counting down: the items in order are gave-1 ... 0.
            return s.collect_seq(Lying {
                said: self.said,
                left: self.gave,
            });
        }
        if self.map {
            let mut m = s.serialize_map(Some(self.said))?;
            for i in 0..self.gave {
                m.serialize_entry(&i, &(i * 10))?;
            }
            m.end()
        } else {
            let mut q = s.serialize_seq(Some(self.said))?;
            for i in 0..self.gave {
                q.serialize_element(&i)?;
            }
            q.end()
        }
    }
}

/// A serializer that gives more or fewer items than it announced still
/// writes a valid pickle of what it gave, at every protocol and nested at
/// every depth (where the writer checks the stack, it counts items).
#[test]
fn a_miscounted_list_or_dict_is_still_a_valid_pickle() {
    for (map, iter) in [(false, false), (true, false), (false, true)] {
        for (said, gave) in [
            (3, 5),
            (5, 2),
            (2, 0),
            (0, 3),
            (1, 4),
            (999, 1001),
            (4, 1500),
            // From 1000 announced, `collect_seq` writes chunk by chunk.
            (1000, 0),
            (1000, 1),
            (1000, 999),
            (1200, 2500),
            (2000, 1999),
            (2000, 1000),
        ] {
            let want: Value = if iter {
                Value::List((0..gave as i64).rev().map(Value::Int).collect())
            } else if map {
                Value::Dict(
                    (0..gave as i64)
                        .map(|i| (Value::Int(i), Value::Int(i * 10)))
                        .collect(),
                )
            } else {
                Value::List((0..gave as i64).map(Value::Int).collect())
            };
            for depth in 0..10 {
                let liar = Liar {
                    said,
                    gave,
                    map,
                    iter,
                };
                for proto in 0..=5u8 {
                    let bytes = reduce::serde::to_vec_with_protocol(&Nest(depth, &liar), proto)
                        .unwrap_or_else(|e| panic!("{said}/{gave} map {map} iter {iter}: {e}"));
                    let mut got: Value = reduce::from_slice(&bytes).unwrap_or_else(|e| {
                        panic!("{said}/{gave} map {map} iter {iter} p{proto}: {e}")
                    });
                    for _ in 0..depth {
                        got = match &mut got {
                            Value::List(items) if items.len() == 1 => items.remove(0),
                            other => panic!("not one list: {other:?}"),
                        };
                    }
                    assert_eq!(
                        got, want,
                        "{said}/{gave} map {map} iter {iter} depth {depth} p{proto}"
                    );
                }
            }
        }
    }
}

/// `value` inside `n` one-item lists.
struct Nest<'a, T>(usize, &'a T);

impl<T: serde::Serialize> serde::Serialize for Nest<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if self.0 == 0 {
            return self.1.serialize(s);
        }
        let mut q = s.serialize_seq(Some(1))?;
        q.serialize_element(&Nest(self.0 - 1, self.1))?;
        q.end()
    }
}

/// A map or a struct cannot be a dict key (Python cannot hash a dict), and
/// a sequence key reads back from the tuple it was written as.
#[test]
fn dict_keys_are_written_hashable() {
    let m = BTreeMap::from([(vec![1u8, 2], 1u8)]);
    let bytes = reduce::serde::to_vec(&m).unwrap();
    assert_eq!(
        reduce::serde::from_slice::<BTreeMap<Vec<u8>, u8>>(&bytes).unwrap(),
        m
    );
    let bad = vec![(BTreeMap::from([(1u8, 2u8)]), 3u8)]
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    let err = reduce::serde::to_vec(&bad).unwrap_err();
    assert!(err.to_string().contains("cannot be a dict key"), "{err}");
}

/// serde has one kind of sequence: a tuple or frozenset dict key read into
/// a `Value` comes back as a tuple (hashable, where a list is not), so that
/// the value writes back as a pickle CPython loads.
#[test]
fn tuple_and_frozenset_keys_read_into_a_value_stay_hashable() {
    let bytes = reduce_tests::cpython_dumps("{(1, (2, 3)): 'k', frozenset([3]): 'f'}", 4);
    for v in [
        reduce::serde::from_slice::<reduce::Value>(&bytes).unwrap(),
        reduce::serde::from_graph::<reduce::Value>(&reduce::from_slice(&bytes).unwrap()).unwrap(),
    ] {
        let reduce::Value::Dict(pairs) = &v else {
            panic!("a dict: {v:?}")
        };
        assert!(
            matches!(&pairs[0].0, reduce::Value::Tuple(t) if matches!(&t[1], reduce::Value::Tuple(_))),
            "{v:?}"
        );
        assert!(matches!(&pairs[1].0, reduce::Value::Tuple(_)), "{v:?}");
        let again = reduce::to_vec(&v).unwrap();
        let back = reduce_tests::python_with_input(
            "import pickle, sys; d = pickle.loads(sys.stdin.buffer.read()); \
             sys.stdout.write(repr(sorted(map(repr, d))))",
            &again,
        );
        assert_eq!(String::from_utf8(back).unwrap(), "['(1, (2, 3))', '(3,)']");
    }
}

/// An int beyond `i64` and `u64` where a float is expected reads as
/// Python's `float(i)`, as the typed reader does; past the largest float,
/// an error that says so.
#[test]
fn big_ints_read_as_floats() {
    let bytes = reduce_tests::cpython_dumps("[2**64, -2**63 - 1, 2**127, 3]", 4);
    let want = vec![
        18446744073709551616.0,
        -9223372036854775809.0,
        2f64.powi(127),
        3.0,
    ];
    assert_eq!(reduce::serde::from_slice::<Vec<f64>>(&bytes).unwrap(), want);
    let graph: reduce::Graph = reduce::from_slice(&bytes).unwrap();
    assert_eq!(reduce::serde::from_graph::<Vec<f64>>(&graph).unwrap(), want);
    assert_eq!(reduce::from_slice::<Vec<f64>>(&bytes).unwrap(), want);
    let f32s: Vec<f32> = reduce::serde::from_slice(&bytes).unwrap();
    assert_eq!(f32s[0], 18446744073709551616.0f32);
    let huge = reduce_tests::cpython_dumps("[2**1024]", 4);
    let err = reduce::serde::from_slice::<Vec<f64>>(&huge).unwrap_err();
    assert!(
        err.to_string().contains("too large to convert to float"),
        "{err}"
    );
}
