//! Typed reading and writing recurse once per level of the Rust type, so a
//! recursive type (a linked list, a tree) read from a hostile pickle that
//! nests it a million deep must stop with an error, not overflow the stack.

use reduce::{ErrorKind, Limits, Reduce, Unpickler, MAX_TYPED_DEPTH};
use reduce_tests::assert_limit;

#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "typed_depth")]
enum List {
    Nil,
    Cons(i64, Box<List>),
}

impl List {
    fn with_len(n: usize) -> List {
        (0..n).fold(List::Nil, |tail, i| List::Cons(i as i64, Box::new(tail)))
    }

    fn cells(&self) -> usize {
        let (mut n, mut at) = (0, self);
        while let List::Cons(_, tail) = at {
            n += 1;
            at = tail;
        }
        n
    }
}

impl Drop for List {
    // The default drop recurses once per cell: unlink the cells one by one.
    fn drop(&mut self) {
        let mut tail = match self {
            List::Cons(_, tail) => std::mem::replace(&mut **tail, List::Nil),
            List::Nil => return,
        };
        while let List::Cons(_, next) = &mut tail {
            let next = std::mem::replace(&mut **next, List::Nil);
            tail = next;
        }
    }
}

/// `Cons(1, Cons(1, ... Nil))`, `depth` cells, in the bytes Rust writes for
/// it at protocol 2, built without recursion.
fn nested(depth: usize) -> Vec<u8> {
    let mut b = b"\x80\x02c__builtin__\ngetattr\nq\x00ctyped_depth\nList\nq\x01".to_vec();
    b.extend_from_slice(b"X\x04\x00\x00\x00Cons\x86Rq\x02");
    for _ in 0..depth {
        b.extend_from_slice(b"h\x02K\x01");
    }
    b.extend_from_slice(b"h\x00h\x01X\x03\x00\x00\x00Nil\x86R)R");
    for _ in 0..depth {
        b.extend_from_slice(b"\x86R");
    }
    b.push(b'.');
    b
}

#[test]
fn the_test_pickles_are_what_rust_writes() {
    let ones = List::Cons(
        1,
        Box::new(List::Cons(1, Box::new(List::Cons(1, Box::new(List::Nil))))),
    );
    let written = reduce::to_vec_with_protocol(&ones, 2).unwrap();
    assert_eq!(reduce::from_slice::<List>(&written).unwrap(), ones);
    assert_eq!(reduce::from_slice::<List>(&nested(3)).unwrap(), ones);
}

#[test]
fn deep_recursive_types_read_up_to_the_limit_on_a_small_stack() {
    // 200 levels overflowed a test thread's 2 MiB stack in a debug build
    // before typed reading grew its stack; 10,000 is the default limit.
    let back: List = reduce::from_slice(&nested(10_000)).unwrap();
    assert_eq!(back.cells(), 10_000);
}

#[test]
fn a_hostile_depth_is_an_error_not_a_stack_overflow() {
    let err = reduce::from_slice::<List>(&nested(10_001)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Limit {
                limit: "max_typed_depth",
                max: 10_000
            }
        ),
        "{err}"
    );
    // The path says where: ten thousand tails, `1.1.1...`.
    let path = err.path().unwrap_or_default();
    assert!(
        path.len() > 20_000 && path.starts_with("1.1.1."),
        "{}",
        &path[..40]
    );

    // A million levels stop earlier, at the graph's own depth limit.
    let err = reduce::from_slice::<List>(&nested(1_000_000)).unwrap_err();
    assert_limit(&err, "max_depth");

    let small = Limits::default().max_typed_depth(50);
    let read = |depth| {
        Unpickler::from_slice(&nested(depth))
            .limits(small.clone())
            .load::<List>()
    };
    assert_eq!(read(50).unwrap().cells(), 50);
    assert!(read(51).is_err());
}

#[test]
fn deep_recursive_types_write_up_to_the_typed_depth() {
    // Each cell is two levels: the enum, then its boxed tail.
    let list = List::with_len(MAX_TYPED_DEPTH / 2 - 1);
    let bytes = reduce::to_vec(&list).unwrap();
    assert_eq!(
        reduce::from_slice::<List>(&bytes).unwrap().cells(),
        list.cells()
    );
    let err = reduce::to_vec(&List::with_len(MAX_TYPED_DEPTH)).unwrap_err();
    assert!(err.to_string().contains("maximum recursion depth"), "{err}");
}

/// `n` levels of one `save` each, then `None`.
struct Levels(usize);

impl Reduce for Levels {
    fn reduce(&self, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
        match self.0 {
            0 => s.none(),
            n => s.save(&Levels(n - 1)),
        }
    }
}

#[test]
fn the_write_limit_is_exactly_the_typed_depth() {
    // Every level counts, the ones that grow the stack and the ones
    // between them alike.
    assert_eq!(
        reduce::to_vec(&Levels(MAX_TYPED_DEPTH)).unwrap(),
        b"\x80\x05N."
    );
    for n in [
        MAX_TYPED_DEPTH + 1,
        MAX_TYPED_DEPTH + 2,
        MAX_TYPED_DEPTH + 9,
    ] {
        let err = reduce::to_vec(&Levels(n)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("maximum recursion depth ({MAX_TYPED_DEPTH})")),
            "{n}: {err}"
        );
    }
}
