//! Identifiers. Every object id is a UUIDv7: unique without coordination and
//! time-ordered, so B-tree inserts stay local and ids sort by creation.

use uuid::Uuid;

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
