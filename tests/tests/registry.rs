//! The registry is `copyreg` for Rust: types taught after the fact, layered
//! registries, extension codes, hooks, dynamic values and trait objects, and
//! registration from one thread while others pickle.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reduce::{Dynamic, ErrorKind, Node, Pickler, Registered, Registry, Saver, Unpickler, Value};
use reduce_tests::{python_check, Expect};

/// `std::time::Duration` is foreign here (the orphan rule forbids
/// `impl Reduce for Duration` in this crate): it is taught to a registry as
/// CPython's `datetime.timedelta`.
fn timedelta_registry() -> Registry {
    let mut r = Registry::new();
    r.register_reducer(|d: &Duration, s: &mut Saver<'_, '_>| {
        let days = d.as_secs() / 86_400;
        let args = (days, d.as_secs() % 86_400, d.subsec_micros());
        s.reduction("datetime", "timedelta").args(&args).save()
    })
    .unwrap();
    r.register_constructor("datetime", "timedelta", |node: Node<'_>| {
        let (days, secs, micros): (u64, u64, u32) = node.any_reduction()?.args().construct()?;
        Ok(Duration::new(days * 86_400 + secs, micros * 1000))
    })
    .unwrap();
    r
}

fn dump_with(registry: &Registry, proto: u8, value: &dyn reduce::Reduce) -> Vec<u8> {
    let mut out = Vec::new();
    Pickler::new(&mut out)
        .protocol(proto)
        .registry(registry.clone())
        .dump(value)
        .unwrap();
    out
}

#[test]
fn a_foreign_type_taught_after_the_fact_matches_cpython() {
    let registry = timedelta_registry();
    let d = Duration::new(2 * 86_400 + 90, 500_000);
    let mut cases = Vec::new();
    for proto in 0..=5 {
        let bytes = dump_with(&registry, proto, &Registered(d));
        let back: Registered<Duration> = Unpickler::from_slice(&bytes)
            .registry(registry.clone())
            .load()
            .unwrap();
        assert_eq!(back.0, d);
        cases.push((
            bytes,
            Expect::Expr(
                "__import__('datetime').timedelta(days=2, seconds=90, microseconds=500)".into(),
            ),
        ));
    }
    python_check(&cases);
    // And Rust reads what CPython wrote for the same object.
    let out = reduce_tests::python3()
        .args(["-c", "import pickle,sys,datetime; sys.stdout.buffer.write(pickle.dumps([datetime.timedelta(days=2, seconds=90, microseconds=500)]*2, 4))"])
        .output()
        .unwrap();
    let both: Vec<Registered<Duration>> = Unpickler::from_slice(&out.stdout)
        .registry(registry)
        .load()
        .unwrap();
    assert_eq!(both, vec![Registered(d), Registered(d)]);
}

#[test]
fn unregistered_globals_are_refused_with_near_names() {
    let bytes = dump_with(
        &timedelta_registry(),
        2,
        &Registered(Duration::from_secs(1)),
    );
    // Without the registry, datetime.timedelta is not allowed.
    let err = reduce::from_slice::<reduce::Graph>(&bytes).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownGlobal { module, name, .. } if module == "datetime" && name == "timedelta")
    );
    // A misspelt name lists the registered one.
    let typo = b"\x80\x02cdatetime\ntimedelt\nq\x00.";
    let err = Unpickler::from_slice(typo)
        .registry(timedelta_registry())
        .load::<reduce::Graph>()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("registered names near it: datetime.timedelta"),
        "{err}"
    );
}

#[test]
fn registering_a_path_twice_is_an_error() {
    let mut r = timedelta_registry();
    let err = r
        .register_constructor("datetime", "timedelta", |_| Ok(0u8))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Registry(_)));
    assert!(
        err.to_string()
            .contains("`datetime.timedelta` is already registered"),
        "{err}"
    );
    assert!(r
        .register_reducer(|_: &Duration, s: &mut Saver<'_, '_>| s.none())
        .is_err());
    // The advice fits a constructor written by hand, not only a derive.
    assert!(
        err.to_string()
            .contains("register it in a Registry of its own given to the Unpickler"),
        "{err}"
    );
}

