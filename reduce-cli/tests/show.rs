//! `reduce show`: Python's repr for plain data, labels for sharing and
//! cycles, the JSON mapping, and a Python program that CPython runs to the
//! same object graph that loading the pickle gives.

mod common;

use std::fmt::Write as _;

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

#[test]
fn out_of_band_buffers_are_said_to_be_elsewhere() {
    // numpy at protocol 5 with a buffer_callback: NEXT_BUFFER, no data.
    let file = write("oob.pkl", b"\x80\x05\x97\x98.");
    let out = run(&["show", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("out-of-band buffers were handed to the writer, not stored in the file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_python_program_of_a_deep_value_runs() {
    // CPython's parser takes at most 200 nested brackets in one statement;
    // loading takes any depth. 300 lists, then 210 dicts in dicts (CPython pickles no deeper).
    let mut lists = b"\x80\x02".to_vec();
    lists.extend(std::iter::repeat_n(b']', 300));
    lists.extend(std::iter::repeat_n(b'a', 299));
    lists.push(b'.');
    let mut dicts = b"\x80\x02".to_vec();
    for _ in 0..210 {
        dicts.extend_from_slice(b"}X\x01\x00\x00\x00k");
    }
    dicts.push(b'}');
    dicts.extend(std::iter::repeat_n(b's', 210));
    dicts.push(b'.');
    let files = [
        write("deep_lists.pkl", &lists),
        write("deep_dicts.pkl", &dicts),
    ];
    assert_eq!(python_program_rebuilds(&files), 2);
}

/// A pickle, what each output shows, and what loading it does: name,
/// pickle, repr, JSON, the program's statements, calls made, result.
type Case = (
    &'static str,
    &'static [u8],
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Pickles that do things for their effect alone (inert mode keeps them as
/// a `Seq`): a call whose result is thrown away, and an object changed
/// after a call took it (dill fills a function's globals that way). Each
/// output shows the steps; the Python program takes them in the order
/// loading does, which CPython confirms by running both against a module
/// `m` that records its calls.
#[test]
fn steps_taken_for_their_effect_show_in_order() {
    let cases: [Case; 6] = [
        (
            "discard",
            b"\x80\x02]q\x00cm\nf\nh\x00\x85R0.",
            "<seq value=<#1>[] after=[discard(m.f(<#1>))]>",
            r#"{"$seq":{"before":[],"value":{"$id":1,"value":[]},"after":[{"discard":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$ref":1}]}}}}]}}"#,
            "obj1 = []\nm.f(obj1)\nresult = obj1\n",
            "['f([])']",
            "[]",
        ),
        (
            "setitems",
            b"\x80\x02cm\nf\nq\x01}q\x00\x85Rq\x02h\x00U\x01aK\x01s0.",
            "<seq value=m.f(<#1>{}) after=[setitems(<#1>, {'a': 1})]>",
            r#"{"$seq":{"before":[],"value":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$id":1,"value":{}}]}}},"after":[{"setitems":[{"$ref":1},{"a":1}]}]}}"#,
            "obj1 = {}\nobj2 = m.f(obj1)\nobj1['a'] = 1\nresult = obj2\n",
            "['f({})']",
            "('r', {'a': 1})",
        ),
        (
            "append",
            b"\x80\x02cm\nf\n]q\x00\x85Rq\x01h\x00K\x02a0.",
            "<seq value=m.f(<#1>[]) after=[append(<#1>, [2])]>",
            r#"{"$seq":{"before":[],"value":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$id":1,"value":[]}]}}},"after":[{"append":[{"$ref":1},[2]]}]}}"#,
            "obj1 = []\nobj2 = m.f(obj1)\nobj1.extend([2])\nresult = obj2\n",
            "['f([])']",
            "('r', [2])",
        ),
        (
            "additems",
            b"\x80\x04cm\nf\n\x8fq\x00\x85Rq\x01h\x00(K\x03\x900.",
            "<seq value=m.f(<#1>set()) after=[additems(<#1>, [3])]>",
            r#"{"$seq":{"before":[],"value":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$id":1,"value":{"$set":[]}}]}}},"after":[{"additems":[{"$ref":1},[3]]}]}}"#,
            "obj1 = set()\nobj2 = m.f(obj1)\nobj1.update([3])\nresult = obj2\n",
            "['f(set())']",
            "('r', {3})",
        ),
        (
            "build",
            b"\x80\x02cm\ng\n)Rq\x000cm\nf\nh\x00\x85Rq\x01h\x00}U\x01aK\x01sb0.",
            "<seq before=[discard(<#1>m.g())] value=m.f(<#1>) after=[build(<#1>, {'a': 1})]>",
            r#"{"$seq":{"before":[{"discard":{"$id":1,"value":{"$reduce":{"callable":{"$global":"m.g"},"args":{"$tuple":[]}}}}}],"value":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$ref":1}]}}},"after":[{"build":[{"$ref":1},{"a":1}]}]}}"#,
            "obj1 = m.g()\nobj2 = m.f(obj1)\n_build(obj1, {'a': 1})\nresult = obj2\n",
            "['g()', 'f(O({}))']",
            "('r', O({'a': 1}))",
        ),
        (
            // ADDITEMS on an object that is not a set calls its `add`.
            "additems_add",
            b"\x80\x04cm\ng\n)Rq\x000cm\nf\nh\x00\x85Rq\x01h\x00(K\x03K\x04\x900.",
            "<seq before=[discard(<#1>m.g())] value=m.f(<#1>) after=[additems(<#1>, [3, 4])]>",
            r#"{"$seq":{"before":[{"discard":{"$id":1,"value":{"$reduce":{"callable":{"$global":"m.g"},"args":{"$tuple":[]}}}}}],"value":{"$reduce":{"callable":{"$global":"m.f"},"args":{"$tuple":[{"$ref":1}]}}},"after":[{"additems":[{"$ref":1},[3,4]]}]}}"#,
            "obj1 = m.g()\nobj2 = m.f(obj1)\nobj1.add(3)\nobj1.add(4)\nresult = obj2\n",
            "['g()', 'f(O({}))']",
            "('r', O({'items': [3, 4]}))",
        ),
    ];
    let dir = reduce_tests::scratch_dir("cli-show-steps");
    std::fs::write(
        dir.join("m.py"),
        "calls = []\n\
         class O:\n    def __repr__(self):\n        return 'O(%r)' % self.__dict__\n\
         \x20   def add(self, x):\n        self.__dict__.setdefault('items', []).append(x)\n\
         def g():\n    calls.append('g()')\n    return O()\n\
         def f(x):\n    calls.append('f(%r)' % (x,))\n    return ('r', x)\n",
    )
    .unwrap();
    let mut expected = String::new();
    for (name, bytes, repr, json, statements, calls, result) in cases {
        let file = dir.join(format!("{name}.pkl"));
        std::fs::write(&file, bytes).unwrap();
        let file = file.to_str().unwrap();
        assert_eq!(stdout(&run(&["show", file])), format!("{repr}\n"), "{name}");
        assert_eq!(
            stdout(&run(&["show", "--json", file])),
            format!("{json}\n"),
            "{name}"
        );
        let program = stdout(&run(&["show", "--python", file]));
        assert!(program.contains("\nimport m\n"), "{name}: {program}");
        assert!(
            program.ends_with(&format!("\n\n{statements}")),
            "{name}: {program}"
        );
        std::fs::write(dir.join(format!("{name}.py")), &program).unwrap();
        let _ = writeln!(expected, "{name}\t{calls}\t{result}\t{calls}\t{result}");
    }
    let script = r#"
import pickle, sys
sys.path.insert(0, sys.argv[1])
import m
for name in sys.argv[2:]:
    m.calls.clear()
    loaded = pickle.load(open('%s/%s.pkl' % (sys.argv[1], name), 'rb'))
    by_pickle = (repr(m.calls), repr(loaded))
    m.calls.clear()
    scope = {}
    exec(open('%s/%s.py' % (sys.argv[1], name)).read(), scope)
    print('\t'.join((name,) + by_pickle + (repr(m.calls), repr(scope['result']))))
"#;
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c").arg(script).arg(&dir);
    cmd.args(cases.iter().map(|c| c.0));
    assert_eq!(common::python_output(cmd), expected);
}

/// Real dill pickles of a recursive function (its globals get the function
/// after it is made) and of a closure (its cell is filled by a discarded
/// call through `getattr`): the printed program, run by CPython with dill
/// installed, gives functions that work as the originals do.
#[test]
fn dill_functions_rebuilt_by_the_python_program_work() {
    let dir = reduce_tests::scratch_dir("cli-show-dill");
    let script = r#"
import dill, sys
def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)
def make_counter(start):
    count = [start]
    def bump(by=1):
        count[0] += by
        return count[0]
    return bump
for proto in (2, 4):
    open('%s/fact%d.pkl' % (sys.argv[1], proto), 'wb').write(dill.dumps(fact, protocol=proto, recurse=True))
    open('%s/bump%d.pkl' % (sys.argv[1], proto), 'wb').write(dill.dumps(make_counter(5), protocol=proto, recurse=True))
"#;
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(&dir);
    common::python_output(cmd);
    for proto in [2, 4] {
        for name in ["fact", "bump"] {
            let file = dir.join(format!("{name}{proto}.pkl"));
            let out = run(&["show", "--python", file.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
            std::fs::write(dir.join(format!("{name}{proto}.py")), &out.stdout).unwrap();
        }
        // The globals are filled after the function is made; the cell
        // after the closure is, by a call whose result is thrown away.
        let fact = std::fs::read_to_string(dir.join(format!("fact{proto}.py"))).unwrap();
        assert!(fact.contains("['fact'] = obj"), "{fact}");
        let bump = std::fs::read_to_string(dir.join(format!("bump{proto}.py"))).unwrap();
        assert!(bump.contains(", 'cell_contents', [5])\n"), "{bump}");
    }
    let script = r#"
import sys
for proto in (2, 4):
    fact, bump = {}, {}
    exec(open('%s/fact%d.py' % (sys.argv[1], proto)).read(), fact)
    exec(open('%s/bump%d.py' % (sys.argv[1], proto)).read(), bump)
    print(fact['result'](5), bump['result'](), bump['result'](2))
"#;
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(&dir);
    assert_eq!(common::python_output(cmd), "120 6 8\n120 6 8\n");
}

#[test]
fn names_in_the_python_program_are_data_not_code() {
    // A global's module and name are strings of the pickle: written into
    // the program as they are, they would be code it runs.
    let cases: [&[u8]; 4] = [
        b"\x80\x04\x8c\x16os\nprint(\"INJECTED\")\n#\x94\x8c\x01x\x94\x93\x94.",
        b"\x80\x04\x8c\x08builtins\x94\x8c\x1elen(\"a\"); print(\"INJECTED\"); x\x94\x93\x94.",
        // A keyword is a name find_class finds, not one Python can write.
        b"\x80\x04\x8c\x08builtins\x94\x8c\x04None\x94\x93\x94.",
        b"cbuiltins\nlen\n(S'abc'\ntR.",
    ];
    for (i, pickle) in cases.iter().enumerate() {
        let file = write(&format!("names{i}.pkl"), pickle);
        let out = run(&["show", "--python", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let program = stdout(&out);
        let source = write(&format!("names{i}.py"), program.as_bytes());
        // Run in CPython: the program fails or succeeds as loading does,
        // with the same exception or the same result, and runs nothing else.
        let script = r#"
import pickle, sys
data = open(sys.argv[1], 'rb').read()
program = open(sys.argv[2]).read()
def outcome(f):
    try:
        return ('ok', f())
    except Exception as e:
        return ('error', type(e).__name__)
def run():
    scope = {}
    exec(compile(program, 'program', 'exec'), scope)
    return scope['result']
print(outcome(run) == outcome(lambda: pickle.loads(data)), outcome(run))
"#;
        let mut cmd = reduce_tests::python3();
        cmd.arg("-c").arg(script).arg(&file).arg(&source);
        let result = common::python_output(cmd);
        assert!(result.starts_with("True"), "{program}\n{result}");
        assert!(!result.contains("INJECTED"), "{program}\n{result}");
    }
}

/// `reduce` with `args`, killed after `secs` seconds: its output, or
/// `None` if it ran out of time.
fn run_within(secs: u64, args: &[&str]) -> Option<std::process::Output> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reduce"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        buf
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut out = child.wait_with_output().unwrap();
    out.stdout = reader.join().unwrap();
    Some(out)
}

#[test]
fn huge_ints_print_in_hexadecimal() {
    // A 4 MB int: its decimal digits take time quadratic in its length
    // (CPython refuses them past 4,300 digits); hexadecimal is linear.
    let mut pickle = b"\x80\x02\x8b".to_vec();
    let n = 4 << 20;
    pickle.extend_from_slice(&(n as u32).to_le_bytes());
    pickle.extend((0..n).map(|i| (i * 7 + 3) as u8));
    pickle.push(b'.');
    let file = write("bigint.pkl", &pickle);
    let path = file.to_str().unwrap();
    let mut texts = Vec::new();
    for (mode, prefix, suffix) in [
        (None, "", "\n"),
        (Some("--json"), "{\"$int\":\"", "\"}\n"),
        (Some("--python"), "result = ", "\n"),
    ] {
        let mut args = vec!["show"];
        args.extend(mode);
        args.push(path);
        let out = run_within(60, &args).unwrap_or_else(|| panic!("{args:?} ran out of time"));
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let literal = match prefix {
            "" => Some(text.as_str()),
            _ => text.rsplit_once(prefix).map(|(_, l)| l),
        }
        .and_then(|l| l.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{args:?}: {}", &text[..200.min(text.len())]));
        // Negative: the last byte has its high bit set.
        assert!(literal.starts_with("-0x"), "{}", &literal[..20]);
        texts.push(literal.to_string());
    }
    assert!(texts.iter().all(|t| *t == texts[0]));
    // The value CPython loads; small ints stay decimal.
    let literal = write("bigint.txt", texts[0].as_bytes());
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg("import pickle, sys; print(pickle.load(open(sys.argv[1], 'rb')) == int(open(sys.argv[2]).read(), 0))")
        .arg(&file)
        .arg(&literal);
    assert_eq!(common::python_output(cmd), "True\n");
    let small = write("int1000.pkl", &dumps("-(10 ** 1000)", 2));
    let out = stdout(&run(&["show", small.to_str().unwrap()]));
    assert_eq!(out, format!("-1{}\n", "0".repeat(1000)));
}

#[test]
fn long_strings_shared_many_times_print_once() {
    // One 50 KB string, DUP'd 50,000 times into a list: printed in full at
    // each reference, 2.5 GB of output from 100 KB of pickle.
    let n = 50_000;
    let mut pickle = b"(V".to_vec();
    pickle.extend(std::iter::repeat_n(b'z', n));
    pickle.push(b'\n');
    pickle.extend(std::iter::repeat_n(b'2', n));
    pickle.extend_from_slice(b"l.");
    let file = write("dup_str.pkl", &pickle);
    let path = file.to_str().unwrap();
    let long = "z".repeat(n);
    // Each further reference is one byte of pickle (DUP): `<#1>, ` and
    // `obj1, ` print in six, `{"$ref":1},` in twelve.
    for (mode, most) in [(None, 4), (Some("--json"), 8), (Some("--python"), 4)] {
        let mut args = vec!["show"];
        args.extend(mode);
        args.push(path);
        let out = run_within(60, &args).unwrap_or_else(|| panic!("{args:?} ran out of time"));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            out.stdout.len() < most * pickle.len(),
            "{args:?}: {} bytes of output",
            out.stdout.len()
        );
        let text = stdout(&out);
        assert_eq!(text.matches(&long).count(), 1, "{args:?}");
        assert_eq!(text.matches('z').count(), n, "{args:?}");
    }
    let out = stdout(&run(&["show", path]));
    assert!(out.starts_with(&format!("[<#1>'{long}', <#1>, <#1>, ")));
    assert!(out.ends_with(", <#1>]\n"));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["show", "--json", path]))).expect("valid JSON");
    assert_eq!(v[0], serde_json::json!({"$id": 1, "value": long}));
    assert_eq!(v[n], serde_json::json!({"$ref": 1}));
    assert_eq!(python_program_rebuilds(&[file]), 1);
}

#[test]
fn only_long_strings_shown_more_than_once_are_labelled() {
    // CPython's pickler memoizes every str: short ones, and ones used
    // once, print in full as repr prints them; a long one used twice (a
    // dict key, here) is labelled, and in JSON makes its dicts `$dict`s.
    let long = "k".repeat(100);
    let file = write(
        "shared_keys.pkl",
        &dumps(
            &format!("[{{'{long}': 'ab', 'x': 'ab'}}, {{'{long}': 'v' * 65}}, b'b' * 100]"),
            4,
        ),
    );
    let path = file.to_str().unwrap();
    let out = stdout(&run(&["show", path]));
    let v65 = "v".repeat(65);
    let b100 = "b".repeat(100);
    assert_eq!(
        out,
        format!("[{{<#1>'{long}': 'ab', 'x': 'ab'}}, {{<#1>: '{v65}'}}, b'{b100}']\n")
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["show", "--json", path]))).expect("valid JSON");
    assert_eq!(
        v,
        serde_json::json!([
            {"$dict": [[{"$id": 1, "value": long}, "ab"], ["x", "ab"]]},
            {"$dict": [[{"$ref": 1}, v65]]},
            {"$bytes": "62".repeat(100)},
        ])
    );
    let program = stdout(&run(&["show", "--python", path]));
    assert_eq!(program.matches(&long).count(), 1, "{program}");
    assert_eq!(python_program_rebuilds(&[file]), 1);
}

#[test]
fn json_escapes_del_and_c1_controls() {
    // U+009B is CSI to some terminals, as ESC [ is; serde_json leaves DEL
    // and U+0080..U+009F raw. Escaped, they parse back to the same string.
    let text = "a\u{7f}b\u{9b}31mc\u{80}\u{85}\u{9f}\u{a0}\u{1b}";
    let file = write(
        "c1.pkl",
        &dumps(
            "{'k\\x9b': 'a\\x7fb\\x9b31mc\\x80\\x85\\x9f\\xa0\\x1b', 'g': collections.OrderedDict}",
            4,
        ),
    );
    let out = run(&["show", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(
        !json.contains(
            |c: char| matches!(c, '\u{7f}'..='\u{9f}') || c.is_ascii_control() && c != '\n'
        ),
        "{json:?}"
    );
    assert!(
        json.contains(r#""k\u009b":"a\u007fb\u009b31mc\u0080\u0085\u009f"#),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(
        v,
        serde_json::json!({"k\u{9b}": text, "g": {"$global": "collections.OrderedDict"}})
    );
}

/// Every character `str.isprintable` rejects is a JSON escape in `show
/// --json` and `scan --json`: bidirectional overrides, line and paragraph
/// separators, format characters, astral ones as UTF-16 halves; printable
/// text outside ASCII stays as it is.
#[test]
fn json_escapes_what_python_would_not_print() {
    let text = "\u{202e}x\u{2028}y\u{ad}\u{feff}\u{a0}\u{e0001}é中";
    // {'t': text, 'g': <the global mo\u202ed.x>} at protocol 4.
    let mut pickle = b"\x80\x04}(\x8c\x01t".to_vec();
    let t = text.as_bytes();
    pickle.push(0x8c);
    pickle.push(t.len() as u8);
    pickle.extend_from_slice(t);
    pickle.extend_from_slice(b"\x8c\x01g\x8c\x06mo\xe2\x80\xaed\x8c\x01x\x93u.");
    let file = write("bidi.pkl", &pickle);
    let path = file.to_str().unwrap();
    let shown = stdout(&run(&["show", "--json", path]));
    let scanned = stdout(&run(&["scan", "--json", path]));
    for json in [&shown, &scanned] {
        assert!(
            !json.contains([
                '\u{202e}',
                '\u{2028}',
                '\u{ad}',
                '\u{feff}',
                '\u{a0}',
                '\u{e0001}'
            ]),
            "{json:?}"
        );
        assert!(json.contains(r"mo\u202ed"), "{json}");
    }
    assert!(
        shown.contains(r"\u202ex\u2028y\u00ad\ufeff\u00a0\udb40\udc01é中"),
        "{shown}"
    );
    let v: serde_json::Value = serde_json::from_str(&shown).expect("valid JSON");
    assert_eq!(v["t"], text);
    assert_eq!(v["g"]["$global"], "mo\u{202e}d.x");
    for line in scanned.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        if let Some(g) = r["globals"].as_array().and_then(|g| g.first()) {
            assert_eq!(g["module"], "mo\u{202e}d");
        }
    }
}

#[test]
fn arguments_shared_by_many_calls_print_once() {
    // One tuple of 5,000 ints as the arguments of 5,000 calls (five bytes
    // of pickle each): written out at each call, 50 MB of output.
    let n = 5_000;
    let mut pickle = b"\x80\x02](cbuiltins\nmax\nq\x00(".to_vec();
    for i in 0..n {
        pickle.extend_from_slice(b"M");
        pickle.extend_from_slice(&(i as u16).to_le_bytes());
    }
    pickle.extend_from_slice(b"tq\x01R");
    for _ in 1..n {
        pickle.extend_from_slice(b"h\x00h\x01R");
    }
    pickle.extend_from_slice(b"e.");
    let file = write("shared_args.pkl", &pickle);
    let path = file.to_str().unwrap();
    for mode in [None, Some("--json"), Some("--python")] {
        let mut args = vec!["show"];
        args.extend(mode);
        args.push(path);
        let out = run_within(60, &args).unwrap_or_else(|| panic!("{args:?} ran out of time"));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            out.stdout.len() < 12 * pickle.len(),
            "{args:?}: {} bytes of output",
            out.stdout.len()
        );
    }
    let out = stdout(&run(&["show", path]));
    assert!(
        out.starts_with("[builtins.max(*<#1>(0, 1, 2, "),
        "{}",
        &out[..100]
    );
    assert!(out.ends_with(", builtins.max(*<#1>)]\n"));
    let program = stdout(&run(&["show", "--python", path]));
    assert!(
        program.contains("\nobj2 = builtins.max(*obj1)\n"),
        "{}",
        &program[..200]
    );
    assert_eq!(python_program_rebuilds(&[file]), 1);
    // Arguments one call uses, memoized or not, print in place.
    let file = write(
        "one_call.pkl",
        b"\x80\x02cbuiltins\nmax\n(K\x01K\x02tq\x00R.",
    );
    let out = stdout(&run(&["show", file.to_str().unwrap()]));
    assert_eq!(out, "builtins.max(1, 2)\n");
}

#[test]
fn long_class_names_print_in_full_and_very_long_ones_once() {
    // A class name past 64 bytes, as real ones run, that every object
    // names: printed in full each time. Past 256 bytes: once.
    for (len, labelled) in [(100, false), (300, true)] {
        let module = "m".repeat(len);
        let mut pickle = b"\x80\x02](c".to_vec();
        pickle.extend_from_slice(module.as_bytes());
        pickle.extend_from_slice(b"\nC\nq\x00)R");
        pickle.extend_from_slice(b"h\x00)Re.");
        let file = write(&format!("class{len}.pkl"), &pickle);
        let out = stdout(&run(&["show", file.to_str().unwrap()]));
        let expected = if labelled {
            format!("[<#1>{module}.C(), <#1>()]\n")
        } else {
            format!("[{module}.C(), {module}.C()]\n")
        };
        assert_eq!(out, expected);
    }
}

/// In a zip with no member torch would load, `show` and `dis` read the
/// first `data.pkl` in archive order, else the first `.pkl`, as `--help`
/// says.
#[test]
fn a_zip_without_torchs_member_shows_its_first_pickle() {
    let zip_of = |name: &str, members: &[(&str, &str)]| {
        let mut bytes = Vec::new();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (member, text) in members {
            w.start_file(*member, o).unwrap();
            std::io::Write::write_all(&mut w, &dumps(&format!("'{text}'"), 2)).unwrap();
        }
        w.finish().unwrap();
        write(name, &bytes)
    };
    // No data.pkl: the first .pkl in archive order, not the first by name.
    let file = zip_of("no_data.zip", &[("x/b.pkl", "b"), ("x/a.pkl", "a")]);
    let path = file.to_str().unwrap();
    assert_eq!(stdout(&run(&["show", path])).trim(), "'b'");
    assert!(stdout(&run(&["dis", path])).contains("'b'"));
    // A data.pkl outside the first member's folder (torch finds none
    // there): it, before any other .pkl.
    let file = zip_of(
        "other_folder.zip",
        &[("z/a.pkl", "a"), ("archive/data.pkl", "data")],
    );
    assert_eq!(
        stdout(&run(&["show", file.to_str().unwrap()])).trim(),
        "'data'"
    );
}
