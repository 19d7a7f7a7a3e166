//! The seeds of the `envelope`, `event_data`, `registry_csv` and `jws` fuzz
//! targets, replayed on stable Rust, then a fixed-seed mutation loop over
//! them.
//!
//! `fuzz/` needs nightly and libFuzzer; CI has neither. This test includes
//! `fuzz/src/lib.rs`, the very functions the four targets call, and runs
//! them on every file of `fuzz/seeds/<target>/`, whose name says what it
//! must give (`ok-…`, a dead-letter reason code such as `schema_invalid-…`,
//! or for the CSV import `invalid-…` / `empty-…`), and then on mutants of
//! those files that must never panic (an invariant of the harness broken)
//! nor hang. Crashes libFuzzer finds are fixed and their inputs kept as
//! seeds here. (`alert_decode` and `cap_xml` are replayed beside the alerts
//! service, in `services/alerts/tests/untrusted_inputs.rs`.)

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One fuzz target: its name (the seed folder) and its entry point.
type Target = (&'static str, fn(&[u8]) -> &'static str);

const TARGETS: [Target; 4] = [
    ("envelope", harness::envelope),
    ("event_data", harness::event_data),
    ("registry_csv", harness::registry_csv),
    ("jws", harness::jws),
];

/// The seed files of one fuzz target, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
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

/// Runs every seed of `target` through `run` and checks the outcome against
/// the prefix of its file name.
fn replay((target, run): Target) {
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
fn envelope_seeds_give_the_outcome_their_name_says() {
    replay(TARGETS[0]);
}

#[test]
fn event_data_seeds_give_the_outcome_their_name_says() {
    replay(TARGETS[1]);
}

#[test]
fn registry_csv_seeds_give_the_outcome_their_name_says() {
    replay(TARGETS[2]);
}

#[test]
fn jws_seeds_give_the_outcome_their_name_says() {
    replay(TARGETS[3]);
}

#[test]
fn the_fixed_key_signs_what_the_control_service_verifies() {
    let jws =
        harness::sign_with_fuzz_key(br#"{"jti":"c","iat":1,"cmd":"crisis.close","crisis_id":"X"}"#);
    assert_eq!(sumud_control::signing::key_id(&jws).unwrap(), "op-fuzz");
    let claims = sumud_control::signing::verify(&jws, &harness::FUZZ_KEY.1).unwrap();
    assert_eq!(claims.crisis_id, "X");
    assert_eq!(harness::event_kind(b'j'), harness::CLAIMS);
    assert!(harness::fixed_now() > chrono::DateTime::UNIX_EPOCH);
}

/// Fragments that steer mutations towards the corners of JSON, CloudEvents,
/// the schemas, CSV and compact JWS.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\u0070",
    "person\\u0061l",
    "\"personal\":{\"n\":\"x\"}",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "null",
    "true",
    "1.0",
    "-1",
    "0",
    "1e400",
    "-0",
    "2147483648",
    "4294967296",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "\"1.0\"",
    "\"0.3\"",
    "2026-02-30T25:61:61Z",
    "+262143-01-01",
    "2026-11-20T08:15:00+14:00",
    "\"2026-11-31\"",
    "application/cap+xml",
    "JO-MN",
    "JO-AM-01",
    "\n",
    "\r\n",
    ";",
    "\"\"",
    ",,",
    ".",
    "..",
    "eyJ",
    "=",
    "+",
    "/",
    "_",
    "-",
    "ص",
    "\u{feff}",
    "\u{fffd}",
];

/// JSON values put in place of a seed's own, at the edges of what the
/// schemas and the Rust types hold.
const VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1.0",
    "2.5",
    "1e308",
    "-0.0",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "\"\"",
    "\" \"",
    "\"ص\"",
    "\"\\u0000\"",
    "\"JO-MN\"",
    "\"JO-MN-01-004\"",
    "\"2026-11-20\"",
    "\"2026-02-30\"",
    "\"2026-11-20T08:15:00Z\"",
    "\"9999-12-31T23:59:60+14:00\"",
    "\"crisis.declare\"",
    "\"flood-standard\"",
    "\"e_wallet\"",
    "\"rejected\"",
    "\"application/cap+xml\"",
    "[]",
    "{}",
    "[\"JO-MN\"]",
    "{\"minor\":1,\"currency\":\"JOD\"}",
];

