//! `reduce show`: Python's repr for plain data, labels for sharing and
//! cycles, the JSON mapping, and a Python program that CPython runs to the
//! same object graph that loading the pickle gives.

mod common;

use common::{fixtures, run, stderr, stdout};

/// Corpus files, and CPython's verdict on each: `repr` for plain data
/// without shared containers, `-` otherwise.
fn corpus_reprs() -> Vec<(std::path::PathBuf, String)> {
    let script = r#"
import os, pickle, sys
d = sys.argv[1]
sys.path.insert(0, os.path.dirname(d))
PLAIN = (type(None), bool, int, float, str, bytes, bytearray, tuple, list, dict)
def plain(v, seen):
    if type(v) not in PLAIN:
        return False
    if isinstance(v, (list, dict, tuple, bytearray)) and v != ():
        if id(v) in seen:
            return False
        seen.add(id(v))
    if isinstance(v, (list, tuple)):
        return all(plain(x, seen) for x in v)
    if isinstance(v, dict):
        return all(plain(k, seen) and plain(x, seen) for k, x in v.items())
    return True
for f in sorted(os.listdir(d)):
    if not f.endswith('.pickle'):
        continue
    try:
        v = pickle.load(open(os.path.join(d, f), 'rb'))
        r = repr(v) if plain(v, set()) else '-'
    except Exception:
        r = '-'
    print(f + '\t' + r.encode('unicode_escape').decode('ascii'))
"#;
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg(script)
        .arg(reduce_tests::fixtures().join("corpus"));
    common::python_output(cmd)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, r)| {
            (
                reduce_tests::fixtures().join("corpus").join(f),
                r.to_string(),
            )
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg("import sys; sys.stdout.buffer.write(sys.argv[1].encode('ascii').decode('unicode_escape').encode('utf-8', 'surrogatepass'))")
        .arg(s);
    common::python_output(cmd)
}

#[test]
fn plain_data_shows_as_python_repr() {
    let mut compared = 0;
    let rows = corpus_reprs();
    // Escaped reprs that are pure ASCII compare directly; the rest are
    // unescaped by Python first.
    for (file, expected) in rows {
        if expected == "-" || expected.len() > 20_000 {
            continue;
        }
        let expected = if expected.contains('\\') {
            unescape(&expected)
        } else {
            expected
        };
        let out = run(&["show", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        assert_eq!(
            stdout(&out).trim_end_matches('\n'),
            expected,
            "{}",
            file.display()
        );
        compared += 1;
    }
    assert!(compared > 60, "only {compared} files compared");
}

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = reduce_tests::scratch_dir("cli-show");
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    file
}

/// The pickle CPython writes for `expr` (with `import collections`).
fn dumps(expr: &str, proto: u8) -> Vec<u8> {
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c").arg(format!(
        "import collections, pickle, sys\nl = [1]; l.append(l)\nsys.stdout.buffer.write(pickle.dumps({expr}, protocol={proto}))"
    ));
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn shared_objects_are_labelled_and_cycles_marked() {
    let file = write(
        "shared.pkl",
        &dumps(
            "[{'x': l, 'y': l}, (l,), collections.OrderedDict(a=[1])]",
            2,
        ),
    );
    let out = stdout(&run(&["show", file.to_str().unwrap()]));
    assert_eq!(
        out,
        "[{'x': <#1>[1, <#1>[...]], 'y': <#1>}, (<#1>,), <collections.OrderedDict() dictitems={'a': [1]}>]\n"
    );
}

