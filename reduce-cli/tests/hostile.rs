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

/// Runs `reduce` with `args`, failing the test when it takes more than
/// `seconds` (a hang) or does not answer (exit 0, 1 or 2).
fn answered_within(args: &[&std::ffi::OsStr], seconds: u64) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_reduce"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes as the child writes, so that it never blocks on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut b);
        b
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed().as_secs() >= seconds {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: still running after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert_answered(&out, &format!("{args:?}"));
    out
}

/// Writes hostile archives into a scratch folder with Python's struct (the
/// files are large or spelled byte by byte): `script` defines them with
/// `w(name, bytes)` and the tar and zip helpers here.
fn hostile_files(tag: &str, script: &str) -> PathBuf {
    let dir = reduce_tests::scratch_dir(tag);
    let helpers = r#"
import os, struct, sys, zlib
os.chdir(sys.argv[1])
EVIL = b"cos\nsystem\n(Vecho hi\ntR."
def w(n, b): open(n, "wb").write(b)
def hdr(name=b"pickle", size=0, kind=b"0", link=b"", sizefield=None):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:124] = b"0000644\0" + b"0000000\0" * 2
    h[124:136] = sizefield if sizefield is not None else (b"%011o\0" % size)
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[157:157 + len(link)] = link
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)
def pad(b): return b + b"\0" * (-len(b) % 512)
def member(name, data): return hdr(name, size=len(data)) + pad(data)
END = b"\0" * 1024
def rec(k, v):
    body = b" " + k + b"=" + v + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n: n += 1
    return str(n).encode() + body
def pax(records, kind=b"x"): return hdr(b"pax", kind=kind, size=len(records)) + pad(records)
def cd(name, local, comp, size, method=0, extra=b""):
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, 0, comp, size, len(name), len(extra), 0, 0, 0, 0, local) + name + extra
def lh(name, comp, size, method=0):
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, 0, comp, size, len(name), 0) + name
def eocd(count, size, offset):
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, size, offset, 0)
def zip64(count, size, offset, at):
    return struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset) + struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
LOCAL = lh(b"archive/data.pkl", len(EVIL), len(EVIL)) + EVIL
"#;
    let mut python = reduce_tests::python3();
    python.args(["-c", &format!("{helpers}\n{script}"), dir.to_str().unwrap()]);
    common::python_output(python);
    dir
}

/// Sizes near 2^64 in tar headers (a long name's, a pax header's, a
/// member's, a pax `size`): the offset of the next header must not wrap
/// around to the start (a long name read again and again, until the stack
/// overflows) nor overflow.
#[test]
fn tar_sizes_near_2_64_are_errors() {
    let dir = hostile_files(
        "cli-tar-wrap",
        r#"
wrap = b"\x80" + (2**64 - 512).to_bytes(11, "big")
w("long_name.pt", hdr(b"././@LongLink", kind=b"L", sizefield=wrap) + END)
w("pax.pt", hdr(b"pax", kind=b"x", sizefield=wrap) + END)
w("member.pt", hdr(b"pickle", sizefield=wrap) + END)
w("pax_size.pt", pax(rec(b"size", str(2**64 - 1024).encode())) + member(b"pickle", EVIL) + END)
"#,
    );
    for name in ["long_name.pt", "pax.pt", "member.pt", "pax_size.pt"] {
        let file = dir.join(name);
        for command in ["scan", "show", "dis"] {
            let out = answered_within(&[command.as_ref(), file.as_os_str()], 60);
            assert_eq!(out.status.code(), Some(2), "{command} {name}");
        }
    }
}

/// A pax record whose length runs to the end of memory (2^64 - its
/// offset) is read as one that runs past the header, not wrapped around.
#[test]
fn a_pax_record_length_near_2_64_runs_past_the_header() {
    let dir = hostile_files(
        "cli-pax-length",
        r#"
w("pax_length.pt", pax(b"6 a=b\n" + str(2**64 - 6).encode() + b" k=v\n") + member(b"pickle", EVIL) + END)
"#,
    );
    let file = dir.join("pax_length.pt");
    let out = answered_within(&["scan".as_ref(), file.as_os_str()], 60);
    assert_eq!(out.status.code(), Some(1));
    let said = common::stdout(&out);
    assert!(said.contains("os.system"), "{said}");
    assert!(said.contains("Python versions read differently"), "{said}");
}