/// Edits the JSON tree of a seed (after its selector byte, if any): a value
/// replaced by one of [`VALUES`], or a member removed. Byte edits alone
/// rarely get past the JSON parser.
fn mutate_json(rng: &mut StdRng, input: &[u8]) -> Option<Vec<u8>> {
    let skip = usize::from(
        input
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'!'),
    );
    let mut tree: serde_json::Value = serde_json::from_slice(&input[skip..]).ok()?;
    for _ in 0..rng.random_range(1..=3) {
        let mut node = &mut tree;
        // Walk down a random path, stopping at random.
        loop {
            let len = match node {
                serde_json::Value::Object(m) => m.len(),
                serde_json::Value::Array(a) => a.len(),
                _ => 0,
            };
            if len == 0 || rng.random_bool(0.25) {
                break;
            }
            let i = rng.random_range(0..len);
            if rng.random_bool(0.15) {
                match node {
                    serde_json::Value::Object(m) => {
                        let key = m.keys().nth(i).cloned().unwrap();
                        m.remove(&key);
                    }
                    serde_json::Value::Array(a) => drop(a.remove(i)),
                    _ => unreachable!(),
                }
                break;
            }
            node = match node {
                serde_json::Value::Object(m) => m.values_mut().nth(i).unwrap(),
                serde_json::Value::Array(a) => &mut a[i],
                _ => unreachable!(),
            };
        }
        *node = serde_json::from_str(VALUES[rng.random_range(0..VALUES.len())]).unwrap();
    }
    let mut out = input[..skip].to_vec();
    out.extend(serde_json::to_vec(&tree).unwrap());
    Some(out)
}

/// One to four random edits: bit flips, byte replacements, deletions,
/// duplications, token insertions, truncation; for JSON seeds, half the
/// time edits of the tree instead.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    if rng.random_bool(0.5) {
        if let Some(edited) = mutate_json(rng, input) {
            return edited;
        }
    }
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
    // Most mutants keep the seed's first byte: it picks the event type of
    // `event_data` and the signing mode of `jws`.
    if let (Some(first), Some(m)) = (input.first(), b.first_mut()) {
        if rng.random_bool(0.8) {
            *m = *first;
        }
    }
    b
}

/// Mutants per target: 2,500 (under a second each in a debug build; a
/// fifth of that for `jws`, whose Ed25519 arithmetic is slow unoptimised),
/// or `SUMUD_MUTANTS` for a longer local soak with the same fixed seed.
fn iterations(target: &str) -> usize {
    let n = std::env::var("SUMUD_MUTANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_500);
    if target == "jws" {
        n / 5
    } else {
        n
    }
}

/// How long one input may take before the loop counts it as a hang.
const STALL: Duration = Duration::from_secs(10);

/// Runs `iterations()` mutants of `target`'s seeds on a worker thread, so
/// that this thread can notice one that never returns and fail with it.
/// `deep` is an outcome only reached past the parsers.
fn mutants_never_panic_nor_hang((target, run): Target, rng_seed: u64, deep: &str) {
    let started = Instant::now();
    let (progress, reports) = mpsc::channel::<Vec<u8>>();
    let worker = thread::spawn(move || {
        let seeds = seeds(target);
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
        for i in 0..iterations(target) {
            let (name, seed) = &seeds[rng.random_range(0..seeds.len())];
            let input = mutate(&mut rng, seed);
            progress.send(input.clone()).ok();
            match catch_unwind(AssertUnwindSafe(|| run(&input))) {
                Ok(code) => *outcomes.entry(code).or_default() += 1,
                Err(_) => panic!(
                    "{target}: iteration {i}, a mutant of {name}, panicked; input:\n{}",
                    String::from_utf8_lossy(&input)
                ),
            }
        }
        outcomes
    });
    let mut current = Vec::new();
    loop {
        match reports.recv_timeout(STALL) {
            Ok(input) => current = input,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{target}: a mutant has not returned after {STALL:?}; input:\n{}",
                String::from_utf8_lossy(&current)
            ),
        }
    }
    let outcomes = worker
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    // The loop must get past the parsers, or it tests little.
    assert!(
        outcomes.get(deep).copied().unwrap_or(0) > 25,
        "{target}: {outcomes:?}"
    );
    eprintln!(
        "{target}: {} mutants in {:.2?}: {outcomes:?}",
        iterations(target),
        started.elapsed()
    );
}

#[test]
fn envelope_mutants_never_panic_nor_hang() {
    mutants_never_panic_nor_hang(TARGETS[0], 0x5E_0001, "ok");
}

#[test]
fn event_data_mutants_never_panic_nor_hang() {
    mutants_never_panic_nor_hang(TARGETS[1], 0x5E_0002, "ok");
}

#[test]
fn registry_csv_mutants_never_panic_nor_hang() {
    mutants_never_panic_nor_hang(TARGETS[2], 0x5E_0003, "ok");
}

/// `invalid_command`: claims decoded behind a valid signature (mutants of
/// the `!` seeds), which is as deep as a forged JWS can go.
#[test]
fn jws_mutants_never_panic_nor_hang() {
    mutants_never_panic_nor_hang(TARGETS[3], 0x5E_0004, "invalid_command");
}
