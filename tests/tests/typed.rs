//! Standard library types write and read as their Python twins: CPython
//! reads what Rust wrote as the equal object, Rust reads CPython's pickles
//! back into the same values, `Rc`/`Arc` identity survives, hash containers
//! are deterministic, and a mismatch names its path inside the value.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use reduce::{ByteArray, Bytes, Construct, ErrorKind, Reduce};
use reduce_tests::{python_check, Expect};

fn roundtrip<T: Reduce + Construct + PartialEq + std::fmt::Debug>(value: &T) {
    for proto in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(value, proto).unwrap();
        let back: T =
            reduce::from_slice(&bytes).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert_eq!(&back, value, "protocol {proto}");
    }
}

#[test]
fn std_types_round_trip_at_every_protocol() {
    roundtrip(&true);
    roundtrip(&(i8::MIN, i16::MIN, i32::MIN, i64::MIN, i128::MIN));
    roundtrip(&(
        u8::MAX,
        u16::MAX,
        u32::MAX,
        u64::MAX,
        u128::MAX,
        usize::MAX,
        isize::MIN,
    ));
    roundtrip(&(1.5f64, -0.0f64, f64::INFINITY, 0.25f32));
    roundtrip(&('é', String::from("héllo 😀"), Box::<str>::from("boxed")));
    roundtrip(&vec![vec![1u8, 2], vec![], vec![3]]);
    roundtrip(&VecDeque::from(vec![1i64, -1]));
    roundtrip(&[1u16, 2, 3]);
    roundtrip(&(
        1u8,
        2u8,
        3u8,
        4u8,
        5u8,
        6u8,
        7u8,
        8u8,
        9u8,
        10u8,
        11u8,
        "twelve".to_string(),
    ));
    roundtrip(&(Some(3u8), None::<u8>, ()));
    roundtrip(&HashMap::from([
        ("a".to_string(), 1i32),
        ("b".to_string(), 2),
    ]));
    roundtrip(&BTreeMap::from([(1u8, vec![true]), (2, vec![])]));
    roundtrip(&HashSet::from([1u32, 2, 3]));
    roundtrip(&BTreeSet::from(["x".to_string()]));
    roundtrip(&Box::new(7u8));
    roundtrip(&(
        Bytes(b"\x00\xffbytes".to_vec()),
        ByteArray(b"array".to_vec()),
    ));
    roundtrip(&(0..2500u32).collect::<Vec<_>>());
}

#[test]
fn cpython_reads_typed_values_as_their_twins() {
    let mut cases = Vec::new();
    for proto in 0..=5 {
        let mut case =
            |bytes: Vec<u8>, expr: &str| cases.push((bytes, Expect::Expr(expr.to_string())));
        let w = |v: &dyn Fn(u8) -> reduce::Result<Vec<u8>>| v(proto).unwrap();
        case(
            w(&|p| reduce::to_vec_with_protocol(&(1u8, -2i64, u128::MAX), p)),
            "(1, -2, 2**128 - 1)",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&vec!["a".to_string(), "é".into()], p)),
            "['a', 'é']",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&BTreeMap::from([(1u8, 0.5f64)]), p)),
            "{1: 0.5}",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&BTreeSet::from([3u8, 1]), p)),
            "{1, 3}",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&(Some(true), None::<u8>, ()), p)),
            "(True, None, ())",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&Bytes(vec![0, 255]), p)),
            "b'\\x00\\xff'",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&ByteArray(vec![1]), p)),
            "bytearray(b'\\x01')",
        );
        case(
            w(&|p| reduce::to_vec_with_protocol(&vec![1u8, 2], p)),
            "[1, 2]",
        );
        case(w(&|p| reduce::to_vec_with_protocol(&'x', p)), "'x'");
        // One Rc written twice is one object: CPython sees `t[0] is t[1]`.
        let shared = Rc::new(vec![1u8]);
        case(
            w(&|p| reduce::to_vec_with_protocol(&(shared.clone(), shared.clone(), vec![1u8]), p)),
            "(lambda l: (l, l, [1]))([1])",
        );
    }
    python_check(&cases);
}

