//! The fuzz targets' seed corpus, replayed on stable Rust.
//!
//! `fuzz/` needs nightly and libFuzzer; CI has neither. These tests drive the
//! same entry points as the two fuzz targets (`decode_untrusted` for
//! `alert_decode`, `cap::parse` + `footprint::resolve` for `cap_xml`) with
//! every file in `fuzz/seeds/`, whose name says what it must give
//! (`ok-…` or a dead-letter reason code such as `cap_invalid-…`), and then
//! with a fixed-seed mutation loop over the same files that must never
//! panic nor hang.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sumud_alerts::untrusted::{self, decode_untrusted, DecodedInput};
use sumud_alerts::{cap, footprint};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::events::alert::{ALERT_CAP, CAP_XML};

/// The seed files of one fuzz target, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// What the `alert_decode` target sees: `ok` or the reason code.
fn alert_decode(bytes: &[u8]) -> &'static str {
    match decode_untrusted(bytes) {
        Ok(_) => "ok",
        Err(r) => r.reason.code(),
    }
}

/// What the `cap_xml` target sees: `ok` or the reason code.
fn cap_xml(bytes: &[u8]) -> &'static str {
    let parsed = cap::parse(&String::from_utf8_lossy(bytes)).and_then(|alert| {
        let catalog = AreaCatalog::default_catalog();
        alert.info.iter().try_for_each(|i| {
            footprint::resolve(&i.areas, catalog, untrusted::area_index()).map(drop)
        })
    });
    match parsed {
        Ok(()) => "ok",
        Err(r) => r.reason.code(),
    }
}

/// Runs every seed of `target` through `run` and checks the outcome against
/// the prefix of its file name.
fn replay(target: &str, run: fn(&[u8]) -> &'static str) {
    let seeds = seeds(target);
    let mut wrong = Vec::new();
    for (name, bytes) in &seeds {
        let expected = name.split('-').next().unwrap();
        match catch_unwind(|| run(bytes)) {
            Ok(got) if got == expected => {}
            Ok(got) => wrong.push(format!("{target}/{name}: expected {expected}, got {got}")),
            Err(_) => wrong.push(format!("{target}/{name}: panicked")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let oks = seeds.iter().filter(|(n, _)| n.starts_with("ok-")).count();
    assert!(
        oks >= 3 && seeds.len() - oks >= 3,
        "{target}: too few seeds ({oks} valid of {})",
        seeds.len()
    );
}

#[test]
fn alert_decode_seeds_give_the_outcome_their_name_says() {
    replay("alert_decode", alert_decode);
}

#[test]
fn cap_xml_seeds_give_the_outcome_their_name_says() {
    replay("cap_xml", cap_xml);
}

#[test]
fn valid_seeds_decode_to_the_expected_kind_and_footprint() {
    let seeds = seeds("alert_decode");
    let get = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| n == name).unwrap();
        decode_untrusted(bytes).unwrap()
    };
    let DecodedInput::Alert { footprints, .. } = get("ok-cap-xml-jordan-flood-alert.json") else {
        panic!("not an alert");
    };
    assert!(
        footprints.iter().flatten().any(|c| c == "JO-AM-01"),
        "{footprints:?}"
    );
    let DecodedInput::Alert { footprints, .. } = get("ok-cap-json-flood.json") else {
        panic!("not an alert");
    };
    assert!(footprints[0].contains("JO-MN"), "{footprints:?}");
    let DecodedInput::Alert { footprints, .. } = get("ok-cap-xml-nws-blizzard-cap11.json") else {
        panic!("not an alert");
    };
    assert!(footprints.iter().all(|f| f.is_empty()), "{footprints:?}");
    let DecodedInput::Reading { reading, .. } = get("ok-reading-food-price.json") else {
        panic!("not a reading");
    };
    assert_eq!(reading.area, "JO-MN");
}

#[test]
fn an_oversized_message_is_refused_before_parsing() {
    let bytes = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        decode_untrusted(&bytes).unwrap_err().reason,
        Reason::TooLarge
    );
}

