//! Presets: named allow-lists. Every test here uses an owned registry, so
//! the process-wide one stays without presets and the refusals are real.

use reduce::preset::{self, Preset, STDLIB};
use reduce::{Dynamic, Registry, Unpickler, Value};

// pickle.dumps(decimal.Decimal("1.10"), protocol=2)
const DECIMAL: &[u8] =
    b"\x80\x02cdecimal\nDecimal\nq\x00X\x04\x00\x00\x001.10q\x01\x85q\x02Rq\x03.";

fn with_stdlib() -> Registry {
    let mut r = Registry::new();
    r.add_preset(&STDLIB).unwrap();
    r
}

#[test]
fn without_the_preset_a_stdlib_global_is_refused_and_the_preset_named() {
    let err = reduce::from_slice::<Value>(DECIMAL).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("global `decimal.Decimal` is not allowed"),
        "{msg}"
    );
    assert!(msg.contains("`stdlib` preset"), "{msg}");
    assert!(msg.contains("reduce::preset::STDLIB"), "{msg}");
}

/// A global in a dotted module (numpy's `_reconstruct`, torch's
/// `_rebuild_tensor_v2`) is refused with its preset named too: the hint
/// looks at every split of the path, not only the first dot.
#[test]
fn a_dotted_module_s_global_names_its_preset() {
    // The first global of a numpy 2 array, a numpy 1 scalar and a torch
    // tensor at protocol 2, each ending the pickle.
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00.",
            "numpy._core.multiarray._reconstruct",
            "NUMPY",
        ),
        (
            b"\x80\x02cnumpy.core.multiarray\nscalar\nq\x00.",
            "numpy.core.multiarray.scalar",
            "NUMPY",
        ),
        (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00.",
            "torch._utils._rebuild_tensor_v2",
            "TORCH",
        ),
    ];
    for (bytes, path, preset) in cases {
        let msg = reduce::from_slice::<Value>(bytes).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("global `{path}` is not allowed")),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("add_preset(&reduce::preset::{preset})")),
            "{msg}"
        );
    }
}

#[test]
fn with_the_preset_value_graph_and_dynamic_load() {
    let r = std::sync::Arc::new(with_stdlib());
    let v: Value = Unpickler::from_slice(DECIMAL)
        .registry(r.clone())
        .load()
        .unwrap();
    // Kept as a reduced object, written back byte for byte.
    assert!(matches!(v, Value::Reduce(_)), "{v:?}");
    assert_eq!(reduce::to_vec_with_protocol(&v, 2).unwrap(), DECIMAL);
    let g: reduce::Graph = Unpickler::from_slice(DECIMAL)
        .registry(r.clone())
        .load()
        .unwrap();
    assert_eq!(reduce::to_vec_with_protocol(&g, 2).unwrap(), DECIMAL);
    let d: Dynamic = Unpickler::from_slice(DECIMAL).registry(r).load().unwrap();
    assert_eq!(
        d.downcast_ref::<reduce::stdlib::Decimal>()
            .map(|d| d.as_str()),
        Some("1.10")
    );
}

#[test]
fn every_global_of_the_list_is_allowed_and_nothing_else() {
    let r = with_stdlib();
    for (m, n) in STDLIB.globals() {
        assert!(r.allows(m, n), "{m}.{n}");
        assert!(STDLIB.contains(m, n));
    }
    // Everything the preset registered is on its list (one source).
    for name in r.names() {
        let (m, n) = name.split_once('.').unwrap();
        assert!(STDLIB.contains(m, n), "{name} registered but not listed");
    }
    for (m, n) in [
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("datetime", "datetime.now"),
        ("zoneinfo", "ZoneInfo"),
        ("subprocess", "Popen"),
    ] {
        assert!(!r.allows(m, n), "{m}.{n}");
        assert!(!STDLIB.contains(m, n), "{m}.{n}");
    }
    let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
    let err = Unpickler::from_slice(evil)
        .registry(r)
        .load::<Value>()
        .unwrap_err();
    assert!(
        err.to_string().contains("`os.system` is not allowed"),
        "{err}"
    );
}

