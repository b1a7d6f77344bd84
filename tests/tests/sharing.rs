//! Sharing and cycles are kept, DAGs stay small, and values of any depth
//! drop, print, clone, compare and write without recursion.

use reduce::{Graph, Limits, Unpickler, Value};
use reduce_tests::{assert_limit, python_check, Expect};

fn cpython(expr: &str, proto: u8) -> Vec<u8> {
    let script = format!(
        "import sys, pickle\n{expr}\nsys.stdout.buffer.write(pickle.dumps(v, protocol={proto}))"
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

#[test]
fn self_containing_lists_and_dicts_load_as_cycles() {
    for proto in 0..=5 {
        let bytes = cpython("v = []; v.append(v)", proto);
        let g: Graph = reduce::from_slice(&bytes).unwrap();
        let Value::Ref(id) = g.root() else {
            panic!("root should be shared: {g:?}")
        };
        assert!(
            matches!(g.get(*id), Value::List(items) if items.len() == 1 && items[0] == Value::Ref(*id))
        );
        assert_eq!(
            reduce::to_vec_with_protocol(&g, proto).unwrap(),
            bytes,
            "protocol {proto}"
        );

        let bytes = cpython("v = {}; v['me'] = v", proto);
        let g: Graph = reduce::from_slice(&bytes).unwrap();
        let Value::Ref(id) = g.root() else { panic!() };
        assert!(matches!(g.get(*id), Value::Dict(d) if d[0].1 == Value::Ref(*id)));
        assert_eq!(reduce::to_vec_with_protocol(&g, proto).unwrap(), bytes);
        // A cycle cannot be a tree.
        assert!(g.into_tree(1000).is_err());
    }
}

/// A shared list of several `APPENDS` batches: the later batches join a
/// list the reader keeps in its object table, in one move of the whole
/// batch. Its items, their order and the sharing come out as CPython wrote
/// them, and a list that fetches itself between its batches is a cycle.
#[test]
fn a_shared_list_of_many_batches_keeps_its_items_in_order() {
    for proto in 1..=5 {
        let bytes = cpython("l = list(range(2500)); v = (l, l)", proto);
        let g: Graph = reduce::from_slice(&bytes).unwrap();
        let Value::Tuple(pair) = g.root() else {
            panic!("expected a tuple: {g:?}")
        };
        let (Value::Ref(a), Value::Ref(b)) = (&pair[0], &pair[1]) else {
            panic!("expected the list shared: {pair:?}")
        };
        assert_eq!(a, b);
        let want: Vec<Value> = (0..2500).map(Value::from).collect();
        assert!(matches!(g.get(*a), Value::List(items) if *items == want));
        assert_eq!(reduce::to_vec_with_protocol(&g, proto).unwrap(), bytes);
        let v: Value = reduce::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![Value::List(want.clone()), Value::List(want)])
        );

        let bytes = cpython(
            "v = list(range(1500)); v.append(v); v.extend(range(1500, 2600))",
            proto,
        );
        let g: Graph = reduce::from_slice(&bytes).unwrap();
        let Value::Ref(id) = g.root() else {
            panic!("root should be shared: {g:?}")
        };
        let Value::List(items) = g.get(*id) else {
            panic!()
        };
        assert_eq!(items.len(), 2601);
        assert_eq!(items[1500], Value::Ref(*id));
        assert!((0..1500).chain(1501..2601).all(|k| {
            let n = if k < 1500 { k } else { k - 1 } as i64;
            items[k] == Value::Int(n)
        }));
        assert_eq!(reduce::to_vec_with_protocol(&g, proto).unwrap(), bytes);
    }
}

