//! The bodies of the fuzz targets in `reduce-core/fuzz`, shared with the
//! regression tests so that every input a fuzzer found is checked again, by
//! the same code, on every test run.
//!
//! Each function panics only when reduce is wrong: on any input, reading
//! ends in a value or an error, and whatever reads writes back and reads
//! again to an equal graph.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use reduce::{Bytes, Dynamic, Graph, Limits, Pickler, Unpickler};

/// Limits low enough that a fuzzer's inputs stay fast, high enough that
/// every committed fixture loads.
pub fn limits() -> Limits {
    Limits::default()
        .max_stack(100_000)
        .max_memo(100_000)
        .max_tree_nodes(100_000)
}

/// Reads `data` into a [`Graph`] in strict and in inert mode, prints and
/// expands what loads, and walks it with the inspection API.
///
/// Whatever the reader loads, the inspector walks too, to the same `STOP`:
/// it checks no more than the reader does (but for copying names out of
/// proportion to the input), so it cannot be made to fail, and list
/// nothing, on a pickle that loads.
pub fn load_value(data: &[u8]) {
    let mut loaded_to = None;
    for inert in [false, true] {
        let mut unpickler = Unpickler::from_slice(data).inert(inert).limits(limits());
        if let Ok(graph) = unpickler.load::<Graph>() {
            loaded_to = Some(unpickler.position());
            let _ = format!("{graph:?}");
            let _ = graph.clone().into_tree(100_000);
        }
    }
    let _ = reduce::inspect::disassemble(data);
    let scanned = reduce::inspect::scan_one(data);
    if let Some(end) = loaded_to {
        match scanned {
            Ok((_, len)) => assert_eq!(len, end, "the inspector and the reader stop apart"),
            // The one check the inspector adds: the names it copies out.
            Err(e) if e.to_string().contains("names in proportion") => {}
            Err(e) => panic!("the reader loads this pickle but the inspector fails: {e}"),
        }
    }
}

/// A plain class instance (`copyreg.__newobj__` and `BUILD` with its
/// `__dict__`), for the streaming reader's instance form.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "fuzz_cases", state)]
pub struct FuzzRecord {
    id: i64,
    name: String,
    tags: Vec<String>,
    #[reduce(default)]
    score: Option<f64>,
}

/// A `__slots__` class that refuses attributes it has no field for.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "fuzz_cases", state = "slots", deny_unknown_fields)]
pub struct FuzzSlots {
    x: i64,
    y: Option<String>,
}

/// An instance that keeps the attributes it has no field for.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "fuzz_cases", state)]
pub struct FuzzOpen {
    id: i64,
    #[reduce(rest)]
    rest: Vec<(String, reduce::Value)>,
}

/// An `enum.Enum`.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "fuzz_cases", python_enum)]
pub enum FuzzColor {
    Red = 1,
    Blue = 2,
}

/// An enum of one global per variant.
#[derive(reduce::Reduce, Debug, PartialEq)]
#[reduce(module = "fuzz_cases")]
pub enum FuzzEvent {
    Click { x: i64, y: i64 },
    Key(String),
    Quit,
}

/// Reads `data` as typed values of several shapes, checking for the shapes
/// the streaming reader knows that it agrees with the Graph path.
pub fn load_typed(data: &[u8]) {
    same_both_ways::<Vec<(i64, String, Option<f64>)>>(data);
    same_both_ways::<BTreeMap<String, Vec<i64>>>(data);
    same_both_ways::<(Vec<String>, Option<bool>, f32)>(data);
    same_both_ways::<Vec<Vec<u16>>>(data);
    same_both_ways::<Vec<FuzzRecord>>(data);
    same_both_ways::<FuzzSlots>(data);
    same_both_ways::<Vec<FuzzColor>>(data);
    same_both_ways::<Vec<FuzzEvent>>(data);
    same_both_ways::<reduce::Value>(data);
    same_both_ways::<Vec<reduce::Value>>(data);
    same_both_ways::<(reduce::Value, i64)>(data);
    same_both_ways::<Vec<FuzzOpen>>(data);
    let _ = reduce::from_slice::<Vec<(i64, String, Option<f64>)>>(data);
    let _ = reduce::from_slice::<BTreeMap<String, Vec<Bytes>>>(data);
    let _ = reduce::from_slice::<HashSet<u128>>(data);
    let _ = reduce::from_slice::<Vec<Rc<Vec<u8>>>>(data);
    let _ = reduce::from_slice::<Dynamic>(data);
    let _ = reduce::from_slice::<Graph>(data);
}