/// `register::<T>` cannot give a derived type another path than the one it
/// writes and reads: it would allow a global the type never reads.
#[test]
fn register_refuses_a_path_the_type_does_not_use() {
    #[derive(reduce::Reduce, Debug, PartialEq)]
    #[reduce(module = "upd")]
    struct Moved<T> {
        x: T,
    }
    let mut r = Registry::new();
    let err = r.register::<Moved<i64>>("other", "Q").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Registry(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("is written and read as the global `upd.Moved`")
            && msg.contains("not `other.Q`"),
        "{msg}"
    );
    assert!(!r.allows("other", "Q"));
    // Its own path works both ways.
    r.register::<Moved<i64>>("upd", "Moved").unwrap();
    let bytes = b"\x80\x02cupd\nMoved\nK\x07\x85R.";
    let got: Registered<Moved<i64>> = Unpickler::from_slice(bytes).registry(r).load().unwrap();
    assert_eq!(got.0, Moved { x: 7 });
}

#[test]
fn an_owned_registry_layers_over_the_global_one() {
    struct Layered;
    reduce::registry()
        .register_reducer(|_: &Layered, s: &mut Saver<'_, '_>| s.global("global_layer", "Layered"))
        .unwrap();
    let global = reduce::to_vec_with_protocol(&Registered(Layered), 3).unwrap();
    assert!(global.windows(12).any(|w| w == b"global_layer"));
    let mut local = Registry::new();
    local
        .register_reducer(|_: &Layered, s: &mut Saver<'_, '_>| s.global("local_layer", "Layered"))
        .unwrap();
    let layered = dump_with(&local, 3, &Registered(Layered));
    assert!(
        layered.windows(11).any(|w| w == b"local_layer"),
        "the owned registry wins"
    );
}

#[test]
fn extension_codes_go_through_the_registry_both_ways() {
    let mut registry = timedelta_registry();
    registry
        .add_extension("datetime", "timedelta", 240)
        .unwrap();
    let bytes = dump_with(&registry, 2, &Registered(Duration::from_secs(3)));
    assert!(
        bytes.starts_with(b"\x80\x02\x82\xf0"),
        "EXT1 240: {bytes:?}"
    );
    let back: Registered<Duration> = Unpickler::from_slice(&bytes)
        .registry(registry.clone())
        .load()
        .unwrap();
    assert_eq!(back.0, Duration::from_secs(3));
    // CPython, with the same extension registered, reads the same object.
    let script = "import pickle,sys,copyreg,datetime; copyreg.add_extension('datetime','timedelta',240); \
                  v=pickle.loads(sys.stdin.buffer.read()); assert v == datetime.timedelta(seconds=3), v";
    let mut child = reduce_tests::python3()
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // The code alone is no key: without the constructor the global is refused.
    let mut only_code = Registry::new();
    only_code
        .add_extension("datetime", "timedelta", 240)
        .unwrap();
    let err = Unpickler::from_slice(&bytes)
        .registry(only_code)
        .load::<reduce::Graph>()
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownGlobal { .. }),
        "{err}"
    );
}

#[test]
fn reducer_override_is_asked_before_the_registry() {
    let registry = timedelta_registry();
    let mut out = Vec::new();
    Pickler::new(&mut out)
        .protocol(2)
        .registry(registry)
        .reducer_override(
            |v: &dyn Any, s: &mut Saver<'_, '_>| match v.downcast_ref::<Duration>() {
                Some(d) => s.f64(d.as_secs_f64()).map(|_| true),
                None => Ok(false),
            },
        )
        .dump(&Registered(Duration::from_millis(250)))
        .unwrap();
    let back: f64 = reduce::from_slice(&out).unwrap();
    assert_eq!(back, 0.25);
}

#[test]
fn persistent_ids_both_ways() {
    let mut out = Vec::new();
    Pickler::new(&mut out)
        .protocol(2)
        .registry(timedelta_registry())
        .persistent_id(|v: &dyn Any| {
            v.downcast_ref::<Duration>()
                .map(|d| Value::str(format!("dur:{}", d.as_secs())))
        })
        .dump(&vec![Registered(Duration::from_secs(7))])
        .unwrap();
    assert!(
        reduce::from_slice::<reduce::Graph>(&out).is_err(),
        "no persistent_load hook"
    );
    let mut seen = Vec::new();
    let back: Vec<u64> = Unpickler::from_slice(&out)
        .persistent_load(|pid| {
            let text = pid.root().as_str().unwrap_or_default().to_owned();
            seen.push(text.clone());
            Ok(Value::Int(
                text.trim_start_matches("dur:").parse::<i64>().unwrap_or(-1),
            ))
        })
        .load()
        .unwrap();
    assert_eq!(back, vec![7]);
    assert_eq!(seen, vec!["dur:7"]);
}

