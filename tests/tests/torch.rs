//! PyTorch checkpoints: the fixtures torch wrote (tests/fixtures/torch/,
//! generate.py there) read back tensor for tensor, written back byte for
//! byte, and hostile files refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use reduce::torch::{self, Checkpoint, DType, Format, Object, Storage, Tensor};
use reduce::Value;
use serde_json::Value as Json;

fn dir() -> PathBuf {
    reduce_tests::fixtures().join("torch")
}

fn expected() -> Json {
    let text = std::fs::read_to_string(dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every tensor of `ck` against the rows torch wrote for `file`.
fn check_against_torch(file: &str, ck: &Checkpoint) {
    let exp = expected();
    let rows = exp["files"][file].as_array().expect("rows for the file");
    let tensors = ck.root().tensors();
    let paths: Vec<&str> = tensors.iter().map(|(p, _)| p.as_str()).collect();
    let want_paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, want_paths, "{file}: tensor paths");
    let mut groups: HashMap<i64, &Arc<Storage>> = HashMap::new();
    for ((path, t), row) in tensors.iter().zip(rows) {
        let ctx = format!("{file} {path}");
        assert_eq!(t.dtype().name(), row["dtype"].as_str().unwrap(), "{ctx}");
        let ints = |k: &str| -> Vec<usize> {
            row[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        };
        assert_eq!(t.shape(), ints("shape").as_slice(), "{ctx} shape");
        assert_eq!(t.strides(), ints("stride").as_slice(), "{ctx} strides");
        assert_eq!(
            t.offset() as u64,
            row["offset"].as_u64().unwrap(),
            "{ctx} offset"
        );
        assert_eq!(
            t.requires_grad(),
            row["requires_grad"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            t.is_parameter(),
            row["parameter"].as_bool().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            hex(t.storage().data()),
            row["storage_hex"].as_str().unwrap(),
            "{ctx} bytes"
        );
        // Tensors torch saved from one storage share one Arc, and only they.
        let group = row["storage"].as_i64().unwrap();
        match groups.get(&group) {
            Some(s) => assert!(Arc::ptr_eq(s, t.storage()), "{ctx}: storage not shared"),
            None => {
                for (g, s) in &groups {
                    assert!(
                        !Arc::ptr_eq(s, t.storage()),
                        "{ctx}: shares group {g}'s storage"
                    );
                }
                groups.insert(group, t.storage());
            }
        }
        let values = row["values"].as_array().unwrap();
        match t.dtype() {
            DType::Bool => {
                let want: Vec<bool> = values.iter().map(|v| v.as_bool().unwrap()).collect();
                assert_eq!(t.to_vec::<bool>().unwrap(), want, "{ctx}");
            }
            DType::Int64 | DType::Int32 | DType::UInt8 => {
                let want: Vec<i64> = values.iter().map(|v| v.as_i64().unwrap()).collect();
                let got: Vec<i64> = match t.dtype() {
                    DType::Int64 => t.to_vec::<i64>().unwrap(),
                    DType::Int32 => t
                        .to_vec::<i32>()
                        .unwrap()
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                    _ => t
                        .to_vec::<u8>()
                        .unwrap()
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                };
                assert_eq!(got, want, "{ctx}");
            }
            DType::Float64 => {
                let want: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
                assert_eq!(t.to_vec::<f64>().unwrap(), want, "{ctx}");
            }
            _ => {
                // float32, float16 and bfloat16 values are exact in f32.
                let want: Vec<f32> = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
                assert_eq!(t.to_f32_vec().unwrap(), want, "{ctx}");
            }
        }
    }
}

#[test]
fn state_dicts_read_as_torch_saved_them() {
    for (file, format) in [
        ("state_dict.pt", Format::Zip),
        ("state_dict_legacy.pt", Format::Legacy),
    ] {
        let ck = torch::load(dir().join(file)).unwrap();
        assert_eq!(ck.format(), format, "{file}");
        check_against_torch(file, &ck);
        let sd = ck.state_dict().unwrap();
        let names: Vec<&str> = sd.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "w_f32",
                "b_f16",
                "e_bf16",
                "idx_i64",
                "mask_bool",
                "bytes_u8",
                "i32",
                "f64_scalar",
                "base",
                "view",
                "t"
            ],
            "{file}"
        );
        // The view starts two elements into its base's storage.
        let (base, view) = (&sd[8].1, &sd[9].1);
        assert!(Arc::ptr_eq(base.storage(), view.storage()));
        assert_eq!(view.offset(), 2);
        assert_eq!(
            view.to_vec::<f32>().unwrap(),
            base.to_vec::<f32>().unwrap()[2..8]
        );
        // 11 tensors, 10 storages, in the order torch pickled them (the zip
        // format's keys count up in that order).
        assert_eq!(ck.storages().len(), 10, "{file}");
        if format == Format::Zip {
            let keys: Vec<&str> = ck.storages().iter().map(|s| s.key()).collect();
            assert_eq!(keys, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        }
    }
}

/// state_dict.pt with its pickle, byte order and storages renamed in
/// other cases (recase.py): torch looks its records up without regard to
/// case, and so must the loader, or it refuses a file torch reads.
#[test]
fn records_are_found_whatever_their_case() {
    let file = dir().join("state_dict_case.pt");
    let names: Vec<String> = zip_names(&std::fs::read(&file).unwrap());
    assert!(
        names.iter().any(|n| n == "state_dict/DATA.PKL"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with("data.pkl")), "{names:?}");
    let ck = torch::load(&file).unwrap();
    check_against_torch("state_dict.pt", &ck);
    assert_eq!(
        ck.state_dict().unwrap(),
        torch::load(dir().join("state_dict.pt"))
            .unwrap()
            .state_dict()
            .unwrap()
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        torch::archive_member(&names, "data.pkl").unwrap(),
        Some("state_dict/DATA.PKL")
    );
    assert_eq!(
        torch::archive_member(&names, "data/3").unwrap(),
        Some("state_dict/DATA/3")
    );
}

/// The member names of a zip archive, in central-directory order.
fn zip_names(zip: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while let Some(i) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let h = at + i;
        let n = u16::from_le_bytes([zip[h + 28], zip[h + 29]]) as usize;
        names.push(String::from_utf8_lossy(&zip[h + 46..h + 46 + n]).into_owned());
        at = h + 46 + n;
    }
    names
}

#[test]
fn checkpoints_read_with_their_plain_data() {
    for (file, format) in [
        ("checkpoint.pt", Format::Zip),
        ("checkpoint_legacy.pt", Format::Legacy),
    ] {
        let ck = torch::load(dir().join(file)).unwrap();
        assert_eq!(ck.format(), format);
        check_against_torch(file, &ck);
        let root = ck.root();
        assert_eq!(root.get("epoch"), Some(&Object::Int(7)));
        assert_eq!(
            root.get("big"),
            Some(&Object::BigInt(reduce::BigInt::from(1u128 << 70)))
        );
        assert_eq!(root.get("loss"), Some(&Object::Float(0.125)));
        assert_eq!(root.get("name"), Some(&Object::Str("tiny é".into())));
        assert_eq!(root.get("shape"), Some(&Object::Size(vec![2, 3])));
        assert_eq!(
            root.get("nested"),
            Some(&Object::List(vec![
                Object::Int(1),
                Object::List(vec![Object::Float(2.5), Object::Str("x".into())]),
                Object::None,
                Object::Bool(true),
                Object::Bytes(b"raw".to_vec()),
            ]))
        );
        let groups = root
            .get("optimizer")
            .and_then(|o| o.get("param_groups"))
            .unwrap();
        let Object::List(groups) = groups else {
            panic!("param_groups: {groups:?}")
        };
        assert_eq!(
            groups[0].get("betas"),
            Some(&Object::Tuple(vec![
                Object::Float(0.9),
                Object::Float(0.999)
            ]))
        );
        assert_eq!(
            groups[0].get("params"),
            Some(&Object::List(vec![Object::Int(0), Object::Int(1)]))
        );
        // Optimizer state is keyed by int.
        let state = root.get("optimizer").and_then(|o| o.get("state")).unwrap();
        assert_eq!(state.items().unwrap()[1].0, Object::Int(1));
        // A module's state_dict keeps its _metadata, as attributes.
        let Some(Object::OrderedDict {
            attrs: Some(attrs), ..
        }) = root.get("model")
        else {
            panic!("model: {:?}", root.get("model"))
        };
        assert!(attrs.get("_metadata").is_some(), "{attrs:?}");
        // state_dict() finds the model's under "model".
        let names: Vec<String> = ck
            .state_dict()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias"]);
        let param = root.get("param").and_then(Object::as_tensor).unwrap();
        assert!(param.is_parameter() && param.requires_grad());
    }
}

#[test]
fn strided_tensors_become_ndarrays() {
    let ck = torch::load(dir().join("state_dict.pt")).unwrap();
    let sd = ck.state_dict().unwrap();
    let t = &sd.iter().find(|(n, _)| n == "t").unwrap().1;
    assert!(!t.is_contiguous());
    let a = t.to_ndarray::<f32>().unwrap();
    assert_eq!(a.shape(), &[3, 2]);
    // arange(6).reshape(2, 3).t()
    assert_eq!(
        a,
        ndarray::arr2(&[[0.0f32, 3.0], [1.0, 4.0], [2.0, 5.0]]).into_dyn()
    );
    let err = t.to_ndarray::<f64>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a torch.float64 tensor for f64, found torch.float32"
    );
}

