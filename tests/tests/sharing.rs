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
