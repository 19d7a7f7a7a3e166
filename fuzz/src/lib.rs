//! What each fuzz target does with its input, in one place.
//!
//! The targets under `fuzz_targets/` are one-line wrappers over these
//! functions, and the stable replay test (`cli/tests/fuzz_seeds.rs`)
//! includes this file as a module, so the seeds and the fixed-seed mutants
//! that run in every `cargo test --workspace` drive exactly the code that
//! libFuzzer drives on nightly. Each function returns the outcome a service
//! would reach (`ok`, or the dead-letter reason code) and panics only when
//! an invariant of the decoders breaks:
//!
//! - the schema of an event type accepts `data` that its Rust type refuses,
//!   or the Rust type re-serialises `data` into something its own schema
//!   refuses (the consumer loop trusts `typed()` after validation);
//! - a message kept on the dead-letter topic still carries personal
//!   identifiers ([`withhold_personal`]);
//! - the envelope ladder lets through an event outside what it promises
//!   (type, version, time window).
//!
//! Targets: `envelope` (the consumer loop's ladder on raw message bytes),
//! `event_data` (each event type's `data`, and the command claims inside a
//! JWS), `registry_csv` (`sumud registry import`), `jws` (operator command
//! signatures). `alert_decode` and `cap_xml` drive the alerts service's own
//! entry points and are replayed by `services/alerts/tests/untrusted_inputs.rs`.

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;
use sumud::registry_cmd::upsert_event;
use sumud::registry_csv::CsvRow;
use sumud_control::lifecycle::{self, Policy, Role};
use sumud_control::signing;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::{withhold_personal, DeadLetter};
use sumud_shared::envelope::{decode, DecodeLimits, Envelope};
use sumud_shared::events::alert::{CapAlertJson, IndicatorReading, ALERT_CAP, INDICATOR_READING};
use sumud_shared::events::control::{CommandClaims, SignedCommand, CONTROL_COMMAND};
use sumud_shared::events::crisis::{
    CrisisEvent, CRISIS_ACTIVATED, CRISIS_AMENDED, CRISIS_AMENDMENT_PROPOSED, CRISIS_CLOSED,
    CRISIS_PROPOSED,
};
use sumud_shared::events::deadletter::DEADLETTER_RECORDED;
use sumud_shared::events::entitlement::{EntitlementDecision, ENTITLEMENT_DECIDED};
use sumud_shared::events::household::{
    Household, HouseholdRemoved, HOUSEHOLD_REMOVED, HOUSEHOLD_UPSERTED,
};
use sumud_shared::events::payment::{
    Instruction, StatusReport, INSTRUCTION_ISSUED, PAYMENT_STATUS,
};
use sumud_shared::playbook::PlaybookBook;
use sumud_shared::schema::SchemaRegistry;

/// The clock every target decodes against, fixed so that a crash replays
/// the same way on any day (the seeds' times lie in November 2026).
pub fn fixed_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .expect("a valid RFC 3339 time")
        .with_timezone(&Utc)
}

/// Every event type the envelope target accepts: all that have a schema.
static ACCEPTED: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut types: Vec<&'static str> = SchemaRegistry::global()
        .event_types()
        .map(|(t, _)| t)
        .collect();
    types.sort_unstable();
    types
});

/// `envelope`: raw bytes as they arrive on any input topic, through the
/// consumer loop's decoding ladder (`envelope::decode`, the function
/// `kafka::consumer` calls for every message), then the typed read the
/// handler of that event type does. Also runs what the loop keeps of a
/// rejected message for the dead-letter topic.
pub fn envelope(bytes: &[u8]) -> &'static str {
    check_withheld(bytes);
    let limits = DecodeLimits::default();
    let now = fixed_now();
    let envelope = match decode(bytes, &ACCEPTED, SchemaRegistry::global(), &limits, now) {
        Ok(e) => e,
        Err(rejection) => return rejection.reason.code(),
    };
    assert_eq!(
        envelope.specversion, "1.0",
        "the ladder let another version through"
    );
    assert!(
        ACCEPTED.contains(&envelope.event_type.as_str()),
        "the ladder let an unaccepted type through: {:?}",
        envelope.event_type
    );
    assert!(
        envelope.time <= now + limits.max_future && envelope.time >= now - limits.max_past,
        "the ladder let a time outside the window through: {}",
        envelope.time
    );
    // A serialised envelope must decode to itself: the producer wrapper
    // writes what the loop reads. (Skipped near the size limit, where
    // re-serialising, `1E3` as `1000.0`, may grow past it.)
    if bytes.len() <= limits.max_bytes / 2 {
        let again = decode(
            &envelope.to_bytes(),
            &ACCEPTED,
            SchemaRegistry::global(),
            &limits,
            now,
        )
        .unwrap_or_else(|r| panic!("a decoded envelope re-serialised is refused: {r:?}"));
        assert_eq!(
            again, envelope,
            "a decoded envelope changed in a round trip"
        );
    }
    if envelope.datacontenttype != "application/json" {
        // CAP XML: `data` is the document, read by the alerts service
        // (the `alert_decode` and `cap_xml` targets).
        return "ok";
    }
    typed_data(&envelope.event_type, &envelope.data)
}

