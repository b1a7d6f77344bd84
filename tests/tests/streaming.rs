//! Streaming typed reads against the Graph path: over every fixture, and
//! over generated pickles and thousands of mutations of them, both paths
//! give the same value, or the same error, and leave the input at the same
//! place. The stream must also actually be taken for the plain data CPython
//! and this crate write.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::Path;

use reduce::{Construct, Reduce, Unpickler};
use reduce_tests::fixtures;

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "geometry")]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "shop")]
struct Order {
    id: u32,
    customer: String,
    lines: Vec<(String, u16, f64)>,
    note: Option<String>,
    at: Point,
}

/// Loads `bytes` as a `T` both ways; returns whether the stream read it.
fn same<T: Construct + PartialEq + Debug>(bytes: &[u8]) -> bool {
    let mut fast = Unpickler::from_slice(bytes);
    let a = fast.load::<T>();
    let mut slow = Unpickler::from_slice(bytes).streaming(false);
    let b = slow.load::<T>();
    assert!(!slow.streamed());
    match (&a, &b) {
        // NaN is not equal to itself: compare what they print too.
        (Ok(x), Ok(y)) => assert!(
            x == y || format!("{x:?}") == format!("{y:?}"),
            "values differ for {bytes:?}: {x:?} and {y:?}"
        ),
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "errors differ for {bytes:?}"),
        _ => panic!(
            "one path failed for {} on {bytes:?}:\nstream: {a:?}\ngraph:  {b:?}",
            std::any::type_name::<T>()
        ),
    }
    assert_eq!(
        fast.position(),
        slow.position(),
        "positions differ for {bytes:?}"
    );
    fast.streamed()
}

/// Every type of the test on one input; how many the stream read.
fn all_types(bytes: &[u8]) -> usize {
    [
        same::<i64>(bytes),
        same::<u8>(bytes),
        same::<bool>(bytes),
        same::<f64>(bytes),
        same::<f32>(bytes),
        same::<String>(bytes),
        same::<Option<String>>(bytes),
        same::<Vec<i64>>(bytes),
        same::<Vec<String>>(bytes),
        same::<Vec<Option<f64>>>(bytes),
        same::<(i64, String, f64, bool, Option<i64>)>(bytes),
        same::<Vec<(i64, String, f64, bool, Option<i64>)>>(bytes),
        same::<(Vec<i64>, Vec<i64>)>(bytes),
        same::<Vec<Vec<Vec<i64>>>>(bytes),
        same::<BTreeMap<String, Vec<i64>>>(bytes),
        same::<HashMap<String, i64>>(bytes),
        same::<BTreeMap<i64, BTreeMap<i64, Option<i64>>>>(bytes),
        same::<reduce::Bytes>(bytes),
        same::<Vec<reduce::Bytes>>(bytes),
        same::<Point>(bytes),
        same::<Vec<Point>>(bytes),
        same::<Order>(bytes),
        same::<Vec<Order>>(bytes),
    ]
    .into_iter()
    .filter(|&s| s)
    .count()
}

