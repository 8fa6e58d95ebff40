//! What a user sees when a remote function or an actor method takes or
//! returns a type that is no value: one error per such type, at its place
//! in the signature, naming it and what it lacks — not one more per call,
//! and nothing pointing into shoal's internals; a streaming function that
//! does not return `impl Iterator<Item = T>` is one error too. The expected text is in
//! `tests/ui/*.stderr` (`TRYBUILD=overwrite cargo test -p shoal --test
//! diagnostics_values` rewrites it after a deliberate change).

#[test]
fn a_type_that_is_no_value_is_one_error_where_it_is_declared() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