#[test]
fn typed_values_read_cpython_pickles() {
    let script = r#"
import pickle, sys
out = sys.stdout.buffer
for p in range(6):
    for v in [(1, 2.5, 'x', b'y', None), {'k': [1, 2, 3]}, {1, 2}, frozenset({3}), [[1], [2, 2]]]:
        data = pickle.dumps(v, protocol=p)
        out.write(len(data).to_bytes(4, 'little') + data)
"#;
    let mut pickles = reduce_tests::python_pickles(script).into_iter();
    let mut next = || pickles.next().expect("a pickle for each value");
    for proto in 0..6 {
        let t: (u8, f64, String, Bytes, Option<u8>) = reduce::from_slice(&next()).unwrap();
        assert_eq!(
            t,
            (1, 2.5, "x".into(), Bytes(b"y".to_vec()), None),
            "protocol {proto}"
        );
        let m: HashMap<String, Vec<i32>> = reduce::from_slice(&next()).unwrap();
        assert_eq!(m, HashMap::from([("k".into(), vec![1, 2, 3])]));
        let s: BTreeSet<u8> = reduce::from_slice(&next()).unwrap();
        assert_eq!(s, BTreeSet::from([1, 2]));
        let f: HashSet<u8> = reduce::from_slice(&next()).unwrap();
        assert_eq!(f, HashSet::from([3]));
        let v: Vec<Vec<u8>> = reduce::from_slice(&next()).unwrap();
        assert_eq!(v, vec![vec![1], vec![2, 2]]);
    }
    assert!(pickles.next().is_none());
}

/// Every int encoding at its edges (`BININT1`, `BININT2`, `BININT`,
/// `LONG1` of one to eight bytes, both signs) and floats, read typed from
/// CPython's bytes: alone, last in the pickle, and in a list, at every
/// protocol. The stream reads the binary forms in one step; this checks
/// every width and sign of it against CPython.
#[test]
fn ints_and_floats_of_every_width_read_as_cpython_wrote_them() {
    let mut ints: Vec<i64> = vec![0, 1, -1, 255, 256, 65535, 65536, i64::MAX, i64::MIN];
    for bits in [7, 8, 15, 16, 23, 24, 31, 32, 39, 40, 47, 48, 55, 56, 62, 63] {
        let b = 1i64 << (bits - 1);
        ints.extend([b - 1, b, -b, -b - 1]);
        if bits < 63 {
            ints.extend([(1i64 << bits) - 1, 1i64 << bits, -(1i64 << bits)]);
        }
    }
    ints.sort_unstable();
    ints.dedup();
    let floats = [
        0.0,
        -0.0,
        1.5,
        -2.25e300,
        f64::MIN_POSITIVE,
        f64::MAX,
        1.0 / 3.0,
    ];
    let list = |v: &[String]| format!("[{}]", v.join(", "));
    let int_texts: Vec<String> = ints.iter().map(i64::to_string).collect();
    let float_texts: Vec<String> = floats.iter().map(|f| format!("{f:e}")).collect();
    // Each int alone, then as the first item of a pair, then the two
    // lists: one CPython run writes them all, length-prefixed.
    let mut exprs: Vec<String> = int_texts.clone();
    exprs.extend(int_texts.iter().map(|i| format!("({i}, 0.5)")));
    exprs.push(list(&int_texts));
    exprs.push(list(&float_texts));
    let script = format!(
        "import pickle, sys\nfor p in range(6):\n    for v in [{}]:\n        \
         d = pickle.dumps(v, protocol=p)\n        \
         sys.stdout.buffer.write(len(d).to_bytes(4, 'little') + d)",
        exprs.join(", ")
    );
    let mut pickles = reduce_tests::python_pickles(&script).into_iter();
    let mut next = || pickles.next().expect("a pickle for each value");
    for proto in 0..=5 {
        for &i in &ints {
            let alone: i64 = reduce::from_slice(&next()).unwrap();
            assert_eq!(alone, i, "protocol {proto}");
        }
        for &i in &ints {
            let pair: (i64, f64) = reduce::from_slice(&next()).unwrap();
            assert_eq!(pair, (i, 0.5), "protocol {proto}");
        }
        let got: Vec<i64> = reduce::from_slice(&next()).unwrap();
        assert_eq!(got, ints, "protocol {proto}");
        let got: Vec<f64> = reduce::from_slice(&next()).unwrap();
        assert_eq!(
            got.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            floats.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            "protocol {proto}"
        );
    }
    assert!(pickles.next().is_none());
}