#[test]
fn adding_a_preset_twice_changes_nothing() {
    let mut r = with_stdlib();
    let before = format!("{r:?}");
    r.add_preset(&STDLIB).unwrap();
    assert_eq!(format!("{r:?}"), before);
    assert_eq!(r.presets().collect::<Vec<_>>(), ["stdlib"]);
}

#[derive(Debug, PartialEq)]
struct MyDecimal(String);

#[test]
fn a_constructor_registered_first_is_kept() {
    let mut r = Registry::new();
    r.register_constructor("decimal", "Decimal", |node| {
        let (s,): (String,) = node.any_reduction()?.args().construct()?;
        Ok(MyDecimal(s))
    })
    .unwrap();
    r.add_preset(&STDLIB).unwrap();
    let d: Dynamic = Unpickler::from_slice(DECIMAL).registry(r).load().unwrap();
    assert_eq!(
        d.downcast_ref::<MyDecimal>(),
        Some(&MyDecimal("1.10".into()))
    );
}

#[test]
fn a_constructor_registered_after_is_a_duplicate() {
    let mut r = with_stdlib();
    let err = r
        .register_constructor("decimal", "Decimal", |_| Ok(0u8))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`decimal.Decimal` is already registered"),
        "{err}"
    );
}

#[test]
fn a_preset_that_registers_off_its_list_is_refused_whole() {
    const SLOPPY: Preset = Preset::new("sloppy", &[("m", "A")], |r| {
        r.register_constructor("m", "A", |_| Ok(1u8))?;
        r.register_constructor("m", "B", |_| Ok(2u8))
    });
    let mut r = Registry::new();
    let err = r.add_preset(&SLOPPY).unwrap_err();
    assert!(
        err.to_string()
            .contains("preset `sloppy` registers a constructor for `m.B`"),
        "{err}"
    );
    assert!(!r.allows("m", "A"));
    assert_eq!(r.presets().count(), 0);
}

#[test]
fn an_allowed_global_without_a_constructor_says_so() {
    // builtins.tuple is on the list as data only: a Value loads it, a
    // Dynamic has nothing to build.
    let bytes = b"\x80\x02c__builtin__\ntuple\n)R.";
    let r = std::sync::Arc::new(with_stdlib());
    let v: Value = Unpickler::from_slice(bytes)
        .registry(r.clone())
        .load()
        .unwrap();
    assert!(matches!(v, Value::Reduce(_)));
    let err = Unpickler::from_slice(bytes)
        .registry(r)
        .load::<Dynamic>()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("allowed by the `stdlib` preset, but no constructor"),
        "{err}"
    );
}

#[test]
fn presets_are_found_by_name() {
    assert_eq!(preset::by_name("stdlib"), Some(&STDLIB));
    assert!(preset::by_name("nope").is_none());
    assert!(preset::all().iter().any(|p| p.name() == "stdlib"));
    let names: Vec<&str> = preset::all().iter().map(|p| p.name()).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique);
}

/// The numpy and torch presets allow their lists, and only them.
#[test]
fn numpy_and_torch_presets_allow_their_lists_only() {
    let names: Vec<&str> = preset::all().iter().map(|p| p.name()).collect();
    assert_eq!(names, ["stdlib", "numpy", "torch"]);
    let mut numpy = Registry::new();
    numpy.add_preset(preset::by_name("numpy").unwrap()).unwrap();
    assert!(numpy.allows("numpy.core.multiarray", "_reconstruct"));
    assert!(numpy.allows("numpy._core.multiarray", "_reconstruct"));
    assert!(!numpy.allows("numpy", "load"));
    assert!(!numpy.allows("torch._utils", "_rebuild_tensor_v2"));
    let mut torch = Registry::new();
    torch.add_preset(&preset::TORCH_WEIGHTS_ONLY).unwrap();
    assert!(torch.allows("torch._utils", "_rebuild_tensor_v2"));
    assert!(torch.allows("collections", "OrderedDict"));
    assert!(!torch.allows("torch.storage", "_load_from_bytes"));
    assert!(!torch.allows("builtins", "eval"));
    for p in [&preset::NUMPY, &preset::TORCH_WEIGHTS_ONLY] {
        for (module, name) in p.globals() {
            assert!(p.contains(module, name));
        }
    }
}
