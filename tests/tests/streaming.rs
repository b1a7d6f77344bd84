//! Streaming typed reads against the Graph path: over every fixture, and
//! over generated pickles and thousands of mutations of them, both paths
//! give the same value, or the same error, and leave the input at the same
//! place. The stream must also actually be taken for the plain data CPython
//! and this crate write.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use reduce::{Construct, Reduce, Unpickler, Value};
use reduce_tests::{fixtures, pickles_in};

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

/// A plain class instance: `copyreg.__newobj__` (or `_reconstructor`) and
/// `BUILD` with its `__dict__`.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state)]
struct Rec {
    id: i64,
    name: String,
    tags: Vec<String>,
    score: f64,
    at: Option<Point>,
}

#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state, deny_unknown_fields)]
struct Strict {
    id: i64,
    name: String,
}

/// Made from `Default`, then filled from the state.
#[derive(Reduce, Debug, PartialEq, Clone, Default)]
#[reduce(module = "stream_cases", state, default)]
struct Loose {
    id: i64,
    name: String,
    #[reduce(skip)]
    cache: Vec<i64>,
}

/// A field with its own default, another without.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state)]
struct Partial {
    id: i64,
    #[reduce(default)]
    label: String,
}

/// `__slots__`: the state is `(None or __dict__, slots)`.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state = "slots")]
struct Slot {
    x: i64,
    y: String,
    #[reduce(in_dict, default)]
    extra: Option<i64>,
}

/// Keeps what it has no field for, in order, duplicates too.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state)]
struct Open {
    id: i64,
    #[reduce(rest)]
    rest: Vec<(String, reduce::Value)>,
}

/// The same class read with its other attributes in a map (the last of a
/// name kept), made from `Default`.
#[derive(Reduce, Debug, PartialEq, Clone, Default)]
#[reduce(module = "stream_cases", state, default)]
struct OpenMap {
    id: i64,
    #[reduce(rest)]
    rest: BTreeMap<String, reduce::Value>,
}

/// `__slots__` and a rest field of `Value` names (a name that is no str
/// is kept too, by the Graph path).
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state = "slots")]
struct SlotRest {
    x: i64,
    #[reduce(rest)]
    rest: Vec<(reduce::Value, reduce::Value)>,
}

/// An `enum.Enum` of ints, and one of strings.
#[derive(Reduce, Debug, PartialEq, Clone, Copy)]
#[reduce(module = "stream_cases", python_enum)]
enum Color {
    Red = 1,
    Green = 2,
    Blue = 3,
}

#[derive(Reduce, Debug, PartialEq, Clone, Copy)]
#[reduce(module = "stream_cases", python_enum)]
enum Mode {
    #[reduce(value = "r")]
    Read,
    #[reduce(value = "w")]
    Write,
}

/// One global per variant: `stream_cases.Circle(r)`, ...
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", flat_variants)]
enum Shape {
    Circle(f64),
    Rect { w: f64, h: f64 },
    Dot,
}

/// Variants nested in the enum's name: `stream_cases.Event.Click(x, y)`.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases")]
enum Event {
    Click { x: i64, y: i64 },
    Key(String),
    Quit,
}

/// An instance of a nested class: `getattr(Crate, "Item")` before
/// protocol 4.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", name = "Crate.Item", state)]
struct Item {
    n: i64,
}

/// A `bytes` field (`#[reduce(bytes)]`): streamed where `bytes` has its own
/// opcodes (protocol 3 on).
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state)]
struct Packet {
    n: i64,
    #[reduce(bytes)]
    payload: Vec<u8>,
}

/// A `Duration` as a float of seconds: a field read `with` this.
mod seconds {
    pub fn reduce(d: &std::time::Duration, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
        s.f64(d.as_secs_f64())
    }
    pub fn construct(node: reduce::Node<'_>) -> reduce::Result<std::time::Duration> {
        let secs: f64 = node.construct()?;
        std::time::Duration::try_from_secs_f64(secs).map_err(|e| node.error_msg(e.to_string()))
    }
}

/// A `Value` read `with` its own reader.
mod as_value {
    pub fn reduce(v: &reduce::Value, s: &mut reduce::Saver<'_, '_>) -> reduce::Result<()> {
        s.value(v)
    }
    pub fn construct(node: reduce::Node<'_>) -> reduce::Result<reduce::Value> {
        node.construct()
    }
}

/// Fields read by their Graph-path readers: `with`, and `registry` (a
/// `datetime.timedelta`, registered by [`register_timedelta`]).
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases")]
struct Timed {
    n: i64,
    #[reduce(with = "seconds")]
    took: std::time::Duration,
    #[reduce(registry)]
    wait: std::time::Duration,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Settings {
    retries: i64,
    hosts: Vec<String>,
}

/// An instance with a `serde` field and a `with` one.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases", state)]
struct Job {
    name: String,
    #[reduce(serde)]
    settings: Settings,
    #[reduce(with = "seconds", default)]
    took: std::time::Duration,
}

/// `stream_cases.Twice(a, b)`, `a` read `with` its own reader: where `b`
/// fetches what `a` holds from the memo, the two would share it on the
/// Graph path, and the stream leaves the load to it.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases")]
struct Twice {
    #[reduce(with = "as_value")]
    a: reduce::Value,
    b: reduce::Value,
}

/// The same the other way: the field read `with` its reader fetches.
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases")]
struct Twice2 {
    b: reduce::Value,
    #[reduce(with = "as_value")]
    a: reduce::Value,
}

/// Two classes, each read `with` its own reader: from protocol 4 the
/// second one's module name is fetched from the memo, across the fields'
/// bounds, which `STACK_GLOBAL` copies (no sharing).
#[derive(Reduce, Debug, PartialEq, Clone)]
#[reduce(module = "stream_cases")]
struct Classes {
    #[reduce(with = "as_value")]
    a: reduce::Value,
    #[reduce(with = "as_value")]
    b: reduce::Value,
}

/// `datetime.timedelta` as a `Duration`, in the process-wide registry.
fn register_timedelta() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        reduce::registry()
            .register_reducer(|d: &std::time::Duration, s: &mut reduce::Saver<'_, '_>| {
                s.reduction("datetime", "timedelta")
                    .args(&(0u64, d.as_secs(), d.subsec_micros()))
                    .save()
            })
            .unwrap();
        reduce::registry()
            .register_constructor("datetime", "timedelta", |n: reduce::Node<'_>| {
                let (days, secs, micros): (u64, u64, u32) =
                    n.any_reduction()?.args().construct()?;
                let secs = days
                    .checked_mul(86_400)
                    .and_then(|d| d.checked_add(secs))
                    .ok_or_else(|| n.error_msg("too long"))?;
                Ok(std::time::Duration::new(secs, micros.saturating_mul(1000)))
            })
            .unwrap();
    });
}