/// The byte ranges of `name`'s data in a zip archive (found by walking its
/// local headers).
fn entry_data(zip: &[u8], name: &str) -> std::ops::Range<usize> {
    let mut at = 0;
    while zip[at..].starts_with(b"PK\x03\x04") {
        let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
        let (name_len, extra_len) = (u16_at(at + 26), u16_at(at + 28));
        let data = at + 30 + name_len + extra_len;
        let this = &zip[at + 30..at + 30 + name_len];
        // Sizes are in the data descriptor after the data; find it through
        // the next header.
        let next = zip[data..]
            .windows(4)
            .position(|w| w == b"PK\x07\x08")
            .unwrap()
            + data;
        if this == name.as_bytes() {
            return data..next;
        }
        at = next + 16;
    }
    panic!("no entry {name}")
}

#[test]
fn written_state_dicts_are_torchs_bytes() {
    let file = dir().join("state_dict.pt");
    let torch_bytes = std::fs::read(&file).unwrap();
    let sd = torch::load(&file).unwrap().state_dict().unwrap();
    let out = reduce_tests::scratch_dir("torch").join("state_dict.pt");
    torch::save(&out, &sd).unwrap();
    let ours = std::fs::read(&out).unwrap();
    assert_eq!(ours.len(), torch_bytes.len());
    // data.pkl byte for byte.
    let pkl = entry_data(&torch_bytes, "state_dict/data.pkl");
    assert_eq!(entry_data(&ours, "state_dict/data.pkl"), pkl);
    assert_eq!(
        &ours[pkl.clone()],
        &torch_bytes[pkl.clone()],
        "{}",
        reduce_tests::first_difference(&torch_bytes[pkl.clone()], &ours[pkl])
    );
    // Everything else too, but for torch's random serialization id and the
    // CRC of it (in its data descriptor and its central directory record).
    let id = entry_data(&torch_bytes, "state_dict/.data/serialization_id");
    let differ: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i] != torch_bytes[i])
        .collect();
    let crc_in_descriptor = id.end + 4..id.end + 8;
    let central_name = torch_bytes
        .windows(31)
        .rposition(|w| w.ends_with(b"state_dict/.data/serialization_id"[2..].as_ref()))
        .unwrap();
    let _ = central_name;
    for &i in &differ {
        let in_id = id.contains(&i) || crc_in_descriptor.contains(&i);
        // The central record: 46 bytes before the name, CRC at 16..20.
        let in_central_crc = torch_bytes[..i + 20]
            .windows(4)
            .rposition(|w| w == b"PK\x01\x02")
            .is_some_and(|p| {
                (p + 16..p + 20).contains(&i)
                    && torch_bytes[p + 46..].starts_with(b"state_dict/.data/serialization_id")
            });
        assert!(
            in_id || in_central_crc,
            "byte {i} differs from torch's file"
        );
    }
    // Every entry's data is aligned as torch aligns it.
    for name in ["data.pkl", "byteorder", "data/0", "data/9", "version"] {
        assert_eq!(
            entry_data(&ours, &format!("state_dict/{name}")).start % 64,
            0,
            "{name}"
        );
    }
    // And it reads back the same.
    let back = torch::load(&out).unwrap().state_dict().unwrap();
    assert_eq!(back, sd);
}

