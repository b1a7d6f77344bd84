//! Cycles through state: a graph of `Rc<RefCell<Node>>` that refers to
//! itself writes as CPython writes ordinary instances (the object is made
//! and memoized first, its `__dict__` applied after with `BUILD`), and loads
//! back with the same shape, in Rust and in CPython.

use std::cell::RefCell;
use std::io::Write as _;
use std::process::Stdio;
use std::rc::Rc;

use reduce::{Construct, Node as At, Reduce, Registry, Saver, Unpickler};

#[derive(Debug, Default)]
struct Node {
    name: String,
    edges: Vec<Rc<RefCell<Node>>>,
}

/// The instance `__dict__`: `{"name": ..., "edges": [...]}`.
struct State<'a>(&'a Node);

impl Reduce for State<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        let fields: [(reduce::Interned<'_>, &dyn Reduce); 2] = [
            (reduce::Interned("name"), &self.0.name),
            (reduce::Interned("edges"), &self.0.edges),
        ];
        s.dict(fields.iter().map(|(k, v)| (k, *v)))
    }
}

impl Reduce for Node {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        s.reduction("graphs", "Node")
            .new_obj()
            .state(&State(self))
            .save()
    }
}

impl Construct for Node {
    fn construct(node: At<'_>) -> reduce::Result<Self> {
        let mut made = Node::construct_shell(node).unwrap_or_else(|| Ok(Node::default()))?;
        made.fill_shell(node)?;
        Ok(made)
    }

    fn construct_shell(node: At<'_>) -> Option<reduce::Result<Self>> {
        Some(node.reduction("graphs", "Node").map(|_| Node::default()))
    }

    fn fill_shell(&mut self, node: At<'_>) -> reduce::Result<()> {
        let call = node.reduction("graphs", "Node")?;
        let Some(state) = call.state() else {
            return Ok(());
        };
        state.with(|st| {
            self.name = st.state_field("name")?.unwrap_or_default();
            self.edges = st.state_field("edges")?.unwrap_or_default();
            Ok(())
        })
    }
}

fn node(name: &str) -> Rc<RefCell<Node>> {
    Rc::new(RefCell::new(Node {
        name: name.into(),
        edges: vec![],
    }))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_constructor("graphs", "Node", Node::construct)
        .unwrap();
    r
}

/// a -> b -> a, a -> a, b -> c: a cycle, a self-loop and a plain edge.
fn sample() -> Rc<RefCell<Node>> {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    a.borrow_mut().edges = vec![b.clone(), a.clone()];
    b.borrow_mut().edges = vec![a.clone(), c];
    a
}

fn break_cycles(root: &Rc<RefCell<Node>>) {
    let mut stack = vec![root.clone()];
    while let Some(n) = stack.pop() {
        stack.extend(std::mem::take(&mut n.borrow_mut().edges));
    }
}

#[test]
fn a_cyclic_graph_loads_with_the_same_shape() {
    let a = sample();
    for proto in 2..=5 {
        let bytes = reduce::to_vec_with_protocol(&a, proto).unwrap();
        let back: Rc<RefCell<Node>> = Unpickler::from_slice(&bytes)
            .registry(registry())
            .load()
            .unwrap();
        let b = back.borrow().edges[0].clone();
        assert_eq!(back.borrow().name, "a");
        assert_eq!(b.borrow().name, "b");
        assert!(Rc::ptr_eq(&back.borrow().edges[1], &back), "self-loop kept");
        assert!(
            Rc::ptr_eq(&b.borrow().edges[0], &back),
            "cycle a -> b -> a kept"
        );
        assert_eq!(b.borrow().edges[1].borrow().name, "c");
        assert!(b.borrow().edges[1].borrow().edges.is_empty());
        // Written again, the loaded graph gives the same bytes.
        assert_eq!(reduce::to_vec_with_protocol(&back, proto).unwrap(), bytes);
        break_cycles(&back);
    }
    break_cycles(&a);
}