/// Loads `bytes` as a `T` both ways; returns whether the stream read it.
/// [`same`] as a `Value` on every prefix of `bytes`, and on `bytes` with
/// each of its first `upto` bytes set to each of `tries` in turn.
fn same_when_damaged(bytes: &[u8], upto: usize, tries: &[u8]) {
    for end in 0..bytes.len() {
        same::<Value>(&bytes[..end]);
    }
    for at in 0..bytes.len().min(upto) {
        for &b in tries {
            let mut m = bytes.to_vec();
            m[at] = b;
            same::<Value>(&m);
        }
    }
}

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
    register_timedelta();
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
        same::<Rec>(bytes),
        same::<Vec<Rec>>(bytes),
        same::<Strict>(bytes),
        same::<Vec<Strict>>(bytes),
        same::<Loose>(bytes),
        same::<Partial>(bytes),
        same::<Vec<Partial>>(bytes),
        same::<Slot>(bytes),
        same::<Vec<Slot>>(bytes),
        same::<Open>(bytes),
        same::<Vec<Open>>(bytes),
        same::<OpenMap>(bytes),
        same::<Vec<OpenMap>>(bytes),
        same::<SlotRest>(bytes),
        same::<Vec<SlotRest>>(bytes),
        same::<Color>(bytes),
        same::<Vec<Color>>(bytes),
        same::<Mode>(bytes),
        same::<Shape>(bytes),
        same::<Vec<Shape>>(bytes),
        same::<Event>(bytes),
        same::<Vec<Event>>(bytes),
        same::<Vec<Item>>(bytes),
        same::<Vec<Packet>>(bytes),
        same::<reduce::Value>(bytes),
        same::<Vec<reduce::Value>>(bytes),
        same::<Option<reduce::Value>>(bytes),
        same::<(reduce::Value, i64)>(bytes),
        same::<(i64, reduce::Value)>(bytes),
        same::<BTreeMap<String, reduce::Value>>(bytes),
        same::<reduce::Graph>(bytes),
        same::<Timed>(bytes),
        same::<Vec<Timed>>(bytes),
        same::<Job>(bytes),
        same::<Vec<Job>>(bytes),
        same::<Twice>(bytes),
        same::<Twice2>(bytes),
        same::<Classes>(bytes),
    ]
    .into_iter()
    .filter(|&s| s)
    .count()
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

/// Loads `bytes` as a `T` both ways under `limits`: the same value or the
/// same error.
fn same_under<T: Construct + PartialEq + Debug>(bytes: &[u8], limits: &reduce::Limits) {
    let a = Unpickler::from_slice(bytes)
        .limits(limits.clone())
        .load::<T>();
    let b = Unpickler::from_slice(bytes)
        .limits(limits.clone())
        .streaming(false)
        .load::<T>();
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert!(x == y || format!("{x:?}") == format!("{y:?}")),
        (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "errors differ for {bytes:?}"),
        _ => panic!(
            "one path failed for {} under {limits:?} on {bytes:?}:\nstream: {a:?}\ngraph:  {b:?}",
            std::any::type_name::<T>()
        ),
    }
}

/// The stack limit holds on the stream exactly where it holds on the
/// `Graph` path: a container counts while its items are read.
#[test]
fn both_paths_agree_on_every_stack_limit() {
    let mut cases = pickles_in(&fixtures().join("corpus"));
    cases.extend(cpython_cases().into_iter().map(|(_, _, b)| b));
    for bytes in &cases {
        for max in 0..8 {
            let limits = reduce::Limits::default().max_stack(max);
            same_under::<Vec<i64>>(bytes, &limits);
            same_under::<Vec<Vec<i64>>>(bytes, &limits);
            same_under::<HashMap<String, Vec<String>>>(bytes, &limits);
            same_under::<(i64, String, Vec<f64>)>(bytes, &limits);
            same_under::<reduce::Value>(bytes, &limits);
            same_under::<Vec<Rec>>(bytes, &limits);
        }
    }
}

/// Every other limit holds on the stream exactly where it holds on the
/// `Graph` path, each swept alone from zero: the memo's size, the depth of
/// the value, a protocol 0 int's digits, the nodes of a shared graph
/// copied into a tree, and the typed reader's depth. A thorough run sweeps
/// each further.
#[test]
fn both_paths_agree_under_every_other_limit() {
    let mut cases = pickles_in(&fixtures().join("corpus"));
    cases.extend(cpython_cases().into_iter().map(|(_, _, b)| b));
    let top = if reduce_tests::thorough() { 6 } else { 2 };
    let mut sweeps: Vec<reduce::Limits> = Vec::new();
    for n in 0..top {
        let d = reduce::Limits::default();
        sweeps.push(d.clone().max_memo(n));
        sweeps.push(d.clone().max_depth(n));
        sweeps.push(d.clone().max_int_digits(n));
        sweeps.push(d.clone().max_tree_nodes(n * n));
        sweeps.push(d.max_typed_depth(n));
    }
    for bytes in &cases {
        for limits in &sweeps {
            same_under::<Vec<i64>>(bytes, limits);
            same_under::<Vec<Vec<i64>>>(bytes, limits);
            same_under::<HashMap<String, Vec<String>>>(bytes, limits);
            same_under::<(i64, String, Vec<f64>)>(bytes, limits);
            same_under::<reduce::Value>(bytes, limits);
            same_under::<Vec<Rec>>(bytes, limits);
        }
    }
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
        let recs: Vec<Rec> = (0..5).map(rec).collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&recs, pr)));
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&recs[1], pr)));
        let slots = vec![
            Slot {
                x: 1,
                y: "a".into(),
                extra: None,
            },
            Slot {
                x: 2,
                y: "b".into(),
                extra: Some(3),
            },
        ];
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&slots, pr)));
        let loose = vec![
            Loose {
                id: 1,
                ..Loose::default()
            },
            Loose::default(),
        ];
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&loose, pr)));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(&vec![Color::Red, Color::Blue, Color::Red], pr)
        }));
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&Mode::Read, pr)));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(
                &vec![
                    Shape::Dot,
                    Shape::Rect { w: 1.0, h: 2.0 },
                    Shape::Circle(3.0),
                ],
                pr,
            )
        }));
        originals.push(p(&|pr| {
            reduce::to_vec_with_protocol(
                &vec![
                    Event::Quit,
                    Event::Key("k".into()),
                    Event::Click { x: 1, y: 2 },
                ],
                pr,
            )
        }));
        register_timedelta();
        let timed: Vec<Timed> = (0..4)
            .map(|i| Timed {
                n: i,
                took: std::time::Duration::from_millis(1500 * i as u64),
                wait: std::time::Duration::new(61 * i as u64, 250_000 * i as u32),
            })
            .collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&timed, pr)));
        let jobs: Vec<Job> = (0..3)
            .map(|i| Job {
                name: format!("job{i}"),
                settings: Settings {
                    retries: i,
                    hosts: (0..i).map(|h| format!("h{h}")).collect(),
                },
                took: std::time::Duration::from_secs(i as u64),
            })
            .collect();
        originals.push(p(&|pr| reduce::to_vec_with_protocol(&jobs, pr)));
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
    // Forty mutants of each in a thorough run, ten otherwise.
    let per = if reduce_tests::thorough() { 40 } else { 10 };
    let mut loads = 0;
    for original in &originals {
        for m in mutants(original, &mut r, per) {
            all_types(&m);
            loads += 1;
        }
    }
    assert!(loads >= 70 * per, "{loads}");
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
    // batch. The stream takes it for a batch, fails at the first item, and
    // reads the tuple as the list's one item.
    let one =
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01G@\x04\x00\x00\x00\x00\x00\x00\x88Ntq\x02a.";
    let mut u = Unpickler::from_slice(one);
    assert_eq!(u.load::<Vec<Row>>().unwrap(), want[..1]);
    assert!(u.streamed());
    assert!(same::<Vec<Row>>(one));
    // CPython's own: a list of one 5-tuple, and an empty list then a
    // 5-tuple (the MARK after the list's header is its parent's next value).
    for p in 2..=5 {
        let bytes = reduce_tests::cpython_dumps("[(1, 'a', 2.5, True, None)]", p);
        assert!(same::<Vec<Row>>(&bytes), "protocol {p}");
        let bytes = reduce_tests::cpython_dumps("([], (1, 'a', 2.5, True, None))", p);
        assert!(same::<(Vec<Row>, Row)>(&bytes), "protocol {p}");
        let bytes = reduce_tests::cpython_dumps("{(1, 2, 3, 4): 5}", p);
        assert!(
            same::<BTreeMap<(i64, i64, i64, i64), i64>>(&bytes),
            "protocol {p}"
        );
    }
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

