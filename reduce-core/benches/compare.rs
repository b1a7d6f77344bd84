//! reduce side by side with CPython's C `_pickle`, serde-pickle and bincode,
//! on the same data, in one run:
//!
//! ```sh
//! cargo bench -p reduce-core --bench compare
//! ```
//!
//! Criterion measures the Rust libraries (its usual report, per benchmark);
//! `benches/cpython.py` measures CPython on the very pickles reduce wrote.
//! At the end a table gives each median and its ratio to reduce's.
//! `-- <filter>` runs only the datasets whose name contains the filter.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use reduce::{Graph, Value};

/// Per-iteration times of each benchmark's samples, by benchmark id.
type Samples = RefCell<HashMap<String, Vec<f64>>>;

/// Times `f` the way criterion asks, and keeps each sample's time per call.
fn bench<R>(c: &mut Criterion, samples: &Samples, id: &str, mut f: impl FnMut() -> R) {
    c.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            let took = start.elapsed();
            samples
                .borrow_mut()
                .entry(id.to_owned())
                .or_default()
                .push(took.as_nanos() as f64 / iters as f64);
            took
        })
    });
}

/// The median of the last `n` samples (criterion's measured ones; the
/// earlier are its warm-up).
fn median(samples: &Samples, id: &str, n: usize) -> Option<f64> {
    let all = samples.borrow();
    let v = all.get(id)?;
    let mut last: Vec<f64> = v[v.len().saturating_sub(n)..].to_vec();
    last.sort_by(f64::total_cmp);
    last.get(last.len() / 2).copied()
}

/// One dataset, as Rust builds it; every library gets the same value.
macro_rules! dataset {
    ($c:expr, $samples:expr, $rows:expr, $name:expr, $ty:ty, $value:expr) => {{
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

        let c: &mut Criterion = $c;
        let s: &Samples = $samples;
        bench(c, s, &format!("{name}/write/reduce"), || {
            reduce::to_vec(&value).unwrap()
        });
        bench(c, s, &format!("{name}/write/serde-pickle"), || {
            serde_pickle::to_vec(&value, Default::default()).unwrap()
        });
        bench(c, s, &format!("{name}/write/bincode"), || {
            bincode::serialize(&value).unwrap()
        });
        bench(c, s, &format!("{name}/read/reduce"), || {
            reduce::from_slice::<$ty>(&pickle).unwrap()
        });
        bench(c, s, &format!("{name}/read/reduce Value"), || {
            reduce::from_slice::<Value>(&pickle).unwrap()
        });
        bench(c, s, &format!("{name}/read/serde-pickle"), || {
            serde_pickle::from_slice::<$ty>(&serde_pickle_bytes, Default::default()).unwrap()
        });
        bench(c, s, &format!("{name}/read/bincode"), || {
            bincode::deserialize::<$ty>(&bincode_bytes).unwrap()
        });
        $rows.push(Row {
            name: name.to_owned(),
            pickle,
            sizes: [serde_pickle_bytes.len(), bincode_bytes.len()],
        });
    }};
}