#[test]
fn written_buffers_use_the_archive_folder() {
    let data = (0u8..8).collect();
    let t = Tensor::new(Storage::new(DType::Float8E4M3Fn, data).unwrap(), &[2, 4]).unwrap();
    let mut bytes = Vec::new();
    torch::to_writer(&mut bytes, &[("f8".to_string(), t.clone())]).unwrap();
    assert_eq!(entry_data(&bytes, "archive/data.pkl").start, 64);
    let back = torch::from_slice(&bytes).unwrap().state_dict().unwrap();
    assert_eq!(back[0].1.dtype(), DType::Float8E4M3Fn);
    assert_eq!(back[0].1.storage().data(), t.storage().data());
}

/// A legacy file around `object`, a pickle: magic number, protocol
/// version, system info, the object, then the storage keys and storages.
fn legacy(object: &[u8], keys: &[&str], storages: &[&[u8]]) -> Vec<u8> {
    let magic = Value::BigInt(Box::new(reduce::BigInt::from(0x1950a86a20f9469cfc6cu128)));
    let mut out = reduce::to_vec_with_protocol(&magic, 2).unwrap();
    out.extend(reduce::to_vec_with_protocol(&Value::Int(1001), 2).unwrap());
    out.extend(reduce::to_vec_with_protocol(&Value::Dict(vec![]), 2).unwrap());
    out.extend_from_slice(object);
    let keys = Value::List(keys.iter().map(|&k| Value::str(k)).collect());
    out.extend(reduce::to_vec_with_protocol(&keys, 2).unwrap());
    for s in storages {
        out.extend_from_slice(s);
    }
    out
}

