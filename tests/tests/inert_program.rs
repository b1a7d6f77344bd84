//! Inert mode keeps the whole pickle as a program: every call, every change
//! and their order. The check is a trace: `tests/fixtures/trace/trace.py`
//! runs a pickle in CPython with every global replaced by a recording stub,
//! and the original and its inert rewrite must record the same calls, with
//! the same arguments, in the same order. What CPython's own pickler wrote
//! comes back byte for byte.

use std::path::{Path, PathBuf};

use reduce::{Graph, Pickler, Step, Unpickler, Value};
use reduce_tests::{first_difference, fixtures, python3, python_env, scratch_dir};

fn inert(bytes: &[u8]) -> reduce::Result<Graph> {
    Unpickler::from_slice(bytes).inert(true).load_graph()
}

fn dump(graph: &Graph, proto: u8) -> reduce::Result<Vec<u8>> {
    let mut out = Vec::new();
    Pickler::new(&mut out).protocol(proto).dump(graph)?;
    Ok(out)
}

/// The protocol a pickle was written at: its PROTO opcode, or 1 when it
/// has none but uses binary opcodes (CPython writes no PROTO below 2).
fn protocol_of(bytes: &[u8]) -> u8 {
    match bytes {
        [0x80, p, ..] => *p,
        _ => {
            let text_only = reduce::inspect::disassemble(bytes)
                .map(|ops| {
                    ops.iter()
                        .all(|i| b"(.0SFINLVapsdlt2cgPbhRoi".contains(&i.opcode))
                })
                .unwrap_or(true);
            if text_only {
                0
            } else {
                1
            }
        }
    }
}

/// Writes every pickle of `files` back from inert mode, and has CPython
/// trace both. Returns how many pairs were traced.
fn trace_all(files: &[PathBuf], tag: &str) -> usize {
    let dir = scratch_dir(tag);
    let mut pairs = String::new();
    let mut failures = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).expect("read pickle");
        let graph = match inert(&bytes) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{}: inert load failed: {e}", file.display()));
                continue;
            }
        };
        let proto = protocol_of(&bytes);
        let out = match dump(&graph, proto) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{}: write back failed: {e}", file.display()));
                continue;
            }
        };
        let rewrite = dir.join(format!("{i}.pickle"));
        std::fs::write(&rewrite, &out).expect("write rewrite");
        pairs.push_str(&format!("{}\t{}\n", file.display(), rewrite.display()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let list = dir.join("pairs.tsv");
    std::fs::write(&list, pairs).expect("write pairs");
    let out = python3()
        .arg(fixtures().join("trace").join("trace.py"))
        .arg(&list)
        .output()
        .expect("run trace.py");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "traces differ:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    files.len()
}

fn pickles_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            pickles_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "pickle") {
            out.push(p);
        }
    }
}

#[test]
fn every_fixture_traces_the_same_after_an_inert_round_trip() {
    let mut files = Vec::new();
    // The fuzz findings are mostly not pickles CPython can run at all.
    // (pickletester/bad holds pickles that are broken on purpose.)
    pickles_under(&fixtures().join("corpus"), &mut files);
    for e in std::fs::read_dir(fixtures().join("pickletester")).expect("pickletester") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "pickle") {
            files.push(p);
        }
    }
    files.sort();
    assert!(trace_all(&files, "trace-fixtures") > 400);
}

