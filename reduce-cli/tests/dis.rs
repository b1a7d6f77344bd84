//! `reduce dis` prints what `python3 -m pickletools` prints, line for line.

mod common;

use std::path::PathBuf;

use common::{run, stderr, stdout};

fn corpus() -> Vec<PathBuf> {
    let root = reduce_tests::fixtures();
    let mut files = Vec::new();
    for dir in ["corpus", "pickletester"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read the fixture directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "pickle") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.len() > 400,
        "expected the CPython corpus, found {} files",
        files.len()
    );
    files
}

fn pickletools(args: &[&str], files: &[PathBuf]) -> String {
    let mut cmd = reduce_tests::python3();
    cmd.args(["-m", "pickletools"]).args(args).args(files);
    common::python_output(cmd)
}

#[test]
fn every_fixture_matches_pickletools_line_for_line() {
    let files = corpus();
    let mut mismatches = Vec::new();
    // pickletools with several files prints a preamble before each, so one
    // run of each side covers the whole corpus.
    for chunk in files.chunks(100) {
        let expected = pickletools(&[], chunk);
        let mut args = vec!["dis".to_string()];
        args.extend(chunk.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        assert!(out.status.success(), "reduce dis failed: {}", stderr(&out));
        let got = stdout(&out);
        for (i, (a, b)) in got.lines().zip(expected.lines()).enumerate() {
            if a != b {
                mismatches.push(format!("line {i}:\n  reduce:      {a}\n  pickletools: {b}"));
                break;
            }
        }
        assert_eq!(got.lines().count(), expected.lines().count());
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn annotations_sit_in_pickletools_columns() {
    // The descriptions are ours; the columns they start at are pickletools'.
    let files: Vec<PathBuf> = corpus().into_iter().step_by(7).collect();
    // pickletools -a, with each line cut before its description.
    let mut cmd = reduce_tests::python3();
    cmd.arg("-c")
        .arg(
            "import io, pickletools, sys\n\
             for f in sys.argv[1:]:\n\
             \x20   out = io.StringIO()\n\
             \x20   pickletools.dis(open(f, 'rb').read(), out, annotate=30)\n\
             \x20   docs = {o.name: o.doc.split('\\n', 1)[0] for o in pickletools.opcodes}\n\
             \x20   for line in out.getvalue().splitlines():\n\
             \x20       doc = next((d for d in docs.values() if line.endswith(' ' + d)), '')\n\
             \x20       print(line[:len(line) - len(doc) - 1] if doc else line)\n",
        )
        .args(&files);
    let expected = common::python_output(cmd);
    let got = String::new();
    let mut got = got;
    for file in &files {
        let out = run(&["dis", "--annotate", file.to_str().unwrap()]);
        got.push_str(&stdout(&out));
    }
    let mut lines = 0;
    for (a, b) in got.lines().zip(expected.lines()) {
        if b.starts_with("highest") {
            assert_eq!(a, b);
            continue;
        }
        assert!(a.starts_with(b), "\n{a}\n{b}");
        let description = &a[b.len()..];
        assert!(description.len() > 3 && description.starts_with(' '), "{a}");
        lines += 1;
    }
    assert_eq!(got.lines().count(), expected.lines().count());
    assert!(lines > 100);
}

#[test]
fn marks_indent_and_memo_notes_show() {
    let dir = reduce_tests::scratch_dir("cli-dis");
    let file = dir.join("nested.pkl");
    // pickle.dumps([1, (2, [3])], protocol=0): MARK levels inside each other.
    std::fs::write(&file, b"(lp0\nI1\na(I2\n(lp1\nI3\naatp2\na.").unwrap();
    let out = stdout(&run(&["dis", file.to_str().unwrap()]));
    assert_eq!(out, pickletools(&[], &[file]));
    assert!(out.contains("    0: (    MARK\n"), "{out}");
    assert!(out.contains("    9: (    MARK\n"), "{out}");
    assert!(out.contains("   13: (        MARK\n"), "{out}");
    assert!(
        out.contains("   14: l            LIST       (MARK at 13)\n"),
        "{out}"
    );
    assert!(
        out.contains("   23: t        TUPLE      (MARK at 9)\n"),
        "{out}"
    );
    assert!(
        out.ends_with("highest protocol among opcodes = 0\n"),
        "{out}"
    );
}

#[test]
fn a_damaged_pickle_prints_what_precedes_the_fault_and_names_it() {
    let dir = reduce_tests::scratch_dir("cli-dis");
    let file = dir.join("cut.pkl");
    std::fs::write(&file, b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K").unwrap();
    let out = run(&["dis", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("   11: K    BININT1    1\n"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("pickle data was truncated (at byte 13, BININT1)"),
        "{err}"
    );
    // A memo read before any write, as pickletools refuses it.
    std::fs::write(&file, b"\x80\x02h\x05.").unwrap();
    let out = run(&["dis", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("memo key 5 has never been stored into, at offset 2"),
        "{}",
        stderr(&out)
    );
    // A memo key written twice, as pickletools refuses it.
    let twice = dir.join("twice.pkl");
    std::fs::write(&twice, b"\x80\x02K\x01q\x00q\x00.").unwrap();
    let out = run(&["dis", twice.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).ends_with("    6: q    BINPUT     0\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("memo key 0 already defined, at offset 6 (BINPUT)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_describes_every_command_and_option() {
    let help = stdout(&run(&["--help"]));
    for command in ["dis", "show", "scan", "convert"] {
        assert!(help.contains(command), "{help}");
        let sub = stdout(&run(&[command, "--help"]));
        assert!(sub.contains("Usage: reduce"), "{sub}");
    }
    let scan = stdout(&run(&["scan", "--help"]));
    assert!(
        scan.contains("--allow <PRESET|FILE>") && scan.contains("--json"),
        "{scan}"
    );
}

#[test]
fn inside_a_torch_archive_or_an_npy_file_the_pickle_is_shown() {
    let zip = common::fixtures().join("torch/tiny_zip.pt");
    let out = stdout(&run(&["dis", zip.to_str().unwrap()]));
    assert!(out.starts_with("    0: \\x80 PROTO      2\n"), "{out}");
    assert!(
        out.contains("GLOBAL     'torch._utils _rebuild_tensor_v2'"),
        "{out}"
    );
    let npy = common::fixtures().join("attacks/npy_object_array.npy");
    let out = stdout(&run(&["dis", npy.to_str().unwrap()]));
    assert!(
        out.starts_with("    0: c    GLOBAL     'os system'\n"),
        "{out}"
    );
}

/// An `.npz` (`numpy.savez`) has no `.pkl` member: `dis` and `show` read
/// the pickle of its first array of objects, whatever the member's name,
/// and say so when none holds objects.
#[test]
fn an_npz_shows_its_first_object_array() {
    let dir = reduce_tests::scratch_dir("cli-dis-npz");
    let script = "import sys, os, numpy as np\n\
                  d = sys.argv[1]\n\
                  np.savez(os.path.join(d, 'mixed.npz'), a=np.arange(3), b=np.array([{'k': 7}, 'x'], dtype=object))\n\
                  np.savez(os.path.join(d, 'plain.npz'), a=np.arange(3), b=np.ones(2))\n";
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(&dir);
    common::python_output(cmd);
    let mixed = dir.join("mixed.npz");
    let out = stdout(&run(&["dis", mixed.to_str().unwrap()]));
    // The whole array, pickled: numpy's reconstructor (numpy.core or,
    // from numpy 2, numpy._core).
    assert!(out.contains(" '_reconstruct'\n"), "{out}");
    let out = stdout(&run(&["show", mixed.to_str().unwrap()]));
    assert!(out.contains("{'k': 7}") && out.contains("'x'"), "{out}");
    let plain = dir.join("plain.npz");
    for command in ["dis", "show"] {
        let out = run(&[command, plain.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("holds 2 array(s) and none of objects, so no pickle"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

/// `dis` and `show` name a compressed file and a `joblib.dump` file for
/// what they are, as `scan` does, rather than stopping at a bad opcode.
#[test]
fn compressed_and_joblib_files_are_named_by_dis_and_show() {
    let compressed = common::fixtures().join("compressed/model.joblib");
    let dir = reduce_tests::scratch_dir("cli-dis-hints");
    let script = "import sys, os, joblib, numpy as np\n\
                  joblib.dump({'w': np.arange(10.0)}, os.path.join(sys.argv[1], 'a.joblib'))\n";
    let mut cmd = reduce_tests::python_env();
    cmd.arg("-c").arg(script).arg(&dir);
    common::python_output(cmd);
    let joblib = dir.join("a.joblib");
    for command in ["dis", "show"] {
        let out = run(&[command, compressed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out)
                .contains("gzip-compressed data (as joblib.dump(..., compress=...) writes)"),
            "{command}: {}",
            stderr(&out)
        );
        let out = run(&[command, joblib.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("a joblib.dump file: joblib writes each numpy array's bytes"),
            "{command}: {}",
            stderr(&out)
        );
    }
    // A plain damaged pickle gets no such hint.
    let damaged = dir.join("damaged.pickle");
    std::fs::write(&damaged, b"\x80\x04]\x94(K\x01\xffK\x02e.").unwrap();
    for command in ["dis", "show"] {
        let out = run(&[command, damaged.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("invalid opcode byte 0xff (at byte 7)"),
            "{command}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("joblib"),
            "{command}: {}",
            stderr(&out)
        );
    }
}

/// An empty file is named so by every command, and every command's text
/// ends its last line.
#[test]
fn an_empty_file_is_named_alike_and_outputs_end_their_lines() {
    let dir = reduce_tests::scratch_dir("cli-empty");
    let empty = dir.join("empty.pkl");
    std::fs::write(&empty, b"").unwrap();
    for command in ["dis", "show"] {
        let out = run(&[command, empty.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("empty input: expected a pickle, found no bytes"),
            "{command}: {}",
            stderr(&out)
        );
    }
    let out = run(&["scan", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("empty input: expected a pickle, found no bytes"));
    let list = dir.join("list.pkl");
    std::fs::write(&list, b"\x80\x04]\x94(K\x01K\x02e.").unwrap();
    for args in [
        &["dis"][..],
        &["show"],
        &["show", "--json"],
        &["show", "--python"],
        &["scan"],
        &["scan", "--json"],
    ] {
        let mut all = args.to_vec();
        all.push(list.to_str().unwrap());
        let out = run(&all);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout(&out).ends_with('\n'), "{args:?}: {:?}", stdout(&out));
    }
}

#[test]
fn deep_mark_nesting_streams_its_quadratic_text() {
    // 40,000 MARKs in 40 KB: each line is indented once per MARK before
    // it, 3.2 GB of text, which pickletools writes as it goes.
    let dir = reduce_tests::scratch_dir("cli-dis-marks");
    let file = dir.join("marks.pkl");
    let mut bytes = vec![b'('; 40_000];
    bytes.push(b'.');
    std::fs::write(&file, &bytes).unwrap();
    for annotate in ["", "--annotate"] {
        // Within 1 GB of address space: the text is never held whole.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1000000 && exec \"$0\" dis {annotate} \"$1\" >/dev/null"
            ))
            .arg(env!("CARGO_BIN_EXE_reduce"))
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("stack not empty after STOP"),
            "{}",
            stderr(&out)
        );
    }
    // The same text as pickletools, where it is small enough to compare.
    let small = dir.join("marks300.pkl");
    std::fs::write(&small, [&[b'('; 300][..], &[b't'; 300], b"."].concat()).unwrap();
    assert_eq!(
        stdout(&run(&["dis", small.to_str().unwrap()])),
        pickletools(&[], &[small])
    );
}

#[test]
fn a_long_pickle_is_disassembled_an_opcode_at_a_time() {
    // [None] * 2_000_000 as protocol 2 writes it: 2 MB, two million
    // one-byte opcodes. Held as a list of instructions they would take
    // 128 MB; decoded, printed and dropped one at a time, a few MB. The
    // same goes for a truncated copy, whose lines precede its fault.
    let dir = reduce_tests::scratch_dir("cli-dis-long");
    let mut bytes = b"\x80\x02]".to_vec();
    for _ in 0..2_000 {
        bytes.push(b'(');
        bytes.extend([b'N'; 1_000]);
        bytes.push(b'e');
    }
    bytes.push(b'.');
    let whole = dir.join("nones.pkl");
    std::fs::write(&whole, &bytes).unwrap();
    let cut = dir.join("nones-cut.pkl");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    for (file, code, says) in [
        (&whole, 0, String::new()),
        (
            &cut,
            2,
            format!("pickle data was truncated (at byte {})", bytes.len() - 1),
        ),
    ] {
        // Within 100 MB of address space: the program itself takes 20.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 100000 && exec \"$0\" dis \"$1\" >/dev/null")
            .arg(env!("CARGO_BIN_EXE_reduce"))
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(stderr(&out).contains(&says), "{}", stderr(&out));
        assert_eq!(stderr(&out).is_empty(), says.is_empty());
    }
}