#[test]
fn globals_outside_weights_only_are_refused_by_name() {
    // os.system, and builtins.frozenset: plain data to the reader, but not
    // in torch's weights_only set.
    for (pickle, name) in [
        (
            &b"\x80\x02cos\nsystem\n(S'echo pwned'\ntR."[..],
            "os.system",
        ),
        (
            &b"\x80\x02c__builtin__\nfrozenset\n]\x85R."[..],
            "builtins.frozenset",
        ),
        (
            &b"\x80\x02ccopy_reg\n_reconstructor\n)R."[..],
            "copyreg._reconstructor",
        ),
    ] {
        let err = torch::from_slice(&legacy(pickle, &[], &[])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("global `{name}` is not allowed")),
            "{msg}"
        );
        assert!(msg.contains("weights_only allow-list"), "{msg}");
    }
    // What weights_only allows loads: a complex and a set.
    let ok = b"\x80\x02c__builtin__\ncomplex\nG?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86R.";
    let ck = torch::from_slice(&legacy(ok, &[], &[])).unwrap();
    assert_eq!(ck.root(), &Object::Complex(1.0, 2.0));
}

/// `_rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', n, None),
/// offset, shape, strides, False, OrderedDict())` as a legacy pickle.
fn legacy_tensor(numel: i64, offset: i64, shape: &[i64], strides: &[i64]) -> Vec<u8> {
    reduce::to_vec_with_protocol(&tensor_value(numel, offset, shape, strides), 2).unwrap()
}

// The value `legacy_tensor` pickles, to put in a larger object.
use reduce_tests::torch_tensor as tensor_value;

