//! `sqlx::migrate!` embeds `migrations/` at compile time; without this, an
//! edited migration would not rebuild the crate and a stale set of
//! migrations would be embedded (and the tests would clone a stale template).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