#[test]
fn the_streams_fast_paths_agree_with_the_graph_path() {
    // A dict with a key written twice, out of order: the last entry wins,
    // and a BTreeMap is built at once from its pairs either way.
    let dup = b"\x80\x04}\x94(K\x03K\x01K\x01K\x02K\x03K\x05u.";
    assert!(same::<BTreeMap<i64, i64>>(dup));
    assert!(same::<HashMap<i64, i64>>(dup));
    let mut u = Unpickler::from_slice(dup);
    let m: BTreeMap<i64, i64> = u.load().unwrap();
    assert_eq!(m, BTreeMap::from([(1, 2), (3, 5)]));
    // Ints and floats each memoized (the atom's short path steps aside),
    // then one fetched.
    assert!(same::<Vec<i64>>(
        b"\x80\x02]q\x00(K\x01q\x01K\x02q\x02h\x01e."
    ));
    let floats = b"\x80\x02](G?\xf8\x00\x00\x00\x00\x00\x00q\x00G@\x04\x00\x00\x00\x00\x00\x00e.";
    assert!(same::<Vec<f64>>(floats));
    // A tuple of atoms read again from its first copy.
    let again = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x86\x94h\x01e.";
    assert!(same::<Vec<(i64, f64)>>(again));
    // A batch counted ahead whose string runs past the end.
    assert!(!same::<Vec<Value>>(b"\x80\x04](K\x01\x8c\x05ab"));
    assert!(!same::<Vec<i64>>(b"\x80\x04](K\x01\x8c\x05ab"));
    // Batches of more items than one reservation, and an item that is
    // not what the count saw (a str in a list of ints).
    let v: Vec<i64> = (0..2500).collect();
    assert!(same::<Vec<i64>>(&reduce::to_vec(&v).unwrap()));
    let v: Vec<Value> = vec![Value::Int(1), Value::from("x"), Value::Int(2)];
    let bytes = reduce::to_vec(&v).unwrap();
    assert!(!same::<Vec<i64>>(&bytes));
    assert!(same::<Vec<Value>>(&bytes));
    // Strings memoized once, twice, fetched again, of both lengths'
    // opcodes, not UTF-8, or cut short after their put.
    let strings: [&[u8]; 5] = [
        b"\x80\x04]\x94(\x8c\x01a\x94\x8c\x01b\x94h\x01e.",
        b"\x80\x04]\x94(\x8c\x01a\x94\x94\x8c\x01b\x94h\x02h\x01e.",
        b"\x80\x04]\x94(X\x02\x00\x00\x00ab\x94X\x01\x00\x00\x00c\x94h\x01e.",
        b"\x80\x04]\x94(\x8c\x01a\x94\x8c\x01\xff\x94e.",
        b"\x80\x04]\x94(\x8c\x01a\x94",
    ];
    for (i, bytes) in strings.iter().enumerate() {
        assert_eq!(same::<Vec<String>>(bytes), i < 3, "case {i}");
    }
    // Every shape of int and bool, each alone and each memoized.
    for p in 0..=5 {
        let v: Vec<(i64, bool, f64)> = [0, 1, 255, 256, 65535, 65536, -1, 1 << 40, i64::MIN]
            .iter()
            .map(|&i| (i, i % 2 == 0, i as f64))
            .collect();
        let bytes = reduce::to_vec_with_protocol(&v, p).unwrap();
        assert!(same::<Vec<(i64, bool, f64)>>(&bytes), "protocol {p}");
    }
}

/// Classes twin to the derived types above, in a module `stream_cases` (and
/// `geometry`) that the script makes up; each case pickled at protocols 0
/// to 5 (where CPython can), printed as `name protocol hex`.
const CASES_PY: &str = r#"
import enum, pickle, sys, types

def module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m

geometry = module("geometry")
cases = module("stream_cases")

def put(m, cls):
    cls.__module__ = m.__name__
    setattr(m, cls.__name__, cls)
    return cls

@lambda c: put(geometry, c)
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __reduce__(self):
        return (Point, (self.x, self.y))

def obj(cls, **attrs):
    o = cls.__new__(cls)
    for k, v in attrs.items():
        setattr(o, k, v)
    return o

for name in ["Rec", "Strict", "Loose", "Partial", "Open", "OpenMap", "Packet"]:
    put(cases, type(name, (), {}))

@lambda c: put(cases, c)
class Slot:
    __slots__ = ("x", "y", "__dict__")

@lambda c: put(cases, c)
class SlotRest:
    __slots__ = ("x", "y", "__dict__")

class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3
put(cases, Color)

class Mode(enum.Enum):
    READ = "r"
    WRITE = "w"
put(cases, Mode)

def reducing(m, name, fields, qualname=None):
    def __init__(self, *args):
        self.args = args
    def __reduce__(self):
        return (type(self), self.args)
    cls = type(name, (), {"__init__": __init__, "__reduce__": __reduce__})
    cls.__module__ = m.__name__
    if qualname:
        cls.__qualname__ = qualname
    return cls