#[test]
fn hostile_tensors_and_storages_are_errors() {
    let two_floats: &[u8] = &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64];
    let good = legacy(&legacy_tensor(2, 0, &[2], &[1]), &["0"], &[two_floats]);
    let t = torch::from_slice(&good).unwrap().into_root();
    assert_eq!(t.as_tensor().unwrap().to_vec::<f32>().unwrap(), [1.0, 2.0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            legacy(&legacy_tensor(2, 1, &[2], &[1]), &["0"], &[two_floats]),
            "reaches outside its storage",
        ),
        (
            legacy(
                &legacy_tensor(2, 0, &[2], &[i64::MAX]),
                &["0"],
                &[two_floats],
            ),
            "reaches outside its storage",
        ),
        (
            legacy(&legacy_tensor(2, 0, &[-1], &[1]), &["0"], &[two_floats]),
            "expected sizes and strides of 0 or more",
        ),
        (
            legacy(
                &legacy_tensor(2, 0, &[2], &[1]),
                &["0"],
                &[&two_floats[..12]],
            ),
            "the file ends inside storage '0'",
        ),
        (
            legacy(&legacy_tensor(3, 0, &[2], &[1]), &["0"], &[two_floats]),
            "the object says 3 elements, the file 2",
        ),
        (
            legacy(
                &legacy_tensor(1 << 62, 0, &[2], &[1]),
                &["0"],
                &[two_floats],
            ),
            "storage '0' is too large",
        ),
        (
            legacy(&legacy_tensor(2, 0, &[2], &[1]), &[], &[]),
            "missing from the key list",
        ),
    ];
    for (bytes, want) in cases {
        let err = torch::from_slice(&bytes).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should say {want:?}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for file in [
        "state_dict.pt",
        "state_dict_legacy.pt",
        "checkpoint_legacy.pt",
    ] {
        let bytes = std::fs::read(dir().join(file)).unwrap();
        for n in 0..bytes.len() {
            assert!(
                torch::from_slice(&bytes[..n]).is_err(),
                "{file} cut at {n} loaded"
            );
        }
    }
}

#[test]
fn not_a_checkpoint_says_what_it_found() {
    let err = torch::from_slice(b"hello").unwrap_err().to_string();
    assert!(err.starts_with("expected a torch checkpoint"), "{err}");
    let err = torch::from_slice(&reduce::to_vec(&Value::Int(3)).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("expected a torch checkpoint"), "{err}");
    assert!(err.contains("torch's magic number"), "{err}");
    assert!(err.ends_with("found a pickle of 3"), "{err}");
    // A pickle of something else is told by what it holds, not by the
    // first global it names (numpy.arange(3) at protocol 2, cut short).
    let numpy = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05.";
    let err = torch::from_slice(numpy).unwrap_err().to_string();
    assert!(
        err.starts_with("expected a torch checkpoint")
            && err.ends_with("found a pickle of an object"),
        "{err}"
    );
    assert!(!err.contains("register a constructor"), "{err}");
    // A list that holds itself is a list, not a reason to load a Graph.
    let err = torch::from_slice(b"\x80\x02]q\x00h\x00a.")
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("found a pickle of a list"), "{err}");
}

