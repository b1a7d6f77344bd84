//! `inspect::lookups`: an attribute read with `builtins.getattr` off a
//! global is reported as the dotted name CPython writes for the same object
//! at protocol 4, and a global counts as used only for such reads when no
//! opcode uses it any other way.

use reduce::inspect::{self, Lookups, Named, Origin};
use reduce::Global;

fn lookups(bytes: &[u8]) -> Lookups {
    inspect::lookups(bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

/// The name a resolution gives, `module.name`, or its kind.
fn names(found: &Lookups) -> Vec<String> {
    found
        .resolutions
        .iter()
        .map(|r| r.named.to_string())
        .collect()
}

#[test]
fn getattr_reads_are_the_names_protocol_4_writes() {
    // Each object CPython pickles through getattr before protocol 4 (nested
    // classes) or at every protocol (methods), at protocols 0-5, each
    // followed by the object's `module` and `qualname`.
    let script = r#"
import pickle, sys, datetime, zoneinfo
class Outer:
    class Inner:
        class Deep:
            pass
objects = [Outer.Inner, Outer.Inner.Deep, dict.fromkeys, zoneinfo.ZoneInfo._unpickle]
out = sys.stdout.buffer
def put(b):
    out.write(len(b).to_bytes(4, 'little') + b)
for o in objects:
    for proto in range(6):
        put(pickle.dumps(o, protocol=proto))
        module = o.__module__ or o.__self__.__module__
        put(f"{module}\t{o.__qualname__}".encode())
"#;
    let chunks = reduce_tests::python_pickles(script);
    assert_eq!(chunks.len(), 2 * 4 * 6);
    let mut read = 0;
    for pair in chunks.chunks(2) {
        let (bytes, want) = (&pair[0], String::from_utf8(pair[1].clone()).unwrap());
        let (module, qualname) = want.split_once('\t').unwrap();
        let found = lookups(bytes);
        let Some(last) = found.attributes.last() else {
            // A nested class at protocol 4: one dotted STACK_GLOBAL.
            assert_eq!(names(&found), [format!("{module}.{qualname}")]);
            continue;
        };
        read += 1;
        // Before protocol 3 CPython spells `builtins` as `__builtin__`.
        let spelled = |m: &str| if m == "__builtin__" { "builtins" } else { m }.to_string();
        assert_eq!(
            (spelled(&last.named.module), last.named.name.as_str()),
            (module.to_string(), qualname),
            "{bytes:?}"
        );
        // Every global was looked up for the reads only, and getattr is
        // the one each read calls.
        assert_eq!(
            found.only_for_attributes,
            vec![true; found.resolutions.len()],
            "{bytes:?}"
        );
        for a in &found.attributes {
            let called = &found.resolutions[a.getattr].named;
            assert!(called.to_string().ends_with(".getattr"), "{called}");
        }
        // A class nested two deep is read off the read before it.
        if qualname.matches('.').count() == 2 {
            assert_eq!(found.attributes.len(), 2);
            assert_eq!(found.attributes[1].of, Origin::Attribute(0));
            assert_eq!(found.attributes[0].named.name, "Outer.Inner");
            // Outer.Inner is only read from; Deep is what the pickle returns.
            assert!(found.attributes[0].only_for_attributes);
            assert!(!found.attributes[1].only_for_attributes);
        }
    }
    // Methods at every protocol, nested classes at 0-3.
    assert_eq!(read, 2 * 6 + 2 * 4);
}

#[test]
fn a_datetime_in_a_zone_reads_one_attribute() {
    let script = r#"
import pickle, sys, datetime, zoneinfo
d = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
for proto in range(6):
    b = pickle.dumps([d, d.replace(day=3)], protocol=proto)
    sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b)
"#;
    for bytes in reduce_tests::python_pickles(script) {
        let found = lookups(&bytes);
        let read: Vec<String> = found
            .attributes
            .iter()
            .map(|a| a.named.to_string())
            .collect();
        assert_eq!(read, ["zoneinfo.ZoneInfo._unpickle"], "{bytes:?}");
        // The datetime class is called; getattr and ZoneInfo only read.
        for (r, only) in found.resolutions.iter().zip(&found.only_for_attributes) {
            let Named::Global(g) = &r.named else {
                panic!("{r}")
            };
            let read_only = g.name == "getattr" || g.name == "ZoneInfo";
            assert_eq!(*only, read_only, "{r} in {bytes:?}");
        }
    }
}

/// `getattr(zoneinfo.ZoneInfo, "_unpickle")` at protocol 0, with `extra`
/// opcodes between the read and `STOP` (the read's result on the stack,
/// getattr at memo 0, ZoneInfo at 1, the pair at 2).
fn with(extra: &[u8]) -> Vec<u8> {
    let mut bytes =
        b"c__builtin__\ngetattr\np0\n(czoneinfo\nZoneInfo\np1\nV_unpickle\ntp2\nR".to_vec();
    bytes.extend_from_slice(extra);
    bytes.push(b'.');
    bytes
}

#[test]
fn any_other_use_keeps_the_flag_false() {
    let zone = Global::new("zoneinfo", "ZoneInfo._unpickle");
    // Each use of getattr (first flag) or ZoneInfo (second) that is not an
    // attribute read, after the uses that are none.
    let cases: [(&[u8], _); 20] = [
        // Reads only: the pickle returns the attribute; globals dropped by
        // POP or left in the memo are no use.
        (b"", [true, true]),
        (b"g0\n0", [true, true]),
        (b"g1\ng1\n00", [true, true]),
        (b"g2\n0", [true, true]),
        // getattr called on other arguments.
        (b"0g0\n(S'x'\nVa\ntR", [false, true]),
        // ... with a default: three arguments.
        (b"0g0\n(g1\nVa\nNtR", [false, false]),
        // ... on a dotted name (getattr reads "a.b" as one attribute).
        (b"0g0\n(g1\nVa.b\ntR", [false, false]),
        // ... through NEWOBJ or OBJ, or its state set.
        (b"0g0\n)\x81", [false, true]),
        (b"0(g0\no", [false, true]),
        (b"0g0\nNb", [false, true]),
        // Returned, or put in a list, a dict, a tuple or a set.
        (b"0g0\n", [false, true]),
        (b"0(g1\nl", [true, false]),
        (b"0(dVk\ng0\ns", [false, true]),
        (b"0(g1\ng1\nt", [true, false]),
        (b"0(g1\nt", [true, false]),
        (b"0(lg0\na", [false, true]),
        // ZoneInfo called, or its state set.
        (b"0g1\n(tR", [true, false]),
        (b"0g1\n(db", [true, false]),
        // The pair handed to another callable.
        (b"0g1\ng2\nR", [true, false]),
        // A persistent id.
        (b"0g0\nQ", [false, true]),
    ];
    for (extra, flags) in cases {
        let found = lookups(&with(extra));
        assert_eq!(
            found.attributes[0].named,
            zone,
            "{:?}",
            String::from_utf8_lossy(extra)
        );
        assert_eq!(
            found.only_for_attributes,
            flags,
            "{:?}",
            String::from_utf8_lossy(extra)
        );
    }
    // A STACK_GLOBAL's operands are used: a global there is computed.
    let stack = b"\x80\x04cbuiltins\ngetattr\n\x94czoneinfo\nZoneInfo\n\x94\x8c\x09_unpickle\x86Rh\x00\x8c\x01x\x93.";
    let found = lookups(stack);
    assert_eq!(names(&found).last().unwrap(), "computed name");
    assert_eq!(&found.only_for_attributes[..2], [false, true]);
    // getattr off something that is not a global reads no attribute.
    let chain = b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vecho\ntR.";
    let found = lookups(chain);
    assert!(found.attributes.is_empty());
    assert_eq!(found.only_for_attributes, [false, false]);
}

#[test]
fn builds_name_the_class_of_what_they_set_the_state_of() {
    // An instance with a __dict__ at protocols 0-5: copyreg._reconstructor
    // before protocol 2, NEWOBJ from 2; then BUILD with the dict.
    let script = r#"
import pickle, sys
class Point:
    def __init__(self):
        self.x, self.y = 1, 2
for proto in range(6):
    b = pickle.dumps([Point(), 3], protocol=proto)
    sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b)
"#;
    for bytes in reduce_tests::python_pickles(script) {
        let found = lookups(&bytes);
        let [build] = found.builds.as_slice() else {
            panic!("{:?} in {bytes:?}", found.builds)
        };
        let inspect::Built::InstanceOf(Origin::Resolution(i)) = build.target else {
            panic!("{build:?}")
        };
        assert_eq!(found.resolutions[i].named.to_string(), "__main__.Point");
        assert_eq!(bytes[build.offset as usize], reduce::op::BUILD);
    }
    // BUILD on the class itself: Fraction.__repr__ = str.
    let patch = b"\x80\x04\x8c\x09fractions\x8c\x08Fraction\x93N}\x8c\x08__repr__\x8c\x08builtins\x8c\x03str\x93s\x86b.";
    let found = lookups(patch);
    assert_eq!(found.builds.len(), 1);
    assert_eq!(
        found.builds[0].target,
        inspect::Built::Object(Origin::Resolution(0))
    );
    // A BUILD on a plain value is not listed.
    assert!(lookups(b"}N}b.").builds.is_empty());
}
