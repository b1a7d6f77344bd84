//! reduce side by side with CPython's C `_pickle`, serde-pickle and bincode,
//! on the same data, in one run:
//!
//! ```sh
//! cargo bench -p reduce-core --bench compare
//! ```
//!
//! Criterion measures the Rust libraries (its usual report, per benchmark);
//! `benches/cpython.py` measures CPython on the very pickles reduce wrote.
//! At the end tables give each median and its ratio to reduce's, the 16 MiB
//! bytes payload beside a plain memcpy, the peak memory of each read, and
//! the bytes each library wrote.
//! `-- <filter>` runs only the datasets whose name contains the filter.
//! Each dataset sets its own sample size, so criterion's `--sample-size`
//! does not apply.
//!
//! The datasets: bulk data (`ints`, `floats`, `strings`, `records`, `map`),
//! a shared DAG (`dag60`), pyperformance's `bm_pickle` shapes (`pp_*`), a
//! small tuple for latency (`tuple3`) and 16 MiB of bytes (`bytes16m`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use reduce::{Graph, Value};
use serde::{Deserialize, Serialize};

/// The global allocator: the system's, counting the bytes held while a
/// read's memory is measured ([`peak_ratio`]). Counting is off while
/// criterion times, so the timings pay one relaxed load per allocation.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated and not yet freed since counting started.
static CURRENT: AtomicIsize = AtomicIsize::new(0);
/// The highest `CURRENT` since counting started.
static PEAK: AtomicIsize = AtomicIsize::new(0);

impl Counting {
    fn grew(by: isize) {
        if COUNTING.load(Relaxed) {
            let now = CURRENT.fetch_add(by, Relaxed) + by;
            PEAK.fetch_max(now, Relaxed);
        }
    }
}

// SAFETY: every call goes to `System` unchanged; the counters only watch.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::grew(-(layout.size() as isize));
    }

    // Counted as the change in size: the moment a moving realloc holds both
    // blocks is not seen (it is the same for every library).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs one read with the allocator counting and gives its peak memory as a
/// multiple of what it has to hold: (input + the most the read held at
/// once) / (input + what the result holds when the read returns). 1.0 is a
/// reader that allocates nothing but its result.
fn peak_ratio<R>(input: usize, read: impl FnOnce() -> R) -> f64 {
    CURRENT.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let result = black_box(read());
    COUNTING.store(false, Relaxed);
    let (held, peak) = (CURRENT.load(Relaxed), PEAK.load(Relaxed));
    drop(result);
    (input as f64 + peak as f64) / (input as f64 + held as f64)
}

/// Per-iteration times of each benchmark's measured samples, by id.
type Samples = RefCell<HashMap<String, Vec<f64>>>;

/// How long criterion spends on each benchmark of a dataset.
#[derive(Clone, Copy)]
struct Budget {
    samples: usize,
    warm_up: Duration,
    measure: Duration,
}

/// Bulk data: milliseconds per call.
const BULK: Budget = Budget {
    samples: 20,
    warm_up: Duration::from_millis(500),
    measure: Duration::from_secs(2),
};
/// Microseconds per call: a second gives thousands of calls.
const SMALL: Budget = Budget {
    samples: 20,
    warm_up: Duration::from_millis(300),
    measure: Duration::from_secs(1),
};
/// The 16 MiB payload: fewer samples keep its benchmarks short.
const HUGE: Budget = Budget {
    samples: 10,
    warm_up: Duration::from_millis(300),
    measure: Duration::from_secs(2),
};

/// The benchmarks of one dataset, as one criterion group.
struct Timer<'c> {
    group: BenchmarkGroup<'c, WallTime>,
    name: String,
    samples: &'c Samples,
    n: usize,
}

impl<'c> Timer<'c> {
    fn new(c: &'c mut Criterion, samples: &'c Samples, name: &str, budget: Budget) -> Self {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(budget.samples)
            .warm_up_time(budget.warm_up)
            .measurement_time(budget.measure);
        Timer {
            group,
            name: name.to_owned(),
            samples,
            n: budget.samples,
        }
    }

