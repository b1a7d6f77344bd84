//! The `roundtrip` example on its built-in pickle and on files CPython
//! writes at test time, and the examples' errors naming the file.

use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("roundtrip-example");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn roundtrip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roundtrip"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_built_in_pickle_comes_back_byte_for_byte() {
    let out = roundtrip(&[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("identical to CPython's: yes"), "{text}");
}

#[test]
fn a_file_cpython_wrote_comes_back_byte_for_byte() {
    // Plain data, shared and cyclic values, and instances of a class the
    // example knows nothing of, at every protocol.
    let script = r#"
import pickle, sys, collections, dataclasses, decimal
@dataclasses.dataclass
class Point:
    x: int
    y: float
shared = ['s']
cyc = {}
cyc['me'] = cyc
value = [1, 2.5, 'three', b'four', (shared, shared), cyc,
         collections.OrderedDict(a=1), decimal.Decimal('1.5'), Point(1, 2.0),
         {frozenset({1}), None, True}]
for proto in range(6):
    with open(sys.argv[1] + str(proto), 'wb') as f:
        pickle.dump(value, f, protocol=proto)
        pickle.dump('trailing pickle', f)
"#;
    let base = scratch("cpython.pickle");
    let base = base.to_str().unwrap();
    let status = Command::new("python3")
        .args(["-c", script, base])
        .status()
        .unwrap();
    assert!(status.success());
    for proto in 0..6 {
        let path = format!("{base}{proto}");
        let out = roundtrip(&[&path]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "protocol {proto}: {text}");
        assert!(
            text.contains(&format!("at protocol {proto}")) && text.contains("identical: yes"),
            "{text}"
        );
    }
}

#[test]
fn a_changed_file_is_reported_and_a_missing_one_named() {
    // Not what CPython writes (a list without its memo put): read, but not
    // the same bytes back.
    let path = scratch("hand-made.pickle");
    std::fs::write(&path, b"\x80\x02]K\x01a.").unwrap();
    let out = roundtrip(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical: NO"));

    let missing = scratch("no-such-file.pickle");
    let missing = missing.to_str().unwrap();
    let out = roundtrip(&[missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing));

    let out = Command::new(env!("CARGO_BIN_EXE_reduce-examples"))
        .args(["load", missing])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(missing),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
