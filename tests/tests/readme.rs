//! README's examples, as a new user would copy them: each block of its
//! "Use it" section runs here as written (with the data it assumes), and
//! what its comments promise is checked, against CPython where they name
//! it. A change that breaks the README's promises fails here.

use reduce::{Graph, Value};
use reduce_tests::{cpython_dumps, fixtures, python_with_input, scratch_dir};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

// Your types, with a constructor-plus-args reduction: geometry.Point(x, y).
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "geometry")]
struct Point {
    x: f64,
    y: f64,
}

// An ordinary Python instance, @dataclass(slots=True) here: its state, by name.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "shop", state = "slots", deny_unknown_fields)]
struct Item {
    name: String,
    price: f64,
}

/// What CPython printed running `script` with `input` on its standard
/// input. The script fails the test by raising.
fn python(script: &str, input: &[u8]) -> String {
    String::from_utf8(python_with_input(script, input)).unwrap()
}

/// The modules the README's types live in, for CPython: `geometry.Point`
/// made from its arguments, `shop.Item` a slotted dataclass.
const MODULES: &str = r#"
import sys, types, pickle, dataclasses
geometry = types.ModuleType("geometry")
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
Point.__module__ = "geometry"
geometry.Point = Point
sys.modules["geometry"] = geometry
shop = types.ModuleType("shop")
@dataclasses.dataclass(slots=True)
class Item:
    name: str
    price: float
Item.__module__ = "shop"
Item.__qualname__ = "Item"
shop.Item = Item
sys.modules["shop"] = shop
"#;

#[test]
fn the_use_it_block_does_what_its_comments_say() -> Result {
    let bytes = reduce::to_vec(&Point { x: 1.0, y: 2.0 })?; // CPython loads it as geometry.Point
    let p: Point = reduce::from_slice(&bytes)?;
    assert_eq!(p, Point { x: 1.0, y: 2.0 });
    let seen = python(
        &format!(
            "{MODULES}\np = pickle.loads(sys.stdin.buffer.read())\n\
             print(type(p).__module__, type(p).__name__, p.x, p.y)"
        ),
        &bytes,
    );
    assert_eq!(seen.trim(), "geometry Point 1.0 2.0");

    // An instance CPython wrote, read by name; an unknown attribute refused.
    let item = python_with_input(
        &format!("{MODULES}\nsys.stdout.buffer.write(pickle.dumps(Item('tea', 2.5), protocol=4))"),
        b"",
    );
    let item: Item = reduce::from_slice(&item)?;
    assert_eq!(
        item,
        Item {
            name: "tea".into(),
            price: 2.5
        }
    );

    // ...and one with an attribute `Item` has no field for is refused.
    let wider = python_with_input(
        &format!(
            "{MODULES}\n\
             @dataclasses.dataclass(slots=True)\n\
             class Wider:\n    name: str\n    price: float\n    colour: str\n\
             Wider.__module__, Wider.__qualname__ = 'shop', 'Item'\n\
             shop.Item = Wider\n\
             sys.stdout.buffer.write(pickle.dumps(Wider('tea', 2.5, 'green'), protocol=4))"
        ),
        b"",
    );
    let err = reduce::from_slice::<Item>(&wider).unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");

    // Typed values write straight to bytes, as their Python twins...
    let bytes = reduce::to_vec(&vec![("a".to_string(), 1.5f64)])?;
    assert_eq!(bytes, cpython_dumps("[('a', 1.5)]", 5));
    let back: Vec<(String, f64)> = reduce::from_slice(&bytes)?;
    assert_eq!(back, vec![("a".to_string(), 1.5)]);

    // ...and a mismatch says where: "[0][1]: expected str, found float".
    let err = reduce::from_slice::<Vec<(String, String)>>(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("[0][1]: expected str, found float"),
        "{err}"
    );

    // Any pickle, keeping shared references and cycles, as a Graph.
    let graph: Graph = reduce::from_slice(&bytes)?;
    let tuple = Value::Tuple(vec![Value::Str("a".into()), Value::Float(1.5)]);
    assert_eq!(graph.root(), &Value::List(vec![tuple]));

    // Inert mode keeps the pickle as a program; written back, the same bytes.
    let graph: Graph = reduce::Unpickler::from_slice(&bytes).inert(true).load()?;
    assert_eq!(reduce::to_vec(&graph)?, bytes);

    // copyreg.pickle for a type you do not own: teach the registry after the fact.
    reduce::registry().register_reducer(|d: &std::time::Duration, s| {
        s.reduction("datetime", "timedelta")
            .args(&(0u64, d.as_secs(), d.subsec_micros()))
            .save()
    })?;
    let bytes = reduce::to_vec(&reduce::Registered(std::time::Duration::from_secs(90)))?;
    let seen = python(
        "import sys, pickle, datetime\n\
         d = pickle.loads(sys.stdin.buffer.read())\n\
         assert d == datetime.timedelta(seconds=90), d\n\
         print(type(d).__name__)",
        &bytes,
    );
    assert_eq!(seen.trim(), "timedelta");
    Ok(())
}