/// Long names and pax headers each before the next, 20,000 deep: tarfile
/// reads each by a recursive call (and hits Python's recursion limit); the
/// scan says how deep, without overflowing its stack.
#[test]
fn extended_tar_headers_nested_deep_are_an_error() {
    let dir = hostile_files(
        "cli-tar-deep",
        r#"
w("long_names.pt", hdr(b"././@LongLink", kind=b"L") * 20000 + member(b"pickle", EVIL) + END)
w("globals.pt", hdr(b"g", kind=b"g") * 20000 + member(b"pickle", EVIL) + END)
"#,
    );
    for name in ["long_names.pt", "globals.pt"] {
        let file = dir.join(name);
        let out = answered_within(&["scan".as_ref(), file.as_os_str()], 60);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let said = common::stdout(&out);
        // Said once, not once per header before it.
        let line = said
            .lines()
            .find(|l| l.contains("not a readable tar archive"))
            .unwrap();
        assert!(line.contains("more than 1000 extended headers"), "{line}");
        assert!(line.len() < 500, "{line}");
        for command in ["show", "dis"] {
            let out = answered_within(&[command.as_ref(), file.as_os_str()], 60);
            assert_eq!(out.status.code(), Some(2), "{command} {name}");
        }
    }
}

/// Tar archives whose cost to read grew with the square of their size: a
/// pax header of 300,000 records, a global one of 50,000 before 20,000
/// members, 20,000 links to follow.
#[test]
fn hostile_tar_archives_are_read_in_linear_time() {
    let dir = hostile_files(
        "cli-tar-linear",
        r#"
keys = b"".join(rec(b"k%d" % i, b"v") for i in range(300000))
w("pax_keys.pt", pax(keys) + member(b"pickle", EVIL) + END)
keys = b"".join(rec(b"k%d" % i, b"v") for i in range(50000))
w("global_keys.pt", pax(keys, b"g") + b"".join(hdr(b"m%d" % i) for i in range(20000)) + member(b"pickle", EVIL) + END)
links = b"".join(hdr(b"l%d.pkl" % i, kind=b"2", link=b"l%d.pkl" % (i + 1)) for i in range(20000))
w("links.pt", member(b"l20000.pkl", EVIL) + links + END)
"#,
    );
    for name in ["pax_keys.pt", "global_keys.pt", "links.pt"] {
        let file = dir.join(name);
        let out = answered_within(&["scan".as_ref(), file.as_os_str()], 30);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(common::stdout(&out).contains("os.system"), "{name}");
    }
}

/// Zip offsets, sizes and counts near 2^64 (zip64 records and extra
/// fields, a zip64 locator) are errors or findings, never an overflow.
#[test]
fn zip_fields_near_2_64_are_errors() {
    let dir = hostile_files(
        "cli-zip-wrap",
        r#"
c = cd(b"archive/data.pkl", 0, len(EVIL), len(EVIL))
base = LOCAL + c
w("zip64_offset.pt", base + zip64(1, 0, 2**64 - 1, len(base)) + eocd(0xffff, 0xffffffff, 0xffffffff))
w("zip64_count.pt", base + zip64(2**64 - 1, len(c), len(LOCAL), len(base)) + eocd(0xffff, 0xffffffff, 0xffffffff))
w("locator.pt", base + struct.pack("<4sIQI", b"PK\x06\x07", 0, 2**64 - 1, 1) + eocd(1, len(c), len(LOCAL)))
for i, local in enumerate([2**64 - 1, 2**64 - 30]):
    extra = struct.pack("<HHQQQ", 1, 24, len(EVIL), len(EVIL), local)
    c = cd(b"archive/data.pkl", 0xffffffff, 0xffffffff, 0xffffffff, extra=extra)
    w("local%d.pt" % i, LOCAL + c + eocd(1, len(c), len(LOCAL)))
"#,
    );
    for name in [
        "zip64_offset.pt",
        "zip64_count.pt",
        "locator.pt",
        "local0.pt",
        "local1.pt",
    ] {
        let file = dir.join(name);
        for command in ["scan", "show", "dis"] {
            answered_within(&[command.as_ref(), file.as_os_str()], 60);
        }
    }
}