#[test]
fn dill_cloudpickle_numpy_pandas_and_fickling_trace_the_same() {
    let dir = scratch_dir("ecosystem");
    let out = python_env()
        .arg(fixtures().join("trace").join("ecosystem.py"))
        .arg(&dir)
        .output()
        .expect("run ecosystem.py");
    assert!(
        out.status.success(),
        "ecosystem.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = std::fs::read_to_string(dir.join("manifest.tsv")).expect("manifest");
    let mut files = Vec::new();
    let mut not_identical = Vec::new();
    for line in rows.lines() {
        let (name, origin) = line.split_once('\t').expect("two columns");
        let path = dir.join(name);
        files.push(path.clone());
        if origin == "cpython" {
            // CPython's own pickler wrote it: the rewrite is byte-identical.
            let bytes = std::fs::read(&path).expect("read");
            let graph = inert(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let back = dump(&graph, protocol_of(&bytes)).expect("write back");
            if back != bytes {
                not_identical.push(format!("{name}: {}", first_difference(&bytes, &back)));
            }
        }
    }
    assert!(not_identical.is_empty(), "{}", not_identical.join("\n"));
    assert!(files.len() >= 100, "only {} pickles made", files.len());
    trace_all(&files, "trace-ecosystem");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_made_for_its_effect_is_kept_and_written_back() {
    // l = []; m.f(l) with the result popped.
    let bytes = b"\x80\x02]q\x00cm\nf\nh\x00\x85R0.";
    let graph = inert(bytes).unwrap();
    let Value::Seq(seq) = graph.root() else {
        panic!("expected the call kept beside the list: {graph:?}")
    };
    assert!(matches!(&seq.after[..], [Step::Discard(Value::Reduce(_))]));
    let out = dump(&graph, 2).unwrap();
    assert!(
        trace(&out).contains("call <m.f> tuple(list#1())"),
        "{}",
        trace(&out)
    );
    assert_eq!(trace(bytes), trace(&out));
}

#[test]
fn items_set_after_a_call_stay_after_it() {
    // g = {'a': 1}; f = m.F(g); g['f'] = f; the result is f. (dill writes a
    // recursive function's globals this way.)
    let bytes = b"\x80\x02cm\nF\nq\x00}q\x01X\x01\x00\x00\x00aK\x01s\x85Rq\x02h\x01X\x01\x00\x00\x00fh\x02s0h\x02.";
    let graph = inert(bytes).unwrap();
    let text = format!("{graph:?}");
    assert!(text.contains("SetItems"), "{text}");
    let out = dump(&graph, 2).unwrap();
    // The call sees {'a': 1}; 'f' is set after it.
    let (a, b) = (trace(bytes), trace(&out));
    assert_eq!(a, b);
    assert!(a.contains("call <m.F> tuple(dict#1('a': 1))"), "{a}");
    assert!(a.contains("setitems dict#1('a': 1) list#"), "{a}");
}

fn trace(bytes: &[u8]) -> String {
    let dir = scratch_dir("trace-one");
    let file = dir.join("p.pickle");
    std::fs::write(&file, bytes).unwrap();
    let out = python3()
        .arg(fixtures().join("trace").join("trace.py"))
        .arg("--show")
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn global_opcode_at_protocol_4_stays_global() {
    // pickle.dumps(collections.OrderedDict, protocol=4) spelled with GLOBAL.
    let bytes = b"\x80\x04\x95\x19\x00\x00\x00\x00\x00\x00\x00ccollections\nOrderedDict\n\x94.";
    let bytes = &[&bytes[..3], &[0x1b], &bytes[4..]].concat();
    let graph = inert(bytes).unwrap();
    assert_eq!(&dump(&graph, 4).unwrap(), bytes);
}

#[test]
fn a_module_name_written_twice_stays_two_strings() {
    // Two globals of one module whose name CPython wrote twice (two string
    // objects) rather than fetching it from the memo.
    let body = b"\x8c\x01m\x94\x8c\x01a\x94\x93\x94\x8c\x01m\x94\x8c\x01b\x94\x93\x94\x86\x94.";
    let mut bytes = vec![0x80, 4, 0x95];
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(body);
    let graph = inert(&bytes).unwrap();
    assert_eq!(dump(&graph, 4).unwrap(), bytes);
    // Written as CPython writes two globals of one module it has a single
    // name for, the module name is fetched from the memo instead.
    let strict = reduce::from_slice::<reduce::Value>(&bytes);
    assert!(strict.is_err(), "m.a is not registered");
}

#[test]
fn values_left_under_the_result_are_kept() {
    // os.system('x') built and left on the stack under the result 1.
    let bytes = b"cos\nsystem\n(S'x'\ntRI1\n.";
    let graph = inert(bytes).unwrap();
    let out = dump(&graph, 0).unwrap();
    assert_eq!(trace(bytes), trace(&out));
    assert!(
        trace(&out).contains("call <os.system> tuple('x')"),
        "{}",
        trace(&out)
    );
}

#[test]
fn persistent_ids_arrive_whole_and_inert_keeps_them() {
    // torch-style: ('storage', torch.FloatStorage, '0', 'cpu', 9) twice, the
    // second fetching 'storage' and the global from the memo.
    let bytes = b"\x80\x02]q\x00((X\x07\x00\x00\x00storageq\x01ctorch\nFloatStorage\nq\x02X\x01\x00\x00\x000X\x03\x00\x00\x00cpuq\x03K\ttq\x04Q(h\x01h\x02X\x01\x00\x00\x001h\x03K\x04tq\x05Qe.";
    let mut seen = Vec::new();
    let graph = Unpickler::from_slice(bytes)
        .inert(true)
        .persistent_load(|pid| {
            seen.push(format!("{pid:?}"));
            Ok(Value::None)
        })
        .load_graph()
        .unwrap();
    assert_eq!(
        seen,
        [
            "('storage', torch.FloatStorage, '0', 'cpu', 9)",
            "('storage', torch.FloatStorage, '1', 'cpu', 4)"
        ]
    );
    assert_eq!(format!("{graph:?}"), "[None, None]");
    // Without a hook, inert mode keeps the ids as data and writes them back.
    let kept = inert(bytes).unwrap();
    assert!(format!("{kept:?}").contains("persistent_id("));
    let out = dump(&kept, 2).unwrap();
    assert_eq!(trace(bytes), trace(&out));
    assert!(trace(&out).contains("persid tuple('storage', <torch.FloatStorage>, '1', 'cpu', 4)"));
    // Strict mode still refuses an id nobody resolves.
    assert!(reduce::from_slice::<Graph>(bytes).is_err());
}

#[test]
fn persid_and_binpersid_are_kept_as_spelled() {
    // A protocol 2 pickle whose ids are spelled PERSID (a line) and
    // BINPERSID: both come back as they were.
    let bytes = b"\x80\x02]q\x00(Pblob:1\nX\x06\x00\x00\x00blob:2q\x01Qe.";
    let graph = inert(bytes).unwrap();
    assert_eq!(dump(&graph, 2).unwrap(), bytes);
    // Written at protocol 0, both are lines; a non-text id cannot be.
    assert!(dump(&graph, 0)
        .unwrap()
        .windows(8)
        .any(|w| w == b"Pblob:2\n"));
    let binary = inert(b"\x80\x02K\x07Q.").unwrap();
    assert!(dump(&binary, 0).is_err());
    assert_eq!(dump(&binary, 2).unwrap(), b"\x80\x02K\x07Q.");
}