#[test]
fn exactly_the_weights_only_globals_pass() {
    let list = std::fs::read_to_string(dir().join("weights_only_globals.txt")).unwrap();
    let refused = |module: &str, name: &str| {
        let mut pickle = b"\x80\x02c".to_vec();
        pickle.extend_from_slice(format!("{module}\n{name}\n.").as_bytes());
        let err = torch::from_slice(&legacy(&pickle, &[], &[])).err();
        err.is_some_and(|e| matches!(e.kind(), reduce::ErrorKind::UnknownGlobal { .. }))
    };
    let mut n = 0;
    for line in list.lines() {
        let (module, name) = line.rsplit_once('.').unwrap();
        assert!(!refused(module, name), "{line} was refused");
        // A near miss of each is refused.
        assert!(refused(module, &format!("{name}_")), "{line}_ passed");
        n += 1;
    }
    assert_eq!(n, 144);
    for (module, name) in [
        ("builtins", "getattr"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("numpy.core.multiarray", "_reconstruct"),
        // What torch.save writes for a storage pickled outside torch.save:
        // it runs torch.load on the bytes, so weights_only refuses it.
        ("torch.storage", "_load_from_bytes"),
    ] {
        assert!(refused(module, name), "{module}.{name} passed");
    }
    // A dtype is a value of its own.
    let ck = torch::from_slice(&legacy(b"\x80\x02ctorch\nbfloat16\n.", &[], &[])).unwrap();
    assert_eq!(ck.root(), &Object::DType(DType::BFloat16));
}

#[test]
fn deep_nesting_stops_at_torchs_depth_without_overflowing() {
    let nested = |n: usize| {
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', n));
        p.extend(std::iter::repeat_n(b'a', n - 1));
        p.push(b'.');
        legacy(&p, &[], &[])
    };
    let ck = torch::from_slice(&nested(900)).unwrap();
    let mut depth = 0;
    let mut at = ck.root();
    while let Object::List(items) = at {
        depth += 1;
        match items.first() {
            Some(next) => at = next,
            None => break,
        }
    }
    assert_eq!(depth, 900);
    let err = torch::from_slice(&nested(5000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the checkpoint nests deeper than 1000 levels"
    );
}

#[test]
fn a_dag_that_doubles_is_stopped_not_expanded() {
    // Sixty lists, each holding the one before twice: 2**60 leaves as a tree.
    let mut graph = reduce::Graph::new(Value::None);
    let mut prev = graph.insert(Value::List(vec![]));
    for _ in 0..60 {
        prev = graph.insert(Value::List(vec![Value::Ref(prev), Value::Ref(prev)]));
    }
    *graph.root_mut() = Value::Ref(prev);
    let pickle = reduce::to_vec_with_protocol(&graph, 2).unwrap();
    let err = torch::from_slice(&legacy(&pickle, &[], &[])).unwrap_err();
    reduce_tests::assert_limit(&err, "max_tree_nodes");
}

#[test]
fn flipped_bytes_never_panic() {
    // Each byte of the legacy files (no CRC guards them) set to two values,
    // through the fuzz target's own checks.
    for file in ["state_dict_legacy.pt", "checkpoint_legacy.pt"] {
        let bytes = std::fs::read(dir().join(file)).unwrap();
        reduce_tests::fuzz::load_torch(&bytes);
        let mut loaded = 0;
        for i in 0..bytes.len() {
            for v in [0u8, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                reduce_tests::fuzz::load_torch(&b);
                loaded += usize::from(torch::from_slice(&b).is_ok());
            }
        }
        // Flips in storage bytes load as other values; flips in the pickles
        // mostly do not load.
        assert!(
            loaded > 0 && loaded < 2 * bytes.len(),
            "{file}: {loaded} loaded"
        );
    }
    for file in ["state_dict.pt", "checkpoint.pt"] {
        reduce_tests::fuzz::load_torch(&std::fs::read(dir().join(file)).unwrap());
    }
}

/// A compressed member inflates to at most 100 times its size (64 MiB
/// whatever its size): a small archive whose data.pkl inflates to 80 MiB
/// is refused as a zip bomb, while a compressed checkpoint of ordinary
/// ratio loads.
#[test]
fn a_zip_bomb_is_refused_before_it_fills_memory() {
    let script = "import io, pickle, sys, zipfile\n\
        def archive(obj):\n\
        \x20   buf = io.BytesIO()\n\
        \x20   with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20       z.writestr('archive/data.pkl', pickle.dumps(obj, protocol=2))\n\
        \x20       z.writestr('archive/version', '3\\n')\n\
        \x20   return buf.getvalue()\n\
        bomb = archive(bytes(80 << 20))\n\
        fine = archive({'epoch': 3, 'names': ['w'] * 1000})\n\
        sys.stdout.buffer.write(len(bomb).to_bytes(8, 'little') + bomb + fine)\n";
    let out = reduce_tests::python_with_input(script, b"");
    let n = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
    let (bomb, fine) = out[8..].split_at(n);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let err = torch::from_slice(bomb).unwrap_err().to_string();
    assert!(err.contains("refused as a zip bomb"), "{err}");
    assert!(err.contains("archive/data.pkl"), "{err}");
    let ck = torch::from_slice(fine).unwrap();
    assert_eq!(ck.root().get("epoch"), Some(&Object::Int(3)));
}

/// A float32 tensor of `values`, contiguous.
fn floats(values: &[f32]) -> Tensor {
    let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    Tensor::new(Storage::new(DType::Float32, data).unwrap(), &[values.len()]).unwrap()
}

#[test]
fn a_state_dict_holds_each_name_once() {
    // Writing refuses a name given twice, before writing anything:
    // OrderedDict(tensors) would keep one.
    let twice = [
        ("a".to_string(), floats(&[1.0])),
        ("b".to_string(), floats(&[2.0])),
        ("a".to_string(), floats(&[3.0])),
    ];
    let mut bytes = Vec::new();
    let err = torch::to_writer(&mut bytes, &twice)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "tensors 0 and 2 are both named 'a': a state dict holds each name once (OrderedDict(tensors) would keep only the last)"
    );
    assert!(bytes.is_empty());
    let path = reduce_tests::scratch_dir("torch").join("twice.pt");
    assert!(torch::save(&path, &twice).is_err());
    assert!(!path.exists());
    // A pickle that sets a name twice reads as torch.load reads it: the
    // name at its first position, with the last value.
    let two_floats: &[u8] = &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64];
    let root = Value::Dict(vec![
        (Value::str("a"), tensor_value(2, 0, &[1], &[1])),
        (Value::str("b"), tensor_value(2, 0, &[2], &[1])),
        (Value::str("a"), tensor_value(2, 1, &[1], &[1])),
    ]);
    let pickle = reduce::to_vec_with_protocol(&root, 2).unwrap();
    let ck = torch::from_slice(&legacy(&pickle, &["0"], &[two_floats])).unwrap();
    let sd = ck.state_dict().unwrap();
    let names: Vec<&str> = sd.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(sd[0].1.to_vec::<f32>().unwrap(), [2.0]);
    let a = ck.root().get("a").and_then(Object::as_tensor).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), [2.0]);
    // So it writes back.
    torch::to_writer(Vec::new(), &sd).unwrap();
}

