//! Arbitrary bytes as a household file for `sumud registry import`: CSV
//! rows, their conversion to households and the events the import
//! publishes. See `fuzz/src/lib.rs`.
//!
//! `cargo +nightly fuzz run registry_csv fuzz/seeds/registry_csv`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sumud_fuzz::registry_csv(data);
});