/// What the dead-letter sink keeps of a rejected message must never hold
/// a registry record's personal identifiers, however the JSON spells them.
fn check_withheld(bytes: &[u8]) {
    let (kept, withheld) = withhold_personal(bytes);
    if !withheld {
        assert_eq!(&kept[..], bytes, "bytes changed without anything withheld");
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&kept) {
        assert!(
            v.get("data").and_then(|d| d.get("personal")).is_none(),
            "personal identifiers kept for the dead-letter topic (withheld: {withheld})"
        );
    }
}

/// The event types of `event_data`, chosen by the input's first byte.
/// Letters pick a type by name (the seeds use them); any other byte picks
/// by remainder so that no input is wasted.
pub const EVENT_KINDS: &[(u8, &str)] = &[
    (b'h', HOUSEHOLD_UPSERTED),
    (b'r', HOUSEHOLD_REMOVED),
    (b'c', CONTROL_COMMAND),
    (b'j', CLAIMS),
    (b'p', CRISIS_PROPOSED),
    (b'x', CRISIS_ACTIVATED),
    (b'm', CRISIS_AMENDED),
    (b'q', CRISIS_AMENDMENT_PROPOSED),
    (b'z', CRISIS_CLOSED),
    (b'e', ENTITLEMENT_DECIDED),
    (b'i', INSTRUCTION_ISSUED),
    (b's', PAYMENT_STATUS),
    (b'n', INDICATOR_READING),
    (b'a', ALERT_CAP),
    (b'd', DEADLETTER_RECORDED),
];

/// Not an event type: the claims set inside a command's JWS, which has no
/// JSON Schema of its own and is read by `jsonwebtoken` after the
/// signature verifies.
pub const CLAIMS: &str = "claims";

/// The event type (or [`CLAIMS`]) a selector byte stands for.
pub fn event_kind(selector: u8) -> &'static str {
    EVENT_KINDS
        .iter()
        .find(|(b, _)| *b == selector)
        .map_or_else(
            || EVENT_KINDS[usize::from(selector) % EVENT_KINDS.len()].1,
            |(_, t)| t,
        )
}

/// `event_data`: the first byte picks an event type ([`EVENT_KINDS`]), the
/// rest is that event's `data` as JSON. Schema validation, then the typed
/// read and what the consuming service does next without a database
/// (playbook resolution, command validation, signature checks).
pub fn event_data(bytes: &[u8]) -> &'static str {
    let Some((&selector, rest)) = bytes.split_first() else {
        return "empty";
    };
    let Ok(data) = serde_json::from_slice::<Value>(rest) else {
        return "not_json";
    };
    match event_kind(selector) {
        CLAIMS => claims(&data),
        event_type => typed_data(event_type, &data),
    }
}

/// Schema validation and the typed read of one event's `data`, with the
/// checks that follow it in the consuming service.
fn typed_data(event_type: &str, data: &Value) -> &'static str {
    if SchemaRegistry::global()
        .validate_data(event_type, data)
        .is_err()
    {
        return "schema_invalid";
    }
    // `None`: `typed()` refuses it, and the consumer dead-letters it.
    let refused = "schema_invalid";
    match event_type {
        HOUSEHOLD_UPSERTED => return agree::<Household>(event_type, data).map_or(refused, ok),
        HOUSEHOLD_REMOVED => {
            return agree::<HouseholdRemoved>(event_type, data).map_or(refused, ok)
        }
        CONTROL_COMMAND => {
            let Some(signed) = agree::<SignedCommand>(event_type, data) else {
                return refused;
            };
            let kid = signing::key_id(&signed.jws);
            let verified = signing::verify(&signed.jws, &FUZZ_KEY.1);
            if let Err(r) = kid.and(verified) {
                return r.reason.code();
            }
        }
        CRISIS_PROPOSED
        | CRISIS_ACTIVATED
        | CRISIS_AMENDED
        | CRISIS_AMENDMENT_PROPOSED
        | CRISIS_CLOSED => {
            let Some(event) = agree::<CrisisEvent>(event_type, data) else {
                return refused;
            };
            let book = PlaybookBook::default_book();
            for def in std::iter::once(&event.definition).chain(&event.pending) {
                if book.resolve(def).is_err() {
                    return "invalid_command";
                }
            }
        }
        ENTITLEMENT_DECIDED => {
            return agree::<EntitlementDecision>(event_type, data).map_or(refused, ok)
        }
        INSTRUCTION_ISSUED => return agree::<Instruction>(event_type, data).map_or(refused, ok),
        PAYMENT_STATUS => return agree::<StatusReport>(event_type, data).map_or(refused, ok),
        INDICATOR_READING => {
            return agree::<IndicatorReading>(event_type, data).map_or(refused, ok)
        }
        ALERT_CAP => return agree::<CapAlertJson>(event_type, data).map_or(refused, ok),
        DEADLETTER_RECORDED => return agree::<DeadLetter>(event_type, data).map_or(refused, ok),
        other => panic!("no typed read for {other}"),
    }
    "ok"
}