#[test]
fn rc_and_arc_identity_is_kept() {
    let rc = Rc::new("shared".to_string());
    let bytes =
        reduce::to_vec(&vec![rc.clone(), rc.clone(), Rc::new("other".to_string())]).unwrap();
    let back: Vec<Rc<String>> = reduce::from_slice(&bytes).unwrap();
    assert!(
        Rc::ptr_eq(&back[0], &back[1]),
        "clones of one Rc load as one Rc"
    );
    assert!(!Rc::ptr_eq(&back[0], &back[2]));
    assert_eq!(*back[2], "other");

    let arc = Arc::new(vec![1u8, 2]);
    let bytes = reduce::to_vec(&(arc.clone(), arc)).unwrap();
    let (a, b): (Arc<Vec<u8>>, Arc<Vec<u8>>) = reduce::from_slice(&bytes).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Without identity the same value is written twice.
    let twice = reduce::to_vec(&(vec![1u8, 2], vec![1u8, 2])).unwrap();
    let once = reduce::to_vec(&(Arc::new(vec![1u8, 2]), Arc::new(vec![1u8, 2]))).unwrap();
    assert_eq!(twice.len(), once.len());
    let (x, y): (Arc<Vec<u8>>, Arc<Vec<u8>>) = reduce::from_slice(&once).unwrap();
    assert!(!Arc::ptr_eq(&x, &y), "two distinct Arcs stay distinct");
}

/// A shared tuple is written once and fetched after, as CPython writes
/// `t = (1, 'x'); [t, t]`; a shared float, which CPython never memoizes,
/// is written each time, and its identity attaches to nothing that follows
/// (a plain list, a shared list, a shared `None`).
#[test]
fn shared_tuples_and_shared_atoms_write_cpython_s_bytes() {
    let t = Rc::new((1i64, "x".to_string()));
    let x = Rc::new(2.5f64);
    let l = Rc::new(vec![7i64]);
    let n: Rc<Option<i64>> = Rc::new(None);
    let value = (
        vec![t.clone(), t.clone()],
        x.clone(),
        vec![8i64],
        x,
        l.clone(),
        l,
        n.clone(),
        n,
    );
    for proto in 0..=5u8 {
        let want = reduce_tests::cpython_dumps(
            "(lambda t, l: ([t, t], 2.5, [8], 2.5, l, l, None, None))((1, 'x'), [7])",
            proto,
        );
        let got = reduce::to_vec_with_protocol(&value, proto).unwrap();
        assert_eq!(got, want, "protocol {proto}");
    }
    let bytes = reduce::to_vec(&value).unwrap();
    #[allow(clippy::type_complexity)]
    let back: (
        Vec<Rc<(i64, String)>>,
        f64,
        Vec<i64>,
        f64,
        Rc<Vec<i64>>,
        Rc<Vec<i64>>,
        Option<i64>,
        Option<i64>,
    ) = reduce::from_slice(&bytes).unwrap();
    assert!(Rc::ptr_eq(&back.0[0], &back.0[1]));
    assert!(Rc::ptr_eq(&back.4, &back.5));
    assert_eq!(
        (back.1, &back.2, back.3, back.6),
        (2.5, &vec![8], 2.5, None)
    );
}

#[test]
fn hash_containers_write_the_same_bytes_every_time() {
    let mut first = None;
    for _ in 0..20 {
        // A new RandomState each time: iteration order changes, bytes must not.
        let map: HashMap<String, u32> = (0..50).map(|i| (format!("key{i}"), i)).collect();
        let set: HashSet<i64> = (0..50).map(|i| i * 7919 % 1000).collect();
        let bytes = reduce::to_vec(&(map, set)).unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert_eq!(f, &bytes),
        }
    }
}

