//! `reduce scan`: every attack family is unsafe with the right global
//! named; files written by the standard library, numpy, pandas,
//! scikit-learn and cloudpickle are safe exactly when their globals are
//! allowed; exit status 0/1/2.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{fixtures, run, stderr, stdout};
use serde_json::Value as Json;

fn records(out: &std::process::Output) -> Vec<Json> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn scan_json(args: &[&str]) -> (Option<i32>, Vec<Json>) {
    let mut all = vec!["scan", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    (out.status.code(), records(&out))
}

fn shown(g: &Json) -> String {
    match g["kind"].as_str() {
        Some("global") => format!(
            "{}.{}",
            g["module"].as_str().unwrap(),
            g["name"].as_str().unwrap()
        ),
        Some("extension") => format!("extension code {}", g["code"]),
        _ => "(name computed while loading)".to_string(),
    }
}

#[test]
fn every_attack_family_is_unsafe_and_names_its_global() {
    let rows = reduce_tests::manifest(&fixtures().join("attacks.tsv"));
    assert!(
        rows.len() >= 30,
        "expected the attack corpus, found {} rows",
        rows.len()
    );
    let mut families = std::collections::BTreeSet::new();
    for row in rows {
        let file = fixtures().join("attacks").join(&row["file"]);
        // Danger wins over any allow-list, presets included.
        for allow in [
            &["--allow", "stdlib"][..],
            &["--allow", "stdlib", "--allow", "numpy", "--allow", "torch"],
        ] {
            let mut args = vec![file.to_str().unwrap()];
            args.extend_from_slice(allow);
            let (code, records) = scan_json(&args);
            assert_eq!(code, Some(1), "{}: expected exit 1 (unsafe)", row["file"]);
            let expected_status = match row["family"].as_str() {
                "extension code" | "computed" => "unknowable",
                _ => "dangerous",
            };
            // The entry that names it so (a class may be listed allowed
            // where it is looked up, and dangerous where it is changed).
            let hit = records
                .iter()
                .filter(|r| r["verdict"] == "unsafe")
                .flat_map(|r| r["globals"].as_array().unwrap())
                .find(|g| shown(g) == row["named"] && g["status"] == expected_status)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: `{}` is not named {expected_status}: {records:?}",
                        row["file"], row["named"]
                    )
                });
            if expected_status == "dangerous" {
                assert!(
                    hit["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{hit}"
                );
            }
            let reasons: Vec<&str> = records
                .iter()
                .flat_map(|r| r["reasons"].as_array().unwrap())
                .filter_map(Json::as_str)
                .collect();
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains(&format!("(offset {})", hit["offset"]))),
                "{}: no reason points at offset {}: {reasons:?}",
                row["file"],
                hit["offset"]
            );
        }
        families.insert(row["family"].clone());
    }
    for family in [
        "shell",
        "eval",
        "import",
        "getattr",
        "file",
        "marshal",
        "nested pickle",
        "numpy.load",
        "pandas.read_pickle",
        "runpy",
        "pip",
        "webbrowser",
        "torch",
        "extension code",
        "computed",
        "npy",
        "zip",
        "stream",
        "legacy torch",
        "truncated",
        "directory",
        "zip member case",
        "npz member",
        "torch tar",
    ] {
        assert!(families.contains(family), "no attack of family {family}");
    }
}

