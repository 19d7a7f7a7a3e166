//! Raw bytes, as they arrive on any input topic, through the consumer
//! loop's decoding ladder (`sumud_shared::envelope::decode`: size, JSON,
//! CloudEvents shape and version, type, time window, JSON Schema of `data`),
//! the typed read of each event type, and what the loop keeps of a rejected
//! message for the dead-letter topic. See `fuzz/src/lib.rs`.
//!
//! `cargo +nightly fuzz run envelope fuzz/seeds/envelope`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sumud_fuzz::envelope(data);
});
