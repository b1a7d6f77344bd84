//! `reduce convert`: torch checkpoints (zip and legacy) become safetensors
//! files holding the same tensors; a checkpoint naming anything outside
//! torch's weights_only allow-list is refused and nothing is written.

mod common;

use common::{fixtures, run, stderr, stdout};

/// What CPython reads from a safetensors file, parsed by hand (header
/// length, JSON header, little-endian data), as JSON: name to dtype,
/// shape and values.
fn read_safetensors(path: &std::path::Path) -> serde_json::Value {
    let script = r#"
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
header = json.loads(b[8:8 + n])
data = b[8 + n:]
fmt = {'F32': 'f', 'F64': 'd', 'F16': 'e', 'I64': 'q', 'I32': 'i', 'U8': 'B', 'I8': 'b', 'BOOL': '?'}
out = {}
for name, t in header.items():
    if name == '__metadata__':
        continue
    lo, hi = t['data_offsets']
    f = fmt[t['dtype']]
    count = (hi - lo) // struct.calcsize(f)
    out[name] = {'dtype': t['dtype'], 'shape': t['shape'],
                 'values': list(struct.unpack('<%d%s' % (count, f), data[lo:hi]))}
print(json.dumps(out))
"#;
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c").arg(script).arg(path);
    serde_json::from_str(&common::python_output(cmd)).expect("JSON from python")
}

#[test]
fn zip_and_legacy_checkpoints_convert_to_the_same_tensors() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("torch/checkpoints.json")).unwrap(),
    )
    .unwrap();
    let dir = reduce_tests::scratch_dir("cli-convert");
    // tiny_case_zip.pt: tiny_zip.pt with tiny/DATA.PKL, tiny/ByteOrder,
    // tiny/Data/0, tiny/DATA/1 ..., which torch finds whatever their case.
    for name in ["tiny_zip.pt", "tiny_legacy.pt", "tiny_case_zip.pt"] {
        let out_file = dir.join(format!("{name}.safetensors"));
        let out = run(&[
            "convert",
            fixtures().join("torch").join(name).to_str().unwrap(),
            out_file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("wrote 7 tensors"), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("left out what is not a tensor: epoch, note"),
            "{}",
            stderr(&out)
        );
        let got = read_safetensors(&out_file);
        assert_eq!(got, expected, "{name}");
    }
}