Circle = put(cases, reducing(cases, "Circle", 1))
Twice = put(cases, reducing(cases, "Twice", 2))
Twice2 = put(cases, reducing(cases, "Twice2", 2))
Rect = put(cases, reducing(cases, "Rect", 2))
Dot = put(cases, reducing(cases, "Dot", 0))
class Event:
    pass
put(cases, Event)
for n in ["Click", "Key", "Quit"]:
    setattr(Event, n, reducing(cases, n, 0, "Event." + n))

class Crate:
    class Item:
        pass
put(cases, Crate)
Crate.Item.__module__ = "stream_cases"
Crate.Item.__qualname__ = "Crate.Item"

Rec, Strict, Loose, Partial, Open = (cases.Rec, cases.Strict, cases.Loose, cases.Partial, cases.Open)

def rec(i, **more):
    return obj(Rec, id=i, name="user%d" % i, tags=["t%d" % j for j in range(i % 3)],
               score=i / 4, at=Point(float(i), -1.5) if i % 2 else None, **more)

def slot(x, y, **more):
    s = Slot()
    s.x, s.y = x, y
    for k, v in more.items():
        setattr(s, k, v)
    return s

CASES = {
    "rec": rec(1),
    "recs": [rec(i) for i in range(6)],
    "rec_extra": rec(2, extra_s="s", extra_l=[1, 2, ["x", []]], extra_d={"k": 1, 2: None},
                     extra_n=None, extra_b=True, extra_f=1.5, extra_t=(), extra_e={}, tags2=["t0"]),
    "rec_extra_bytes": rec(2, extra_by=b"xy", extra_l=[b"z"]),
    "rec_extra_tuple": rec(3, extra=(1, 2)),
    "rec_order": obj(Rec, tags=[], at=None, score=1, name="n", id=7),
    "rec_missing": obj(Rec, id=1, name="x", tags=[], at=None),
    "rec_shared_tags": (lambda t: [obj(Rec, id=1, name="a", tags=t, score=0.0, at=None),
                                   obj(Rec, id=2, name="b", tags=t, score=0.0, at=None)])(["s"]),
    "rec_empty": Rec(),
    "strict": [obj(Strict, id=1, name="a"), obj(Strict, name="b", id=2)],
    "strict_extra": obj(Strict, id=1, name="a", more=1),
    "loose": [obj(Loose, id=3), obj(Loose, name="n", cache=[1]), Loose()],
    "partial": [obj(Partial, id=1), obj(Partial, id=2, label="l")],
    "slots": [slot(1, "a"), slot(2, "b", extra=5), slot(3, "c", other="o")],
    "slot_missing": Slot(),
    "open": obj(Open, id=1, other="z", more=[1], name="n"),
    "opens": [obj(Open, id=1, a="x"), obj(Open, b=(1, 2), id=2, a="y"), obj(Open, id=3)],
    "twice": (lambda t: Twice(t, t))(("x", 1)),
    "twice2": (lambda t: Twice2(t, t))(("x", 1)),
    "twices": [Twice(("x", 1), "y"), Twice2(2, ("z",))],
    "open_maps": [obj(cases.OpenMap, id=1, b="x", a="y"), obj(cases.OpenMap, id=2)],
    "slot_rests": [obj(SlotRest, x=1, y="a"), obj(SlotRest, x=3, y="c", other="o")],
    "colors": [Color.RED, Color.BLUE, Color.RED, Color.GREEN],
    "mode": Mode.WRITE,
    "modes": [Mode.READ, Mode.WRITE, Mode.READ],
    "shapes": [Circle(1.5), Rect(2.0, 3.0), Dot(), Circle(0.5)],
    "items": [obj(Crate.Item, n=1), obj(Crate.Item, n=2)],
    "packets": [obj(cases.Packet, n=1, payload=b"ab"), obj(cases.Packet, payload=b"c", n=2)],
    "packet_bytearray": [obj(cases.Packet, n=2, payload=bytearray(b"c"))],
    "events": [Event.Click(1, 2), Event.Key("k"), Event.Quit(), Event.Click(3, 4)],
}

for name, value in CASES.items():
    for p in range(6):
        try:
            data = pickle.dumps(value, protocol=p)
        except Exception:
            continue
        print(name, p, data.hex())
"#;

/// CPython's pickles of the cases in [`CASES_PY`], by name and protocol.
fn cpython_cases() -> Vec<(String, u8, Vec<u8>)> {
    let out = reduce_tests::python3()
        .args(["-c", CASES_PY])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap().to_owned();
            let proto = parts.next().unwrap().parse().unwrap();
            let hex = parts.next().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (name, proto, bytes)
        })
        .collect()
}

fn load(bytes: &[u8]) -> Unpickler<'_, reduce::SliceRead<'_>> {
    Unpickler::from_slice(bytes)
}

fn rec(i: i64) -> Rec {
    Rec {
        id: i,
        name: format!("user{i}"),
        tags: (0..i % 3).map(|j| format!("t{j}")).collect(),
        score: i as f64 / 4.0,
        at: (i % 2 == 1).then_some(Point {
            x: i as f64,
            y: -1.5,
        }),
    }
}

