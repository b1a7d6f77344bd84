//! Every misuse of `#[derive(Reduce)]` is a compile error at the user's
//! tokens that names the fix: one file per mistake in `tests/ui/`, with the
//! compiler's output checked in beside it. Regenerate with
//! `TRYBUILD=overwrite cargo test -p reduce-tests --test ui`.

#[test]
fn derive_misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