    /// Times `f` (`what` is `op/library`) the way criterion asks, and keeps
    /// each measured sample's time per call.
    fn time<R>(&mut self, what: &str, mut f: impl FnMut() -> R) {
        let id = format!("{}/{what}", self.name);
        let samples = self.samples;
        self.group.bench_function(what, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(f());
                }
                let took = start.elapsed();
                samples
                    .borrow_mut()
                    .entry(id.clone())
                    .or_default()
                    .push(took.as_nanos() as f64 / iters as f64);
                took
            })
        });
        // The last `n` samples are criterion's measured ones; the earlier
        // are its warm-up.
        if let Some(v) = samples.borrow_mut().get_mut(&id) {
            let warm_up = v.len().saturating_sub(self.n);
            v.drain(..warm_up);
        }
    }
}

fn median(samples: &Samples, id: &str) -> Option<f64> {
    let mut v = samples.borrow().get(id)?.clone();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One dataset, as Rust builds it; every library gets the same value.
macro_rules! dataset {
    ($c:expr, $samples:expr, $rows:expr, $budget:expr, $name:expr, $ty:ty, $value:expr) => {{
        let name: &str = $name;
        let value: $ty = $value;
        let pickle = reduce::to_vec(&value).unwrap();
        let serde_pickle_bytes = serde_pickle::to_vec(&value, Default::default()).unwrap();
        let bincode_bytes = bincode::serialize(&value).unwrap();
        // The libraries must agree on the value before they are timed.
        assert!(reduce::from_slice::<$ty>(&pickle).unwrap() == value);
        assert!(
            serde_pickle::from_slice::<$ty>(&serde_pickle_bytes, Default::default()).unwrap()
                == value
        );
        assert!(bincode::deserialize::<$ty>(&bincode_bytes).unwrap() == value);
        // reduce's serde side, on what it writes for the serde mapping.
        let serde_bytes_out = reduce::serde::to_vec(&value).unwrap();
        assert!(reduce::serde::from_slice::<$ty>(&serde_bytes_out).unwrap() == value);

        let mut t = Timer::new($c, $samples, name, $budget);
        t.time("write/reduce", || {
            reduce::to_vec(black_box(&value)).unwrap()
        });
        t.time("write/reduce serde", || {
            reduce::serde::to_vec(black_box(&value)).unwrap()
        });
        t.time("write/serde-pickle", || {
            serde_pickle::to_vec(black_box(&value), Default::default()).unwrap()
        });
        t.time("write/bincode", || {
            bincode::serialize(black_box(&value)).unwrap()
        });
        t.time("read/reduce", || {
            reduce::from_slice::<$ty>(black_box(&pickle)).unwrap()
        });
        t.time("read/reduce Value", || {
            reduce::from_slice::<Value>(black_box(&pickle)).unwrap()
        });
        t.time("read/reduce serde", || {
            reduce::serde::from_slice::<$ty>(black_box(&serde_bytes_out)).unwrap()
        });
        t.time("read/serde-pickle", || {
            serde_pickle::from_slice::<$ty>(black_box(&serde_pickle_bytes), Default::default())
                .unwrap()
        });
        t.time("read/bincode", || {
            bincode::deserialize::<$ty>(black_box(&bincode_bytes)).unwrap()
        });
        t.group.finish();
        let mem = [
            peak_ratio(pickle.len(), || reduce::from_slice::<$ty>(&pickle).unwrap()),
            peak_ratio(pickle.len(), || {
                reduce::from_slice::<Value>(&pickle).unwrap()
            }),
            peak_ratio(serde_pickle_bytes.len(), || {
                serde_pickle::from_slice::<$ty>(&serde_pickle_bytes, Default::default()).unwrap()
            }),
            peak_ratio(bincode_bytes.len(), || {
                bincode::deserialize::<$ty>(&bincode_bytes).unwrap()
            }),
        ];
        $rows.push(Row {
            name: name.to_owned(),
            pickle,
            sizes: [serde_pickle_bytes.len(), bincode_bytes.len()],
            mem: mem.map(Some),
        });
    }};
}

struct Row {
    name: String,
    /// What reduce wrote: CPython times this same data.
    pickle: Vec<u8>,
    /// serde-pickle's and bincode's sizes.
    sizes: [usize; 2],
    /// Peak memory of the typed, `Value`, serde-pickle and bincode reads
    /// ([`peak_ratio`]).
    mem: [Option<f64>; 4],
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

type Record = (i64, String, f64, bool, Option<i64>);

/// pyperformance's `bm_pickle` record (its `DICT`): a user profile of 33
/// short strings, ints, a list of 7 strings and a date. There a dict; here
/// a struct, which is what a Rust program holds and what every library
/// derives for. reduce writes it as CPython writes an instance of a plain
/// class `reduce_bench.Record` (the 33 entries as its `__dict__`, keys
/// interned, so a list of records writes each key once and then fetches it
/// from the memo); `benches/cpython.py` defines that class. serde-pickle
/// writes the dict alone, bincode the fields in order.
#[derive(reduce::Reduce, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[reduce(module = "reduce_bench", name = "Record", state)]
struct Profile {
    ads_flags: i64,
    age: i64,
    /// `datetime.date(1980, 5, 7)` in pyperformance; a (year, month, day)
    /// tuple here, because serde-pickle and bincode have no date type
    /// (reduce's `chrono` feature would write a real `datetime.date`).
    birthday: (u16, u8, u8),
    bulletin_count: i64,
    comment_count: i64,
    country: String,
    encrypted_id: String,
    favorite_count: i64,
    first_name: String,
    flags: i64,
    friend_count: i64,
    gender: String,
    gender_for_display: String,
    id: i64,
    is_custom_profile_icon: i64,
    last_name: String,
    locale_preference: String,
    member: i64,
    tags: Vec<String>,
    profile_foo_id: i64,
    secure_encrypted_id: String,
    session_number: i64,
    signup_id: String,
    status: String,
    theme: i64,
    time_created: i64,
    time_updated: i64,
    unread_message_count: i64,
    user_group: String,
    username: String,
    play_count: i64,
    view_count: i64,
    zip: String,
}

/// pyperformance's `DICT`, or (with `vary`) one of its `DICT_GROUP`. There
/// `mutate_dict` turns every value into a string, which a typed record
/// cannot hold; here every int gets a random value and every string random
/// characters of the same length, so the types stay and the keys are shared.
fn profile(vary: Option<&mut Rng>) -> Profile {
    let rng = RefCell::new(vary);
    let int = |v: i64| match rng.borrow_mut().as_mut() {
        Some(r) => (r.next() >> 24) as i64,
        None => v,
    };
    let text = |s: &str| match rng.borrow_mut().as_mut() {
        Some(r) => format!("{:016x}{:016x}", r.next(), r.next())[..s.len()].to_owned(),
        None => s.to_owned(),
    };
    Profile {
        ads_flags: int(0),
        age: int(18),
        birthday: (1980, 5, 7),
        bulletin_count: int(0),
        comment_count: int(0),
        country: text("BR"),
        encrypted_id: text("G9urXXAJwjE"),
        favorite_count: int(9),
        first_name: text(""),
        flags: int(412317970704),
        friend_count: int(0),
        gender: text("m"),
        gender_for_display: text("Male"),
        id: int(302935349),
        is_custom_profile_icon: int(0),
        last_name: text(""),
        locale_preference: text("pt_BR"),
        member: int(0),
        tags: ["a", "b", "c", "d", "e", "f", "g"].map(&text).to_vec(),
        profile_foo_id: int(827119638),
        secure_encrypted_id: text("Z_xxx2dYx3t4YAdnmfgyKw"),
        session_number: int(2),
        signup_id: text("201-19225-223"),
        status: text("A"),
        theme: int(1),
        time_created: int(1225237014),
        time_updated: int(1233134493),
        unread_message_count: int(0),
        user_group: text("0"),
        username: text("collinwinter"),
        play_count: int(9),
        view_count: int(7),
        zip: text(""),
    }
}

/// pyperformance's `MICRO_DICT`: `{k: dict.fromkeys(range(10)) for k in
/// range(100)}`, values `None`.
type MicroDict = BTreeMap<i64, BTreeMap<i64, Option<i64>>>;

fn main() {
    let filter = dataset_filter();
    let mut c = Criterion::default().configure_from_args();
    let samples: Samples = RefCell::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let wanted = |name: &str| name.contains(filter.as_str()) || filter.contains(name);

    if wanted("ints") {
        // Small and large, positive and negative: every int encoding.
        let v: Vec<i64> = (0..100_000)
            .map(|_| (rng.next() as i64) >> (rng.next() % 63))
            .collect();
        dataset!(&mut c, &samples, rows, BULK, "ints", Vec<i64>, v);
    }
    if wanted("floats") {
        let v: Vec<f64> = (0..100_000).map(|_| rng.next() as f64 / 7.0).collect();
        dataset!(&mut c, &samples, rows, BULK, "floats", Vec<f64>, v);
    }
    if wanted("strings") {
        let v: Vec<String> = (0..20_000)
            .map(|i| format!("item {i} {}", "é".repeat((rng.next() % 40) as usize)))
            .collect();
        dataset!(&mut c, &samples, rows, BULK, "strings", Vec<String>, v);
    }
    if wanted("records") {
        let v: Vec<Record> = (0..10_000)
            .map(|i| {
                let n = rng.next();
                (
                    i,
                    format!("user{i}"),
                    n as f64 / 3.0,
                    n.is_multiple_of(2),
                    n.is_multiple_of(3).then_some(i * 2),
                )
            })
            .collect();
        dataset!(&mut c, &samples, rows, BULK, "records", Vec<Record>, v);
    }
    if wanted("map") {
        let v: BTreeMap<String, Vec<i64>> = (0..2_000)
            .map(|i| (format!("key{i:05}"), (0..10).map(|j| i * 10 + j).collect()))
            .collect();
        dataset!(&mut c, &samples, rows, BULK, "map", BTreeMap<String, Vec<i64>>, v);
    }

    // pyperformance's bm_pickle shapes (pickle, unpickle, pickle_list,
    // unpickle_list, pickle_dict), each one object per call as there.
    if wanted("pp_record") {
        dataset!(
            &mut c,
            &samples,
            rows,
            SMALL,
            "pp_record",
            Profile,
            profile(None)
        );
    }
    if wanted("pp_tuple") {
        // pyperformance's `TUPLE` is a list of 20 ints and 60, not a flat
        // 20-tuple (which serde could not derive for either: it stops at 16).
        let v: (Vec<i64>, i64) = (
            vec![
                265867233, 265868503, 265252341, 265243910, 265879514, 266219766, 266021701,
                265843726, 265592821, 265246784, 265853180, 45526486, 265463699, 265848143,
                265863062, 265392591, 265877490, 265823665, 265828884, 265753032,
            ],
            60,
        );
        dataset!(
            &mut c,
            &samples,
            rows,
            SMALL,
            "pp_tuple",
            (Vec<i64>, i64),
            v
        );
    }
    if wanted("pp_group") {
        let v: Vec<Profile> = (0..3).map(|_| profile(Some(&mut rng))).collect();
        dataset!(&mut c, &samples, rows, SMALL, "pp_group", Vec<Profile>, v);
    }
    if wanted("pp_list") {
        // `[[list(range(10)), list(range(10))] for _ in range(10)]`
        let v: Vec<Vec<Vec<i64>>> = vec![vec![(0..10).collect(); 2]; 10];
        dataset!(
            &mut c,
            &samples,
            rows,
            SMALL,
            "pp_list",
            Vec<Vec<Vec<i64>>>,
            v
        );
    }
    if wanted("pp_dicts") {
        let v: MicroDict = (0..100)
            .map(|k| (k, (0..10).map(|j| (j, None)).collect()))
            .collect();
        dataset!(&mut c, &samples, rows, SMALL, "pp_dicts", MicroDict, v);
    }
    if wanted("tuple3") {
        // Latency: one small value per call.
        let v: (i64, f64, String) = (1, 2.5, "x".to_owned());
        dataset!(
            &mut c,
            &samples,
            rows,
            SMALL,
            "tuple3",
            (i64, f64, String),
            v
        );
    }

    // 16 MiB of bytes, beside a plain memcpy of them. serde writes a
    // Vec<u8> as a sequence of ints; serde_bytes' ByteBuf makes it one
    // bytes object, as reduce::Bytes is.
    let mut memcpy = None;
    if wanted("bytes16m") {
        let name = "bytes16m";
        let data: Vec<u8> = (0..16 << 20).map(|_| rng.next() as u8).collect();
        let value = reduce::Bytes(data.clone());
        let buf = serde_bytes::ByteBuf::from(data.clone());
        let pickle = reduce::to_vec(&value).unwrap();
        let serde_pickle_bytes = serde_pickle::to_vec(&buf, Default::default()).unwrap();
        let bincode_bytes = bincode::serialize(&buf).unwrap();
        assert!(reduce::from_slice::<reduce::Bytes>(&pickle).unwrap() == value);
        let sp = serde_pickle::from_slice::<serde_bytes::ByteBuf>(
            &serde_pickle_bytes,
            Default::default(),
        );
        assert!(sp.unwrap() == buf);
        assert!(bincode::deserialize::<serde_bytes::ByteBuf>(&bincode_bytes).unwrap() == buf);

        let mut t = Timer::new(&mut c, &samples, name, HUGE);
        t.time("memcpy/Vec::clone", || black_box(&data).clone());
        let mut warm = vec![0u8; data.len()];
        t.time("memcpy/copy_from_slice", || {
            warm.copy_from_slice(black_box(&data));
            warm[0]
        });
        t.time("write/reduce", || {
            reduce::to_vec(black_box(&value)).unwrap()
        });
        t.time("write/serde-pickle", || {
            serde_pickle::to_vec(black_box(&buf), Default::default()).unwrap()
        });
        t.time("write/bincode", || {
            bincode::serialize(black_box(&buf)).unwrap()
        });
        t.time("read/reduce", || {
            reduce::from_slice::<reduce::Bytes>(black_box(&pickle)).unwrap()
        });
        t.time("read/reduce Value", || {
            reduce::from_slice::<Value>(black_box(&pickle)).unwrap()
        });
        t.time("read/serde-pickle", || {
            serde_pickle::from_slice::<serde_bytes::ByteBuf>(
                black_box(&serde_pickle_bytes),
                Default::default(),
            )
            .unwrap()
        });
        t.time("read/bincode", || {
            bincode::deserialize::<serde_bytes::ByteBuf>(black_box(&bincode_bytes)).unwrap()
        });
        t.group.finish();
        let mem = [
            peak_ratio(pickle.len(), || {
                reduce::from_slice::<reduce::Bytes>(&pickle).unwrap()
            }),
            peak_ratio(pickle.len(), || {
                reduce::from_slice::<Value>(&pickle).unwrap()
            }),
            peak_ratio(serde_pickle_bytes.len(), || {
                serde_pickle::from_slice::<serde_bytes::ByteBuf>(
                    &serde_pickle_bytes,
                    Default::default(),
                )
                .unwrap()
            }),
            peak_ratio(bincode_bytes.len(), || {
                bincode::deserialize::<serde_bytes::ByteBuf>(&bincode_bytes).unwrap()
            }),
        ];
        rows.push(Row {
            name: name.to_owned(),
            pickle,
            sizes: [serde_pickle_bytes.len(), bincode_bytes.len()],
            mem: mem.map(Some),
        });
        memcpy = Some(name);
    }

    // Sharing: 60 levels, each a list holding the level below twice. Only
    // reduce's Graph and CPython keep it shared; the others cannot write it.
    let mut dag = None;
    if wanted("dag60") {
        let mut graph = Graph::default();
        let mut v = Value::List(vec![]);
        for _ in 0..60 {
            let below = Value::Ref(graph.insert(v));
            v = Value::List(vec![below.clone(), below]);
        }
        *graph.root_mut() = v;
        let pickle = reduce::to_vec(&graph).unwrap();
        let mut t = Timer::new(&mut c, &samples, "dag60", BULK);
        t.time("write/reduce", || reduce::to_vec(&graph).unwrap());
        t.time("read/reduce", || {
            reduce::from_slice::<Graph>(&pickle).unwrap()
        });
        t.group.finish();
        let mem = peak_ratio(pickle.len(), || {
            reduce::from_slice::<Graph>(&pickle).unwrap()
        });
        dag = Some((pickle, mem));
    }
    c.final_summary();

    let cpython = cpython_times(&rows, dag.as_ref().map(|d| d.0.as_slice()));
    let med = |id: String| median(&samples, &id);
    let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    if dag.is_some() {
        names.push("dag60");
    }

    println!("\nMedians per call (µs) and ratio to reduce (x > 1: reduce is faster):\n");
    println!(
        "{:<10} {:<6} {:>12} {:>18} {:>18} {:>18} {:>18} {:>18}",
        "data",
        "",
        "reduce",
        "reduce Value",
        "reduce serde",
        "serde-pickle",
        "bincode",
        "CPython _pickle"
    );
    let cell = |t: Option<f64>, base: Option<f64>| match (t, base) {
        (Some(t), Some(b)) => format!("{:>9.2} ({:>5.2}x)", t / 1e3, t / b),
        (Some(t), None) => format!("{:>9.2}         ", t / 1e3),
        _ => format!("{:>18}", "-"),
    };
    for name in &names {
        let py = cpython.get(*name);
        for (op, py_t) in [
            ("write", py.map(|p| p.dumps)),
            ("read", py.map(|p| p.loads)),
        ] {
            let base = med(format!("{name}/{op}/reduce"));
            println!(
                "{:<10} {:<6} {:>12.2} {} {} {} {} {}",
                name,
                op,
                base.unwrap_or(f64::NAN) / 1e3,
                if op == "read" {
                    cell(med(format!("{name}/read/reduce Value")), base)
                } else {
                    format!("{:>18}", "")
                },
                cell(med(format!("{name}/{op}/reduce serde")), base),
                cell(med(format!("{name}/{op}/serde-pickle")), base),
                cell(med(format!("{name}/{op}/bincode")), base),
                cell(py_t, base),
            );
        }
    }

    if let Some(name) = memcpy {
        let clone = med(format!("{name}/memcpy/Vec::clone"));
        let copy = med(format!("{name}/memcpy/copy_from_slice"));
        println!(
            "\n16 MiB of bytes beside a memcpy of them: Vec::clone {:.0} µs, copy_from_slice \
             into a warm buffer {:.0} µs.\nEach time (µs) as a multiple of Vec::clone's \
             (x > 1: slower than the memcpy):\n",
            clone.unwrap_or(f64::NAN) / 1e3,
            copy.unwrap_or(f64::NAN) / 1e3,
        );
        println!(
            "{:<10} {:<6} {:>18} {:>18} {:>18} {:>18} {:>18}",
            "data", "", "reduce", "reduce Value", "serde-pickle", "bincode", "CPython _pickle"
        );
        let py = cpython.get(name);
        for (op, py_t) in [
            ("write", py.map(|p| p.dumps)),
            ("read", py.map(|p| p.loads)),
        ] {
            let value = if op == "read" {
                cell(med(format!("{name}/read/reduce Value")), clone)
            } else {
                format!("{:>18}", "")
            };
            println!(
                "{:<10} {:<6} {} {} {} {} {}",
                name,
                op,
                cell(med(format!("{name}/{op}/reduce")), clone),
                value,
                cell(med(format!("{name}/{op}/serde-pickle")), clone),
                cell(med(format!("{name}/{op}/bincode")), clone),
                cell(py_t, clone),
            );
        }
    }

    println!(
        "\nPeak memory of each read, as a multiple of input + result: (input + the most the \
         read held at once)\n/ (input + what the result holds). A counting allocator for \
         Rust, tracemalloc for CPython:\n"
    );
    println!(
        "{:<10} {:>12} {:>14} {:>14} {:>14} {:>16}",
        "data", "reduce", "reduce Value", "serde-pickle", "bincode", "CPython _pickle"
    );
    let ratio = |m: Option<f64>| m.map(|m| format!("{m:.2}x")).unwrap_or("-".into());
    let mem_rows = rows.iter().map(|r| (r.name.as_str(), r.mem)).chain(
        dag.as_ref()
            .map(|d| ("dag60", [Some(d.1), None, None, None])),
    );
    for (name, mem) in mem_rows {
        println!(
            "{:<10} {:>12} {:>14} {:>14} {:>14} {:>16}",
            name,
            ratio(mem[0]),
            ratio(mem[1]),
            ratio(mem[2]),
            ratio(mem[3]),
            ratio(cpython.get(name).map(|p| p.mem)),
        );
    }

    println!("\nBytes written:\n");
    println!(
        "{:<10} {:>12} {:>14} {:>10} {:>16}",
        "data", "reduce", "serde-pickle", "bincode", "CPython _pickle"
    );
    for r in &rows {
        let py = cpython
            .get(r.name.as_str())
            .map(|p| p.bytes.to_string())
            .unwrap_or_default();
        println!(
            "{:<10} {:>12} {:>14} {:>10} {:>16}",
            r.name,
            r.pickle.len(),
            r.sizes[0],
            r.sizes[1],
            py
        );
    }
}

/// The dataset part of criterion's positional filter (`ints/write/reduce`
/// gives `ints`), skipping the values of criterion's options.
fn dataset_filter() -> String {
    const TAKES_VALUE: &[&str] = &[
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--color",
        "--output-format",
        "--plotting-backend",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return arg.split('/').next().unwrap_or_default().to_owned();
        }
    }
    String::new()
}

/// What `benches/cpython.py` measured on one pickle.
struct CPython {
    dumps: f64,
    loads: f64,
    bytes: usize,
    /// The peak memory of `pickle.loads`, as [`peak_ratio`] gives it.
    mem: f64,
}

/// CPython's measurements per dataset, or nothing (with a note) when
/// python3 is missing.
fn cpython_times(rows: &[Row], dag: Option<&[u8]>) -> HashMap<String, CPython> {
    let dir = std::env::temp_dir().join(format!("reduce-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut input = String::new();
    let all = rows
        .iter()
        .map(|r| (r.name.as_str(), r.pickle.as_slice()))
        .chain(dag.map(|d| ("dag60", d)));
    for (name, bytes) in all {
        let path = dir.join(format!("{name}.pickle"));
        std::fs::write(&path, bytes).unwrap();
        input.push_str(&format!("{name}\t{}\n", path.display()));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/cpython.py");
    let child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("python3 not found: CPython's column is left empty");
        return HashMap::new();
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                CPython {
                    dumps: f.get(1)?.parse().ok()?,
                    loads: f.get(2)?.parse().ok()?,
                    bytes: f.get(3)?.parse().ok()?,
                    mem: f.get(4)?.parse().ok()?,
                },
            ))
        })
        .collect()
}
