//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! `migrations/` folder at compile time, and cargo does not watch it by
//! itself on a stable toolchain.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-sqlite");
}