#[test]
fn not_a_state_dict_says_what_it_found() {
    let two_floats: &[u8] = &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64];
    let root = Value::List(vec![
        tensor_value(2, 0, &[2], &[1]),
        tensor_value(2, 1, &[1], &[1]),
    ]);
    let pickle = reduce::to_vec_with_protocol(&root, 2).unwrap();
    let ck = torch::from_slice(&legacy(&pickle, &["0"], &[two_floats])).unwrap();
    let err = ck.state_dict().unwrap_err().to_string();
    assert!(err.ends_with("found a list of 2 items"), "{err}");
    let pickle = reduce::to_vec_with_protocol(&Value::Int(3), 2).unwrap();
    let err = torch::from_slice(&legacy(&pickle, &[], &[]))
        .unwrap()
        .state_dict()
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("found an int"), "{err}");
    let pickle =
        reduce::to_vec_with_protocol(&Value::Dict(vec![(Value::str("epoch"), Value::Int(3))]), 2)
            .unwrap();
    let err = torch::from_slice(&legacy(&pickle, &[], &[]))
        .unwrap()
        .state_dict()
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("found a dict with keys ['epoch']"), "{err}");
}

/// An expanded view (strides of 0) can have far more elements than its
/// file has bytes; gathering it is refused past the larger of its
/// storage's size and 64 MiB, without allocating.
#[test]
fn an_expanded_view_is_gathered_only_up_to_a_bound() {
    let one_float: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 128, 63];
    let file = legacy(
        &legacy_tensor(1, 0, &[1 << 20, 1 << 20], &[0, 0]),
        &["0"],
        &[one_float],
    );
    assert!(file.len() < 1000);
    let ck = torch::from_slice(&file).unwrap();
    let tera = ck.root().as_tensor().unwrap();
    assert_eq!(tera.nbytes(), 1 << 42);
    assert!(tera.check_gather().is_err());
    let errors = [
        tera.bytes().err(),
        tera.to_vec::<f32>().err(),
        tera.to_f32_vec().err(),
        tera.to_ndarray::<f32>().err(),
    ];
    for err in errors {
        let err = err.expect("refused").to_string();
        assert_eq!(
            err,
            "a torch.float32 tensor of shape [1048576, 1048576] and strides [0, 0] has 4398046511104 bytes of elements over a storage of 4 bytes: its elements overlap (a stride of 0, as `expand` makes), and gathering more than the storage's size or 64 MiB, whichever is larger, is refused"
        );
    }
    // Up to the bound, an expanded view is gathered.
    let s = Arc::new(Storage::new(DType::Float64, 2f64.to_le_bytes().to_vec()).unwrap());
    let n = Tensor::GATHER_LIMIT / 8;
    let most = Tensor::from_storage(s.clone(), DType::Float64, &[n], &[0], 0).unwrap();
    let bytes = most.bytes().unwrap();
    assert_eq!(bytes.len(), Tensor::GATHER_LIMIT);
    assert_eq!(&bytes[bytes.len() - 8..], 2f64.to_le_bytes());
    let over = Tensor::from_storage(s, DType::Float64, &[n + 1], &[0], 0).unwrap();
    assert!(over.bytes().is_err());
}

