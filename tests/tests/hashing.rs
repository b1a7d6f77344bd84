//! Dict keys and set items Python cannot hash: CPython refuses to load a
//! pickle that makes one (`TypeError: unhashable type`), and so does a load
//! of Python data (a `Value`, a `Graph`) on every path; inert mode keeps
//! the pickle as it is, and a Rust type reads the keys its type says.

use std::collections::BTreeMap;

use reduce::{Graph, Unpickler, Value};
use reduce_tests::python_with_input;

/// Hand-made pickles whose load hashes a list, dict, set or bytearray, and
/// the words the error must use.
fn cases() -> Vec<(&'static str, &'static [u8], &'static str)> {
    vec![
        // {[]: 1} by SETITEM, by SETITEMS and by DICT.
        ("setitem", b"\x80\x02}]K\x01s.", "'list' as a dict key"),
        (
            "setitems",
            b"\x80\x02}(K\x02K\x03}K\x01u.",
            "'dict' as a dict key",
        ),
        ("dict", b"\x80\x02(]K\x01d.", "'list' as a dict key"),
        // A list two tuples deep in the key: {(([],),): 1}.
        (
            "tuple key",
            b"\x80\x02}]\x85\x85K\x01s.",
            "'list' as a dict key",
        ),
        // A memoized tuple holding a bytearray, as a key twice over.
        (
            "shared tuple key",
            b"\x80\x05}\x96\x00\x00\x00\x00\x00\x00\x00\x00\x85\x940h\x00h\x00\x86K\x01s.",
            "'bytearray' as a dict key",
        ),
        // ([[]], {[]: 1}), the key fetched from the memo after it left
        // its slot: the first reading of a Value loses its bet that
        // nothing is fetched, and the stream reads the tree again.
        (
            "shared list key",
            b"\x80\x02(]\x94]\x94a}\x94h\x01K\x01st.",
            "'list' as a dict key",
        ),
        // {[]} and frozenset({{}}) from protocol 4's opcodes.
        ("additems", b"\x80\x04\x8f(]\x90.", "'list' as a set item"),
        (
            "frozenset",
            b"\x80\x04(}\x91.",
            "'dict' as a frozenset item",
        ),
        // set([[]]) as protocols 2 and 3 write sets.
        (
            "set call",
            b"\x80\x02c__builtin__\nset\n]]a\x85R.",
            "'list' as a set item",
        ),
        // A dict subclass's items (OrderedDict): hashed by __setitem__.
        (
            "ordered dict",
            b"\x80\x02ccollections\nOrderedDict\n)R]K\x01s.",
            "'list' as a dict key",
        ),
    ]
}

#[test]
fn cpython_refuses_every_case() {
    for (name, bytes, _) in cases() {
        let out = python_with_input(CPYTHON_SAYS, bytes);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("unhashable type"),
            "{name}: CPython said {out:?}"
        );
    }
}

#[test]
fn a_value_or_graph_load_refuses_on_every_path() {
    let stdlib = || {
        let mut r = reduce::Registry::new();
        r.add_preset(&reduce::preset::STDLIB).unwrap();
        r
    };
    for (name, bytes, words) in cases() {
        for streaming in [true, false] {
            let err = Unpickler::from_slice(bytes)
                .registry(stdlib())
                .streaming(streaming)
                .load::<Value>()
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("unhashable type {words}")),
                "{name}: {msg}"
            );
            assert!(err.offset().is_some(), "{name}: no offset in {msg}");
        }
        let err = Unpickler::from_slice(bytes)
            .registry(stdlib())
            .load::<Graph>()
            .unwrap_err();
        assert!(err.to_string().contains("unhashable type"), "{name}: {err}");
        let err = Unpickler::from_slice(bytes)
            .registry(stdlib())
            .load_graph()
            .unwrap_err();
        assert!(err.to_string().contains("unhashable type"), "{name}: {err}");
    }
}

#[test]
fn hashable_keys_still_load() {
    // Tuple, frozenset, str, int, None and float keys, nested tuples of
    // them, and a shared tuple key: all hashable.
    let bytes = reduce_tests::cpython_dumps(
        "(lambda t: {t: 1, (t, t): 2, frozenset({1, 2}): 3, 'a': 4, 5: 5, None: 6, 1.5: 7, \
         ((((),),),): 8})((1, 'x', (2.5, None)))",
        2,
    );
    let v: Value = reduce::from_slice(&bytes).unwrap();
    match &v {
        Value::Dict(pairs) => assert_eq!(pairs.len(), 8),
        other => panic!("expected a dict, found {other:?}"),
    }
    let g: Graph = reduce::from_slice(&bytes).unwrap();
    assert_eq!(reduce::to_vec_with_protocol(&g, 2).unwrap(), bytes);
}

const CPYTHON_SAYS: &str = "import pickle, sys\n\
    try:\n    pickle.loads(sys.stdin.buffer.read())\n\
    except TypeError as e:\n    print(e)\n";

#[test]
fn inert_mode_keeps_the_pickle_as_it_is() {
    // Read and written back, each pickle still makes CPython hash what it
    // cannot.
    for (name, bytes, _) in cases() {
        let g = Unpickler::from_slice(bytes).inert(true).load_graph();
        let g = g.unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = reduce::to_vec_with_protocol(&g, bytes[1]).unwrap();
        let out = python_with_input(CPYTHON_SAYS, &back);
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("unhashable type"),
            "{name}: CPython said {out:?}"
        );
    }
}

#[test]
fn a_rust_type_reads_the_keys_its_type_says() {
    let bytes = b"\x80\x02}(K\x01lK\x02s.";
    let want = BTreeMap::from([(vec![1i64], 2i64)]);
    for streaming in [true, false] {
        let got: BTreeMap<Vec<i64>, i64> = Unpickler::from_slice(bytes)
            .streaming(streaming)
            .load()
            .unwrap();
        assert_eq!(got, want);
    }
    let got: BTreeMap<Vec<i64>, i64> = reduce::serde::from_slice(bytes).unwrap();
    assert_eq!(got, want);
}