/// Loads `data` as a `T` through the stream, through the stream from a
/// reader (which reads the pickle ahead first), and through the Graph: the
/// same value (or both NaN-bearing with the same repr), or the same error.
fn same_both_ways<T: reduce::Construct + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let b = reduce::Unpickler::from_slice(data)
        .streaming(false)
        .load::<T>();
    let from_slice = reduce::Unpickler::from_slice(data).load::<T>();
    let from_reader = reduce::Unpickler::new(data).load::<T>();
    for a in [from_slice, from_reader] {
        match (&a, &b) {
            (Ok(x), Ok(y)) => assert!(
                x == y || format!("{x:?}") == format!("{y:?}"),
                "{x:?} vs {y:?}"
            ),
            (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string()),
            _ => panic!("the stream and the Graph path disagree: {a:?} vs {b:?}"),
        }
    }
}

/// Reads `data` in inert mode and, if it loads, writes it at every protocol
/// and reads that back: the graph must come back equal.
///
/// A graph with steps taken for effect ([`reduce::Seq`]) may come back with
/// a step held by a neighbouring value (a protocol without `MARK`-built
/// lists cannot say "before the first item"); the same program, which the
/// trace tests check against CPython. For those the check is that the first
/// round trip is a fixed point: read again, it gives the same graph and the
/// same bytes.
///
/// A dotted global (a nested class) written below protocol 4 comes back as
/// `builtins.getattr(parent, "last")`, CPython's spelling there; it is
/// checked the same way.
///
/// Python 2 names are mapped on neither side: `fix_imports` is not a
/// bijection (see `Pickler::fix_imports`), in CPython as here.
pub fn round_trip(data: &[u8]) {
    let read = |bytes: &[u8]| {
        Unpickler::from_slice(bytes)
            .inert(true)
            .fix_imports(false)
            .limits(limits())
            .load::<Graph>()
    };
    let write = |graph: &Graph, proto: u8| {
        let mut pickler = Pickler::new(Vec::new()).protocol(proto).fix_imports(false);
        pickler.dump(graph).map(|()| pickler.into_inner())
    };
    let Ok(graph) = read(data) else {
        return;
    };
    let has_steps = format!("{graph:?}").contains("<seq ");
    for proto in 0..=5 {
        // Some values cannot be written at some protocols (out-of-band
        // buffers below 5, say); that is an error, not a bug.
        let Ok(bytes) = write(&graph, proto) else {
            continue;
        };
        let again = read(&bytes).unwrap_or_else(|e| {
            panic!("protocol {proto}: what reduce wrote does not read back: {e}")
        });
        // Below protocol 4 a dotted name is written as CPython writes it,
        // `getattr(parent, "last")`, which inert mode keeps as that call:
        // the same class to CPython, another graph here. Its rewrite is
        // then checked to be a fixed point.
        let nested = proto < 4 && bytes.windows(7).any(|w| w == b"getattr");
        if !has_steps && !nested {
            assert!(
                again == graph,
                "protocol {proto}: {graph:?} came back as {again:?}"
            );
            continue;
        }
        let bytes2 = write(&again, proto)
            .unwrap_or_else(|e| panic!("protocol {proto}: what was read back does not write: {e}"));
        let third = read(&bytes2).unwrap_or_else(|e| {
            panic!("protocol {proto}: the second writing does not read back: {e}")
        });
        assert!(
            third == again,
            "protocol {proto}: {again:?} came back as {third:?}"
        );
        let bytes3 = write(&third, proto).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert!(
            bytes3 == bytes2,
            "protocol {proto}: the rewrite of a rewrite is not a fixed point"
        );
    }
}

/// Reads `data` as a torch checkpoint; what loads is walked, its tensors
/// gathered (when small: an expanded tensor may have far more elements than
/// its file has bytes), and its state dict written back and read again to
/// the same tensors.
pub fn load_torch(data: &[u8]) {
    let Ok(ck) = reduce::torch::from_slice(data) else {
        return;
    };
    let _ = format!("{ck:?}");
    for (_, t) in ck.root().tensors() {
        if t.numel() <= 1 << 16 {
            let _ = t.bytes();
            let _ = t.to_f32_vec();
        }
    }
    if let Ok(sd) = ck.state_dict() {
        let mut bytes = Vec::new();
        reduce::torch::to_writer(&mut bytes, &sd).expect("a loaded state dict writes");
        let again = reduce::torch::from_slice(&bytes)
            .and_then(|c| c.state_dict())
            .unwrap_or_else(|e| panic!("a written state dict does not read back: {e}"));
        // Storage keys are renumbered (a legacy file's keys are addresses);
        // everything else comes back.
        let view = |sd: &[(String, reduce::torch::Tensor)]| {
            sd.iter()
                .map(|(n, t)| {
                    let s = t.storage();
                    let shape = (t.shape().to_vec(), t.strides().to_vec(), t.offset());
                    let flags = (t.requires_grad(), t.is_parameter());
                    let storage = (s.data().to_vec(), s.device().to_owned());
                    (n.clone(), t.dtype(), shape, flags, storage)
                })
                .collect::<Vec<_>>()
        };
        assert!(
            view(&again) == view(&sd),
            "the state dict came back changed"
        );
    }
}