/// float8 values from their bit layout (OCP FP8: E4M3 "fn" has no
/// infinities and one NaN per sign, S.1111.111; E5M2 is IEEE-like), as
/// CPython computes them, for every byte.
#[test]
fn float8_tensors_convert_to_f32_exactly() {
    let script = "import math\n\
        def e4m3fn(b):\n\
        \x20   s = -1.0 if b & 0x80 else 1.0\n\
        \x20   e, m = (b >> 3) & 0xf, b & 7\n\
        \x20   if e == 15 and m == 7: return math.nan\n\
        \x20   if e == 0: return s * m / 8 * 2.0 ** -6\n\
        \x20   return s * (1 + m / 8) * 2.0 ** (e - 7)\n\
        def e5m2(b):\n\
        \x20   s = -1.0 if b & 0x80 else 1.0\n\
        \x20   e, m = (b >> 2) & 0x1f, b & 3\n\
        \x20   if e == 31: return s * math.inf if m == 0 else math.nan\n\
        \x20   if e == 0: return s * m / 4 * 2.0 ** -14\n\
        \x20   return s * (1 + m / 4) * 2.0 ** (e - 15)\n\
        for b in range(256): print(repr(e4m3fn(b)), repr(e5m2(b)))\n";
    let mut cmd = reduce_tests::python3();
    let out = cmd.args(["-c", script]).output().expect("python3");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 256);
    let every_byte: Vec<u8> = (0..=255).collect();
    for (dtype, column) in [(DType::Float8E4M3Fn, 0), (DType::Float8E5M2, 1)] {
        let t = Tensor::new(Storage::new(dtype, every_byte.clone()).unwrap(), &[256]).unwrap();
        let got = t.to_f32_vec().unwrap();
        for (b, (&ours, row)) in got.iter().zip(&rows).enumerate() {
            let python = if column == 0 { row.0 } else { row.1 };
            assert!(
                f64::from(ours).to_bits() == python.to_bits() || ours.is_nan() && python.is_nan(),
                "{dtype} byte {b:#04x}: {ours} for python's {python}"
            );
        }
    }
    // Known values: the largest finite of each, and e5m2's infinity.
    let t = Tensor::new(
        Storage::new(DType::Float8E4M3Fn, vec![0x7e, 0xfe]).unwrap(),
        &[2],
    )
    .unwrap();
    assert_eq!(t.to_f32_vec().unwrap(), [448.0, -448.0]);
    let t = Tensor::new(
        Storage::new(DType::Float8E5M2, vec![0x7b, 0x7c]).unwrap(),
        &[2],
    )
    .unwrap();
    assert_eq!(t.to_f32_vec().unwrap(), [57344.0, f32::INFINITY]);
}