fn pickles_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(pickles_in(&path));
        } else if path
            .extension()
            .is_some_and(|e| e == "pickle" || e == "pkl")
        {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn both_paths_agree_on_every_fixture() {
    let mut files = 0;
    let mut streamed = 0;
    for dir in ["corpus", "pickletester", "fuzz", "attacks"] {
        for bytes in pickles_in(&fixtures().join(dir)) {
            files += 1;
            streamed += all_types(&bytes);
        }
    }
    assert!(files > 500, "only {files} fixtures");
    assert!(streamed > 0);
}

/// Loads a CPython fixture as a `T`, checking that the stream read it.
fn streams<T: Construct + PartialEq + Debug>(name: &str) {
    let bytes = std::fs::read(fixtures().join("corpus").join(name)).unwrap();
    assert!(same::<T>(&bytes), "{name} was not read by the stream");
}

#[test]
fn the_stream_reads_cpythons_plain_data_at_every_protocol() {
    for p in 0..=5 {
        streams::<Vec<i64>>(&format!("list_1001.p{p}.pickle"));
        streams::<Vec<i64>>(&format!("small_ints.p{p}.pickle"));
        streams::<Vec<f64>>(&format!("floats.p{p}.pickle"));
        streams::<HashMap<i64, i64>>(&format!("dict_2500.p{p}.pickle"));
        streams::<BTreeMap<i64, i64>>(&format!("dict_1000.p{p}.pickle"));
        streams::<String>(&format!("str_abc.p{p}.pickle"));
        streams::<Vec<Vec<i64>>>(&format!("lists.p{p}.pickle"));
        streams::<Vec<HashMap<String, i64>>>(&format!("dicts.p{p}.pickle"));
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn order(r: &mut Rng, i: u32) -> Order {
    Order {
        id: i,
        customer: if r.below(3) == 0 {
            String::new()
        } else {
            format!("c{}", r.next() % 1000)
        },
        lines: (0..r.below(4))
            .map(|k| {
                (
                    format!("sku{k}"),
                    (r.next() % 70_000) as u16,
                    r.next() as f64 / 1e9,
                )
            })
            .collect(),
        note: (r.below(2) == 0).then(|| "fragile".to_string()),
        at: Point {
            x: i as f64,
            y: -(i as f64),
        },
    }
}

/// Each generated pickle, and mutants of it: a byte changed, cut short, a
/// span repeated, a span removed.
fn mutants(bytes: &[u8], r: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut m = bytes.to_vec();
        let at = r.below(m.len());
        match r.below(5) {
            0 => m[at] = r.next() as u8,
            1 => m.truncate(at),
            2 => {
                let end = (at + 1 + r.below(8)).min(m.len());
                let span = m[at..end].to_vec();
                m.splice(at..at, span);
            }
            3 => {
                let end = (at + 1 + r.below(4)).min(m.len());
                m.drain(at..end);
            }
            _ => {
                // An opcode that matters to the stream, put anywhere.
                let ops = [
                    b'h', b'q', b'\x94', b'(', b'e', b'a', b'0', b'2', b'\x95', b'.',
                ];
                m.insert(at, ops[r.below(ops.len())]);
                if r.below(2) == 0 {
                    m.insert(at + 1, r.below(4) as u8);
                }
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn both_paths_agree_on_generated_and_mutated_pickles() {
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    let mut originals: Vec<Vec<u8>> = Vec::new();
    for proto in 0..=5u8 {
        let p = |v: &dyn Fn(u8) -> reduce::Result<Vec<u8>>| v(proto).unwrap();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&-7i64, pr)));
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&(1i64 << 40), pr)));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&"héllo".to_string(), pr)
        }));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&vec![1i64, -2, 300, 70_000], pr)
        }));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&(vec![1i64], Vec::<i64>::new()), pr)
        }));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&(Vec::<i64>::new(), vec![2i64, 3]), pr)
        }));
        let records: Vec<(i64, String, f64, bool, Option<i64>)> = (0..30)
            .map(|i| {
                (
                    i,
                    format!("user{i}"),
                    i as f64 / 3.0,
                    i % 2 == 0,
                    (i % 3 == 0).then_some(i),
                )
            })
            .collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&records, pr)));
        let map: BTreeMap<String, Vec<i64>> = (0..5)
            .map(|i| (format!("k{i}"), (0..i).collect()))
            .collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&map, pr)));
        let nested: BTreeMap<i64, BTreeMap<i64, Option<i64>>> = (0..4)
            .map(|k| (k, (0..3).map(|j| (j, None)).collect()))
            .collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&nested, pr)));
        let orders: Vec<Order> = (0..6).map(|i| order(&mut r, i)).collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&orders, pr)));
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&orders[0], pr)));
        originals.push(p(&|pr| {
            let b = reduce::Bytes(vec![7; 300]);
            reduce::to_vec_with_protocol(&vec![b.clone(), b], pr)
        }));
        // A batch boundary: 1001 items.
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&vec![Point { x: 1.0, y: 2.0 }; 1001], pr)
        }));
    }
    let mut streamed = 0;
    for original in &originals {
        streamed += all_types(original);
    }
    // Every original is read by the stream as its own type at least.
    assert!(
        streamed >= originals.len(),
        "the stream read {streamed} of {} originals",
        originals.len()
    );
    let mut loads = 0;
    for original in &originals {
        for m in mutants(original, &mut r, 40) {
            all_types(&m);
            loads += 1;
        }
    }
    assert!(loads >= 2800, "{loads}");
}