#[test]
fn the_stream_reads_what_cpython_writes_for_instances_and_enums() {
    let cases = cpython_cases();
    assert!(cases.len() > 100, "{} cases", cases.len());
    for (name, proto, bytes) in &cases {
        // Both paths agree on every case, as every type of the test.
        all_types(bytes);
        // CPython's own shapes are streamed at every protocol (protocols 0
        // and 1 write an instance as `copyreg._reconstructor(cls, object,
        // None)`).
        let streamed = |ok: bool| assert!(ok, "{name} at protocol {proto} was not streamed");
        match name.as_str() {
            "rec" => {
                streamed(same::<Rec>(bytes));
                assert_eq!(load(bytes).load::<Rec>().unwrap(), rec(1));
            }
            "recs" => {
                streamed(same::<Vec<Rec>>(bytes));
                let want: Vec<Rec> = (0..6).map(rec).collect();
                assert_eq!(load(bytes).load::<Vec<Rec>>().unwrap(), want);
            }
            "rec_extra" => {
                streamed(same::<Rec>(bytes));
                assert_eq!(load(bytes).load::<Rec>().unwrap(), rec(2));
            }
            "rec_extra_bytes" => {
                // `bytes` has its own opcodes from protocol 3; before, it is
                // `_codecs.encode(...)`, left to the Graph path.
                let ok = same::<Rec>(bytes);
                assert!(
                    ok || *proto < 3,
                    "{name} at protocol {proto} was not streamed"
                );
                assert_eq!(load(bytes).load::<Rec>().unwrap(), rec(2));
            }
            "rec_order" => {
                streamed(same::<Rec>(bytes));
                let r = load(bytes).load::<Rec>().unwrap();
                assert_eq!((r.id, r.name.as_str(), r.score), (7, "n", 1.0));
            }
            "rec_shared_tags" => {
                // One list in two objects: read by value on both paths.
                streamed(same::<Vec<Rec>>(bytes));
                let r = load(bytes).load::<Vec<Rec>>().unwrap();
                assert_eq!(
                    (r[0].tags.clone(), r[1].tags.clone()),
                    (vec!["s".to_string()], vec!["s".to_string()])
                );
            }
            "rec_missing" | "rec_empty" => {
                let err = load(bytes).load::<Rec>().unwrap_err().to_string();
                assert!(
                    err.contains("expected attribute `score`")
                        || err.contains("expected attribute `id`"),
                    "{err}"
                );
            }
            "strict" => {
                streamed(same::<Vec<Strict>>(bytes));
                let v = load(bytes).load::<Vec<Strict>>().unwrap();
                assert_eq!(
                    v[1],
                    Strict {
                        id: 2,
                        name: "b".into()
                    }
                );
            }
            "strict_extra" => {
                let err = load(bytes).load::<Strict>().unwrap_err().to_string();
                assert!(err.contains("found `more`"), "{err}");
            }
            "loose" => {
                streamed(same::<Vec<Loose>>(bytes));
                let v = load(bytes).load::<Vec<Loose>>().unwrap();
                assert_eq!(
                    v[0],
                    Loose {
                        id: 3,
                        ..Loose::default()
                    }
                );
                assert_eq!(
                    v[1],
                    Loose {
                        name: "n".into(),
                        ..Loose::default()
                    }
                );
                assert_eq!(v[2], Loose::default());
            }
            "partial" => {
                streamed(same::<Vec<Partial>>(bytes));
                let v = load(bytes).load::<Vec<Partial>>().unwrap();
                assert_eq!(
                    v[0],
                    Partial {
                        id: 1,
                        label: String::new()
                    }
                );
                assert_eq!(
                    v[1],
                    Partial {
                        id: 2,
                        label: "l".into()
                    }
                );
            }
            "slots" => {
                streamed(same::<Vec<Slot>>(bytes));
                let v = load(bytes).load::<Vec<Slot>>().unwrap();
                assert_eq!(
                    v[0],
                    Slot {
                        x: 1,
                        y: "a".into(),
                        extra: None
                    }
                );
                assert_eq!(
                    v[1],
                    Slot {
                        x: 2,
                        y: "b".into(),
                        extra: Some(5)
                    }
                );
                assert_eq!(
                    v[2],
                    Slot {
                        x: 3,
                        y: "c".into(),
                        extra: None
                    }
                );
            }
            "open" => {
                // A rest field keeps the other attributes, in order.
                streamed(same::<Open>(bytes));
                let o = load(bytes).load::<Open>().unwrap();
                assert_eq!(o.id, 1);
                assert_eq!(
                    o.rest,
                    [
                        ("other".to_string(), reduce::Value::str("z")),
                        (
                            "more".to_string(),
                            reduce::Value::List(vec![reduce::Value::Int(1)])
                        ),
                        ("name".to_string(), reduce::Value::str("n")),
                    ]
                );
            }
            "twice" | "twice2" => {
                // One tuple in both fields: left to the Graph path, which
                // reads it by value into each.
                let shared = if name == "twice" {
                    same::<Twice>(bytes)
                } else {
                    same::<Twice2>(bytes)
                };
                assert!(!shared, "{name} at protocol {proto} was streamed");
                let t = load(bytes).load::<Twice>();
                let t2 = load(bytes).load::<Twice2>();
                let want =
                    reduce::Value::Tuple(vec![reduce::Value::str("x"), reduce::Value::Int(1)]);
                match name.as_str() {
                    "twice" => assert_eq!(
                        t.unwrap(),
                        Twice {
                            a: want.clone(),
                            b: want
                        }
                    ),
                    _ => assert_eq!(
                        t2.unwrap(),
                        Twice2 {
                            b: want.clone(),
                            a: want
                        }
                    ),
                }
            }
            "twices" => {
                let mut u = load(bytes);
                let v: Vec<reduce::Value> = u.load().unwrap();
                assert!(u.streamed());
                assert_eq!(v.len(), 2);
                streamed(same::<(Twice, Twice2)>(
                    &reduce::to_vec_with_protocol(
                        &(
                            Twice {
                                a: reduce::Value::str("a"),
                                b: reduce::Value::Int(2),
                            },
                            Twice2 {
                                b: reduce::Value::Int(3),
                                a: reduce::Value::Tuple(vec![]),
                            },
                        ),
                        *proto,
                    )
                    .unwrap(),
                ));
            }
            "open_maps" => {
                streamed(same::<Vec<OpenMap>>(bytes));
                let v = load(bytes).load::<Vec<OpenMap>>().unwrap();
                let want: BTreeMap<String, reduce::Value> = [
                    ("a".to_string(), reduce::Value::str("y")),
                    ("b".to_string(), reduce::Value::str("x")),
                ]
                .into();
                assert_eq!(v[0].rest, want);
                assert_eq!((v[1].id, v[1].rest.len()), (2, 0));
            }
            "slot_rests" => {
                streamed(same::<Vec<SlotRest>>(bytes));
                let v = load(bytes).load::<Vec<SlotRest>>().unwrap();
                // `y` is a slot the type has no field for; `other` is in
                // the `__dict__` part, read before the slots.
                assert_eq!(
                    v[0].rest,
                    [(reduce::Value::str("y"), reduce::Value::str("a"))]
                );
                assert_eq!(
                    v[1].rest,
                    [
                        (reduce::Value::str("other"), reduce::Value::str("o")),
                        (reduce::Value::str("y"), reduce::Value::str("c"))
                    ]
                );
            }
            "opens" => {
                streamed(same::<Vec<Open>>(bytes));
                let v = load(bytes).load::<Vec<Open>>().unwrap();
                assert_eq!(v.len(), 3);
                assert!(v[2].rest.is_empty());
            }
            "colors" => {
                streamed(same::<Vec<Color>>(bytes));
                let v = load(bytes).load::<Vec<Color>>().unwrap();
                assert_eq!(v, [Color::Red, Color::Blue, Color::Red, Color::Green]);
            }
            "mode" => {
                streamed(same::<Mode>(bytes));
                assert_eq!(load(bytes).load::<Mode>().unwrap(), Mode::Write);
            }
            "modes" => {
                streamed(same::<Vec<Mode>>(bytes));
            }
            "shapes" => {
                streamed(same::<Vec<Shape>>(bytes));
                let v = load(bytes).load::<Vec<Shape>>().unwrap();
                assert_eq!(
                    v,
                    [
                        Shape::Circle(1.5),
                        Shape::Rect { w: 2.0, h: 3.0 },
                        Shape::Dot,
                        Shape::Circle(0.5)
                    ]
                );
            }
            "packets" => {
                let ok = same::<Vec<Packet>>(bytes);
                assert!(
                    ok || *proto < 3,
                    "{name} at protocol {proto} was not streamed"
                );
                let v = load(bytes).load::<Vec<Packet>>().unwrap();
                assert_eq!(
                    v[1],
                    Packet {
                        n: 2,
                        payload: b"c".to_vec()
                    }
                );
            }
            "items" => {
                streamed(same::<Vec<Item>>(bytes));
                let v = load(bytes).load::<Vec<Item>>().unwrap();
                assert_eq!(v, [Item { n: 1 }, Item { n: 2 }]);
            }
            "events" => {
                // Before protocol 4 a nested name is `getattr(Event,
                // "Click")`, the class then fetched from the memo whole.
                streamed(same::<Vec<Event>>(bytes));
                let v = load(bytes).load::<Vec<Event>>().unwrap();
                assert_eq!(v[3], Event::Click { x: 3, y: 4 });
            }
            _ => {}
        }
    }
}

