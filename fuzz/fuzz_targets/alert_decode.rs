//! Raw bytes, as they would arrive on `sumud.alerts.v1`, through the whole
//! decode path of the alerts service: CloudEvents ladder, CAP parser (XML
//! and JSON forms), footprint resolution, indicator readings.
//!
//! `cargo +nightly fuzz run alert_decode fuzz/seeds/alert_decode`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sumud_alerts::untrusted::decode_untrusted(data);
});