#[test]
fn a_mismatch_names_its_path() {
    // [{"points": [{"x": 1.0}]}] with a str where a float should be, in item 3.
    let mut items = Vec::new();
    for i in 0..4 {
        let x = if i == 3 {
            reduce::Value::str("oops")
        } else {
            reduce::Value::Float(1.0)
        };
        items.push(reduce::Value::Dict(vec![(
            "points".into(),
            reduce::Value::List(vec![reduce::Value::Dict(vec![("x".into(), x)])]),
        )]));
    }
    let bytes = reduce::to_vec(&reduce::Value::List(items)).unwrap();
    let err =
        reduce::from_slice::<Vec<HashMap<String, Vec<HashMap<String, f64>>>>>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[3]['points'][0]['x']: expected float, found str"
    );
    assert!(matches!(err.kind(), ErrorKind::Type { found: "str", .. }));
    // CPython writes the second `'x'` key as a memo reference to the first
    // (one object): the path names the key all the same.
    for proto in 0..=5 {
        let bytes = reduce_tests::cpython_dumps("[{'x': 1.0}, {'x': 'oops'}]", proto);
        let err = reduce::from_slice::<Vec<HashMap<String, f64>>>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[1]['x']: expected float, found str",
            "protocol {proto}"
        );
    }
    assert_eq!(err.path(), Some("[3]['points'][0]['x']"));

    let err = reduce::from_slice::<(u8, u8)>(&reduce::to_vec(&(1u8, 300u16)).unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "[1]: int 300 is out of range for u8");
    let err = reduce::from_slice::<(u8, u8)>(&reduce::to_vec(&(1u8,)).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a tuple of 2 items, found 1"),
        "{err}"
    );
}

#[test]
fn deep_typed_values_are_refused_not_overflowed() {
    // A recursive type nested deeper than CPython's recursion limit.
    #[derive(Debug)]
    struct Chain(Option<Box<Chain>>);
    impl Reduce for Chain {
        fn reduce(&self, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
            match &self.0 {
                None => s.none(),
                Some(next) => s.tuple(1, |s| s.save(&**next)),
            }
        }
    }
    let mut chain = Chain(None);
    for _ in 0..5000 {
        chain = Chain(Some(Box::new(chain)));
    }
    let err = reduce::to_vec(&chain).unwrap_err();
    assert!(err.to_string().contains("maximum recursion depth"), "{err}");
    // Drop without recursion.
    let mut next = chain.0.take();
    while let Some(mut c) = next {
        next = c.0.take();
    }
}