#[test]
fn the_stdlib_block_reads_an_aware_datetime() -> Result {
    let bytes = cpython_dumps(
        "__import__('datetime').datetime(2024, 5, 6, 7, 8, 9, 10, \
         tzinfo=__import__('datetime').timezone.utc)",
        4,
    );
    reduce::registry().add_preset(&reduce::preset::STDLIB)?; // or Registry::add_preset for one unpickler
    let when: chrono::DateTime<chrono::Utc> = reduce::from_slice(&bytes)?;
    assert_eq!(when.to_rfc3339(), "2024-05-06T07:08:09.000010+00:00");
    Ok(())
}

#[test]
fn the_numpy_block_reads_and_writes_an_array() -> Result {
    use reduce::numpy::{self, Array};

    let bytes = std::fs::read(fixtures().join("numpy/numpy2/f4_2d.p4.pickle"))?;
    let mut registry = reduce::Registry::new();
    numpy::register(&mut registry)?; // allow numpy's array, scalar and dtype globals, nothing else
    let a: Array = reduce::Unpickler::from_slice(&bytes)
        .registry(registry)
        .load()?;
    assert_eq!(format!("{} {:?}", a.dtype().str(), a.shape()), "<f4 [2, 3]");
    let items: Vec<f32> = a.to_vec()?; // C order, native byte order
    assert_eq!(items, [0.0, -1.5, 2.25, f32::INFINITY, -0.0, 1e-3]);
    let bytes = reduce::to_vec(&a)?;
    // Read back through the same allow-list: an equal array.
    let mut registry = reduce::Registry::new();
    numpy::register(&mut registry)?;
    let b: Array = reduce::Unpickler::from_slice(&bytes)
        .registry(registry)
        .load()?;
    assert_eq!(b.to_vec::<f32>()?, items);
    assert_eq!(b.shape(), a.shape());
    Ok(())
}

#[test]
fn the_torch_block_reads_and_saves_a_checkpoint() -> Result {
    let dir = scratch_dir("readme-torch");
    let copy = dir.join("copy.pt");
    let checkpoint = reduce::torch::load(fixtures().join("torch/checkpoint.pt"))?;
    let mut names = Vec::new();
    for (name, tensor) in checkpoint.state_dict()? {
        // dtype, shape, strides, offset; views keep sharing one Arc<Storage>.
        names.push(format!("{name}: {} {:?}", tensor.dtype(), tensor.shape()));
    }
    assert!(!names.is_empty());
    let epoch = checkpoint.root().get("epoch"); // the rest is plain data
    assert!(epoch.is_some(), "the fixture's checkpoint has an epoch");
    reduce::torch::save(&copy, &checkpoint.state_dict()?)?;
    let again = reduce::torch::load(&copy)?;
    let again: Vec<String> = again
        .state_dict()?
        .into_iter()
        .map(|(name, t)| format!("{name}: {} {:?}", t.dtype(), t.shape()))
        .collect();
    assert_eq!(again, names);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn the_serde_block_writes_what_pickle_dumps_writes() -> Result {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: f64,
        y: f64,
    }

    let bytes = reduce::serde::to_vec(&vec![Point { x: 1.0, y: 2.0 }])?; // [{'x': 1.0, 'y': 2.0}]
    assert_eq!(bytes, cpython_dumps("[{'x': 1.0, 'y': 2.0}]", 5));
    let points: Vec<Point> = reduce::serde::from_slice(&bytes)?;
    assert_eq!(points, vec![Point { x: 1.0, y: 2.0 }]);
    let json = serde_json::to_string(&reduce::from_slice::<reduce::Value>(&bytes)?)?; // a pickle as JSON
    assert_eq!(json, r#"[{"x":1.0,"y":2.0}]"#);
    Ok(())
}