#[test]
fn graphs_built_in_rust_keep_sharing_in_cpython() {
    let mut cases = Vec::new();
    for proto in 0..=5 {
        let mut g = Graph::new(Value::None);
        let shared = g.insert(Value::List(vec![Value::Int(1)]));
        *g.root_mut() = Value::List(vec![Value::Ref(shared), Value::Ref(shared)]);
        cases.push((
            reduce::to_vec_with_protocol(&g, proto).unwrap(),
            Expect::Expr("(lambda l: [l, l])([1])".into()),
        ));
        let mut g = Graph::new(Value::None);
        let me = g.insert(Value::List(vec![]));
        if let Value::List(items) = g.get_mut(me) {
            items.push(Value::Ref(me));
        }
        *g.root_mut() = Value::Ref(me);
        cases.push((
            reduce::to_vec_with_protocol(&g, proto).unwrap(),
            Expect::Expr("(lambda l: (l.append(l), l)[1])([])".into()),
        ));
    }
    python_check(&cases);
}

#[test]
fn a_dag_that_doubles_sixty_times_stays_small() {
    for proto in [2, 5] {
        let bytes = cpython("v = []\nfor _ in range(60): v = [v, v]", proto);
        // Its memory is measured in tests/memory.rs, its time by the
        // benchmarks.
        let g: Graph = reduce::from_slice(&bytes).unwrap();
        // Each of the 60 inner lists is referred to twice; the root once.
        assert_eq!(g.objects().len(), 60);
        assert_eq!(reduce::to_vec_with_protocol(&g, proto).unwrap(), bytes);
        let err = g.into_tree(1_000_000).unwrap_err();
        assert_limit(&err, "max_tree_nodes");
        let err = reduce::from_slice::<Value>(&bytes).unwrap_err();
        assert_limit(&err, "max_tree_nodes");
    }
}

fn nested(depth: usize) -> Value {
    let mut v = Value::List(vec![]);
    for _ in 0..depth {
        v = Value::List(vec![v]);
    }
    v
}

#[test]
fn a_million_nested_lists_never_recurse() {
    // A small stack: anything recursive would overflow it.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let v = nested(1_000_000);
            let text = format!("{v:?}");
            assert!(text.starts_with("[[[["));
            assert_eq!(text.len(), 2 * 1_000_001);
            let copy = v.clone();
            assert!(copy == v);
            let mut other = nested(999_999);
            assert!(other != v);
            drop(copy);
            other = Value::None;
            drop(other);
            drop(v);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_values_write_and_read_back() {
    let v = nested(100_000);
    let bytes = reduce::to_vec(&v).unwrap();
    let limits = Limits::default().max_depth(200_000);
    let back: Value = Unpickler::from_slice(&bytes).limits(limits).load().unwrap();
    assert!(back == v);
    // Deeper than the default limit is a clear error, not a crash.
    let deeper = reduce::to_vec(&nested(200_000)).unwrap();
    let err = reduce::from_slice::<Value>(&deeper).unwrap_err();
    assert_limit(&err, "max_depth");
}

/// Every `.pickle` file under `dir`, recursively.
fn pickles(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pickles(&path, out);
        } else if path.extension().is_some_and(|e| e == "pickle") {
            out.push(path);
        }
    }
}

/// What a load gives, to compare two: the graph with its shared objects and
/// the bytes it writes back, or the error's message.
fn outcome(loaded: reduce::Result<Graph>) -> Result<(Graph, usize, Vec<u8>), String> {
    let graph = loaded.map_err(|e| e.to_string())?;
    let shared = graph.objects().len();
    let bytes = reduce::to_vec(&graph).map_err(|e| format!("write: {e}"))?;
    Ok((graph, shared, bytes))
}