/// An IndexMap is a dict in insertion order both ways: the bytes are
/// CPython's for the same dict, and a dict CPython wrote reads back with
/// its keys in CPython's order.
#[test]
fn an_indexmap_is_a_dict_in_insertion_order() {
    use indexmap::{IndexMap, IndexSet};

    let map: IndexMap<String, i64> = [("zebra", 1), ("apple", 2), ("mango", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let python = reduce_tests::python3()
        .args([
            "-c",
            "import pickle,sys; d = {'zebra': 1, 'apple': 2, 'mango': 3}\n\
             sys.stdout.buffer.write(pickle.dumps(d, protocol=5))",
        ])
        .output()
        .expect("python3");
    assert!(python.status.success());
    let cpython = python.stdout;
    assert_eq!(reduce::to_vec(&map).unwrap(), cpython, "CPython's bytes");
    let back: IndexMap<String, i64> = reduce::from_slice(&cpython).unwrap();
    let keys: Vec<&str> = back.keys().map(String::as_str).collect();
    assert_eq!(keys, ["zebra", "apple", "mango"]);
    assert_eq!(back, map);

    let set: IndexSet<i64> = [30, 10, 20].into_iter().collect();
    let bytes = reduce::to_vec(&set).unwrap();
    let back: IndexSet<i64> = reduce::from_slice(&bytes).unwrap();
    assert_eq!(back.iter().copied().collect::<Vec<_>>(), [30, 10, 20]);
    python_check(&[(bytes, Expect::Expr("{10, 20, 30}".into()))]);
}

/// A dict key or a set item must be hashable in Python: a `Vec` there is
/// written as a tuple and a set as a frozenset, all the way down, while the
/// arguments of an object made by a call keep their lists. Each reads back
/// into the Rust type it came from.
#[test]
fn keys_and_set_items_are_written_hashable() {
    #[derive(Reduce, PartialEq, Eq, PartialOrd, Ord, Debug)]
    #[reduce(module = "keys", name = "Tag")]
    struct Tag(Vec<i64>);

    let vec_keys: HashMap<Vec<u8>, i64> = HashMap::from([(vec![1, 2], 1), (vec![], 2)]);
    let set_of_sets: BTreeSet<BTreeSet<i64>> = BTreeSet::from([BTreeSet::from([1, 2])]);
    let nested: BTreeMap<(Vec<Vec<i64>>, String), Vec<i64>> =
        BTreeMap::from([((vec![vec![1], vec![]], "k".to_owned()), vec![3, 4])]);
    let sets_in_key: BTreeMap<Vec<BTreeSet<u8>>, u8> =
        BTreeMap::from([(vec![BTreeSet::from([7])], 1)]);
    let mut cases = Vec::new();
    for proto in 0..=5 {
        cases.push((
            reduce::to_vec_with_protocol(&vec_keys, proto).unwrap(),
            Expect::Expr("{(): 2, (1, 2): 1}".into()),
        ));
        cases.push((
            reduce::to_vec_with_protocol(&set_of_sets, proto).unwrap(),
            Expect::Expr("{frozenset({1, 2})}".into()),
        ));
        cases.push((
            reduce::to_vec_with_protocol(&nested, proto).unwrap(),
            Expect::Expr("{(((1,), ()), 'k'): [3, 4]}".into()),
        ));
        cases.push((
            reduce::to_vec_with_protocol(&sets_in_key, proto).unwrap(),
            Expect::Expr("{(frozenset({7}),): 1}".into()),
        ));
        roundtrip_at(&vec_keys, proto);
        roundtrip_at(&set_of_sets, proto);
        roundtrip_at(&nested, proto);
        roundtrip_at(&sets_in_key, proto);
    }
    python_check(&cases);

    // Values keep their lists, and so do the arguments of a call in a key.
    let bytes = reduce::to_vec(&BTreeMap::from([(Tag(vec![1]), vec![2])])).unwrap();
    let graph: reduce::Graph = reduce::Unpickler::from_slice(&bytes)
        .inert(true)
        .load()
        .unwrap();
    assert_eq!(
        format!("{:?}", graph.root()),
        "{<reduce keys.Tag, ([1],)>: [2]}"
    );

    // A dict cannot be hashed at all.
    let err = reduce::to_vec(&BTreeSet::from([BTreeMap::from([(1, 2)])])).unwrap_err();
    assert!(
        err.to_string()
            .contains("a dict cannot be a dict key or a set item"),
        "{err}"
    );
}

fn roundtrip_at<T: Reduce + Construct + PartialEq + std::fmt::Debug>(value: &T, proto: u8) {
    let bytes = reduce::to_vec_with_protocol(value, proto).unwrap();
    let back: T = reduce::from_slice(&bytes).unwrap();
    assert_eq!(&back, value, "at protocol {proto}");
}

/// An int reads as a float as Python's `float(i)` makes it, beyond `i64`
/// too: the nearest float, halfway cases to even; beyond `f64::MAX` an
/// error, as CPython's `OverflowError`.
#[test]
fn big_ints_read_as_floats_as_python_rounds_them() {
    let exprs = [
        "2**63",
        "2**64 + 1",
        "-2**70",
        "2**64 + 2**11",
        "2**64 + 2**11 + 1",
        "2**65 + 3 * 2**12",
        "3**200",
        "-(7**300)",
        "2**1024 - 2**970",
        "2**1024 - 2**971",
        "2**1024",
        "-2**5000",
    ];
    let script = format!(
        "import pickle, sys\n\
         for e in {exprs:?}:\n\
         \x20   x = eval(e)\n\
         \x20   try:\n\
         \x20       f = repr(float(x))\n\
         \x20   except OverflowError:\n\
         \x20       f = 'overflow'\n\
         \x20   print(pickle.dumps(x, 2).hex(), f)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.lines().count(), exprs.len());
    for (line, expr) in out.lines().zip(exprs) {
        let (hex, want) = line.split_once(' ').unwrap();
        let bytes = reduce_tests::unhex(hex);
        match reduce::from_slice::<f64>(&bytes) {
            Ok(x) => assert_eq!(
                format!("{x:?}").replace("e", "e+").replace("e+-", "e-"),
                want,
                "{expr}"
            ),
            Err(e) => {
                assert_eq!(want, "overflow", "{expr}: {e}");
                assert!(
                    e.to_string().contains("too large to convert to float"),
                    "{e}"
                );
            }
        }
    }
}