#[test]
fn both_paths_agree_on_mutations_of_cpythons_instances_and_enums() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    // Twelve mutants of each case in a thorough run, three otherwise.
    let per = if reduce_tests::thorough() { 12 } else { 3 };
    let mut loads = 0;
    for (_, _, bytes) in cpython_cases() {
        for m in mutants(&bytes, &mut r, per) {
            all_types(&m);
            loads += 1;
        }
    }
    assert!(loads > 80 * per, "{loads}");
}

/// Every CPython fixture that loads as a `Value` is read by the stream, but
/// for those that fetch a list or dict from the memo (a shared mutable
/// object, which the stream leaves to the Graph path).
#[test]
fn the_stream_reads_values() {
    let mut streamed = 0;
    let mut shared = 0;
    let mut at_root = 0;
    for entry in std::fs::read_dir(fixtures().join("corpus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".pickle") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if Unpickler::from_slice(&bytes)
            .streaming(false)
            .load::<reduce::Value>()
            .is_err()
        {
            continue;
        }
        // A whole pickle as a `Value` takes the Graph reader, the faster
        // of the two there, and the stream only once a memo fetch has lost
        // the Graph reader's bet; behind a `Box` it is read by the stream.
        let root = same::<reduce::Value>(&bytes);
        assert!(
            !root || fetches(&bytes),
            "{name}: a Value was streamed at the root without a memo fetch"
        );
        if root {
            at_root += 1;
        }
        let read = same::<Box<reduce::Value>>(&bytes);
        if name.starts_with("shared_list") || name.starts_with("shared_dict") {
            assert!(!read, "{name}: a shared list was streamed");
            shared += 1;
        } else {
            assert!(read, "{name} was not streamed as a Value");
            streamed += 1;
        }
        if name.starts_with("list") || name.starts_with("dicts") {
            assert!(same::<Vec<reduce::Value>>(&bytes), "{name} as Vec<Value>");
        }
    }
    assert!(
        streamed > 300 && shared >= 12 && at_root > 0,
        "{streamed} {shared} {at_root}"
    );
}

/// Whether the pickle fetches anything from its memo.
fn fetches(bytes: &[u8]) -> bool {
    reduce::inspect::disassemble(bytes)
        .unwrap()
        .iter()
        .any(|i| matches!(i.name, "GET" | "BINGET" | "LONG_BINGET"))
}

/// A `Value` whose pickle shares a tuple between records, besides the
/// keys: the Graph reader loses its bet at the first fetch of the tuple
/// (a fetched str it copies) and the stream reads the tree instead, with
/// the value, the position and every error of the Graph path, on the
/// pickle, each of its prefixes and each of its bytes changed.
#[test]
fn a_value_that_shares_a_tuple_is_streamed_after_the_lost_bet() {
    let mut graph = reduce::Graph::default();
    let keys: Vec<Value> = ["alpha", "beta", "gamma", "delta"]
        .into_iter()
        .map(|k| Value::Ref(graph.insert(Value::from(k))))
        .collect();
    let shared = Value::Ref(graph.insert(Value::Tuple(vec![Value::from("t"), Value::Int(7)])));
    let records = (0..3)
        .map(|i| {
            let d = keys.iter().map(|k| {
                let item = Value::Tuple(vec![Value::Int(i), Value::from("x")]);
                (k.clone(), item)
            });
            let mut d: Vec<(Value, Value)> = d.collect();
            d.push((Value::Int(i), shared.clone()));
            Value::Dict(d)
        })
        .collect();
    *graph.root_mut() = Value::List(records);
    let value = graph.clone().into_tree(1000).unwrap();
    for proto in 2..=5 {
        let mut p = reduce::Pickler::new(Vec::new()).protocol(proto);
        p.dump(&graph).unwrap();
        let bytes = p.into_inner();
        assert!(fetches(&bytes), "protocol {proto}: no memo fetch");
        let mut u = Unpickler::from_slice(&bytes);
        assert_eq!(u.load::<Value>().unwrap(), value);
        assert!(
            same::<Box<Value>>(&bytes),
            "protocol {proto}: the stream misses"
        );
        assert!(u.streamed(), "protocol {proto}: not streamed after the bet");
        assert!(same::<Value>(&bytes));
        same_when_damaged(&bytes, bytes.len(), &[0, 1, b'h', b'j', 0x94, 0xff]);
    }
}

/// A `Value` whose pickle fetches only strings and a class from the memo,
/// as CPython writes a list of instances (the class and each attribute
/// name written once, then fetched): the Graph reader copies each fetch
/// into the tree and wins its bet, with the value, the position and every
/// error of the Graph path that keeps the fetched puts, on the pickle, each
/// of its prefixes and each of its bytes changed.
#[test]
fn a_value_that_fetches_strings_and_a_class_wins_the_bet() {
    let recs: Vec<Rec> = (0..3)
        .map(|i| Rec {
            id: i,
            name: format!("n{i}"),
            tags: vec!["a".into(), format!("t{i}")],
            score: 0.5,
            at: None,
        })
        .collect();
    for proto in [0, 1, 2, 3, 4, 5] {
        let bytes = reduce::to_vec_with_protocol(&recs, proto).unwrap();
        assert!(fetches(&bytes), "protocol {proto}: no memo fetch");
        let mut u = Unpickler::from_slice(&bytes);
        let value = u.load::<Value>().unwrap();
        assert!(!u.streamed(), "protocol {proto}: the bet is lost");
        let slow = Unpickler::from_slice(&bytes)
            .streaming(false)
            .load::<Value>()
            .unwrap();
        assert_eq!(value, slow, "protocol {proto}");
        assert_eq!(format!("{value:?}").matches("stream_cases.Rec").count(), 3);
        assert!(!same::<Value>(&bytes));
        same_when_damaged(&bytes, bytes.len(), &[0, 1, b'h', b'j', b'g', 0x94, 0xff]);
    }
}

/// Past 64 KiB the Graph reader does not copy fetches (its notes would
/// cost a large pickle of no fetch more than they save): a long list of
/// instances loses the bet and is streamed, with the Graph path's value.
#[test]
fn a_long_list_of_instances_is_streamed_after_the_lost_bet() {
    let recs: Vec<Rec> = (0..3000)
        .map(|i| Rec {
            id: i,
            name: format!("n{i}"),
            tags: vec!["a".into()],
            score: 0.5,
            at: None,
        })
        .collect();
    let bytes = reduce::to_vec(&recs).unwrap();
    assert!(bytes.len() > 1 << 16, "{} bytes", bytes.len());
    let mut u = Unpickler::from_slice(&bytes);
    u.load::<Value>().unwrap();
    assert!(u.streamed());
    assert!(same::<Value>(&bytes));
    // A hundred of them, within 64 KiB, win the bet.
    let short = reduce::to_vec(&recs[..100]).unwrap();
    assert!(short.len() <= 1 << 16);
    assert!(!same::<Value>(&short));
}

/// The copies a won bet makes count against `max_tree_nodes` as the Graph
/// path's shared objects do: under every limit, from none to well past the
/// pickle's length, both paths give the same value or the same error.
#[test]
fn fetched_copies_keep_the_tree_node_limit() {
    let recs: Vec<Rec> = (0..4)
        .map(|i| Rec {
            id: i,
            name: "same".into(),
            tags: vec!["a".into(); 3],
            score: 0.5,
            at: None,
        })
        .collect();
    let bytes = reduce::to_vec(&recs).unwrap();
    assert!(fetches(&bytes));
    let mut oks = 0;
    for n in 0..=5 * bytes.len() {
        let limits = reduce::Limits::default().max_tree_nodes(n);
        let fast = Unpickler::from_slice(&bytes)
            .limits(limits.clone())
            .load::<Value>();
        let slow = Unpickler::from_slice(&bytes)
            .limits(limits)
            .streaming(false)
            .load::<Value>();
        match (fast, slow) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "max_tree_nodes {n}");
                oks += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "max_tree_nodes {n}"),
            (a, b) => panic!("max_tree_nodes {n}: {a:?} and {b:?}"),
        }
    }
    // Refused under the smallest limits, read under the larger.
    assert!(oks > 0 && oks <= 5 * bytes.len());
}