#[test]
fn a_slice_shares_exactly_what_a_stream_shares() {
    // From a slice the reader keeps only the memo puts that a GET fetches
    // (it reads once keeping none, and again after a scan if a GET comes);
    // from a stream it keeps every put and compacts at STOP. The graphs,
    // their shared objects, the bytes they write and the errors must be
    // the same.
    let mut files = Vec::new();
    pickles(&reduce_tests::fixtures(), &mut files);
    let mut inputs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    assert!(inputs.len() > 1000, "fixtures missing: {}", inputs.len());
    // Every kind of argument the scan skips, then a GET, at every protocol.
    let expr = "import collections\ns = 'shared'; t = (s, 2)\n\
        v = [1, -300, 70000, 2**70, -2**1000, 1.5, 'é\\n', b'b' * 300, bytearray(b'z'), None, \
        True, {'a': s}, {1}, frozenset({2}), collections.OrderedDict(k=t), s, t, s, t]";
    for proto in 0..=5 {
        inputs.push((
            format!("every argument kind, protocol {proto}"),
            cpython(expr, proto),
        ));
    }
    // A key put twice, fetched after each put; LONG_BINGET and protocol
    // 0's GET; a GET of a key never put.
    inputs.push((
        "a key put twice".into(),
        b"\x80\x02(K\x01q\x00h\x00K\x02q\x00h\x00l.".to_vec(),
    ));
    inputs.push((
        "LONG_BINPUT and LONG_BINGET".into(),
        b"\x80\x02(]r\x00\x01\x00\x00j\x00\x01\x00\x00l.".to_vec(),
    ));
    inputs.push(("protocol 0 GET".into(), b"(lp7\ng7\nl.".to_vec()));
    // Protocol 0's keys have no width: keys past 32 bits, alone and after
    // a small one, fetched while their lists are still in their slots.
    inputs.push((
        "a key past 32 bits".into(),
        b"(lp4294967296\ng4294967296\nl.".to_vec(),
    ));
    inputs.push((
        "a small key, then one past 32 bits".into(),
        b"(lp1\nlp4294967296\ng1\ng4294967296\nl.".to_vec(),
    ));
    inputs.push((
        "a key past 32 bits, then a GET of its low bits".into(),
        b"(lp4294967296\ng0\nl.".to_vec(),
    ));
    inputs.push((
        "GET of a key never put".into(),
        b"\x80\x02]q\x01h\x02.".to_vec(),
    ));
    // GETs of objects still in the slot they were put from, which the
    // reader shares there: fetched in the reverse of their puts, with a DUP
    // between; one object put under two keys, fetched by the later key
    // first; keys put out of order; a GET after the object left its slot
    // (the reader reads again); an error after such a GET.
    for (name, bytes) in [
        (
            "fetched in reverse, a DUP between",
            &b"\x80\x02(]q\x00]q\x01]2h\x01h\x00l."[..],
        ),
        (
            "one object under two keys",
            b"\x80\x02(]q\x00]q\x01q\x02h\x02h\x00h\x01l.",
        ),
        (
            "keys out of order",
            b"\x80\x02(]q\x05]q\x03h\x05h\x03h\x05l.",
        ),
        (
            "fetched after leaving its slot",
            b"\x80\x02(]q\x00]q\x01ah\x01l.",
        ),
        ("an error after a fetch", b"\x80\x02(]q\x00h\x00)R."),
        (
            "a fetch in its slot, then one after it left",
            b"\x80\x02(]q\x00]q\x01h\x01ah\x01h\x00l.",
        ),
    ] {
        inputs.push((name.into(), bytes.to_vec()));
    }
    let expr = "a = [1]; b = {'k': a}; c = [b, a]; c.append(c)\n\
        d = []\nfor i in range(12): d = [d, (d, i), {'x': d}]\n\
        v = [c, d, b, (a, c)]";
    for proto in 0..=5 {
        inputs.push((
            format!("cycles and a DAG, protocol {proto}"),
            cpython(expr, proto),
        ));
    }
    let mut dag = Graph::default();
    let mut level = Value::List(vec![]);
    for _ in 0..60 {
        let below = Value::Ref(dag.insert(level));
        level = Value::List(vec![below.clone(), below]);
    }
    *dag.root_mut() = level;
    inputs.push(("a 60-level DAG".into(), reduce::to_vec(&dag).unwrap()));
    let mut shared = 0;
    for (name, bytes) in &inputs {
        let slice = outcome(Unpickler::from_slice(bytes).load_graph());
        let stream = outcome(Unpickler::new(std::io::Cursor::new(bytes)).load_graph());
        match (&slice, &stream) {
            (Ok((a, na, ba)), Ok((b, nb, bb))) => {
                assert!(a == b, "{name}: {a:?} != {b:?}");
                // The shared objects in the same order, too.
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{name}");
                assert_eq!(na, nb, "{name}: shared objects");
                assert_eq!(ba, bb, "{name}: bytes written back");
                shared += na;
            }
            (a, b) => assert_eq!(
                a.as_ref().err(),
                b.as_ref().err(),
                "{name}: one loads and the other fails"
            ),
        }
    }
    assert!(
        shared > 100,
        "too few shared objects to prove anything: {shared}"
    );
}