/// End records filling the last 64 KiB, each describing a directory of
/// 20,000 entries, and a directory of 100,000 entries: read in linear time.
#[test]
fn hostile_zip_directories_are_read_in_linear_time() {
    let dir = hostile_files(
        "cli-zip-linear",
        r#"
names = b"".join(cd(b"m%05d.txt" % i, 0, 0, 0) for i in range(20000))
d = names + cd(b"archive/data.pkl", 0, len(EVIL), len(EVIL))
w("end_records.pt", LOCAL + d + eocd(20001, len(d), len(LOCAL)) * (65000 // 22))
d = b"".join(cd(b"n%06d" % i, 0, 0, 0) for i in range(100000)) + cd(b"archive/data.pkl", 0, len(EVIL), len(EVIL))
w("entries.pt", LOCAL + d + eocd(100001 & 0xffff, len(d), len(LOCAL)))
"#,
    );
    for name in ["end_records.pt", "entries.pt"] {
        let file = dir.join(name);
        let out = answered_within(&["scan".as_ref(), file.as_os_str()], 30);
        assert_eq!(out.status.code(), Some(1), "{name}");
    }
}

/// A member that inflates to 32 Mi two-byte pickles (`N.`) from 64 KB: the
/// scan stops at its cap of records for one file and says so, where it
/// held gigabytes of records.
#[test]
fn a_file_of_millions_of_tiny_pickles_stops_at_the_record_cap() {
    let dir = hostile_files(
        "cli-zip-records",
        r#"
payload = b"N." * (32 << 20)
c = zlib.compressobj(9, zlib.DEFLATED, -15)
data = c.compress(payload) + c.flush()
l = lh(b"a.pkl", len(data), len(payload), 8) + data
d = cd(b"a.pkl", 0, len(data), len(payload), 8)
w("tiny.zip", l + d + eocd(1, len(d), len(l)))
"#,
    );
    let file = dir.join("tiny.zip");
    let out = answered_within(&["scan".as_ref(), "--json".as_ref(), file.as_os_str()], 120);
    assert_eq!(out.status.code(), Some(2));
    let said = common::stdout(&out);
    assert!(
        said.contains("the scan reads no further"),
        "{}",
        &said[said.len().saturating_sub(500)..]
    );
}

/// An `.npz` whose last end record's directory count says one entry more
/// than its size holds (Python's `zipfile` reads it by its size, and
/// `numpy.load` runs the object array's pickle), with an empty directory's
/// end record earlier in a member's data: the scan read only that one and
/// called the archive safe.
#[test]
fn a_last_directory_the_scan_cannot_read_is_a_finding() {
    let dir = hostile_files(
        "cli-zip-decoy",
        r#"
header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
arr = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + EVIL
decoy = b"PK\x05\x06" + b"\0" * 18
l1 = lh(b"arr.npy", len(arr), len(arr)) + arr
l2 = lh(b"pad.txt", len(decoy), len(decoy)) + decoy
d = cd(b"arr.npy", 0, len(arr), len(arr)) + cd(b"pad.txt", len(l1), len(decoy), len(decoy))
w("decoy.npz", l1 + l2 + d + eocd(3, len(d), len(l1 + l2)))
"#,
    );
    let file = dir.join("decoy.npz");
    let out = answered_within(&["scan".as_ref(), file.as_os_str()], 60);
    assert_eq!(out.status.code(), Some(1));
    let said = common::stdout(&out);
    assert!(
        said.contains("of the last end-of-central-directory record (offset")
            && said.contains("cannot be read, and another one can"),
        "{said}"
    );
}

/// A pax header whose second record does not start with a length: tarfile
/// 3.12.4 and later end the archive there, older versions keep the records
/// before it and read on, to a `pickle` that `torch.load` unpickles. The
/// scan ended the archive silently and called it safe.
#[test]
fn members_after_an_invalid_pax_record_are_scanned() {
    let dir = hostile_files(
        "cli-pax-invalid",
        r#"
w("invalid_record.pt", member(b"storages", b"K\x00.") + pax(b"28 comment= path=readme.txt\n\xe25 path=pickle\n") + member(b"pickle", EVIL) + END)
"#,
    );
    let file = dir.join("invalid_record.pt");
    let out = answered_within(&["scan".as_ref(), file.as_os_str()], 60);
    assert_eq!(out.status.code(), Some(1));
    let said = common::stdout(&out);
    assert!(said.contains("os.system"), "{said}");
    assert!(said.contains("an invalid pax record at offset"), "{said}");
}
