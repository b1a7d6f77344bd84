//! Typed reductions write exactly what CPython writes for instances of the
//! same Python classes (`tests/fixtures/fixtures_classes.py`): `NEWOBJ`,
//! list and dict items, and a `__dict__` state with interned keys.

use reduce::{Interned, Reduce, Saver};

fn cpython(expr: &str, proto: u8) -> Vec<u8> {
    let script = format!(
        "import sys, pickle; sys.path.insert(0, {dir:?}); from fixtures_classes import *; \
         sys.stdout.buffer.write(pickle.dumps({expr}, protocol={proto}))",
        dir = reduce_tests::fixtures().display().to_string()
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

struct ListSub {
    items: Vec<i64>,
    tag: String,
}

impl Reduce for ListSub {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        let items: Vec<&dyn Reduce> = self.items.iter().map(|i| i as &dyn Reduce).collect();
        let state = [(Interned("tag"), &self.tag)];
        s.reduction("fixtures_classes", "ListSub")
            .new_obj()
            .list_items(&items)
            .state(&StateDict(&state))
            .save()
    }
}

struct StateDict<'a, V>(&'a [(Interned<'a>, V)]);

impl<V: Reduce> Reduce for StateDict<'_, V> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        s.dict(self.0.iter().map(|(k, v)| (k, v)))
    }
}

struct DictSub {
    entries: Vec<(String, i64)>,
    attr: String,
}

impl Reduce for DictSub {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        let items: Vec<(&dyn Reduce, &dyn Reduce)> = self
            .entries
            .iter()
            .map(|(k, v)| (k as &dyn Reduce, v as &dyn Reduce))
            .collect();
        let state = [(Interned("attr"), &self.attr)];
        s.reduction("fixtures_classes", "DictSub")
            .new_obj()
            .dict_items(&items)
            .state(&StateDict(&state))
            .save()
    }
}

struct Point {
    x: f64,
    y: f64,
    label: String,
}

impl Reduce for Point {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        let state: [(Interned<'_>, &dyn Reduce); 3] = [
            (Interned("x"), &self.x),
            (Interned("y"), &self.y),
            (Interned("label"), &self.label),
        ];
        s.reduction("fixtures_classes", "Point")
            .new_obj()
            .state(&StateDict(&state))
            .save()
    }
}

#[test]
fn list_and_dict_subclasses_match_cpython() {
    for proto in 2..=5 {
        let rust = ListSub {
            items: vec![1, 2, 3],
            tag: "x".into(),
        };
        assert_eq!(
            reduce::to_vec_with_protocol(&rust, proto).unwrap(),
            cpython("ListSub([1, 2, 3], tag='x')", proto),
            "ListSub at protocol {proto}"
        );
        let one = ListSub {
            items: vec![7],
            tag: "t".into(),
        };
        assert_eq!(
            reduce::to_vec_with_protocol(&one, proto).unwrap(),
            cpython("ListSub([7])", proto)
        );
        let big = ListSub {
            items: (0..1001).collect(),
            tag: "t".into(),
        };
        assert_eq!(
            reduce::to_vec_with_protocol(&big, proto).unwrap(),
            cpython("ListSub(range(1001))", proto),
            "a last batch of one item uses APPEND"
        );
        let dict = DictSub {
            entries: vec![("a".into(), 1), ("b".into(), 2)],
            attr: "y".into(),
        };
        assert_eq!(
            reduce::to_vec_with_protocol(&dict, proto).unwrap(),
            cpython(
                "(lambda d: (setattr(d, 'attr', 'y'), d)[1])(DictSub(a=1, b=2))",
                proto
            )
        );
    }
}

#[test]
fn dataclass_instances_match_cpython() {
    for proto in 2..=5 {
        let points = vec![
            Point {
                x: 1.0,
                y: 2.0,
                label: "a".into(),
            },
            Point {
                x: 3.0,
                y: 4.0,
                label: "b".into(),
            },
        ];
        assert_eq!(
            reduce::to_vec_with_protocol(&points, proto).unwrap(),
            cpython("[Point(1.0, 2.0, 'a'), Point(3.0, 4.0, 'b')]", proto),
            "protocol {proto}"
        );
    }
}
