//! Arbitrary text as the compact JWS of an operator command, checked as the
//! control service does against a fixed registered Ed25519 key (`kid`,
//! algorithm, signature, claims); an input starting with `!` is instead a
//! claims payload signed with that key, to reach the claims decoding behind
//! a valid signature. See `fuzz/src/lib.rs`.
//!
//! `cargo +nightly fuzz run jws fuzz/seeds/jws`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sumud_fuzz::jws(data);
});