trait Shape: Any {
    fn area(&self) -> f64;
    fn as_any(&self) -> &dyn Any;
}

#[derive(Debug, PartialEq)]
struct Circle(f64);
#[derive(Debug, PartialEq)]
struct Square(f64);

impl Shape for Circle {
    fn area(&self) -> f64 {
        3.0 * self.0 * self.0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Shape for Square {
    fn area(&self) -> f64 {
        self.0 * self.0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Shapes(Vec<Box<dyn Shape>>);

impl reduce::Reduce for Shapes {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        let items: Vec<Registered<&dyn Any>> =
            self.0.iter().map(|b| Registered(b.as_any())).collect();
        s.list(items.iter().map(|r| DynRef(r.0)).collect::<Vec<_>>().iter())
    }
}

struct DynRef<'a>(&'a dyn Any);

impl reduce::Reduce for DynRef<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
        s.registered(self.0)
    }
}

impl reduce::Construct for Shapes {
    fn construct(node: Node<'_>) -> reduce::Result<Self> {
        let items = node.items()?;
        let mut shapes = Vec::new();
        for item in items {
            shapes.push(node.sibling::<Registered<Box<dyn Shape>>>(item)?.0);
        }
        Ok(Shapes(shapes))
    }
}

fn shape_registry() -> Registry {
    let mut r = Registry::new();
    r.register_reducer(|c: &Circle, s: &mut Saver<'_, '_>| {
        s.reduction("shapes", "Circle").args(&(c.0,)).save()
    })
    .unwrap();
    r.register_reducer(|q: &Square, s: &mut Saver<'_, '_>| {
        s.reduction("shapes", "Square").args(&(q.0,)).save()
    })
    .unwrap();
    r.register_constructor("shapes", "Circle", |n: Node<'_>| {
        let (r,): (f64,) = n.any_reduction()?.args().construct()?;
        Ok(Circle(r))
    })
    .unwrap();
    r.register_constructor("shapes", "Square", |n: Node<'_>| {
        let (side,): (f64,) = n.any_reduction()?.args().construct()?;
        Ok(Square(side))
    })
    .unwrap();
    r.register_upcast(|c: Circle| Box::new(c) as Box<dyn Shape>)
        .unwrap();
    r.register_upcast(|q: Square| Box::new(q) as Box<dyn Shape>)
        .unwrap();
    r
}

#[test]
fn trait_objects_go_through_the_registry() {
    let registry = shape_registry();
    let shapes = Shapes(vec![Box::new(Circle(1.0)), Box::new(Square(2.0))]);
    let bytes = dump_with(&registry, 4, &shapes);
    let back: Shapes = Unpickler::from_slice(&bytes)
        .registry(registry.clone())
        .load()
        .unwrap();
    let areas: Vec<f64> = back.0.iter().map(|s| s.area()).collect();
    assert_eq!(areas, vec![3.0, 4.0]);

    // A root whose type is only known at run time, downcast afterwards.
    let bytes = dump_with(&registry, 2, &Registered(Square(5.0)));
    let dynamic: Dynamic = Unpickler::from_slice(&bytes)
        .registry(registry)
        .load()
        .unwrap();
    assert!(!dynamic.is::<Circle>());
    assert_eq!(dynamic.downcast::<Square>().unwrap(), Square(5.0));
}

#[test]
fn registering_while_other_threads_pickle_is_safe() {
    struct Counter(u64);
    reduce::registry()
        .register_reducer(|c: &Counter, s: &mut Saver<'_, '_>| {
            s.reduction("threads", "Counter").args(&(c.0,)).save()
        })
        .unwrap();
    reduce::registry()
        .register_constructor("threads", "Counter", |n: Node<'_>| {
            let (v,): (u64,) = n.any_reduction()?.args().construct()?;
            Ok(Counter(v))
        })
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..300u64 {
                    let bytes = reduce::to_vec(&Registered(Counter(t * 1000 + i))).unwrap();
                    let back: Registered<Counter> = reduce::from_slice(&bytes).unwrap();
                    assert_eq!(back.0 .0, t * 1000 + i);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // Meanwhile, keep registering new names.
    for i in 0..300 {
        reduce::registry()
            .register_constructor("threads", &format!("Extra{i}"), |_| Ok(()))
            .unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 4);
    assert!(reduce::registry().contains("threads", "Extra299"));
}

