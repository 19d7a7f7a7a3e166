//! Arbitrary text as a CAP document: the CAP 1.0/1.1/1.2 parser, then the
//! footprint of every `info` block on the shipped district boundaries. Skips
//! the CloudEvents ladder so that libFuzzer spends its time inside the XML.
//!
//! `cargo +nightly fuzz run cap_xml fuzz/seeds/cap_xml`

#![no_main]

use libfuzzer_sys::fuzz_target;
use sumud_alerts::{cap, footprint, untrusted};
use sumud_shared::areas::AreaCatalog;

fuzz_target!(|data: &[u8]| {
    let xml = String::from_utf8_lossy(data);
    if let Ok(alert) = cap::parse(&xml) {
        let catalog = AreaCatalog::default_catalog();
        for info in &alert.info {
            let _ = footprint::resolve(&info.areas, catalog, untrusted::area_index());
        }
    }
});
