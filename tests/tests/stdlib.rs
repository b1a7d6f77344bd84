//! Python's standard-library data, both ways, against CPython 3.11: each
//! Rust twin reads what CPython writes at protocols 0 to 5, and what it
//! writes CPython loads as an object of the same type, `repr` and value
//! (and, where CPython's bytes are the natural ones, the bytes are equal).
//! The STDLIB preset is installed in the process-wide registry first.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use num_complex::Complex;
use num_rational::BigRational;
use reduce::stdlib::{
    Counter, Decimal, DefaultDict, Deque, IpInterface, IpNetwork, OrderedDict, PyDateTime, PyTime,
    Range, Slice, TzInfo,
};
use reduce::{BigInt, Construct, Dynamic, Global, Graph, Reduce, Value};
use reduce_tests::{first_difference, fixtures, python3, scratch_dir};

fn setup() {
    reduce::registry()
        .add_preset(&reduce::preset::STDLIB)
        .expect("install the stdlib preset");
}

fn stdlib_py() -> Command {
    let mut cmd = python3();
    cmd.arg(fixtures().join("stdlib_py.py"));
    cmd
}

/// `pickle.dumps(eval(expr), p)` for p = 0..5, for each expression.
fn cpython(exprs: &[&str]) -> Vec<Vec<Vec<u8>>> {
    let out = stdlib_py()
        .arg("dump")
        .args(exprs)
        .output()
        .expect("run stdlib_py.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<Vec<u8>>> = text
        .lines()
        .map(|l| l.split(' ').map(reduce_tests::unhex).collect())
        .collect();
    assert_eq!(rows.len(), exprs.len());
    rows
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// CPython loads each `(protocol, pickle, expr)` as it loads its own
/// pickle of `expr` at that protocol.
fn python_agrees(cases: &[(u8, Vec<u8>, String)]) {
    let dir = scratch_dir("stdlib");
    let path = dir.join("cases.tsv");
    let text: String = cases
        .iter()
        .map(|(p, b, e)| format!("{p}\t{}\t{e}\n", hex(b)))
        .collect();
    std::fs::write(&path, text).expect("write cases");
    let out = stdlib_py()
        .arg("check")
        .arg(&path)
        .output()
        .expect("run stdlib_py.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "CPython disagrees:\n{report}");
    assert!(report.contains(&format!("{} passed, 0 failed", cases.len())));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether Rust's bytes must equal CPython's.
#[derive(Clone, Copy, PartialEq)]
enum Bytes {
    Same,
    /// Rust writes another (equal) form.
    Differ,
}

/// Reads CPython's pickle of each expression at every protocol as `T`
/// (expecting `want(protocol)`), writes `want` back at every protocol, and
/// has CPython check what it loads.
/// A case: the Python expression, whether the bytes match, and the Rust
/// value expected at a protocol.
type Case<'a, T> = (&'a str, Bytes, &'a dyn Fn(u8) -> T);

fn both_ways<T>(cases: &[Case<'_, T>])
where
    T: Construct + Reduce + PartialEq + Debug,
{
    setup();
    let exprs: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let pickles = cpython(&exprs);
    let mut checks = Vec::new();
    for ((expr, bytes, want), by_proto) in cases.iter().zip(&pickles) {
        for (p, theirs) in by_proto.iter().enumerate() {
            let p = p as u8;
            let got: T = reduce::from_slice(theirs)
                .unwrap_or_else(|e| panic!("{expr} at protocol {p}: {e}"));
            assert_eq!(got, want(p), "{expr} read at protocol {p}");
            let ours = reduce::to_vec_with_protocol(&want(p), p)
                .unwrap_or_else(|e| panic!("{expr} written at protocol {p}: {e}"));
            if *bytes == Bytes::Same {
                assert!(
                    ours == *theirs,
                    "{expr} at protocol {p}: {}",
                    first_difference(theirs, &ours)
                );
            }
            checks.push((p, ours, expr.to_string()));
        }
    }
    python_agrees(&checks);
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn hmsu(h: u32, m: u32, s: u32, us: u32) -> NaiveTime {
    NaiveTime::from_hms_micro_opt(h, m, s, us).expect("time")
}

fn offset(secs: i32) -> FixedOffset {
    FixedOffset::east_opt(secs).expect("offset")
}

#[test]
fn dates() {
    both_ways::<NaiveDate>(&[
        ("date(2020, 1, 2)", Bytes::Same, &|_| ymd(2020, 1, 2)),
        ("date(1, 1, 1)", Bytes::Same, &|_| ymd(1, 1, 1)),
        ("date(9999, 12, 31)", Bytes::Same, &|_| ymd(9999, 12, 31)),
        // Packed bytes above 0x7f go through latin-1 at protocols 0 to 2.
        ("date(2047, 12, 255 // 9)", Bytes::Same, &|_| {
            ymd(2047, 12, 28)
        }),
    ]);
}

#[test]
fn naive_times() {
    both_ways::<NaiveTime>(&[
        ("time(1, 2, 3, 4)", Bytes::Same, &|_| hmsu(1, 2, 3, 4)),
        ("time()", Bytes::Same, &|_| hmsu(0, 0, 0, 0)),
        ("time(23, 59, 59, 999999)", Bytes::Same, &|_| {
            hmsu(23, 59, 59, 999_999)
        }),
    ]);
}

#[test]
fn times_with_fold_and_zones() {
    both_ways::<PyTime>(&[
        // CPython packs fold only from protocol 4, and so do we.
        ("time(1, 2, 3, 4, fold=1)", Bytes::Same, &|p| PyTime {
            time: hmsu(1, 2, 3, 4),
            fold: p > 3,
            tz: None,
        }),
        ("time(12, tzinfo=timezone.utc)", Bytes::Same, &|_| PyTime {
            time: hmsu(12, 0, 0, 0),
            fold: false,
            tz: Some(TzInfo::utc()),
        }),
    ]);
}

#[test]
fn naive_datetimes() {
    both_ways::<NaiveDateTime>(&[
        ("DT(2020, 1, 2, 3, 4, 5, 6)", Bytes::Same, &|_| {
            ymd(2020, 1, 2).and_time(hmsu(3, 4, 5, 6))
        }),
        ("DT(1, 1, 1)", Bytes::Same, &|_| {
            ymd(1, 1, 1).and_time(hmsu(0, 0, 0, 0))
        }),
        ("DT(9999, 12, 31, 23, 59, 59, 999999)", Bytes::Same, &|_| {
            ymd(9999, 12, 31).and_time(hmsu(23, 59, 59, 999_999))
        }),
    ]);
}

#[test]
fn aware_datetimes() {
    both_ways::<DateTime<Utc>>(&[(
        "DT(2020, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)",
        Bytes::Same,
        &|_| ymd(2020, 1, 2).and_time(hmsu(3, 4, 5, 6)).and_utc(),
    )]);
    both_ways::<DateTime<FixedOffset>>(&[
        (
            "DT(2020, 1, 2, 3, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))",
            Bytes::Same,
            &|_| {
                ymd(2020, 1, 2)
                    .and_time(hmsu(3, 0, 0, 0))
                    .and_local_timezone(offset(-5 * 3600 - 1800))
                    .single()
                    .expect("fixed")
            },
        ),
        (
            "DT(2020, 6, 1, tzinfo=timezone(timedelta(hours=14)))",
            Bytes::Same,
            &|_| {
                ymd(2020, 6, 1)
                    .and_time(hmsu(0, 0, 0, 0))
                    .and_local_timezone(offset(14 * 3600))
                    .single()
                    .expect("fixed")
            },
        ),
    ]);
}

#[test]
fn datetimes_lossless() {
    both_ways::<PyDateTime>(&[
        // The second 02:30 of the night Paris left summer time; the zone
        // is getattr(ZoneInfo, '_unpickle') at every protocol.
        (
            "DT(2021, 10, 31, 2, 30, fold=1, tzinfo=ZoneInfo('Europe/Paris'))",
            Bytes::Same,
            &|p| PyDateTime {
                local: ymd(2021, 10, 31).and_time(hmsu(2, 30, 0, 0)),
                fold: p > 3,
                tz: Some(TzInfo::Zone("Europe/Paris".into())),
            },
        ),
        (
            "DT(2020, 1, 2, tzinfo=timezone(timedelta(hours=-5), 'EST'))",
            Bytes::Same,
            &|_| PyDateTime {
                local: ymd(2020, 1, 2).and_time(hmsu(0, 0, 0, 0)),
                fold: false,
                tz: Some(TzInfo::Fixed {
                    offset: offset(-5 * 3600),
                    name: Some("EST".into()),
                }),
            },
        ),
        ("DT(2020, 1, 2, 3, 4, 5, 6, fold=1)", Bytes::Same, &|p| {
            PyDateTime {
                local: ymd(2020, 1, 2).and_time(hmsu(3, 4, 5, 6)),
                fold: p > 3,
                tz: None,
            }
        }),
    ]);
}

#[test]
fn timedeltas() {
    let us = TimeDelta::microseconds;
    both_ways::<TimeDelta>(&[
        ("timedelta(-1, 5, 7)", Bytes::Same, &|_| {
            TimeDelta::days(-1) + TimeDelta::seconds(5) + us(7)
        }),
        ("timedelta(microseconds=-1)", Bytes::Same, &|_| us(-1)),
        ("timedelta(0)", Bytes::Same, &|_| TimeDelta::zero()),
        ("timedelta.max", Bytes::Same, &|_| {
            TimeDelta::days(999_999_999) + TimeDelta::seconds(86_399) + us(999_999)
        }),
        ("timedelta.min", Bytes::Same, &|_| {
            TimeDelta::days(-999_999_999)
        }),
    ]);
}

#[test]
fn datetime_errors_name_the_type_that_fits() {
    setup();
    let rows = cpython(&[
        "DT(2020, 1, 2, tzinfo=ZoneInfo('Europe/Paris'))",
        "DT(2020, 1, 2)",
        "time(1, tzinfo=timezone.utc)",
    ]);
    let err = reduce::from_slice::<DateTime<FixedOffset>>(&rows[0][4]).unwrap_err();
    assert!(err.to_string().contains("PyDateTime"), "{err}");
    let err = reduce::from_slice::<DateTime<Utc>>(&rows[1][4]).unwrap_err();
    assert!(
        err.to_string()
            .contains("naive, which DateTime<Utc> cannot hold"),
        "{err}"
    );
    let err = reduce::from_slice::<DateTime<FixedOffset>>(&rows[1][4]).unwrap_err();
    assert!(
        err.to_string()
            .contains("naive, which DateTime<FixedOffset> cannot hold"),
        "{err}"
    );
    let err = reduce::from_slice::<NaiveDateTime>(&rows[0][2]).unwrap_err();
    assert!(err.to_string().contains("aware"), "{err}");
    let err = reduce::from_slice::<NaiveTime>(&rows[2][3]).unwrap_err();
    assert!(err.to_string().contains("PyTime"), "{err}");
    // What Python cannot hold is refused when writing.
    let nanos = NaiveTime::from_hms_nano_opt(1, 2, 3, 4).unwrap();
    assert!(reduce::to_vec(&nanos).is_err());
    assert!(reduce::to_vec(&TimeDelta::days(1_000_000_000)).is_err());
    assert!(reduce::to_vec(&ymd(0, 1, 1)).is_err());
    // A damaged packed date is an error, not a panic.
    let bad = b"\x80\x04cdatetime\ndate\nC\x04\x07\xe4\x0d\x01\x85R.";
    let err = reduce::from_slice::<NaiveDate>(bad).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn decimals() {
    let d = |s: &'static str| move |_: u8| s.parse::<Decimal>().expect("decimal");
    both_ways::<Decimal>(&[
        ("Decimal('1.10')", Bytes::Same, &d("1.10")),
        ("Decimal('-0.00')", Bytes::Same, &d("-0.00")),
        ("Decimal('NaN')", Bytes::Same, &d("NaN")),
        ("Decimal('-sNaN12')", Bytes::Same, &d("-sNaN12")),
        ("Decimal('-Infinity')", Bytes::Same, &d("-Infinity")),
        ("Decimal('1E+999999')", Bytes::Same, &d("1E+999999")),
        (
            "Decimal('3.14159265358979323846264338327950288419716939937510')",
            Bytes::Same,
            &d("3.14159265358979323846264338327950288419716939937510"),
        ),
    ]);
    assert!("1e5".parse::<Decimal>().is_ok());
    assert!(".5".parse::<Decimal>().is_ok());
    for bad in ["", "1.2.3", "e5", "nan1x", "--1", "1e", "."] {
        assert!(bad.parse::<Decimal>().is_err(), "{bad:?}");
    }
    assert!(Decimal::new("sNaN").unwrap().is_snan());
    assert_eq!(Decimal::new("-1.5e1").unwrap().to_f64(), -15.0);
}

#[test]
fn fractions() {
    let big = |s: &str| s.parse::<BigInt>().unwrap();
    both_ways::<BigRational>(&[
        ("Fraction(3, 4)", Bytes::Same, &|_| {
            BigRational::new(3.into(), 4.into())
        }),
        ("Fraction(-10**30, 7)", Bytes::Same, &|_| {
            BigRational::new(big("-1000000000000000000000000000000"), 7.into())
        }),
        ("Fraction(5)", Bytes::Same, &|_| {
            BigRational::new(5.into(), 1.into())
        }),
    ]);
}

#[test]
fn complex_numbers() {
    both_ways::<Complex<f64>>(&[
        ("1+2j", Bytes::Same, &|_| Complex::new(1.0, 2.0)),
        ("complex(-0.0, float('inf'))", Bytes::Same, &|_| {
            Complex::new(-0.0, f64::INFINITY)
        }),
    ]);
}

#[test]
fn uuids() {
    both_ways::<uuid::Uuid>(&[
        ("uuid.UUID(int=5)", Bytes::Same, &|_| {
            uuid::Uuid::from_u128(5)
        }),
        (
            "uuid.UUID('12345678-1234-5678-1234-567812345678')",
            Bytes::Same,
            &|_| uuid::Uuid::parse_str("12345678-1234-5678-1234-567812345678").unwrap(),
        ),
        // is_safe says how it was generated; the Uuid has no place for it.
        (
            "uuid.UUID(int=2**128-1, is_safe=uuid.SafeUUID.safe)",
            Bytes::Differ,
            &|_| uuid::Uuid::from_u128(u128::MAX),
        ),
    ]);
}

#[test]
fn ip_addresses() {
    both_ways::<Ipv4Addr>(&[
        ("ipaddress.IPv4Address('1.2.3.4')", Bytes::Same, &|_| {
            Ipv4Addr::new(1, 2, 3, 4)
        }),
        (
            "ipaddress.IPv4Address('255.255.255.255')",
            Bytes::Same,
            &|_| Ipv4Addr::BROADCAST,
        ),
    ]);
    both_ways::<Ipv6Addr>(&[(
        "ipaddress.IPv6Address('2001:db8::ff00:42:8329')",
        Bytes::Same,
        &|_| "2001:db8::ff00:42:8329".parse().unwrap(),
    )]);
    both_ways::<IpAddr>(&[
        ("ipaddress.ip_address('::1')", Bytes::Same, &|_| {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }),
        ("ipaddress.ip_address('10.0.0.1')", Bytes::Same, &|_| {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        }),
    ]);
    both_ways::<IpNetwork>(&[
        ("ipaddress.ip_network('10.0.0.0/8')", Bytes::Same, &|_| {
            "10.0.0.0/8".parse().unwrap()
        }),
        (
            "ipaddress.ip_network('2001:db8::/32')",
            Bytes::Same,
            &|_| "2001:db8::/32".parse().unwrap(),
        ),
    ]);
    both_ways::<IpInterface>(&[
        ("ipaddress.ip_interface('10.0.0.1/8')", Bytes::Same, &|_| {
            "10.0.0.1/8".parse().unwrap()
        }),
        ("ipaddress.ip_interface('::1/128')", Bytes::Same, &|_| {
            "::1/128".parse().unwrap()
        }),
    ]);
    // A scope id has no place in Ipv6Addr.
    let rows = cpython(&["ipaddress.IPv6Address('fe80::1%eth0')"]);
    let err = reduce::from_slice::<Ipv6Addr>(&rows[0][2]).unwrap_err();
    assert!(err.to_string().contains("scope id"), "{err}");
    // Host bits in a network are refused, as Python refuses them.
    assert!(IpNetwork::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8).is_err());
}

#[test]
fn paths() {
    both_ways::<PathBuf>(&[
        ("pathlib.PurePosixPath('/usr/lib')", Bytes::Same, &|_| {
            PathBuf::from("/usr/lib")
        }),
        ("pathlib.PurePosixPath('a/b/../c')", Bytes::Same, &|_| {
            PathBuf::from("a/b/../c")
        }),
        ("pathlib.PurePosixPath('.')", Bytes::Same, &|_| {
            PathBuf::from(".")
        }),
    ]);
    // A concrete PosixPath reads too (Rust writes the pure one back).
    setup();
    let rows = cpython(&["pathlib.PosixPath('/tmp/x')"]);
    for theirs in &rows[0] {
        assert_eq!(
            reduce::from_slice::<PathBuf>(theirs).unwrap(),
            PathBuf::from("/tmp/x")
        );
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn collections() {
    both_ways::<OrderedDict<String, i64>>(&[
        ("OrderedDict(b=1, a=2)", Bytes::Same, &|_| {
            OrderedDict(vec![(s("b"), 1), (s("a"), 2)])
        }),
        ("OrderedDict()", Bytes::Same, &|_| OrderedDict(vec![])),
    ]);
    both_ways::<DefaultDict<String, Vec<i64>>>(&[
        ("defaultdict(list, {'a': [1]})", Bytes::Same, &|_| {
            DefaultDict {
                factory: Some(Global::new("builtins", "list")),
                items: vec![(s("a"), vec![1])],
            }
        }),
        ("defaultdict(None, {'b': []})", Bytes::Same, &|_| {
            DefaultDict {
                factory: None,
                items: vec![(s("b"), vec![])],
            }
        }),
    ]);
    both_ways::<Counter<String>>(&[("Counter('abracadabra')", Bytes::Same, &|_| {
        Counter(vec![
            (s("a"), 5),
            (s("b"), 2),
            (s("r"), 2),
            (s("c"), 1),
            (s("d"), 1),
        ])
    })]);
    both_ways::<Deque<i64>>(&[
        ("deque([1, 2], 5)", Bytes::Same, &|_| Deque {
            items: VecDeque::from([1, 2]),
            maxlen: Some(5),
        }),
        ("deque(range(3))", Bytes::Same, &|_| Deque {
            items: VecDeque::from([0, 1, 2]),
            maxlen: None,
        }),
    ]);
}

#[test]
fn ranges_and_slices() {
    both_ways::<Range>(&[
        ("range(1, 10, 2)", Bytes::Same, &|_| Range {
            start: 1,
            stop: 10,
            step: 2,
        }),
        ("range(5)", Bytes::Same, &|_| Range::from(0..5)),
        ("range(10, -10, -3)", Bytes::Same, &|_| Range {
            start: 10,
            stop: -10,
            step: -3,
        }),
    ]);
    both_ways::<Slice>(&[
        ("slice(1, None, 2)", Bytes::Same, &|_| Slice {
            start: Some(1),
            stop: None,
            step: Some(2),
        }),
        ("slice(None)", Bytes::Same, &|_| Slice::default()),
    ]);
}

// ---- namedtuples and subclasses of builtins ---------------------------------

#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "stdlib_classes", name = "Point")]
struct Point {
    x: i64,
    y: i64,
}

#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "stdlib_classes", name = "MyStr")]
struct MyStr(String);

#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "stdlib_classes", name = "MyInt")]
struct MyInt(i64);

#[derive(Reduce, Debug, PartialEq)]
#[reduce(module = "stdlib_classes", name = "MySet")]
struct MySet(std::collections::BTreeSet<i64>);

#[test]
fn namedtuples_at_every_protocol() {
    // CPython writes _reconstructor(Point, tuple, (1, 2)) at protocols 0
    // and 1, NEWOBJ from 2; Rust writes Point(1, 2), which CPython loads.
    both_ways::<Point>(&[("Point(1, -2)", Bytes::Differ, &|_| Point { x: 1, y: -2 })]);
}

#[test]
fn builtin_subclasses_read_at_every_protocol() {
    both_ways::<MyStr>(&[("MyStr('héllo')", Bytes::Differ, &|_| MyStr(s("héllo")))]);
    both_ways::<MyInt>(&[("MyInt(-7)", Bytes::Differ, &|_| MyInt(-7))]);
    both_ways::<MySet>(&[("MySet([3, 1])", Bytes::Differ, &|_| {
        MySet([1, 3].into_iter().collect())
    })]);
}

/// A `list` subclass and a `dict` subclass, registered by hand: their
/// constructors read list and dict items, which protocols 0 and 1 give as
/// the base's state.
#[derive(Debug, PartialEq)]
struct MyList(Vec<i64>);

#[derive(Debug, PartialEq)]
struct MyDict(Vec<(String, i64)>);

#[test]
fn list_and_dict_subclasses_through_the_registry() {
    setup();
    let mut registry = reduce::Registry::new();
    registry
        .register_constructor("stdlib_classes", "MyList", |node| {
            let call = node.any_reduction()?;
            let items = call.list_items();
            let list = items
                .iter()
                .enumerate()
                .map(|(i, v)| node.item::<i64>(i, v))
                .collect::<reduce::Result<Vec<_>>>()?;
            Ok(MyList(list))
        })
        .unwrap();
    registry
        .register_constructor("stdlib_classes", "MyDict", |node| {
            let call = node.any_reduction()?;
            let pairs = call
                .dict_items()
                .iter()
                .map(|(k, v)| Ok((node.sibling::<String>(k)?, node.entry::<i64>(k, v)?)))
                .collect::<reduce::Result<Vec<_>>>()?;
            Ok(MyDict(pairs))
        })
        .unwrap();
    let registry = std::sync::Arc::new(registry);
    let rows = cpython(&["MyList([1, 2, 3])", "MyDict(b=2, a=1)"]);
    for (p, theirs) in rows[0].iter().enumerate() {
        let got: Dynamic = reduce::Unpickler::from_slice(theirs)
            .registry(registry.clone())
            .load()
            .unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(got.downcast_ref::<MyList>(), Some(&MyList(vec![1, 2, 3])));
        // The base is known where the pickle names it.
        let value: Graph = reduce::Unpickler::from_slice(theirs)
            .registry(registry.clone())
            .load()
            .unwrap();
        assert_eq!(
            format!("{value:?}").contains("builtins.list"),
            p < 2,
            "protocol {p}: {value:?}"
        );
    }
    for (p, theirs) in rows[1].iter().enumerate() {
        let got: Dynamic = reduce::Unpickler::from_slice(theirs)
            .registry(registry.clone())
            .load()
            .unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(
            got.downcast_ref::<MyDict>(),
            Some(&MyDict(vec![(s("b"), 2), (s("a"), 1)]))
        );
    }
}

#[test]
fn call_base_names_the_builtin() {
    setup();
    let rows = cpython(&["MyStr('a')"]);
    let mut registry = reduce::Registry::new();
    registry
        .register_constructor("stdlib_classes", "MyStr", |node| {
            let call = node.any_reduction()?;
            Ok(call.base().map(|g| g.to_string()))
        })
        .unwrap();
    let registry = std::sync::Arc::new(registry);
    for (p, theirs) in rows[0].iter().enumerate() {
        let got: Dynamic = reduce::Unpickler::from_slice(theirs)
            .registry(registry.clone())
            .load()
            .unwrap();
        let base = got.downcast::<Option<String>>().ok().flatten();
        let want = (p < 2).then(|| "builtins.str".to_string());
        assert_eq!(base, want, "protocol {p}");
    }
}

// ---- Value, Graph and Dynamic with the preset -------------------------------

const EVERYTHING: &str = "[date(2020, 1, 2), time(1, 2, 3, 4, fold=1), \
    DT(2020, 1, 2, tzinfo=timezone(timedelta(hours=-5), 'EST')), timedelta(-1, 5, 7), \
    Decimal('-sNaN12'), Fraction(3, 4), 1+2j, uuid.UUID(int=5), \
    ipaddress.ip_address('1.2.3.4'), ipaddress.ip_address('::1'), \
    ipaddress.ip_network('10.0.0.0/8'), ipaddress.ip_interface('::1/64'), \
    pathlib.PurePosixPath('/a/b'), pathlib.PosixPath('c'), OrderedDict(a=1), \
    defaultdict(list, a=[1]), defaultdict(int), Counter('aab'), deque([1, 2], 5), \
    range(1, 10, 2), slice(1, None, 2), MyList([1]), MyDict(a=1), Point(1, 2)]";

/// A zone: getattr(ZoneInfo, '_unpickle') at every protocol, which the
/// reader names as one global and the writer writes back so.
const ZONED: &str = "DT(2021, 10, 31, 2, 30, fold=1, tzinfo=ZoneInfo('Europe/Paris'))";

#[test]
fn value_and_graph_load_everything_and_write_it_back() {
    setup();
    // The user's classes are theirs to allow; the preset allows the rest,
    // builtins.list and builtins.dict (their bases) included.
    let mut registry = reduce::Registry::new();
    for name in ["MyList", "MyDict", "Point"] {
        registry
            .register_constructor("stdlib_classes", name, |_| Ok(()))
            .unwrap();
    }
    let registry = std::sync::Arc::new(registry);
    let rows = cpython(&[EVERYTHING, ZONED]);
    let mut checks = Vec::new();
    for (row, expr) in rows.iter().zip([EVERYTHING, ZONED]) {
        for (p, theirs) in row.iter().enumerate() {
            let p = p as u8;
            let load = || reduce::Unpickler::from_slice(theirs).registry(registry.clone());
            let value: Value = load()
                .load()
                .unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            let graph: Graph = load().load().unwrap();
            let from_graph = reduce::to_vec_with_protocol(&graph, p).unwrap();
            assert!(
                from_graph == *theirs,
                "{expr}, protocol {p}: {}",
                first_difference(theirs, &from_graph)
            );
            checks.push((p, from_graph, expr.to_string()));
            // A tree copies what the pickle shared; CPython still loads it equal.
            checks.push((
                p,
                reduce::to_vec_with_protocol(&value, p).unwrap(),
                expr.to_string(),
            ));
        }
    }
    python_agrees(&checks);
}

#[test]
fn dynamic_builds_the_twins() {
    setup();
    let rows = cpython(&[
        "date(2020, 1, 2)",
        "DT(2020, 1, 2, tzinfo=timezone.utc)",
        "Decimal('2.5')",
        "deque([1])",
        "ipaddress.ip_network('10.0.0.0/8')",
    ]);
    let load = |b: &[u8]| reduce::from_slice::<Dynamic>(b).unwrap();
    assert_eq!(
        load(&rows[0][1]).downcast_ref::<NaiveDate>(),
        Some(&ymd(2020, 1, 2))
    );
    let dt = load(&rows[1][5]).downcast::<PyDateTime>().unwrap();
    assert_eq!(dt.tz, Some(TzInfo::utc()));
    assert_eq!(
        load(&rows[2][0])
            .downcast_ref::<Decimal>()
            .map(|d| d.as_str()),
        Some("2.5")
    );
    let d = load(&rows[3][3]).downcast::<Deque<Value>>().unwrap();
    assert_eq!(d.items, VecDeque::from([Value::Int(1)]));
    assert!(load(&rows[4][2]).is::<IpNetwork>());
}

#[test]
fn the_preset_still_refuses_everything_else() {
    setup();
    for evil in [
        &b"cos\nsystem\n(S'echo pwned'\ntR."[..],
        b"cbuiltins\neval\n(S'1'\ntR.",
        // getattr on an allowed class reaches only names on the list.
        b"\x80\x04cbuiltins\ngetattr\ncdatetime\ndatetime\nX\x03\x00\x00\x00nowq\x00\x86R)R.",
        b"\x80\x04cbuiltins\ngetattr\nczoneinfo\nZoneInfo\nX\x08\x00\x00\x00no_cacheq\x00\x86R)R.",
    ] {
        let err = reduce::from_slice::<Value>(evil).unwrap_err();
        assert!(err.to_string().contains("is not allowed"), "{err}");
    }
}

#[test]
fn python2_datetimes_read_with_latin1_or_bytes() {
    setup();
    // Python 2.7's pickle.dumps(datetime.datetime(2020, 1, 2, 3, 4, 5, 6), 2):
    // the packed state is a Python 2 str, which CPython 3 reads only with
    // encoding='latin1' or 'bytes', as its documentation says.
    let py2 = b"\x80\x02cdatetime\ndatetime\nq\x00U\n\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06q\x01\x85q\x02Rq\x03.";
    let want = ymd(2020, 1, 2).and_time(hmsu(3, 4, 5, 6));
    for decoding in [
        reduce::StringDecoding::Latin1,
        reduce::StringDecoding::Bytes,
    ] {
        let got: NaiveDateTime = reduce::Unpickler::from_slice(py2)
            .strings(decoding)
            .load()
            .unwrap();
        assert_eq!(got, want, "{decoding:?}");
    }
    // The default, ASCII, refuses the byte 0xe4, as CPython's does.
    assert!(reduce::from_slice::<NaiveDateTime>(py2).is_err());
}

#[derive(Debug, PartialEq)]
struct MyTuple(Vec<i64>);

#[test]
fn a_plain_tuple_subclass_through_the_registry() {
    setup();
    let mut registry = reduce::Registry::new();
    registry
        .register_constructor("stdlib_classes", "MyTuple", |node| {
            let call = node.any_reduction()?;
            // Protocols 0 and 1 give the items as the arguments (as for a
            // namedtuple); from 2, CPython passes the tuple as one argument.
            if call.base().is_some() {
                Ok(MyTuple(call.args().construct()?))
            } else {
                let (items,): (Vec<i64>,) = call.args().construct()?;
                Ok(MyTuple(items))
            }
        })
        .unwrap();
    let registry = std::sync::Arc::new(registry);
    let rows = cpython(&["MyTuple((3, 4, 5))"]);
    for (p, theirs) in rows[0].iter().enumerate() {
        let got: Dynamic = reduce::Unpickler::from_slice(theirs)
            .registry(registry.clone())
            .load()
            .unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(got.downcast_ref::<MyTuple>(), Some(&MyTuple(vec![3, 4, 5])));
    }
}

/// `Decimal`'s order is Python's `compare_total` (by value, then exponent,
/// with NaNs and infinities at the ends), and agrees with `==` where two
/// texts spell one value.
#[test]
fn decimals_order_as_python_s_compare_total() {
    let texts = [
        "0",
        "-0",
        "0E+3",
        "0.000",
        "-0.0",
        "1",
        "1.0",
        "1.00",
        "-1",
        "-1.0",
        "10",
        "1E+1",
        "9.99",
        "-9.99",
        "0.1",
        "0.10",
        "1E-7",
        "-1E-7",
        "123456789012345678901234567890",
        "1E+999999",
        "-1E+999999",
        "1E-999999",
        "Infinity",
        "-Infinity",
        "NaN",
        "-NaN",
        "NaN12",
        "NaN3",
        "-NaN12",
        "sNaN",
        "sNaN7",
        "-sNaN",
        "-sNaN7",
        "2.5",
        "2.50",
        "25E-1",
        "3",
        "-3",
        "0.3",
        "3E+0",
        "100",
        "1.00E+2",
        "99.999999999999999999",
    ];
    let script = "import sys, functools\nfrom decimal import Decimal\n\
        ds = [Decimal(t) for t in sys.stdin.read().split()]\n\
        ds.sort(key=functools.cmp_to_key(lambda a, b: int(a.compare_total(b))))\n\
        print(' '.join(str(d) for d in ds))";
    let input: String = texts.join(" ");
    let out = reduce_tests::python_with_input(script, input.as_bytes());
    let want: Vec<String> = String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // Python's str() of each, so that no two texts spell one value.
    let mut ours: Vec<Decimal> = want.iter().map(|t| t.parse().unwrap()).collect();
    ours.reverse();
    ours.sort();
    let ours: Vec<&str> = ours.iter().map(Decimal::as_str).collect();
    assert_eq!(ours, want);
    // Two spellings of one value and exponent: ordered, and not equal.
    let (a, b): (Decimal, Decimal) = ("1e1".parse().unwrap(), "1E+1".parse().unwrap());
    assert_ne!(a, b);
    assert_ne!(a.cmp(&b), std::cmp::Ordering::Equal);
    assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
    let d = |t: &str| t.parse::<Decimal>().unwrap();
    assert!(d("10") > d("9"));
    assert!(d("-10") < d("-9"));
    assert!(d("1.0") < d("1"));
}

/// `Fraction('n/d')`, as older Pythons wrote it, is parsed with CPython's
/// limit on the digits of an int (parsing them is quadratic): 4,300 read,
/// 4,301 are an error that says so.
#[test]
fn a_fraction_s_text_is_bounded_as_cpython_s_int() {
    setup();
    let pickle = |digits: usize| {
        format!("cfractions\nFraction\n(V{}/3\ntR.", "7".repeat(digits)).into_bytes()
    };
    let r: num_rational::BigRational = reduce::from_slice(&pickle(4300)).unwrap();
    assert_eq!(r.to_string().len(), 4300 + 2);
    let err = reduce::from_slice::<num_rational::BigRational>(&pickle(4301)).unwrap_err();
    assert!(err.to_string().contains("more than 4300 digits"), "{err}");
    let err = reduce::from_slice::<reduce::Dynamic>(&pickle(200_000)).unwrap_err();
    assert!(err.to_string().contains("more than 4300 digits"), "{err}");
}
