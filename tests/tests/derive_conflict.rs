//! Two derived types that claim one global path: the conflict is recorded
//! when the registry first loads, and loading that global says so instead
//! of silently picking one. (Its own test binary, so the conflict does not
//! reach other tests' registry.)

mod first {
    #[derive(reduce::Reduce, Debug, PartialEq)]
    #[reduce(module = "clash", name = "Thing")]
    pub struct Thing(pub u8);
}

mod second {
    #[derive(reduce::Reduce, Debug, PartialEq)]
    #[reduce(module = "clash", name = "Thing")]
    pub struct Thing(pub String);
}

#[test]
fn a_contested_global_is_recorded_and_reported() {
    let snapshot = reduce::registry().snapshot();
    let conflicts: Vec<&str> = snapshot.conflicts().collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0].contains("`clash.Thing` is already registered"),
        "{}",
        conflicts[0]
    );
    assert!(
        conflicts[0].contains("Thing"),
        "names the type: {}",
        conflicts[0]
    );
    // The first registration stays usable for writing either type.
    let bytes = reduce::to_vec(&first::Thing(1)).unwrap();
    let other = reduce::to_vec(&second::Thing("a".into())).unwrap();
    assert_ne!(bytes, other);
    // Loading the contested global is refused, naming the conflict.
    let err = reduce::from_slice::<first::Thing>(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("`clash.Thing` is already registered"),
        "{err}"
    );
}