/// What a fetch copies is the object the put put: a key put twice gives
/// its last object; a str put from under another string's opcode, or a
/// copy put again, is not mistaken for the string just read (those lose
/// the bet and are read again); a global is cloned. The values are those
/// the Graph path gives.
#[test]
fn a_fetched_copy_is_the_object_put() {
    let s = |t: &str| {
        let mut b = vec![b'X'];
        b.extend((t.len() as u32).to_le_bytes());
        b.extend(t.as_bytes());
        b
    };
    let (a, b) = (s("a"), s("b"));
    let cases: Vec<(Vec<u8>, Vec<Value>)> = vec![
        // 'a' put at 1, 'b' put at 1 again: the GET is 'b'.
        (
            [&b"]("[..], &a, b"q\x01", &b, b"q\x01e", b"h\x01a"].concat(),
            vec!["a".into(), "b".into(), "b".into()],
        ),
        // 'a' put after 'b' is popped: the put is 'a'.
        (
            [&b"]("[..], &a, &b, b"0q\x00e", b"h\x00a"].concat(),
            vec!["a".into(), "a".into()],
        ),
        // A copy of 'a', put again at 1 and fetched.
        (
            [&b"]("[..], &a, b"q\x000h\x00q\x01e", b"h\x01a"].concat(),
            vec!["a".into(), "a".into()],
        ),
        // A global put once, fetched after it left its slot.
        (
            [&b"]("[..], b"cbuiltins\nset\nq\x00", &a, b"e", b"h\x00a"].concat(),
            vec![
                Value::global("builtins", "set"),
                "a".into(),
                Value::global("builtins", "set"),
            ],
        ),
    ];
    for (body, expected) in cases {
        let bytes = [&b"\x80\x02"[..], &body, b"."].concat();
        let mut u = Unpickler::from_slice(&bytes);
        assert_eq!(
            u.load::<Value>().unwrap(),
            Value::List(expected),
            "{bytes:?}"
        );
        same::<Value>(&bytes);
    }
}

/// The Graph reader notes how to copy a fetched str or global only at the
/// first `GET` that needs it, from the puts it has read: a str put long
/// before (after hundreds of other puts, by every put opcode) is copied and
/// the bet won; a global, a key put twice and keys past the dense ones
/// before that first `GET` are copied as the machine put them. A key whose
/// last put is not a str loses the bet (and is read again) instead of
/// giving the str put first. Cut short or changed anywhere, each pickle
/// reads as the Graph path reads it.
#[test]
fn a_first_fetch_long_after_its_put_copies_the_object_put() {
    let x = |t: &str| [&b"X"[..], &(t.len() as u32).to_le_bytes(), t.as_bytes()].concat();
    let short = |t: &str| [&[0x8c, t.len() as u8][..], t.as_bytes()].concat();
    let s = |t: &str| Value::from(t);
    let set = Value::global("builtins", "set");

    // Protocol 2: 300 strs put by BINPUT and LONG_BINPUT, 10 by PUT, then
    // fetched by each GET opcode into a tuple beside the list.
    let mut many = b"\x80\x02](".to_vec();
    let mut items: Vec<Value> = Vec::new();
    for i in 0..300u32 {
        let t = format!("s{i}");
        many.extend(x(&t));
        match u8::try_from(i) {
            Ok(k) => many.extend([b'q', k]),
            Err(_) => many.extend([&b"r"[..], &i.to_le_bytes()].concat()),
        }
        items.push(s(&t));
    }
    for i in 300..310 {
        let t = format!("p{i}");
        many.extend(x(&t));
        many.extend(format!("p{i}\n").bytes());
        items.push(s(&t));
    }
    many.extend(b"eh\x00j\x2b\x01\x00\x00g305\n\x87\x86.");
    let items = Value::Tuple(vec![
        Value::List(items),
        Value::Tuple(vec![s("s0"), s("s299"), s("p305")]),
    ]);

    // Protocol 4: MEMOIZE, a global, key 4 put twice, then a key past the
    // dense ones; each fetched into a tuple after the list has taken them.
    let four = [
        &b"\x80\x04]\x94("[..],
        &short("builtins"),
        b"\x94",
        &short("set"),
        b"\x94\x93\x94",
        &short("a"),
        b"\x94",
        &short("b"),
        b"q\x04",
        &short("c"),
        b"\x94q\x09N\x94e",
        b"(h\x03h\x04h\x01h\x05t\x86.",
    ]
    .concat();
    let four_items = Value::Tuple(vec![
        Value::List(vec![set.clone(), s("a"), s("b"), s("c"), Value::None]),
        Value::Tuple(vec![set, s("b"), s("builtins"), s("c")]),
    ]);

    let mut u = Unpickler::from_slice(&many);
    assert_eq!(u.load::<Value>().unwrap(), items);
    assert!(!u.streamed(), "the bet is lost");
    assert!(!same::<Value>(&many));
    // (Were the bet lost here, the stream would not read it either: it
    // leaves a key put twice or out of order to the Graph path. The
    // machine's unit tests compare these notes with those made put by put.)
    assert_eq!(load(&four).load::<Value>().unwrap(), four_items);
    assert!(!same::<Value>(&four));

    // 'a' put at 0 and 1, then a list at 0: key 1 is copied, key 0 (no
    // longer a str) loses the bet and is read again.
    let twice = [
        &b"\x80\x02]("[..],
        &x("a"),
        b"q\x00",
        &x("a"),
        b"q\x01]q\x00eh\x01ah\x00a.",
    ]
    .concat();
    let mut u = Unpickler::from_slice(&twice);
    assert_eq!(
        u.load::<Value>().unwrap(),
        Value::List(vec![
            s("a"),
            s("a"),
            Value::List(vec![]),
            s("a"),
            Value::List(vec![]),
        ])
    );
    same::<Value>(&twice);

    for bytes in [&many, &four, &twice] {
        same_when_damaged(bytes, 200, &[0, b'q', b'h', 0x94, 0x8c, b'X', 0xff]);
    }
}