#[test]
fn a_directory_scan_finds_the_hidden_ones_and_exits_1() {
    let out = run(&["scan", fixtures().join("attacks").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("nested/deeper/hidden.bin: pickle at offset 0, 18 bytes: unsafe"),
        "{text}"
    );
    assert!(
        text.contains("torch_zip.pt:archive/data.pkl: pickle at offset 0"),
        "{text}"
    );
    assert!(
        text.contains("DANGEROUS: runs a shell command or another program"),
        "{text}"
    );
    // A protocol 0 pickle has no magic number and a name that says text.
    assert!(
        text.contains("nested/notes.txt: pickle at offset 0, 18 bytes: unsafe"),
        "{text}"
    );
}

#[test]
fn a_directory_scan_skips_text_that_merely_starts_with_an_opcode() {
    let dir = reduce_tests::scratch_dir("cli-scan-text");
    // `i` is INST and `c` GLOBAL, `(` MARK, `]` EMPTY_LIST: read as a
    // pickle, each of these fails without naming an importable global.
    std::fs::write(dir.join("tool.py"), "import os\nprint(os.getcwd())\n").unwrap();
    std::fs::write(dir.join("model.py"), "class Net:\n    pass\n").unwrap();
    std::fs::write(dir.join("table.csv"), "cat,dog\n1,2\n").unwrap();
    std::fs::write(dir.join("notes.md"), "(draft)\n]\n").unwrap();
    let out = run(&["scan", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("0 pickle(s) in 0 file(s)"),
        "{}",
        stdout(&out)
    );
    // The same directory with a protocol 0 pickle in a .txt file.
    std::fs::write(dir.join("readme.txt"), "cos\nsystem\n(Vid\ntR.").unwrap();
    let out = run(&["scan", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("readme.txt: pickle at offset 0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_legacy_tar_checkpoint_is_read_member_by_member() {
    let file = fixtures().join("tar/benign.pt");
    let (code, records) = scan_json(&[file.to_str().unwrap(), "--allow", "torch"]);
    assert_eq!(code, Some(0), "{records:?}");
    // sys_info; storages: count, one storage, views; tensors: count, one
    // tensor; pickle. The raw bytes between them are stepped over.
    let members: Vec<&str> = records
        .iter()
        .map(|r| r["member"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        ["sys_info", "storages", "storages", "storages", "tensors", "tensors", "pickle"]
    );
    let storage = &records[2]["globals"][0];
    assert_eq!(shown(storage), "torch.FloatStorage");
    assert_eq!(records[3]["offset"], 63, "{:?}", records[3]);
    assert!(
        records.iter().all(|r| r["verdict"] == "safe"),
        "{records:?}"
    );
    // show and dis read the object, the member `pickle`.
    let out = run(&["show", file.to_str().unwrap()]);
    assert_eq!(stdout(&out).trim(), "{'epoch': 3}", "{}", stderr(&out));
}

/// joblib.dump writes each numpy array's bytes inside the pickle, after
/// its wrapper's BUILD (an array of objects as a pickle of its own), and
/// joblib.load reads them there: the scan steps over them and reads on.
#[test]
fn joblib_files_are_read_past_their_arrays() {
    let dir = reduce_tests::scratch_dir("cli-scan-joblib");
    let script = r#"
import os, sys, joblib, joblib.numpy_pickle as jp, numpy as np
from sklearn.linear_model import LogisticRegression
d = sys.argv[1]
model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
value = {'w': np.arange(100.0), 'f': np.asfortranarray(np.ones((3, 4), dtype='i2')),
         'o': np.array([1, 'x', None], dtype=object), 'model': model, 'after': [1, 2]}
joblib.dump(value, os.path.join(d, 'model.joblib'))
seen = []
find = jp.NumpyUnpickler.find_class
def record(self, m, n):
    seen.append(f'{m}:{n}')
    return find(self, m, n)
jp.NumpyUnpickler.find_class = record
joblib.load(os.path.join(d, 'model.joblib'))
open(os.path.join(d, 'model.globals'), 'w').write('\n'.join(seen) + '\n')
class Call:
    def __reduce__(self):
        return os.system, ('echo pwned',)
# Written, never loaded: the call comes after an array's bytes.
joblib.dump([np.arange(10.0), Call()], os.path.join(d, 'hidden.joblib'))
# An array's padding length set to 0x42, BINBYTES to a reader that does
# not follow joblib: its four bytes of length swallow the padding, the
# array and a call that joblib.load runs after them. Never loaded.
joblib.dump(np.zeros(5, dtype=np.uint8), os.path.join(d, 'plain.joblib'))
data = open(os.path.join(d, 'plain.joblib'), 'rb').read()
start = len(data) - 1 - 5
build = next(i for i in range(start - 2, 0, -1) if data[i] == ord('b') and i + 2 + data[i + 1] == start)
def su(s): return b'\x8c' + bytes([len(s)]) + s.encode()
hidden = su('os') + su('system') + b'\x93' + su('echo pwned') + b'\x85R.'
swallowed = 62 + 5 + len(hidden)
smuggled = (data[:build + 1] + b'\x42' + swallowed.to_bytes(4, 'little') + b'\x00' * 62
            + b'\x00' * 5 + hidden + b'.')
open(os.path.join(d, 'smuggled.joblib'), 'wb').write(smuggled)
open(os.path.join(d, 'wrapper.globals'), 'w').write('joblib.numpy_pickle.NumpyArrayWrapper\n')
"#;
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(&dir);
    common::python_output(cmd);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    let (code, r) = scan_json(&[&path("model.joblib"), "--allow", &path("model.globals")]);
    assert_eq!(code, Some(0), "{r:?}");
    // The pickle, then the object array's own.
    assert_eq!(r.len(), 2, "{r:?}");
    let size = std::fs::metadata(path("model.joblib")).unwrap().len();
    assert_eq!(r[0]["offset"], 0);
    assert_eq!(r[0]["length"], size, "{r:?}");
    let named: BTreeSet<String> = r
        .iter()
        .flat_map(|r| r["globals"].as_array().unwrap())
        .map(|g| shown(g).replace('.', ":"))
        .collect();
    let expected: BTreeSet<String> = std::fs::read_to_string(path("model.globals"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('.', ":"))
        .collect();
    assert_eq!(named, expected);

    let (code, r) = scan_json(&[&path("hidden.joblib"), "--allow", "numpy"]);
    assert_eq!(code, Some(1), "{r:?}");
    let system = r[0]["globals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "system")
        .unwrap_or_else(|| panic!("os.system is not named: {r:?}"));
    assert_eq!(system["status"], "dangerous");
    // Past the 80 bytes of the array.
    assert!(system["offset"].as_u64().unwrap() > 80, "{system}");

    // The array is where the wrapper's BUILD says, whatever its bytes
    // would be as opcodes: the smuggled call is named.
    let (code, r) = scan_json(&[
        &path("smuggled.joblib"),
        "--allow",
        "numpy",
        "--allow",
        &path("wrapper.globals"),
    ]);
    assert_eq!(code, Some(1), "{r:?}");
    let named: Vec<String> = r[0]["globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(shown)
        .collect();
    assert!(named.contains(&"os.system".to_string()), "{r:?}");
}

#[test]
fn a_zip_with_two_members_of_one_name_is_unsafe() {
    // The later member is harmless and the one the zip reader shows; the
    // earlier calls os.system, and a loader may read that one.
    let file = fixtures().join("attacks/zip_duplicate_member.pt");
    let (code, r) = scan_json(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{r:?}");
    let reasons = r[0]["reasons"].to_string();
    assert!(
        reasons.contains("two members named `archive/data.pkl`"),
        "{r:?}"
    );
    let out = run(&["scan", file.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("  the zip archive holds two members named `archive/data.pkl`"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_compressed_file_is_named_for_what_it_is() {
    let file = fixtures().join("compressed/model.joblib");
    let out = run(&["scan", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "gzip-compressed data (as joblib.dump(..., compress=...) writes), not a pickle"
        ),
        "{}",
        stdout(&out)
    );
    // A directory scan lists both, `model.pkl.xz` by the name joblib
    // compresses by, and cannot call the directory safe.
    let (code, records) = scan_json(&[fixtures().join("compressed").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    let mut listed: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let path = r["path"].as_str().unwrap();
            let name = std::path::Path::new(path).file_name().unwrap();
            let name = name.to_string_lossy().into_owned();
            (name, r["error"].as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 2, "{records:?}");
    assert_eq!(listed[1].0, "model.pkl.xz");
    assert!(listed[1].1.starts_with("xz-compressed data"), "{listed:?}");
}

#[test]
fn offsets_are_those_of_the_file_and_of_each_pickle_in_a_stream() {
    let (code, records) = scan_json(&[fixtures()
        .join("attacks/stream_second.pkl")
        .to_str()
        .unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(records.len(), 2);
    assert_eq!(
        (
            records[0]["offset"].as_u64(),
            records[0]["verdict"].as_str()
        ),
        (Some(0), Some("safe"))
    );
    let len = records[0]["length"].as_u64().unwrap();
    assert_eq!(records[1]["offset"].as_u64(), Some(len));
    assert_eq!(records[1]["globals"][0]["offset"].as_u64(), Some(len));
    assert_eq!(records[1]["globals"][0]["opcode"], "GLOBAL");
    // An .npy object array: the pickle starts after the header.
    let (_, records) = scan_json(&[fixtures()
        .join("attacks/npy_object_array.npy")
        .to_str()
        .unwrap()]);
    assert_eq!(records[0]["offset"].as_u64(), Some(128));
    // A zip member is named, offsets are inside it.
    let (_, records) = scan_json(&[fixtures().join("attacks/torch_zip.pt").to_str().unwrap()]);
    assert_eq!(records[0]["member"], "archive/data.pkl");
    // A truncated pickle still lists what it named before the fault.
    let (_, records) = scan_json(&[fixtures().join("attacks/truncated.pkl").to_str().unwrap()]);
    assert_eq!(records[0]["verdict"], "unsafe");
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated (at byte 25"),
        "{:?}",
        records[0]
    );
}

#[test]
fn standard_library_files_are_safe_exactly_when_their_globals_are_allowed() {
    let benign = fixtures().join("benign");
    let out = run(&["scan", benign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // With an empty allow-list, only the pickles that name no global, or
    // only those CPython writes for builtin values (bytes at protocols
    // 0-2, bytearray, sets at 0-1, instances through copyreg), pass.
    let plain = [
        "_codecs.encode",
        "builtins.bytearray",
        "__builtin__.bytearray",
        "builtins.set",
        "__builtin__.set",
        "builtins.frozenset",
        "__builtin__.frozenset",
        "builtins.object",
        "__builtin__.object",
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
    ];
    let dir = reduce_tests::scratch_dir("cli-scan");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let (code, records) =
        scan_json(&[benign.to_str().unwrap(), "--allow", empty.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let (mut with, mut without, mut plain_only, mut read) = (0, 0, 0, 0);
    for r in &records {
        let globals = r["globals"].as_array().unwrap();
        for g in globals {
            // A datetime's zone, getattr(zoneinfo.ZoneInfo, "_unpickle"):
            // getattr and the class are used only to read the attribute,
            // which is judged in their place, at its REDUCE.
            let only_read = [
                "builtins.getattr",
                "__builtin__.getattr",
                "zoneinfo.ZoneInfo",
            ]
            .contains(&shown(g).as_str());
            if only_read {
                assert_eq!(
                    g["reason"], "used only to read zoneinfo.ZoneInfo._unpickle, judged there",
                    "{r}"
                );
                read += 1;
            } else if shown(g) == "zoneinfo.ZoneInfo._unpickle" {
                assert_eq!(g["opcode"], "REDUCE", "{r}");
            }
            let expected = if plain.contains(&shown(g).as_str()) || only_read {
                "allowed"
            } else {
                "not allowed"
            };
            assert_eq!(g["status"], expected, "{r}");
        }
        let safe = globals.iter().all(|g| g["status"] == "allowed");
        assert_eq!(r["verdict"], if safe { "safe" } else { "unsafe" }, "{r}");
        if globals.is_empty() {
            without += 1
        } else if safe {
            plain_only += 1
        } else {
            with += 1;
        }
    }
    assert!(
        with > 10 && without > 3 && plain_only > 3,
        "{with} with globals, {without} without, {plain_only} with plain data only"
    );
    // getattr and ZoneInfo in each of the six zoneinfo files.
    assert_eq!(read, 2 * 6);
}

/// CPython writes `range`, `int` and `str` as `__builtin__.xrange`,
/// `__builtin__.long` and `__builtin__.unicode` before protocol 3; loading
/// looks up the Python 3 names, and the scan judges those: allowed with the
/// stdlib preset, and shown as the pickle spells them.
#[test]
fn python_2_spellings_are_judged_by_their_python_3_names() {
    let dir = reduce_tests::scratch_dir("cli-scan-py2");
    let script = format!(
        "import pickle, pathlib\nd = pathlib.Path({:?})\n\
         d.joinpath('range.p2').write_bytes(pickle.dumps(range(10), protocol=2))\n\
         d.joinpath('types.p0').write_bytes(pickle.dumps([int, str], protocol=0))\n\
         d.joinpath('types.p2').write_bytes(pickle.dumps([int, str], protocol=2))\n",
        dir.to_str().unwrap()
    );
    let mut py = reduce_tests::python3();
    py.args(["-c", &script]);
    common::python_output(py);
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    for (file, spelled) in [
        ("range.p2", &["__builtin__.xrange"][..]),
        ("types.p0", &["__builtin__.long", "__builtin__.unicode"]),
        ("types.p2", &["__builtin__.long", "__builtin__.unicode"]),
    ] {
        let path = dir.join(file);
        let (code, records) = scan_json(&[path.to_str().unwrap(), "--allow", "stdlib"]);
        assert_eq!(code, Some(0), "{file}: {records:?}");
        let globals = records[0]["globals"].as_array().unwrap();
        let names: Vec<String> = globals.iter().map(shown).collect();
        assert_eq!(names, spelled, "{file}");
        assert!(
            globals.iter().all(|g| g["status"] == "allowed"),
            "{file}: {records:?}"
        );
        // With an empty allow-list, the same names are not allowed.
        let (code, _) = scan_json(&[path.to_str().unwrap(), "--allow", empty.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{file}");
    }
}

#[test]
fn unreadable_input_exits_2_and_says_where() {
    let dir = reduce_tests::scratch_dir("cli-scan");
    let junk = dir.join("junk.pkl");
    std::fs::write(&junk, b"\x80\x04K\x01\xff").unwrap();
    let out = run(&["scan", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("invalid opcode byte 0xff (at byte 4)"),
        "{}",
        stdout(&out)
    );
    let missing = dir.join("missing.pkl");
    let out = run(&["scan", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("cannot read the file"),
        "{}",
        stdout(&out)
    );
    // A file that cannot be opened holds no pickle: it is reported, and
    // counted, as a file, beside the pickles of the others.
    let out = run(&["scan", missing.to_str().unwrap(), junk.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{}: unreadable\n", missing.display())),
        "{text}"
    );
    assert!(
        text.contains("1 pickle(s) in 2 file(s), 1 file-level finding(s),"),
        "{text}"
    );
    let (code, records) = scan_json(&[missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0]["offset"].is_null(), "{records:?}");
    assert_eq!(records[0]["verdict"], "unreadable");
    // Unsafe outranks unreadable.
    let out = run(&[
        "scan",
        junk.to_str().unwrap(),
        fixtures().join("attacks/os_system.pkl").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A bad --allow is a usage error.
    let out = run(&["scan", junk.to_str().unwrap(), "--allow", "nonesuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected a preset (stdlib, numpy, torch) or a file"),
        "{}",
        stderr(&out)
    );
}

/// Writes files with the pinned numpy, pandas, scikit-learn and cloudpickle
/// into `dir`, and for each the globals CPython's find_class sees when
/// loading it, one `module:name` a line in `<file>.globals`.
fn library_files(dir: &Path) {
    let script = r#"
import io, pickle, sys, os
import numpy as np, pandas as pd, cloudpickle
from sklearn.linear_model import LogisticRegression
d = sys.argv[1]
def save(name, data):
    open(os.path.join(d, name), 'wb').write(data)
    seen = []
    class U(pickle.Unpickler):
        def find_class(self, m, n):
            seen.append(f'{m}:{n}')
            return super().find_class(m, n)
    if not name.endswith('.npy'):
        U(io.BytesIO(data)).load()
        open(os.path.join(d, name + '.globals'), 'w').write('\n'.join(seen) + '\n')
save('array.pkl', pickle.dumps(np.arange(6.0).reshape(2, 3)))
save('frame.pkl', pickle.dumps(pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})))
model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
save('model.pkl', pickle.dumps(model))
save('plain_cloudpickle.pkl', cloudpickle.dumps({'a': [1, 2.5], 'b': (None, True)}))
save('lambda.pkl', cloudpickle.dumps(lambda x: x + 1))
buf = io.BytesIO(); np.save(buf, np.array([{'k': 1}, None], dtype=object), allow_pickle=True)
save('objects.npy', buf.getvalue())
buf = io.BytesIO(); np.save(buf, np.arange(3)); save('numbers.npy', buf.getvalue())
"#;
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(dir);
    common::python_output(cmd);
}

/// The globals a library file's pickle resolves, by CPython's find_class,
/// as `module.name`, and those of them no preset in `presets` lists.
fn unlisted(dir: &Path, name: &str, presets: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(dir.join(format!("{name}.globals"))).unwrap();
    let mut all = BTreeSet::new();
    let mut unlisted = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (m, n) = line.split_once(':').unwrap();
        all.insert(format!("{m}.{n}"));
        let listed = presets
            .iter()
            .any(|p| reduce::preset::by_name(p).unwrap().contains(m, n));
        if !listed {
            unlisted.insert(format!("{m}.{n}"));
        }
    }
    (all, unlisted)
}

/// Real files of the standard library, numpy, pandas, scikit-learn and
/// cloudpickle, judged with the real presets: a file is safe exactly when
/// every global CPython resolves loading it is in a chosen preset, and the
/// globals the scan does not allow are exactly those outside them.
#[test]
fn library_files_are_safe_exactly_when_their_globals_are_in_the_presets() {
    let dir = reduce_tests::scratch_dir("cli-scan-presets");
    library_files(&dir);
    let files = [
        "array.pkl",
        "frame.pkl",
        "model.pkl",
        "plain_cloudpickle.pkl",
        "lambda.pkl",
    ];
    let choices: [&[&str]; 4] = [
        &["stdlib"],
        &["numpy"],
        &["stdlib", "numpy"],
        &["stdlib", "numpy", "torch"],
    ];
    let (mut safe, mut unsafe_) = (0, 0);
    for name in files {
        for presets in choices {
            let file = dir.join(name);
            let mut args = vec![file.to_str().unwrap()];
            for p in presets {
                args.extend(["--allow", p]);
            }
            let (code, r) = scan_json(&args);
            assert_eq!(r.len(), 1, "{name} {presets:?}: {r:?}");
            let (all, expected) = unlisted(&dir, name, presets);
            let seen: BTreeSet<String> = r[0]["globals"]
                .as_array()
                .unwrap()
                .iter()
                .map(shown)
                .collect();
            assert_eq!(seen, all, "{name}: the scan lists what CPython resolves");
            let not_allowed: BTreeSet<String> = r[0]["globals"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["status"] != "allowed")
                .map(shown)
                .collect();
            assert_eq!(not_allowed, expected, "{name} {presets:?}");
            let verdict = if expected.is_empty() {
                "safe"
            } else {
                "unsafe"
            };
            assert_eq!(r[0]["verdict"], verdict, "{name} {presets:?}");
            assert_eq!(code, Some(if expected.is_empty() { 0 } else { 1 }));
            if expected.is_empty() {
                safe += 1
            } else {
                unsafe_ += 1
            }
        }
    }
    assert!(safe >= 5 && unsafe_ >= 10, "{safe} safe, {unsafe_} unsafe");

    // What that means for each library under stdlib and numpy: numpy's
    // arrays pass; pandas, scikit-learn and cloudpickle's functions are in
    // no preset, and their own globals (only those) are what fails.
    let both = ["stdlib", "numpy"];
    let owned_by = |name: &str, prefix: &str| {
        let (_, unlisted) = unlisted(&dir, name, &both);
        assert!(!unlisted.is_empty(), "{name}");
        assert!(
            unlisted.iter().all(|g| g.starts_with(prefix)),
            "{name}: {unlisted:?}"
        );
    };
    assert!(unlisted(&dir, "array.pkl", &both).1.is_empty());
    assert!(!unlisted(&dir, "array.pkl", &["stdlib"]).1.is_empty());
    assert!(unlisted(&dir, "plain_cloudpickle.pkl", &["stdlib"])
        .1
        .is_empty());
    owned_by("frame.pkl", "pandas.");
    owned_by("model.pkl", "sklearn.");
    owned_by("lambda.pkl", "cloudpickle.");
    assert!(unlisted(&dir, "model.pkl", &both)
        .1
        .contains("sklearn.linear_model._logistic.LogisticRegression"));
}

#[test]
fn library_files_are_safe_exactly_when_their_globals_are_allowed() {
    let dir = reduce_tests::scratch_dir("cli-scan-libs");
    library_files(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // numpy: its preset allows arrays; the standard library's alone does not.
    let (code, r) = scan_json(&[&path("array.pkl")]);
    assert_eq!(code, Some(1));
    assert!(
        r[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("multiarray._reconstruct` is not in the allow-list"),
        "{r:?}"
    );
    let (code, _) = scan_json(&[&path("array.pkl"), "--allow", "stdlib", "--allow", "numpy"]);
    assert_eq!(code, Some(0));

    // An .npy of numbers holds no pickle; one of objects holds the
    // pickle of the array, which numpy's preset allows.
    let (code, r) = scan_json(&[&path("numbers.npy")]);
    assert_eq!((code, r.len()), (Some(0), 0));
    let (code, r) = scan_json(&[&path("objects.npy")]);
    assert_eq!((code, r.len()), (Some(1), 1), "{r:?}");
    let (code, r) = scan_json(&[
        &path("objects.npy"),
        "--allow",
        "stdlib",
        "--allow",
        "numpy",
    ]);
    assert_eq!((code, r.len()), (Some(0), 1), "{r:?}");

    // pandas and scikit-learn: safe with exactly the globals CPython
    // resolves allowed, unsafe with any one of them missing, named.
    for name in ["frame.pkl", "model.pkl", "plain_cloudpickle.pkl"] {
        let allow = path(&format!("{name}.globals"));
        let (code, r) = scan_json(&[&path(name), "--allow", &allow]);
        assert_eq!(code, Some(0), "{name}: {r:?}");
        let lines: Vec<String> = std::fs::read_to_string(&allow)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.iter().all(|l| l.is_empty()) {
            continue;
        }
        let missing = lines[0].replace(':', ".");
        let fewer = dir.join(format!("{name}.fewer"));
        let rest: Vec<&String> = lines
            .iter()
            .filter(|l| l.replace(':', ".") != missing)
            .collect();
        std::fs::write(
            &fewer,
            rest.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let (code, r) = scan_json(&[&path(name), "--allow", fewer.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{name}");
        let unsafe_ones: Vec<String> = r[0]["globals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["status"] != "allowed")
            .map(shown)
            .collect();
        assert_eq!(unsafe_ones, vec![missing.clone()], "{name}");
    }

    // cloudpickle: plain data is plain; a function is code, and said to be.
    let (code, _) = scan_json(&[&path("plain_cloudpickle.pkl")]);
    assert_eq!(code, Some(0));
    let (code, r) = scan_json(&[&path("lambda.pkl")]);
    assert_eq!(code, Some(1));
    let reasons = r[0]["reasons"].to_string();
    assert!(reasons.contains("builds a function from code"), "{reasons}");
}

/// An `.npy` (version 1.0) file: `header` as its Python literal, padded as
/// numpy pads it, then `data`.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    h.resize(h.len() + 63 - (10 + h.len()) % 64, b' ');
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_headers_are_read_as_python_reads_them() {
    let dir = std::env::temp_dir().join(format!("reduce-npy-headers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let evil = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.";
    let scan = |name: &str, header: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, npy(header, data)).unwrap();
        let out = run(&["scan", path.to_str().unwrap()]);
        (out.status.code(), stdout(&out))
    };
    // Spellings of the object dtype numpy.load reads through
    // ast.literal_eval (the fixtures hold more): unsafe.
    for descr in [
        r"'\x4f'",
        r"'\u004F'",
        r"'\117'",
        r"'|' '\x4f'",
        r"[('a', '<i8'), ('b', '\x7cO')]",
        r"('\U0000004f', (1,))",
        "['aO']",
        "'2O'",
        "'T'",
    ] {
        let header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}");
        let (code, text) = scan("evil.npy", &header, evil);
        assert_eq!(code, Some(1), "{descr}: {text}");
        assert!(text.contains("os.system"), "{descr}: {text}");
    }
    // An escape the scan cannot decode counts as objects: never safe.
    let header =
        r"{'descr': '\N{LATIN CAPITAL LETTER O}', 'fortran_order': False, 'shape': (2,), }";
    let (code, text) = scan("named.npy", header, &[0; 16]);
    assert_eq!(code, Some(2), "{text}");
    // Numbers, however their dtype and field names are spelled: no pickle.
    for descr in [
        r"'\x3ci8'",
        r"r'<i8'",
        "[('Total', '<f8'), ('Other', '<f8')] # 'O'\n",
        "'<' 'i8'",
        "[('a', '<i8', (2,))]",
    ] {
        let header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}");
        let (code, text) = scan("numbers.npy", &header, &[0; 16]);
        assert_eq!(code, Some(0), "{descr}: {text}");
        assert!(text.contains("no pickle inside"), "{descr}: {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Scans `fixtures/attacks/<name>` with `extra` arguments: exit 1, and an
/// unsafe record names `global` as dangerous. The records.
fn names_dangerous(name: &str, extra: &[&str], global: &str) -> Vec<Json> {
    let file = fixtures().join("attacks").join(name);
    let mut args = vec![file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, r) = scan_json(&args);
    assert_eq!(code, Some(1), "{name}: expected exit 1 (unsafe): {r:?}");
    assert!(
        r.iter()
            .filter(|r| r["verdict"] == "unsafe")
            .flat_map(|r| r["globals"].as_array().unwrap())
            .any(|g| shown(g) == global && g["status"] == "dangerous"),
        "{name}: `{global}` is not named dangerous: {r:?}"
    );
    r
}

#[test]
fn a_legacy_tar_pickle_that_is_a_link_is_scanned_through_it() {
    // torch's tar.extractfile('pickle') follows a hard or symbolic link
    // to the member it names.
    for name in ["tar_hardlink.pt", "tar_symlink.pt"] {
        let r = names_dangerous(name, &[], "os.system");
        assert!(
            r.iter().any(|r| r["member"] == "pickle -> weights.bin"),
            "{name}: {r:?}"
        );
    }
    let out = run(&[
        "show",
        fixtures().join("attacks/tar_symlink.pt").to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("system"), "{}", stderr(&out));
}

#[test]
fn legacy_tar_pax_headers_are_read_as_tarfile_reads_them() {
    // A record's value holding " path=", a global header's path, a pax
    // size that overrides the header's: the member is `pickle` to tarfile.
    for name in ["tar_pax_path.pt", "tar_pax_global.pt", "tar_pax_size.pt"] {
        let r = names_dangerous(name, &[], "os.system");
        assert!(r.iter().any(|r| r["member"] == "pickle"), "{name}: {r:?}");
    }
}

#[test]
fn a_tar_without_ustar_magic_is_read_as_a_tar_and_as_a_stream() {
    // tarfile takes a header by its checksum; the first name is also
    // torch's legacy preamble of five pickles. Both readings are scanned.
    let r = names_dangerous("tar_v7_magic.pt", &[], "os.system");
    assert!(r.iter().any(|r| r["member"] == "storages"), "{r:?}");
    assert!(r.iter().any(|r| r["member"].is_null()), "{r:?}");
}

#[test]
fn a_zip_whose_last_end_record_claims_a_long_comment_is_read_as_miniz_reads_it() {
    // miniz and zipfile read the last end record's directory; a reader
    // that refuses it reads an earlier, benign one. Both are scanned.
    for name in ["zip_eocd_comment.pt", "npz_eocd_comment.npz"] {
        let r = names_dangerous(name, &[], "os.system");
        let reasons = r
            .iter()
            .map(|r| r["reasons"].to_string())
            .collect::<String>();
        assert!(
            reasons.contains("claims a comment of 65535 bytes"),
            "{name}: {r:?}"
        );
        assert!(
            reasons.contains("2 different central directories"),
            "{name}: {r:?}"
        );
        // show and dis do not pick one of the two silently.
        let file = fixtures().join("attacks").join(name);
        let out = run(&["show", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("zip readers differ"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_zip_member_renamed_by_a_unicode_path_field_is_judged_by_both_names() {
    // miniz ignores the field and loads archive/data.pkl.
    let r = names_dangerous("zip_unicode_path.pt", &[], "os.system");
    assert!(
        r.iter()
            .any(|r| r["member"] == "archive/data.pkl (Unicode Path: archive/notes.txt)"),
        "{r:?}"
    );
}

#[test]
fn overlapping_zip_entries_are_a_finding_and_read_once() {
    // 50 entries point at one member that inflates to 8 MiB.
    let file = fixtures().join("attacks/zip_overlapping_entries.zip");
    let (code, r) = scan_json(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{r:?}");
    let reasons = r
        .iter()
        .map(|r| r["reasons"].to_string())
        .collect::<String>();
    assert!(reasons.contains("overlaps that of `m0.pkl`"), "{r:?}");
    assert!(
        reasons.contains("49 zip entries in all overlap others"),
        "{r:?}"
    );
    let pickles = r.iter().filter(|r| !r["offset"].is_null()).count();
    assert_eq!(pickles, 1, "{r:?}");
}

/// A TorchScript archive runs code when torch.load reads it, whatever its
/// pickles hold.
#[test]
fn a_torchscript_archive_is_a_finding() {
    let file = fixtures().join("attacks/torchscript.pt");
    for allow in [&[][..], &["--allow", "torch"]] {
        let mut args = vec![file.to_str().unwrap()];
        args.extend_from_slice(allow);
        let (code, r) = scan_json(&args);
        assert_eq!(code, Some(1), "{r:?}");
        let finding = r
            .iter()
            .find(|r| {
                r["reasons"]
                    .to_string()
                    .contains("TorchScript archive (1 code file(s))")
            })
            .unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(finding["member"], "archive/constants.pkl");
        assert_eq!(finding["verdict"], "unsafe");
    }
    // A plain checkpoint is no TorchScript archive.
    let (_, r) = scan_json(&[fixtures().join("benign").to_str().unwrap()]);
    assert!(!r
        .iter()
        .any(|r| r["reasons"].to_string().contains("TorchScript")));
}

/// The allow-list under which a joblib file's arrays matter: numpy and
/// joblib's wrapper allowed, so only a hidden call can make it unsafe.
fn wrapper_allowed() -> String {
    let dir = reduce_tests::scratch_dir("cli-scan-joblib-wrapper");
    let list = dir.join("wrapper.globals");
    std::fs::write(&list, "joblib.numpy_pickle.NumpyArrayWrapper\n").unwrap();
    list.to_str().unwrap().to_string()
}

#[test]
fn a_joblib_wrapper_not_made_as_joblib_writes_it_is_unsafe() {
    // Made by calling its class (whose __init__ sets an alignment the
    // state does not name), or with `shape` twice in its state: the scan
    // cannot be sure where joblib's array ends.
    let list = wrapper_allowed();
    for (name, why) in [
        ("joblib_init.joblib", "made by calling its class"),
        ("joblib_duplicate_key.joblib", "names `shape` twice"),
    ] {
        let file = fixtures().join("attacks").join(name);
        let (code, r) = scan_json(&[file.to_str().unwrap(), "--allow", "numpy", "--allow", &list]);
        assert_eq!(code, Some(1), "{name}: {r:?}");
        assert_eq!(r[0]["verdict"], "unsafe", "{name}: {r:?}");
        assert!(r[0]["reasons"].to_string().contains(why), "{name}: {r:?}");
    }
}

#[test]
fn a_joblib_wrapper_is_known_by_every_spelling_of_its_name() {
    // `joblib` and `numpy_pickle.NumpyArrayWrapper` at protocol 4: the
    // array's bytes are stepped over and the call after them named.
    let list = wrapper_allowed();
    names_dangerous(
        "joblib_dotted_name.joblib",
        &["--allow", "numpy", "--allow", &list],
        "os.system",
    );
}