#[test]
fn cpython_loads_the_same_cycles() {
    let a = sample();
    let bytes = reduce::to_vec_with_protocol(&a, 4).unwrap();
    break_cycles(&a);
    let script = r#"
import pickle, sys, types
m = types.ModuleType('graphs')
class Node: pass
Node.__module__ = 'graphs'
m.Node = Node
sys.modules['graphs'] = m
a = pickle.loads(sys.stdin.buffer.read())
b = a.edges[0]
assert (a.name, b.name, b.edges[1].name) == ('a', 'b', 'c'), vars(a)
assert a.edges[1] is a and b.edges[0] is a
# And CPython writes the same graph to the same bytes.
sys.stdout.buffer.write(pickle.dumps(a, protocol=4))
"#;
    let mut child = reduce_tests::python3()
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout, bytes,
        "CPython pickles the loaded graph to the same bytes"
    );
}

#[test]
fn a_cycle_without_state_is_an_error_not_a_loop() {
    // l = []; l.append(l): a list cannot be made before its items in Rust.
    let bytes = b"\x80\x02]q\x00h\x00a.";
    let err = reduce::from_slice::<Rc<Vec<Rc<Vec<u8>>>>>(bytes).unwrap_err();
    assert!(err.to_string().contains("refers to itself"), "{err}");
}

/// A cycle read into a type that cannot share (a `Box`, through an
/// `Option`) says it is a cycle, where it closes, in a short message, rather
/// than the depth limit five thousand fields down.
#[test]
fn a_cycle_into_a_box_says_so_where_it_closes() {
    #[derive(Reduce, Debug)]
    #[reduce(module = "shop", name = "Rec", state)]
    struct BoxRec {
        name: String,
        next: Option<Box<BoxRec>>,
    }
    // o = Rec(); o.name = 'a'; o.next = o
    let script = "import pickle, sys, types\n\
        shop = types.ModuleType('shop'); sys.modules['shop'] = shop\n\
        class Rec: pass\n\
        Rec.__module__ = 'shop'; shop.Rec = Rec\n\
        o = Rec(); o.name = 'a'; o.next = o\n\
        sys.stdout.buffer.write(pickle.dumps(o, 4))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    assert!(out.status.success());
    let err = reduce::from_slice::<BoxRec>(&out.stdout).unwrap_err();
    assert!(
        err.to_string().contains("refers to itself (a cycle)"),
        "{err}"
    );
    assert_eq!(err.path(), Some("next"), "{err}");
    assert!(
        err.to_string().len() < 300,
        "{} bytes",
        err.to_string().len()
    );
}

/// A set or tuple that reaches itself with no list or dict between (a
/// pickle can build one; CPython cannot pickle it again) is an error at
/// the protocols that write a set by `set([...])`, where the write would
/// never end, and is written at the others; an object that reaches
/// itself through a list is written at every protocol, as CPython writes
/// it.
#[test]
fn a_set_that_holds_itself_is_an_error_not_a_runaway_write() {
    let self_set: &[u8] = b"\x80\x04\x8f\x94(h\x00\x90.";
    let through_tuple: &[u8] = b"\x80\x04\x8f\x94(h\x00\x85\x94\x90.";
    // CPython cannot load these either (a set is not hashable): inert mode
    // keeps them as they are.
    let inert = |p: &[u8]| reduce::Unpickler::from_slice(p).inert(true).load_graph();
    for pickle in [self_set, through_tuple] {
        let graph = inert(pickle).unwrap();
        assert!(reduce::from_slice::<reduce::Graph>(pickle)
            .unwrap_err()
            .to_string()
            .contains("unhashable type 'set'"));
        for proto in 0..=3 {
            let err = reduce::to_vec_with_protocol(&graph, proto).unwrap_err();
            assert!(
                err.to_string()
                    .contains("contains itself through tuples, sets"),
                "protocol {proto}: {err}"
            );
        }
        for proto in 4..=5 {
            let bytes = reduce::to_vec_with_protocol(&graph, proto).unwrap();
            let again = inert(&bytes).unwrap();
            assert_eq!(
                reduce::to_vec_with_protocol(&again, proto).unwrap(),
                bytes,
                "protocol {proto}"
            );
        }
    }
    // A tuple holding a list holding the tuple: CPython's bytes, back.
    for proto in 0..=5 {
        let want = reduce_tests::cpython_dumps("(lambda l: (l.append((l,)), l[0])[1])([])", proto);
        let graph: reduce::Graph = reduce::from_slice(&want).unwrap();
        assert_eq!(
            reduce::to_vec_with_protocol(&graph, proto).unwrap(),
            want,
            "protocol {proto}"
        );
    }
}
