//! Damaged and hostile input: every command ends in an answer or a clear
//! error (exit 0, 1 or 2), never a crash, whatever the bytes.

mod common;

use std::path::PathBuf;

use common::{fixtures, reduce, stderr};

/// Prefixes and byte flips of attack files, torch checkpoints (zip and
/// legacy) and CPython fixtures.
fn damaged() -> (PathBuf, Vec<PathBuf>) {
    let dir = reduce_tests::scratch_dir("cli-hostile");
    let mut sources: Vec<PathBuf> = [
        "attacks/torch_zip.pt",
        "attacks/legacy_torch.pt",
        "attacks/npy_object_array.npy",
        "attacks/getattr_chain.pkl",
        "attacks/stream_second.pkl",
        "torch/tiny_zip.pt",
        "torch/tiny_legacy.pt",
    ]
    .iter()
    .map(|p| fixtures().join(p))
    .collect();
    for name in [
        "inst_self_ref.p2",
        "rec_tuple_list.p4",
        "shared_dict_nested.p5",
        "frames_many_strs.p4",
    ] {
        sources.push(reduce_tests::fixtures().join(format!("corpus/{name}.pickle")));
    }
    let mut files = Vec::new();
    for (s, source) in sources.iter().enumerate() {
        let bytes = std::fs::read(source).unwrap();
        let step = (bytes.len() / 40).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let f = dir.join(format!("s{s}-cut{cut}.pkl"));
            std::fs::write(&f, &bytes[..cut]).unwrap();
            files.push(f);
        }
        for at in (0..bytes.len()).step_by(step) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xA5;
            let f = dir.join(format!("s{s}-flip{at}.pkl"));
            std::fs::write(&f, &flipped).unwrap();
            files.push(f);
        }
    }
    (dir, files)
}

fn assert_answered(out: &std::process::Output, what: &str) {
    match out.status.code() {
        Some(0..=2) => {}
        other => panic!("{what}: exit {other:?} (a crash?)\n{}", stderr(out)),
    }
    assert!(!stderr(out).contains("panicked"), "{what}: {}", stderr(out));
}

#[test]
fn no_damaged_input_crashes_any_command() {
    let (dir, files) = damaged();
    assert!(files.len() > 500, "{}", files.len());
    let out = reduce(&["scan".as_ref(), "--json".as_ref(), dir.as_os_str()]);
    assert_answered(&out, "scan");
    assert_eq!(
        out.status.code(),
        Some(1),
        "some damaged attacks stay attacks"
    );
    for line in common::stdout(&out).lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("every record is JSON");
        if record["verdict"] == "unreadable" {
            let error = record["error"].as_str().unwrap();
            assert!(
                error.contains("byte")
                    || error.contains("zip")
                    || error.contains("tar")
                    || error.contains("npy"),
                "{error}"
            );
        }
    }
    let target = dir.join("out.safetensors");
    for file in files.iter().step_by(5) {
        for args in [
            &["dis"][..],
            &["show"],
            &["show", "--json"],
            &["show", "--python"],
        ] {
            let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            all.push(file.as_os_str());
            assert_answered(&reduce(&all), &format!("{args:?} {}", file.display()));
        }
        let out = reduce(&["convert".as_ref(), file.as_os_str(), target.as_os_str()]);
        assert_answered(&out, &format!("convert {}", file.display()));
    }
}

#[test]
fn a_reader_that_stops_reading_ends_nothing_badly() {
    use std::process::{Command, Stdio};
    let big = {
        let dir = reduce_tests::scratch_dir("cli-pipe");
        let file = dir.join("big.pkl");
        let mut bytes = b"\x80\x02]q\x00(".to_vec();
        for i in 0..200_000u32 {
            bytes.push(b'J');
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        bytes.extend_from_slice(b"e.");
        std::fs::write(&file, bytes).unwrap();
        file
    };
    let attacks = fixtures().join("attacks");
    for args in [
        vec!["dis".as_ref(), big.as_os_str()],
        vec!["scan".as_ref(), attacks.as_os_str()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reduce"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        // scan still reports its verdict in the exit status.
        let expected = if args[0] == "scan" { Some(1) } else { Some(0) };
        assert_eq!(out.status.code(), expected, "{args:?}: {}", stderr(&out));
    }
}

/// A 80 KB checkpoint whose data.pkl inflates to 80 MiB: every command
/// refuses it as a zip bomb, and none holds more than a few MiB.
#[test]
fn a_zip_bomb_is_refused_by_every_command() {
    let dir = reduce_tests::scratch_dir("cli-bomb");
    let bomb = dir.join("bomb.pt");
    let script = format!(
        "import io, pickle, zipfile\n\
         buf = io.BytesIO()\n\
         with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:\n\
         \x20   z.writestr('archive/data.pkl', pickle.dumps(bytes(80 << 20), protocol=2))\n\
         \x20   z.writestr('archive/version', '3\\n')\n\
         open({:?}, 'wb').write(buf.getvalue())\n",
        bomb.display().to_string()
    );
    let mut python = reduce_tests::python3();
    python.args(["-c", &script]);
    common::python_output(python);
    let target = dir.join("out.safetensors");
    for args in [vec!["scan"], vec!["dis"], vec!["show"], vec!["convert"]] {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.push(bomb.as_os_str());
        if args[0] == "convert" {
            all.push(target.as_os_str());
        }
        let out = reduce(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let said = format!("{}{}", common::stdout(&out), stderr(&out));
        assert!(said.contains("refused as a zip bomb"), "{args:?}: {said}");
    }
}

#[test]
fn text_from_a_pickle_cannot_drive_the_terminal() {
    let dir = reduce_tests::scratch_dir("cli-hostile-escapes");
    // Globals whose module is a colour change and a window title (OSC),
    // with a line break, C1 control and a right-to-left override.
    let mut stack_global =
        b"\x80\x04\x8c\x14\x1b]0;pwned\x07\x1b[2J\n\xc2\x9b\xe2\x80\xae\x94".to_vec();
    stack_global.extend_from_slice(b"\x8c\x01x\x94\x93\x94.");
    let files = [
        ("esc.pkl", b"c\x1b[31mEVIL\x1b[0m\nname\n.".to_vec()),
        ("osc.pkl", stack_global),
    ];
    // And a torch checkpoint that names one, which convert refuses, naming it.
    let mut zip = Vec::new();
    {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut zip));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("archive/data.pkl", o).unwrap();
        std::io::Write::write_all(&mut w, &files[1].1).unwrap();
        w.finish().unwrap();
    }
    let mut paths = Vec::new();
    for (name, bytes) in files.iter().chain([&("ckpt.pt", zip)]) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    let out_file = dir.join("out.safetensors");
    let runs: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["scan".as_ref(), paths[0].as_ref(), paths[1].as_ref()],
        vec!["show".as_ref(), paths[0].as_ref()],
        vec!["show".as_ref(), paths[1].as_ref()],
        vec!["convert".as_ref(), paths[2].as_ref(), out_file.as_ref()],
    ];
    for args in runs {
        let out = reduce(&args);
        let text = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("\\x1b") || text.contains("\\x1b]0;pwned"),
            "{args:?}: {text}"
        );
        for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!text.contains(bad), "{args:?}: {bad:?} in {text:?}");
        }
        // No line but the tool's own: the module's line break is escaped.
        assert!(
            !text.lines().any(|l| l.starts_with("x ") || l == "x"),
            "{args:?}: {text:?}"
        );
    }
}