/// The member convert loads is the one scan judges and show prints.
#[test]
fn convert_scan_and_show_read_the_same_member() {
    let file = fixtures().join("torch/tiny_case_zip.pt");
    let file = file.to_str().unwrap();
    let out = run(&["scan", "--json", "--allow", "torch", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{}", stdout(&out));
    assert_eq!(records[0]["member"], "tiny/DATA.PKL");
    assert_eq!(records[0]["verdict"], "safe");
    let out = run(&["show", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("'epoch': 3, 'note': 'tiny'"),
        "{}",
        stdout(&out)
    );
}

/// The offset of the opcode naming `global` ("module name") in a zip's
/// data.pkl, as pickletools finds it.
fn global_offset(zip: &std::path::Path, global: &str) -> String {
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg(
            "import pickletools, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             data = z.read([n for n in z.namelist() if n.endswith('data.pkl')][0])\n\
             print([p for op, arg, p in pickletools.genops(data) if arg == sys.argv[2]][0])",
        )
        .arg(zip)
        .arg(global);
    common::python_output(cmd).trim().to_string()
}

#[test]
fn a_checkpoint_that_calls_anything_else_is_refused() {
    let dir = reduce_tests::scratch_dir("cli-convert");
    let out_file = dir.join("evil.safetensors");
    let out = run(&[
        "convert",
        fixtures().join("torch/evil_zip.pt").to_str().unwrap(),
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Named with the offset of its opcode in data.pkl, as pickletools
    // finds it, and said to run code.
    let offset = global_offset(&fixtures().join("torch/evil_zip.pt"), "posix system");
    let evil = fixtures().join("torch/evil_zip.pt");
    let evil = evil.display();
    assert_eq!(
        stderr(&out),
        format!(
            "reduce: {evil}: refused: the checkpoint names `posix.system` (at byte {offset}, GLOBAL), \
             which is not in torch's weights_only allow-list; `posix.system` can run code: runs a shell command or another program. \
             convert loads only the names in that list and has no option to allow others \
             (torch.load(weights_only=True) refuses it too); `reduce scan --allow torch {evil}` \
             lists every global it names, and `reduce show {evil}` prints it without loading anything\n"
        )
    );
    assert!(!out_file.exists());
    // A global that is harmless but not in the list is refused too; the
    // library's advice (a constructor, inert mode) means nothing here.
    let dated = fixtures().join("torch/dated_zip.pt");
    let out = run(&[
        "convert",
        dated.to_str().unwrap(),
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let offset = global_offset(&dated, "datetime date");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "refused: the checkpoint names `datetime.date` (at byte {offset}, GLOBAL), which is not in torch's weights_only allow-list. convert loads only"
        )),
        "{err}"
    );
    for library_advice in ["register a constructor", "inert mode", "can run code"] {
        assert!(!err.contains(library_advice), "{err}");
    }
    // What the message suggests works on that file: scan names the global.
    let scanned = run(&["scan", "--allow", "torch", dated.to_str().unwrap()]);
    assert_eq!(scanned.status.code(), Some(1), "{}", stderr(&scanned));
    assert!(
        stdout(&scanned).contains("datetime.date"),
        "{}",
        stdout(&scanned)
    );
    assert!(!out_file.exists());
    // A plain pickle is not a checkpoint.
    let plain = fixtures().join("benign/datetime.p2.pkl");
    let out = run(&[
        "convert",
        plain.to_str().unwrap(),
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected a torch checkpoint"),
        "{}",
        stderr(&out)
    );
    // Told by what it holds, not by the global it names first.
    assert!(
        stderr(&out).contains("found a pickle of an object"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("register a constructor"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_checkpoint_is_an_error_that_says_where() {
    let dir = reduce_tests::scratch_dir("cli-convert");
    let bytes = std::fs::read(fixtures().join("torch/tiny_legacy.pt")).unwrap();
    for cut in [10, 100, 400, bytes.len() - 5] {
        let file = dir.join(format!("cut{cut}.pt"));
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let out_file = dir.join("out.safetensors");
        let out = run(&[
            "convert",
            file.to_str().unwrap(),
            out_file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "cut at {cut}");
        // Where: the byte of a pickle, or the storage the file ends in.
        let err = stderr(&out);
        assert!(
            err.contains("truncated (at byte ") || err.contains("the file ends inside storage '"),
            "cut at {cut}: {err}"
        );
        assert!(!out_file.exists(), "cut at {cut}");
    }
}

use reduce_tests::torch_tensor as tensor;

/// A checkpoint in torch's legacy format (magic number, protocol version,
/// system info, the object, the storage keys, the storages) of `root`,
/// whose tensors view storage '0' of `floats`; written to `dir/name`.
fn legacy_checkpoint(
    dir: &std::path::Path,
    name: &str,
    root: &reduce::Value,
    floats: &[f32],
) -> std::path::PathBuf {
    use reduce::Value;
    let pickle = |v: &Value| reduce::to_vec_with_protocol(v, 2).unwrap();
    let magic = Value::BigInt(Box::new(reduce::BigInt::from(0x1950a86a20f9469cfc6cu128)));
    let mut out = pickle(&magic);
    out.extend(pickle(&Value::Int(1001)));
    out.extend(pickle(&Value::Dict(vec![])));
    out.extend(pickle(root));
    out.extend(pickle(&Value::List(vec![Value::str("0")])));
    out.extend((floats.len() as u64).to_le_bytes());
    out.extend(floats.iter().flat_map(|f| f.to_le_bytes()));
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

fn str_dict(items: Vec<(&str, reduce::Value)>) -> reduce::Value {
    reduce::Value::Dict(
        items
            .into_iter()
            .map(|(k, v)| (reduce::Value::str(k), v))
            .collect(),
    )
}

/// Runs `convert` on `checkpoint` to `out`.
fn convert(checkpoint: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    run(&[
        "convert",
        checkpoint.to_str().unwrap(),
        out.to_str().unwrap(),
    ])
}

/// The names in `dir`, sorted: what a failed convert left behind.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn tensors_that_would_share_a_name_are_refused() {
    use reduce::Value;
    let dir = reduce_tests::scratch_dir("cli-convert");
    let out_file = dir.join("out.safetensors");
    let t0 = || tensor(2, 0, &[1], &[1]);
    let t1 = || tensor(2, 1, &[1], &[1]);
    let cases = [
        // A dotted key and the nested keys it joins to.
        (
            str_dict(vec![("a.b", t0()), ("a", str_dict(vec![("b", t1())]))]),
            "two tensors would be named `a.b` (the one at ['a.b'] and the one at ['a']['b']); a safetensors file holds each name once",
        ),
        // Keys that are neither str nor int are named by their type.
        (
            Value::Dict(vec![(Value::Float(1.5), t0()), (Value::Float(2.5), t1())]),
            "two tensors would be named `<float>` (the one at [1.5] and the one at [2.5]); a safetensors file holds each name once",
        ),
        // A pickle that sets one key twice.
        (
            str_dict(vec![("a", t0()), ("a", t1())]),
            "two tensors would be named `a` (the pickle sets ['a'] twice); a safetensors file holds each name once",
        ),
        // A list index and a dotted key.
        (
            str_dict(vec![("a", Value::List(vec![t0()])), ("a.0", t1())]),
            "two tensors would be named `a.0` (the one at ['a'][0] and the one at ['a.0']); a safetensors file holds each name once",
        ),
    ];
    for (i, (root, want)) in cases.iter().enumerate() {
        let ck = legacy_checkpoint(&dir, &format!("case{i}.pt"), root, &[1.5, 2.5]);
        let out = convert(&ck, &out_file);
        assert_eq!(out.status.code(), Some(2), "case {i}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("reduce: {}: {want}\n", ck.display()),
            "case {i}"
        );
        assert!(!out_file.exists(), "case {i}");
    }
}

#[test]
fn the_name_safetensors_keeps_for_metadata_is_refused() {
    let dir = reduce_tests::scratch_dir("cli-convert");
    let root = str_dict(vec![
        ("w", tensor(2, 0, &[2], &[1])),
        ("__metadata__", tensor(2, 1, &[1], &[1])),
    ]);
    let ck = legacy_checkpoint(&dir, "metadata.pt", &root, &[1.5, 2.5]);
    let out_file = dir.join("out.safetensors");
    let out = convert(&ck, &out_file);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "the tensor at ['__metadata__'] cannot be named `__metadata__`: safetensors keeps that name for the header's metadata"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!out_file.exists());
    // Nested under it, the name is another.
    let root = str_dict(vec![(
        "__metadata__",
        str_dict(vec![("w", tensor(2, 0, &[2], &[1]))]),
    )]);
    let ck = legacy_checkpoint(&dir, "nested.pt", &root, &[1.5, 2.5]);
    let out = convert(&ck, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read_safetensors(&out_file);
    assert_eq!(
        got["__metadata__.w"]["values"],
        serde_json::json!([1.5, 2.5])
    );
}

/// A 1-element storage viewed as 2^20 x 2^20 with strides (0, 0): a file
/// of a few hundred bytes, a tensor of 4 TiB.
#[test]
fn an_expanded_view_far_larger_than_its_file_is_refused() {
    let dir = reduce_tests::scratch_dir("cli-convert");
    let root = str_dict(vec![
        ("small", tensor(1, 0, &[2, 3], &[0, 0])),
        ("w", tensor(1, 0, &[1 << 20, 1 << 20], &[0, 0])),
    ]);
    let ck = legacy_checkpoint(&dir, "tera.pt", &root, &[1.5]);
    assert!(std::fs::metadata(&ck).unwrap().len() < 1000);
    let out_file = dir.join("out.safetensors");
    let out = convert(&ck, &out_file);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "w: a torch.float32 tensor of shape [1048576, 1048576] and strides [0, 0] has 4398046511104 bytes of elements over a storage of 4 bytes: its elements overlap"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&dir), ["tera.pt"]);
    // A small expanded view converts.
    let root = str_dict(vec![("small", tensor(1, 0, &[2, 3], &[0, 0]))]);
    let ck = legacy_checkpoint(&dir, "small.pt", &root, &[1.5]);
    let out = convert(&ck, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read_safetensors(&out_file);
    assert_eq!(
        got["small"]["values"],
        serde_json::json!([1.5, 1.5, 1.5, 1.5, 1.5, 1.5])
    );
}

#[test]
fn tensors_in_lists_and_tuples_are_named_by_index() {
    use reduce::Value;
    let dir = reduce_tests::scratch_dir("cli-convert");
    let root = Value::Dict(vec![
        (
            Value::str("lst"),
            Value::List(vec![tensor(2, 1, &[1], &[1]), Value::Int(5)]),
        ),
        (
            Value::str("tup"),
            Value::Tuple(vec![Value::None, tensor(2, 0, &[1], &[1])]),
        ),
        (Value::Int(3), str_dict(vec![("x", tensor(2, 0, &[], &[]))])),
        (Value::str("steps"), Value::List(vec![Value::Int(1); 3])),
        (Value::str("epoch"), Value::Int(3)),
    ]);
    let ck = legacy_checkpoint(&dir, "nested.pt", &root, &[1.5, 2.5]);
    let out_file = dir.join("out.safetensors");
    let out = convert(&ck, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    // What holds no tensor is left out whole, by its name.
    assert!(
        stderr(&out).ends_with(&format!(
            "wrote 3 tensors (12 bytes) to {}; left out what is not a tensor: lst.1, tup.0, steps, epoch\n",
            out_file.display()
        )),
        "{}",
        stderr(&out)
    );
    let got = read_safetensors(&out_file);
    let names: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(names, ["3.x", "lst.0", "tup.1"]);
    assert_eq!(got["lst.0"]["values"], serde_json::json!([2.5]));
    // A list at the top: its tensors are named by their index alone.
    let root = Value::List(vec![tensor(2, 0, &[2], &[1]), tensor(2, 1, &[1], &[1])]);
    let ck = legacy_checkpoint(&dir, "list.pt", &root, &[1.5, 2.5]);
    let out = convert(&ck, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read_safetensors(&out_file);
    assert_eq!(got["0"]["values"], serde_json::json!([1.5, 2.5]));
    assert_eq!(got["1"]["values"], serde_json::json!([2.5]));
}

#[test]
fn a_file_that_cannot_be_written_is_named_and_nothing_is_left() {
    let dir = reduce_tests::scratch_dir("cli-convert");
    let ck = fixtures().join("torch/tiny_zip.pt");
    let out_dir = dir.join("a directory");
    std::fs::create_dir(&out_dir).unwrap();
    let out = convert(&ck, &out_dir);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "reduce: cannot write {}: Is a directory (os error 21)\n",
            out_dir.display()
        )
    );
    assert_eq!(listing(&dir), ["a directory"]);
    // A file that exists is replaced whole.
    let out_file = dir.join("out.safetensors");
    std::fs::write(&out_file, b"old").unwrap();
    let out = convert(&ck, &out_file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listing(&dir), ["a directory", "out.safetensors"]);
    assert!(std::fs::metadata(&out_file).unwrap().len() > 100);
}