#[test]
fn deep_objects_and_dicts_drop_on_a_small_stack() {
    // Drop goes by recursion for 64 levels, then through the heap: a chain
    // of a million reduced objects (each the argument of the next) and of a
    // million dicts must drop on a 256 KiB stack.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let mut objects = Value::None;
            let mut dicts = Value::Int(0);
            for i in 0..1_000_000 {
                let args = Value::Tuple(vec![objects, Value::Int(i)]);
                objects = Value::from(reduce::Reduction::new(Value::global("m", "f"), args));
                dicts = Value::Dict(vec![(Value::Int(i), dicts)]);
            }
            assert!(matches!(objects, Value::Reduce(_)));
            assert!(matches!(&dicts, Value::Dict(d) if d.len() == 1));
            drop(objects);
            drop(dicts);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn references_carry_only_their_index_in_every_mode() {
    // l = []; l.append(l): the root is the list, which holds itself. Inert
    // mode marks the slot an object was built in; no mark may reach the
    // graph, where ids compare as numbers.
    let bytes = b"\x80\x02]q\x00h\x00a.";
    let mut want = Graph::default();
    let id = want.insert(Value::List(vec![]));
    for inert in [false, true] {
        let graph = Unpickler::from_slice(bytes)
            .inert(inert)
            .load_graph()
            .unwrap();
        assert_eq!(graph.root(), &Value::Ref(id), "inert: {inert}");
        assert_eq!(
            graph.objects(),
            &[Value::List(vec![Value::Ref(id)])],
            "inert: {inert}"
        );
    }
}

/// A read that fails part way leaves nothing behind for the next read on
/// the thread: every cut of a pickle of shared lists fails, and the whole
/// pickle then reads as it did before.
#[test]
fn a_failed_read_leaves_nothing_for_the_next() {
    for proto in [1, 2, 4] {
        let bytes = cpython(
            "l = [1, [2]]; v = [l, l, (l, 'x'), {'k': l}, [[[l]]], l]",
            proto,
        );
        let want: Graph = reduce::from_slice(&bytes).unwrap();
        let tree: Value = reduce::from_slice(&bytes).unwrap();
        for cut in 1..bytes.len() {
            assert!(reduce::from_slice::<Graph>(&bytes[..cut]).is_err());
            let got: Graph = reduce::from_slice(&bytes).unwrap();
            assert_eq!(got, want, "protocol {proto}, after a cut at {cut}");
            assert!(reduce::from_slice::<Value>(&bytes[..cut]).is_err());
            let got: Value = reduce::from_slice(&bytes).unwrap();
            assert_eq!(got, tree, "protocol {proto}, after a cut at {cut}");
        }
    }
}

/// A read inside a read (here a `persistent_load` hook that reads a
/// pickle of its own) gets tables of its own: both come out whole.
#[test]
fn a_read_within_a_read_keeps_both_apart() {
    let inner = cpython("l = ['in', 1]; v = [l, [l, (l,)], l]", 4);
    let inner_want: Graph = reduce::from_slice(&inner).unwrap();
    let v = Value::List(vec![
        Value::Int(1),
        Value::PersistentId(Box::new(Value::str("k").into())),
        Value::List(vec![Value::Int(2), Value::str("out")]),
    ]);
    let outer = reduce::to_vec(&v).unwrap();
    let mut inner_got = Vec::new();
    let got: Value = Unpickler::from_slice(&outer)
        .persistent_load(|_| {
            inner_got.push(reduce::from_slice::<Graph>(&inner)?);
            Ok(Value::str("resolved"))
        })
        .load()
        .unwrap();
    assert_eq!(format!("{got:?}"), "[1, 'resolved', [2, 'out']]");
    assert_eq!(inner_got, [inner_want]);
}
