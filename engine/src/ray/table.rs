//! What a worker library registers beyond the registry, as both ends
//! name it: the built-in entries a driver calls, and what it checks.

use serde::{Deserialize, Serialize};

use crate::registry::{self, Invoke, REMOTE_FUNCTIONS};

/// The built-in function answering [`LibraryTable`].
pub(super) const TABLE_FUNCTION: &str = "shoal::ray::library_table";
/// The built-in method answering an actor's class.
pub(super) const CLASS_METHOD: &str = "shoal::ray::actor_class";

/// What a worker library was built from.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub(super) struct LibraryTable {
    pub(super) build_hash: u64,
    pub(super) functions: Vec<(String, u64)>,
}

/// This binary's table.
pub(super) fn own_table() -> LibraryTable {
    LibraryTable { build_hash: registry::build_hash(), functions: registry::table() }
}

/// The registered constructor of actor type `class`.
pub(super) fn constructor_of(class: &str) -> Option<&'static str> {
    REMOTE_FUNCTIONS.iter().find_map(|f| match f.invoke {
        Invoke::Constructor { class: c, .. } if c == class => Some(f.name),
        _ => None,
    })
}