/// Fragments that steer mutations towards the interesting corners of CAP,
/// JSON and the geometry.
const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "null",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "-0",
    "90.0000001",
    "-180",
    "180",
    "0,0",
    "0,0 0,0",
    "1e-320",
    "99999999999",
    "<area>",
    "</area>",
    "<polygon>",
    "</polygon>",
    "<circle>",
    "</circle>",
    "<geocode>",
    "</geocode>",
    "<valueName>ISO3166-2</valueName>",
    "<value>JO</value>",
    "<info>",
    "</info>",
    "urn:oasis:names:tc:emergency:cap:1.1",
    "urn:oasis:names:tc:emergency:cap:1.0",
    "2026-02-30T25:61:61+99:99",
    "+262143-01-01T00:00:00Z",
    "application/cap+xml",
    "application/json",
    "\"data\":",
    "\"time\":",
    "org.sumud.alert.cap",
    "org.sumud.indicator.reading",
    "ص",
    "\u{feff}",
    "\u{fffd}",
];

/// One to four random edits: bit flips, byte replacements, deletions,
/// duplications, token insertions, truncation.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..7) {
            0 if len > 0 => b[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => b[at] = rng.random(),
            2 if len > 0 => {
                let n = rng.random_range(1..=(len - at).min(64));
                b.drain(at..at + n);
            }
            3 if len > 0 => {
                let n = rng.random_range(1..=(len - at).min(64));
                let chunk = b[at..at + n].to_vec();
                let to = rng.random_range(0..=len);
                b.splice(to..to, chunk);
            }
            4 | 5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            _ => b.truncate(at),
        }
    }
    b
}

/// A CAP-XML event carrying `xml` (lossily), timed inside the window, so
/// that mutations of a document reach the CAP parser and the footprint.
fn wrap(xml: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": "mutant", "source": "urn:sumud:fuzz", "type": ALERT_CAP,
        "time": (Utc::now() - Duration::hours(1)).to_rfc3339(),
        "datacontenttype": CAP_XML, "data": String::from_utf8_lossy(xml),
    }))
    .unwrap()
}

/// Mutants per run: 20,000 (under 5 s in a debug build on two cores), or
/// `SUMUD_MUTANTS` for a longer local soak with the same fixed seed.
fn iterations() -> usize {
    std::env::var("SUMUD_MUTANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

/// How long one input may take before the loop counts it as a hang.
const STALL: StdDuration = StdDuration::from_secs(10);

#[test]
fn mutated_seeds_never_panic_nor_hang() {
    let iterations = iterations();
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let current = Arc::new(Mutex::new((String::new(), Vec::new())));
    // The mutants run on a worker so that this thread can notice one that
    // never returns (as `oasiscap` did on mixed content) and fail with it.
    let worker = {
        let (done, current) = (done.clone(), current.clone());
        thread::spawn(move || {
            let events = seeds("alert_decode");
            let documents = seeds("cap_xml");
            let mut rng = StdRng::seed_from_u64(0x005A_1ED7);
            let mut outcomes = BTreeMap::<&str, usize>::new();
            for i in 0..iterations {
                // Half raw envelopes, half CAP documents wrapped in a valid
                // envelope: edits to an envelope rarely get past the JSON parser.
                let (name, input) = if rng.random_bool(0.5) {
                    let (name, seed) = &events[rng.random_range(0..events.len())];
                    (name, mutate(&mut rng, seed))
                } else {
                    let (name, seed) = &documents[rng.random_range(0..documents.len())];
                    (name, wrap(&mutate(&mut rng, seed)))
                };
                *current.lock().unwrap() =
                    (format!("iteration {i}, mutant of {name}"), input.clone());
                match catch_unwind(AssertUnwindSafe(|| alert_decode(&input))) {
                    Ok(code) => *outcomes.entry(code).or_default() += 1,
                    Err(_) => panic!(
                        "iteration {i}, mutant of {name} panicked; input:\n{}",
                        String::from_utf8_lossy(&input)
                    ),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            outcomes
        })
    };
    let (mut seen, mut since) = (0, Instant::now());
    while !worker.is_finished() {
        thread::sleep(StdDuration::from_millis(20));
        let now_done = done.load(Ordering::Relaxed);
        if now_done != seen {
            (seen, since) = (now_done, Instant::now());
        } else if since.elapsed() > STALL {
            let (what, input) = current.lock().unwrap().clone();
            panic!(
                "{what} has not returned after {STALL:?}; input:\n{}",
                String::from_utf8_lossy(&input)
            );
        }
    }
    let outcomes = worker.join().unwrap_or_else(|p| resume_unwind(p));
    // The loop must reach past the envelope, or it tests little.
    for deep in ["ok", "cap_invalid"] {
        assert!(
            outcomes.get(deep).copied().unwrap_or(0) > 50,
            "{outcomes:?}"
        );
    }
    eprintln!(
        "{iterations} mutants in {:.2?}: {outcomes:?}",
        started.elapsed()
    );
}