#[test]
fn json_follows_the_documented_mapping() {
    let file = write(
        "json.pkl",
        &dumps(
            "[l, l, (1, b'\\x00\\xff'), {'k': 2**70, 3: float('nan')}, {'$x': None}, {1, 2}]",
            4,
        ),
    );
    let out = run(&["show", "--json", file.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON");
    assert_eq!(
        v[0],
        serde_json::json!({"$id": 1, "value": [1, {"$ref": 1}]})
    );
    assert_eq!(v[1], serde_json::json!({"$ref": 1}));
    assert_eq!(v[2], serde_json::json!({"$tuple": [1, {"$bytes": "00ff"}]}));
    assert_eq!(
        v[3],
        serde_json::json!({"$dict": [["k", {"$int": "1180591620717411303424"}], [3, {"$float": "nan"}]]})
    );
    assert_eq!(v[4], serde_json::json!({"$dict": [["$x", null]]}));
    assert_eq!(v[5], serde_json::json!({"$set": [1, 2]}));
}

/// Runs `reduce show --python` on each file and then, in CPython, the
/// program it printed: `result` must pickle to the same bytes as the
/// object CPython loads from the file (same values, same sharing).
fn python_program_rebuilds(files: &[std::path::PathBuf]) -> usize {
    let dir = reduce_tests::scratch_dir("cli-show-py");
    let mut pairs = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let out = run(&["show", "--python", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        let program = dir.join(format!("p{i}.py"));
        std::fs::write(&program, &out.stdout).unwrap();
        pairs.push(format!("{}\n{}", file.display(), program.display()));
    }
    let list = dir.join("pairs.txt");
    std::fs::write(&list, pairs.join("\n")).unwrap();
    let script = r#"
import pickle, sys, os
sys.path.insert(0, sys.argv[2])
lines = open(sys.argv[1]).read().split('\n')
bad = []
for f, p in zip(lines[::2], lines[1::2]):
    expected = pickle.load(open(f, 'rb'))
    scope = {}
    exec(compile(open(p).read(), p, 'exec'), scope)
    if pickle.dumps(scope['result'], 4) != pickle.dumps(expected, 4):
        bad.append(f)
print(len(lines) // 2 - len(bad))
for b in bad:
    print('differs:', b)
"#;
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg(script)
        .arg(&list)
        .arg(reduce_tests::fixtures());
    let out = common::python_output(cmd);
    assert!(!out.contains("differs"), "{out}");
    out.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_python_program_rebuilds_the_same_graph() {
    let mut files: Vec<_> = std::fs::read_dir(fixtures().join("benign"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| !s.ends_with("stream.pkl")))
        .collect();
    for name in [
        "self_list",
        "self_dict",
        "shared_list",
        "shared_dict_nested",
        "rec_tuple",
        "rec_tuple_list",
        "rec_tuple_twice",
        "dag60",
        "inst_plain",
        "inst_slots",
        "inst_setstate",
        "inst_self_ref",
        "inst_shared",
        "inst_newargs",
        "inst_newargs_ex",
        "inst_list_sub",
        "inst_dict_sub",
        "inst_dataclass",
        "nested",
        "float_specials",
        "str_surrogates",
        "complex",
        "range",
    ] {
        for proto in 0..=5 {
            let f = reduce_tests::fixtures().join(format!("corpus/{name}.p{proto}.pickle"));
            if f.is_file() {
                files.push(f);
            }
        }
    }
    files.sort();
    let n = python_program_rebuilds(&files);
    assert_eq!(n, files.len());
    assert!(n > 100, "{n}");
}

#[test]
fn the_python_program_spells_out_calls_and_state() {
    let file = fixtures().join("benign/ordereddict.p2.pkl");
    let program = stdout(&run(&["show", "--python", file.to_str().unwrap()]));
    assert!(program.contains("import collections\n"), "{program}");
    assert!(
        program.contains("obj1 = collections.OrderedDict()\n"),
        "{program}"
    );
    assert!(
        program.contains("obj1['a'] = 1\nobj1['b'] = 2\n"),
        "{program}"
    );
    let file = reduce_tests::fixtures().join("corpus/inst_plain.p2.pickle");
    let program = stdout(&run(&["show", "--python", file.to_str().unwrap()]));
    assert!(program.contains("def _build(obj, state):"), "{program}");
    assert!(program.contains(".__new__("), "{program}");
    assert!(program.contains("_build(obj1, {"), "{program}");
    // Nothing is loaded for real: an attack shows as the call it would make.
    let file = fixtures().join("attacks/os_system.pkl");
    let out = run(&["show", "--python", file.to_str().unwrap()]);
    assert_eq!(stdout(&out), "# What loading this pickle does, call by call.\nimport os\n\nobj1 = os.system('echo pwned')\nresult = obj1\n");
}

#[test]
fn deep_values_print_without_overflowing_the_stack() {
    let depth = 50_000;
    let mut bytes = b"\x80\x02".to_vec();
    bytes.extend(std::iter::repeat_n(b']', depth));
    bytes.extend(std::iter::repeat_n(b'a', depth - 1));
    bytes.push(b'.');
    let file = write("deep.pkl", &bytes);
    for mode in [&[][..], &["--json"], &["--python"]] {
        let mut args = vec!["show"];
        args.extend_from_slice(mode);
        args.push(file.to_str().unwrap());
        let out = run(&args);
        // Either printed, or refused by a reader limit; never a crash.
        match out.status.code() {
            Some(0) => assert!(stdout(&out).starts_with("[[[[") || stdout(&out).contains("[[[[")),
            Some(2) => assert!(stderr(&out).contains("limit"), "{}", stderr(&out)),
            other => panic!("{mode:?}: exit {other:?}: {}", stderr(&out)),
        }
    }
}