/// A HashMap orders its keys by their pickled bytes, written with the
/// caller's registry: a key type registered only on this pickler works, as
/// it does in a BTreeMap.
#[test]
fn hash_map_keys_sort_with_the_callers_registry() {
    use std::collections::HashMap;

    #[derive(PartialEq, Eq, Hash, PartialOrd, Ord, Clone, Debug)]
    struct Code(u16);
    let mut local = Registry::new();
    local
        .register_reducer(|c: &Code, s| s.reduction("codes", "Code").args(&(c.0,)).save())
        .unwrap();
    let map: HashMap<Registered<Code>, u8> = (0..20u16)
        .map(|i| (Registered(Code(i * 7)), i as u8))
        .collect();
    let mut out = Vec::new();
    Pickler::new(&mut out)
        .registry(local)
        .dump(&map)
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{:?}",
        reduce::Unpickler::from_slice(&out)
            .inert(true)
            .load_graph()
            .unwrap()
    );
    assert!(text.contains("codes.Code"), "{text}");
    // Without the registration the error names the Rust type.
    let err = reduce::to_vec(&map).unwrap_err().to_string();
    assert!(err.contains("Code") && !err.contains("TypeId"), "{err}");
}

/// A global is allowed when a constructor is registered for it, or for a
/// name nested in it (`outer.Outer` for `outer.Outer.Inner`, which CPython
/// names as `getattr(Outer, "Inner")` before protocol 4), in the global
/// layer or the unpickler's own; a name that only begins the same way is
/// refused.
#[test]
fn a_parent_of_a_registered_nested_name_is_allowed_and_no_other() {
    let mut r = Registry::new();
    r.register_constructor("nest_mod", "Outer.Inner", |_: Node<'_>| Ok(1u8))
        .unwrap();
    reduce::registry()
        .register_constructor("nest_global", "Top.Sub", |_: Node<'_>| Ok(2u8))
        .unwrap();
    let load = |module: &str, name: &str| {
        let bytes = format!("c{module}\n{name}\n.");
        Unpickler::from_slice(bytes.as_bytes())
            .registry(r.clone())
            .load::<Value>()
    };
    for (module, name) in [
        ("nest_mod", "Outer"),
        ("nest_mod", "Outer.Inner"),
        ("nest_global", "Top"),
        ("nest_global", "Top.Sub"),
    ] {
        assert_eq!(
            load(module, name).unwrap(),
            Value::global(module, name),
            "{module}.{name}"
        );
    }
    for (module, name) in [
        ("nest_mod", "Oute"),
        ("nest_mod", "Outer-"),
        ("nest_mod", "Outer.Inne"),
        ("nest_mod", "Outer.Inner.X"),
        ("nest_global", "To"),
        ("nest_mod", "Top"),
    ] {
        let e = load(module, name).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnknownGlobal { .. }),
            "{module}.{name}: {e}"
        );
    }
}

/// What a constructor works with prints, for a user writing one.
#[test]
fn calls_states_and_the_registry_print() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut r = Registry::new();
    r.register_constructor("shop", "Item", move |node: Node<'_>| {
        let call = node.any_reduction()?;
        log.lock().unwrap().push(format!("{call:?}"));
        if let Some(state) = call.state() {
            log.lock().unwrap().push(format!("{state:?}"));
        }
        Ok(0u8)
    })
    .unwrap();
    // shop.Item('pen') with the state {'price': 2}, in a list.
    let bytes = b"\x80\x02]cshop\nItem\nX\x03\x00\x00\x00pen\x85R}X\x05\x00\x00\x00priceK\x02sba.";
    let _: Vec<Registered<u8>> = Unpickler::from_slice(bytes).registry(r).load().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].starts_with("Call([0]: shop.Item,") && seen[0].contains("pen"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("StateNode([0]") && seen[1].contains("price"),
        "{seen:?}"
    );
    let all = format!("{:?}", reduce::registry());
    assert!(all.starts_with("GlobalRegistry(Registry {"), "{all}");
}
