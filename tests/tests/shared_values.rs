//! Typed values that hold a `Value` (or a `Graph`) copy only what they
//! reach of the pickle's shared objects: a list of many items, each
//! referring to a shared object, is read in time and memory in proportion
//! to the input, not to its length times the number of shared objects.
//!
//! One test function, under an allocator that counts every byte
//! allocated, so that no other test allocates while one is measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use reduce::Value;

struct Counting;

static TOTAL: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds `GlobalAlloc`'s contract, and returns what `System` returned; the
// counter is a plain atomic updated after the call and never touches the
// memory itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        TOTAL.fetch_add(layout.size(), Relaxed);
        // SAFETY: the caller's guarantees for `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every
        // allocation here goes through `System`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        TOTAL.fetch_add(new_size, Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated while `f` ran (freed or not).
fn allocated<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = TOTAL.load(Relaxed);
    let r = f();
    (r, TOTAL.load(Relaxed) - before)
}

/// `[s0, s0, s1, s1, ...]` at protocol 2: `n` strings, each written once
/// and fetched again from the memo, so each is a shared object.
fn pairs(n: usize) -> Vec<u8> {
    let mut b = b"\x80\x02]q\x00(".to_vec();
    for i in 0..n {
        let s = format!("shared string number {i:06}");
        b.push(b'X');
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
        let memo = (i + 1) as u32;
        b.push(b'r'); // LONG_BINPUT
        b.extend_from_slice(&memo.to_le_bytes());
        b.push(b'j'); // LONG_BINGET
        b.extend_from_slice(&memo.to_le_bytes());
        if i % 500 == 499 {
            b.extend_from_slice(b"e(");
        }
    }
    b.extend_from_slice(b"e.");
    b
}

#[test]
fn values_in_a_collection_copy_only_what_they_reach() {
    let n = 4000;
    let bytes = pairs(n);
    // The Graph itself: one object per string.
    let graph: reduce::Graph = reduce::from_slice(&bytes).unwrap();
    assert_eq!(graph.objects().len(), n);
    let budget = 64 * bytes.len();

    let (items, used) = allocated(|| reduce::from_slice::<Vec<Value>>(&bytes).unwrap());
    assert_eq!(items.len(), 2 * n);
    for (i, pair) in items.chunks(2).enumerate() {
        let want = Value::from(format!("shared string number {i:06}"));
        assert_eq!(pair, [want.clone(), want]);
    }
    assert!(
        used < budget,
        "Vec<Value>: {used} bytes allocated for {} bytes of input",
        bytes.len()
    );

    // An Option around each.
    let (items, used) = allocated(|| reduce::from_slice::<Vec<Option<Value>>>(&bytes).unwrap());
    assert_eq!(items.len(), 2 * n);
    assert!(used < budget, "Vec<Option<Value>>: {used} bytes");
    // Graphs: the two items of a pair are equal graphs of one string.
    let (graphs, used) = allocated(|| reduce::from_slice::<Vec<reduce::Graph>>(&bytes).unwrap());
    assert_eq!(graphs.len(), 2 * n);
    assert!(used < budget, "Vec<Graph>: {used} bytes");
    for (i, pair) in graphs.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1]);
        let want = Value::from(format!("shared string number {i:06}"));
        assert_eq!(pair[0].clone().into_tree(10).unwrap(), want);
    }
    // A cycle kept whole, as a Graph may hold one.
    let cyclic_list = b"\x80\x02]q\x00]q\x01h\x01aa.";
    let inner: Vec<reduce::Graph> = reduce::from_slice(cyclic_list).unwrap();
    assert_eq!(inner.len(), 1);
    assert_eq!(inner[0].objects().len(), 1);
    assert!(inner[0].clone().into_tree(100).is_err());

    // A cycle is still an error, and a DAG that doubles is still stopped
    // by max_tree_nodes, whatever else the pickle holds.
    let cyclic = b"\x80\x02]q\x00(h\x00e.";
    let err = reduce::from_slice::<Vec<Value>>(cyclic).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    let mut dag = reduce::Graph::default();
    let mut v = Value::List(vec![]);
    for _ in 0..40 {
        let below = Value::Ref(dag.insert(v));
        v = Value::List(vec![below.clone(), below]);
    }
    *dag.root_mut() = Value::List(vec![v]);
    let bomb = reduce::to_vec(&dag).unwrap();
    let (r, used) = allocated(|| reduce::from_slice::<Vec<Value>>(&bomb));
    reduce_tests::assert_limit(&r.unwrap_err(), "max_tree_nodes");
    assert!(used < 1 << 30, "{used} bytes for a bomb");
}