/// Derived types with fields read by their Graph-path readers (`with`,
/// `registry`, `serde`) are read by the stream, at every protocol, with
/// the value the Graph path gives.
#[test]
fn the_stream_reads_fields_read_by_their_own_readers() {
    register_timedelta();
    let timed = vec![
        Timed {
            n: 1,
            took: std::time::Duration::from_millis(1500),
            wait: std::time::Duration::new(61, 5000),
        },
        Timed {
            n: 2,
            took: std::time::Duration::ZERO,
            wait: std::time::Duration::new(86_401, 0),
        },
    ];
    let jobs = vec![Job {
        name: "sync".into(),
        settings: Settings {
            retries: 3,
            hosts: vec!["a".into(), "b".into()],
        },
        took: std::time::Duration::from_secs(2),
    }];
    for p in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(&timed, p).unwrap();
        assert!(same::<Vec<Timed>>(&bytes), "Timed at protocol {p}");
        assert_eq!(load(&bytes).load::<Vec<Timed>>().unwrap(), timed);
        let bytes = reduce::to_vec_with_protocol(&jobs, p).unwrap();
        assert!(same::<Vec<Job>>(&bytes), "Job at protocol {p}");
        assert_eq!(load(&bytes).load::<Vec<Job>>().unwrap(), jobs);
    }
    let classes = Classes {
        a: reduce::Value::global("builtins", "set"),
        b: reduce::Value::global("builtins", "frozenset"),
    };
    for p in 0..=5 {
        let bytes = reduce::to_vec_with_protocol(&classes, p).unwrap();
        if p >= 4 {
            assert_eq!(
                bytes.windows(8).filter(|w| w == b"builtins").count(),
                1,
                "the module name once, then fetched"
            );
        }
        assert!(same::<Classes>(&bytes), "Classes at protocol {p}");
        assert_eq!(load(&bytes).load::<Classes>().unwrap(), classes);
    }
    // A field reader's error is the Graph path's: a negative duration.
    let mut t = reduce::to_vec(&timed[0]).unwrap();
    let at = t
        .windows(9)
        .position(|w| w == [b'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0])
        .unwrap();
    t[at + 1] = 0xbf;
    let mut u = load(&t);
    let err = u.load::<Timed>().unwrap_err().to_string();
    assert!(!u.streamed());
    assert!(err.contains("took"), "{err}");
    assert!(!same::<Timed>(&t));
}

/// Hostile shapes read as a `Value`: deep nesting, a long chain of
/// tuples each wrapping the last, and a memo DAG that doubles at each
/// level. The stream leaves each to the Graph path (no stack overflow, no
/// unbounded work), whose error both paths give.
#[test]
fn the_stream_refuses_hostile_values_as_the_graph_path_does() {
    let n = 200_000;
    let mut nested = b"\x80\x02".to_vec();
    nested.extend(std::iter::repeat_n(b']', n));
    nested.extend(std::iter::repeat_n(b'a', n - 1));
    nested.push(b'.');
    let mut chain = b"\x80\x02K\x01".to_vec();
    chain.extend(std::iter::repeat_n(0x85u8, n));
    chain.push(b'.');
    let mut dag = b"\x80\x02K\x01K\x01\x86q\x00".to_vec();
    for i in 0..40u8 {
        dag.extend([b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    dag.push(b'.');
    for bytes in [nested, chain, dag] {
        assert!(!same::<reduce::Value>(&bytes));
        assert!(!same::<Vec<reduce::Value>>(&bytes));
        assert!(load(&bytes).load::<reduce::Value>().is_err());
    }
}

/// Sweeps the typed depth limit over `value`'s pickle: both paths give the
/// same result under each limit, the sweep crosses the least limit the
/// `Graph` path reads it under, and the stream reads it itself from one
/// level above that (it counts the root's read as a level).
fn levels<T: Reduce + Construct + PartialEq + Debug>(value: &T) {
    let bytes = reduce::to_vec(value).unwrap();
    let mut read = Vec::new();
    for n in 0..12 {
        let limits = reduce::Limits::default().max_typed_depth(n);
        same_under::<T>(&bytes, &limits);
        let mut fast = Unpickler::from_slice(&bytes).limits(limits);
        let ok = fast.load::<T>().is_ok();
        read.push((n, ok, fast.streamed()));
    }
    let name = std::any::type_name::<T>();
    let least = read.iter().position(|r| r.1).expect("some limit reads");
    assert!(least > 0, "{name}: {read:?}");
    assert!(
        read.iter()
            .all(|&(n, ok, streamed)| ok == (n >= least) && streamed == (n > least)),
        "{name}: {read:?}"
    );
}

/// The typed depth limit holds on the stream exactly as on the `Graph`
/// path for containers and the atoms inside them (ints, `str`s, optional
/// floats, a derived type's fields), which the stream reads without a
/// level of their own: an atom counted as a container, or a container
/// counted as an atom, moves the stream's limit off the `Graph` path's.
#[test]
fn both_paths_count_the_same_typed_levels() {
    levels(&(Some(vec![1i64, 2]), 2.5f64));
    levels(&(1i64, vec![vec![(7u8, "s".to_owned())]]));
    levels(&vec![(1i64, Some(2.5f64)), (2, None)]);
    levels(&Some(vec![Some("x".to_owned())]));
    levels(&Rec {
        id: 7,
        name: "r".into(),
        tags: vec!["t".into()],
        score: 0.5,
        at: Some(Point { x: 1.0, y: 2.0 }),
    });
}
