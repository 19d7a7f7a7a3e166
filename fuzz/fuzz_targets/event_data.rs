//! One event's `data`: the first byte picks the event type (household
//! upsert and removal, control command, the claims inside its JWS, the five
//! crisis events, entitlement decision, payment instruction and status,
//! indicator reading, CAP alert in JSON, dead letter), the rest is the JSON.
//! Schema validation, typed read and round trip, and what the consuming
//! service checks next without a database. See `fuzz/src/lib.rs`.
//!
//! `cargo +nightly fuzz run event_data fuzz/seeds/event_data`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sumud_fuzz::event_data(data);
});