/// The outcome of a typed read that succeeded.
fn ok<T>(_: T) -> &'static str {
    "ok"
}

/// The typed read of schema-valid `data`, which must succeed, and whose
/// re-serialisation must pass the same schema (services publish these
/// types to each other). `None` (the consumer dead-letters it as
/// `schema_invalid`) only for the one disagreement JSON Schema cannot
/// express otherwise: `2.0` is an `integer` to the schema but not to serde.
fn agree<T: DeserializeOwned + Serialize>(event_type: &str, data: &Value) -> Option<T> {
    let typed = match T::deserialize(data) {
        Ok(t) => t,
        Err(e) => {
            let ints = integral_floats_as_integers(data);
            if ints != *data && T::deserialize(&ints).is_ok() {
                return None;
            }
            panic!("{event_type}: the schema accepts data its Rust type refuses: {e}\n{data}")
        }
    };
    let back = serde_json::to_value(&typed).expect("event types always serialise");
    if let Err(e) = SchemaRegistry::global().validate_data(event_type, &back) {
        panic!("{event_type}: re-serialised data fails its own schema: {e}\n{back}");
    }
    Some(typed)
}

/// `data` with every float that has no fractional part (and fits an `i64`)
/// written as an integer.
fn integral_floats_as_integers(data: &Value) -> Value {
    match data {
        Value::Number(n) => match n.as_f64() {
            Some(f)
                if n.is_f64()
                    && f.fract() == 0.0
                    && f >= i64::MIN as f64
                    && f < i64::MAX as f64 =>
            {
                Value::from(f as i64)
            }
            _ => data.clone(),
        },
        Value::Array(items) => items.iter().map(integral_floats_as_integers).collect(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), integral_floats_as_integers(v)))
                .collect(),
        ),
        _ => data.clone(),
    }
}

/// A command's claims as the control service reads them once the signature
/// verifies: the content checks, then the state machine on a new crisis.
fn claims(data: &Value) -> &'static str {
    let Ok(claims) = CommandClaims::deserialize(data) else {
        return "invalid_command";
    };
    if let Some(body) = &claims.body {
        if let Err(r) = lifecycle::validate(
            body,
            AreaCatalog::default_catalog(),
            PlaybookBook::default_book(),
        ) {
            return r.reason.code();
        }
    }
    let policy = Policy {
        threshold_minor: 1_000_000_000,
        approvals_required: 1,
    };
    match lifecycle::apply(None, &claims, "op-fuzz", &[Role::Admin], policy) {
        Ok(_) => "ok",
        Err(r) => r.reason.code(),
    }
}

/// `registry_csv`: a household file as `sumud registry import` reads it:
/// every row deserialised, converted to a household and wrapped in the
/// event the import publishes. `ok` if every row converts, `invalid` if any
/// is skipped, `empty` without rows.
pub fn registry_csv(bytes: &[u8]) -> &'static str {
    let mut reader = csv::Reader::from_reader(bytes);
    let (mut good, mut bad) = (0usize, 0usize);
    for row in reader.deserialize::<CsvRow>() {
        match row
            .map_err(|e| e.to_string())
            .and_then(CsvRow::into_household)
        {
            Ok(h) => {
                let event: Envelope<Household> = upsert_event(h);
                let _ = event.to_bytes();
                good += 1;
            }
            Err(_) => bad += 1,
        }
    }
    match (good, bad) {
        (0, 0) => "empty",
        (_, 0) => "ok",
        _ => "invalid",
    }
}

/// The fixed operator key of the `jws` target: its seed and its public
/// half (base64url `x`), as the control service finds it registered.
pub static FUZZ_KEY: LazyLock<(SigningKey, String)> = LazyLock::new(|| {
    let key = SigningKey::from_bytes(&[0x5a; 32]);
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    (key, x)
});

/// Signs `payload` (any bytes) as a compact JWS with `alg: EdDSA` and
/// `kid: op-fuzz` under the fixed key.
pub fn sign_with_fuzz_key(payload: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"op-fuzz","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = FUZZ_KEY.0.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// `jws`: a compact JWS as the control service checks it against the fixed
/// registered key: the `kid` lookup, then verification and the claims.
/// An input starting with `!` is a claims payload instead, signed here with
/// that key, so that libFuzzer reaches the claims decoding behind a valid
/// signature (which it could never forge).
pub fn jws(bytes: &[u8]) -> &'static str {
    let text = match bytes.split_first() {
        Some((b'!', payload)) => sign_with_fuzz_key(payload),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    };
    let kid = signing::key_id(&text);
    let verified = signing::verify(&text, &FUZZ_KEY.1);
    match (kid, verified) {
        (Err(r), _) | (Ok(_), Err(r)) => r.reason.code(),
        (Ok(_), Ok(_)) => "ok",
    }
}