#[test]
fn the_stream_reads_what_cpython_writes_for_plain_data() {
    // pickle.dumps([(1, 'a', 2.5, True, None)] * 2, protocol=P): the second
    // tuple is a memo reference to the first, read again from its first copy.
    let cases: [&[u8]; 3] = [
        b"(lp0\n(I1\nVa\np1\nF2.5\nI01\nNtp2\nag2\na.",
        b"\x80\x02]q\x00((K\x01X\x01\x00\x00\x00aq\x01G@\x04\x00\x00\x00\x00\x00\x00\x88Ntq\x02h\x02e.",
        b"\x80\x05\x95\x1b\x00\x00\x00\x00\x00\x00\x00]\x94((K\x01\x8c\x01a\x94G@\x04\x00\x00\x00\x00\x00\x00\x88Nt\x94h\x02e.",
    ];
    type Row = (i64, String, f64, bool, Option<i64>);
    let want: Vec<Row> = vec![(1, "a".into(), 2.5, true, None); 2];
    for bytes in cases {
        let mut u = Unpickler::from_slice(bytes);
        assert_eq!(u.load::<Vec<Row>>().unwrap(), want, "{bytes:?}");
        assert!(u.streamed(), "not streamed: {bytes:?}");
    }
    // A list of one 5-tuple: from protocol 2 its MARK opens the tuple, not a
    // batch. The stream takes it for a batch, misses, and the Graph path
    // reads it.
    let one =
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01G@\x04\x00\x00\x00\x00\x00\x00\x88Ntq\x02a.";
    let mut u = Unpickler::from_slice(one);
    assert_eq!(u.load::<Vec<Row>>().unwrap(), want[..1]);
    // Derived types read as CPython writes `module.Name(*fields)`, at every
    // protocol: the class once, then from the memo.
    let mut r = Rng(7);
    let orders: Vec<Order> = (0..20).map(|i| order(&mut r, i)).collect();
    for p in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(&orders, p).unwrap();
        assert!(same::<Vec<Order>>(&bytes), "protocol {p} was not streamed");
    }
    // A list that contains itself is a cycle: left to the Graph path, whose
    // error says so.
    let cyclic = b"\x80\x02]q\x00h\x00a.";
    let mut u = Unpickler::from_slice(cyclic);
    assert!(u.load::<Vec<Vec<i64>>>().is_err());
    assert!(!u.streamed());
}

#[test]
fn the_stream_reads_nested_containers() {
    // pyperformance's shapes, and containers that end where a sibling of
    // the same type begins (an empty list, then a list).
    let v: Vec<Vec<Vec<i64>>> = vec![vec![(0..10).collect(); 2]; 10];
    assert!(same::<Vec<Vec<Vec<i64>>>>(&reduce::to_vec(&v).unwrap()));
    let v: BTreeMap<i64, BTreeMap<i64, Option<i64>>> = (0..100)
        .map(|k| (k, (0..10).map(|j| (j, None)).collect()))
        .collect();
    assert!(same::<BTreeMap<i64, BTreeMap<i64, Option<i64>>>>(
        &reduce::to_vec(&v).unwrap()
    ));
    let v: BTreeMap<String, Vec<i64>> = (0..1500)
        .map(|i| (format!("k{i}"), vec![i; (i % 3) as usize]))
        .collect();
    assert!(same::<BTreeMap<String, Vec<i64>>>(
        &reduce::to_vec(&v).unwrap()
    ));
    for p in 0..=5 {
        let v: Vec<Vec<i64>> = vec![vec![], vec![1], vec![], vec![], vec![2, 3], vec![]];
        let bytes = reduce::to_vec_with_protocol(&v, p).unwrap();
        assert!(same::<Vec<Vec<i64>>>(&bytes), "protocol {p}");
        let v: (Vec<String>, Vec<String>, String) = (vec![], vec!["a".into()], "b".into());
        let bytes = reduce::to_vec_with_protocol(&v, p).unwrap();
        assert!(
            same::<(Vec<String>, Vec<String>, String)>(&bytes),
            "protocol {p}"
        );
    }
}