struct Row {
    name: String,
    /// What reduce wrote: CPython times this same data.
    pickle: Vec<u8>,
    /// serde-pickle's and bincode's sizes.
    sizes: [usize; 2],
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

fn main() {
    let filter = dataset_filter();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let samples: Samples = RefCell::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let wanted = |name: &str| name.contains(filter.as_str()) || filter.contains(name);

    if wanted("ints") {
        // Small and large, positive and negative: every int encoding.
        let v: Vec<i64> = (0..100_000)
            .map(|_| (rng.next() as i64) >> (rng.next() % 63))
            .collect();
        dataset!(&mut c, &samples, rows, "ints", Vec<i64>, v);
    }
    if wanted("floats") {
        let v: Vec<f64> = (0..100_000).map(|_| rng.next() as f64 / 7.0).collect();
        dataset!(&mut c, &samples, rows, "floats", Vec<f64>, v);
    }
    if wanted("strings") {
        let v: Vec<String> = (0..20_000)
            .map(|i| format!("item {i} {}", "é".repeat((rng.next() % 40) as usize)))
            .collect();
        dataset!(&mut c, &samples, rows, "strings", Vec<String>, v);
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
        dataset!(&mut c, &samples, rows, "records", Vec<Record>, v);
    }
    if wanted("map") {
        let v: BTreeMap<String, Vec<i64>> = (0..2_000)
            .map(|i| (format!("key{i:05}"), (0..10).map(|j| i * 10 + j).collect()))
            .collect();
        dataset!(&mut c, &samples, rows, "map", BTreeMap<String, Vec<i64>>, v);
    }
    // Sharing: 60 levels, each a list holding the level below twice. Only
    // reduce's Graph and CPython keep it shared; the others cannot write it.
    let mut dag_row = None;
    if wanted("dag60") {
        let mut graph = Graph::default();
        let mut v = Value::List(vec![]);
        for _ in 0..60 {
            let below = Value::Ref(graph.insert(v));
            v = Value::List(vec![below.clone(), below]);
        }
        *graph.root_mut() = v;
        let pickle = reduce::to_vec(&graph).unwrap();
        bench(&mut c, &samples, "dag60/write/reduce", || {
            reduce::to_vec(&graph).unwrap()
        });
        bench(&mut c, &samples, "dag60/read/reduce", || {
            reduce::from_slice::<Graph>(&pickle).unwrap()
        });
        dag_row = Some(pickle);
    }
    c.final_summary();

    let cpython = cpython_times(&rows, dag_row.as_deref());
    let n = 20;
    let med = |id: String| median(&samples, &id, n);
    println!("\nMedians per call (µs) and ratio to reduce (x > 1: reduce is faster):\n");
    println!(
        "{:<8} {:<6} {:>12} {:>18} {:>18} {:>18} {:>18}",
        "data", "", "reduce", "reduce Value", "serde-pickle", "bincode", "CPython _pickle"
    );
    let cell = |t: Option<f64>, base: Option<f64>| match (t, base) {
        (Some(t), Some(b)) => format!("{:>9.1} ({:>4.1}x)", t / 1e3, t / b),
        (Some(t), None) => format!("{:>9.1}        ", t / 1e3),
        _ => format!("{:>18}", "-"),
    };
    let mut names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    if dag_row.is_some() {
        names.push("dag60".into());
    }
    for name in &names {
        let py = cpython.get(name.as_str());
        for (op, py_t) in [("write", py.map(|p| p.0)), ("read", py.map(|p| p.1))] {
            let base = med(format!("{name}/{op}/reduce"));
            println!(
                "{:<8} {:<6} {:>12.1} {} {} {} {}",
                name,
                op,
                base.unwrap_or(f64::NAN) / 1e3,
                if op == "read" {
                    cell(med(format!("{name}/read/reduce Value")), base)
                } else {
                    format!("{:>18}", "")
                },
                cell(med(format!("{name}/{op}/serde-pickle")), base),
                cell(med(format!("{name}/{op}/bincode")), base),
                cell(py_t, base),
            );
        }
    }
    println!("\nBytes written:\n");
    println!(
        "{:<8} {:>12} {:>14} {:>10} {:>16}",
        "data", "reduce", "serde-pickle", "bincode", "CPython _pickle"
    );
    for r in &rows {
        let py = cpython
            .get(r.name.as_str())
            .map(|p| p.2.to_string())
            .unwrap_or_default();
        println!(
            "{:<8} {:>12} {:>14} {:>10} {:>16}",
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

/// CPython's (dumps ns, loads ns, bytes) per dataset, or nothing (with a
/// note) when python3 is missing.
fn cpython_times(rows: &[Row], dag: Option<&[u8]>) -> HashMap<String, (f64, f64, usize)> {
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
                (
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ),
            ))
        })
        .collect()
}
