//! The contracts in `schemas/` and the Rust types agree: every valid example
//! passes the schema and survives a round trip through its Rust type (and the
//! re-serialised value passes the schema again); every invalid example fails.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use sumud_shared::deadletter::DeadLetter;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{CapAlertJson, IndicatorReading};
use sumud_shared::events::assistance::{AssistanceClaims, SignedAssistance, SumudAssistance};
use sumud_shared::events::control::SignedCommand;
use sumud_shared::events::crisis::CrisisEvent;
use sumud_shared::events::entitlement::EntitlementDecision;
use sumud_shared::events::household::{Household, HouseholdRemoved};
use sumud_shared::events::payment::{Instruction, StatusReport};
use sumud_shared::events::referral::{AcknowledgementClaims, Referral, SignedAcknowledgement};
use sumud_shared::events::task::{SignedTaskCommand, TaskEvent};
use sumud_shared::schema::SchemaRegistry;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples")
}

fn examples(short_type: &str, kind: &str) -> Vec<(String, Value)> {
    let dir = examples_dir().join(short_type).join(kind);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", dir.display()))
        .map(|f| {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "{} has no examples", dir.display());
    out
}

fn validate(event: &Value) -> Result<(), String> {
    let reg = SchemaRegistry::global();
    reg.validate_envelope(event)?;
    let t = event["type"].as_str().ok_or("type is not a string")?;
    reg.validate_data(t, &event["data"])
}

/// Valid examples pass, survive a typed round trip unchanged, and invalid
/// ones fail.
fn check_contract<T: DeserializeOwned + Serialize>(short_type: &str) {
    for (name, event) in examples(short_type, "valid") {
        validate(&event).unwrap_or_else(|e| panic!("{short_type}/{name} should be valid: {e}"));
        let typed: Envelope<T> = serde_json::from_value(event.clone())
            .unwrap_or_else(|e| panic!("{short_type}/{name} does not fit the Rust type: {e}"));
        let back = serde_json::to_value(&typed).unwrap();
        validate(&back)
            .unwrap_or_else(|e| panic!("{short_type}/{name} re-serialised is invalid: {e}"));
        assert!(
            contained(&event, &back),
            "{short_type}/{name} lost or changed a field in a round trip through Rust:\n{event}\n{back}"
        );
    }
    for (name, event) in examples(short_type, "invalid") {
        assert!(
            validate(&event).is_err(),
            "{short_type}/{name} should be rejected"
        );
    }
}

/// Every field of `original` is in `back` with the same value (numbers
/// compared numerically); `back` may add defaults such as empty lists.
fn contained(original: &Value, back: &Value) -> bool {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| contained(v, w))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| contained(v, w))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[test]
fn household_upserted_schema_and_type_agree() {
    check_contract::<Household>("household.upserted");
}

#[test]
fn household_removed_schema_and_type_agree() {
    check_contract::<HouseholdRemoved>("household.removed");
}

#[test]
fn deadletter_schema_and_type_agree() {
    check_contract::<DeadLetter>("deadletter.recorded");
}

#[test]
fn control_command_schema_and_type_agree() {
    check_contract::<SignedCommand>("control.command");
}

#[test]
fn crisis_event_schema_and_type_agree() {
    check_contract::<CrisisEvent>("crisis.event");
}

#[test]
fn entitlement_schema_and_type_agree() {
    check_contract::<EntitlementDecision>("entitlement.decided");
}

#[test]
fn payment_instruction_schema_and_type_agree() {
    check_contract::<Instruction>("payment.instruction");
}

#[test]
fn payment_status_schema_and_type_agree() {
    check_contract::<StatusReport>("payment.status");
}

#[test]
fn task_event_schema_and_type_agree() {
    check_contract::<TaskEvent>("task.event");
}

#[test]
fn partner_assistance_schema_and_type_agree() {
    check_contract::<SignedAssistance>("assistance.partner");
}

/// The claims a partner signs, as the schema's `$defs/claims` describes
/// them, decode as the type the judge reads (and the schema refuses a
/// record without a well-formed match key).
#[test]
fn partner_claims_schema_and_type_agree() {
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/assistance.partner.schema.json")).unwrap();
    let mut claims_schema = schema["$defs"]["claims"].clone();
    claims_schema["$schema"] = schema["$schema"].clone();
    let v = jsonschema::validator_for(&claims_schema).unwrap();
    let claims = serde_json::json!({"jti": "a1", "iat": 1796637600, "record_id": "WFP-1",
        "action": "given", "match_key": "zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino",
        "amount": {"minor": 150000, "currency": "JOD"}, "period_from": "2026-12-01",
        "period_to": "2027-02-28", "programme": "WFP food voucher"});
    assert!(v.is_valid(&claims));
    let typed: AssistanceClaims = serde_json::from_value(claims.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), claims);
    let mut bad = claims;
    bad["match_key"] = "9871234567".into();
    assert!(!v.is_valid(&bad));
}

#[test]
fn sumud_assistance_schema_and_type_agree() {
    check_contract::<SumudAssistance>("assistance.sumud");
}

#[test]
fn referral_recorded_schema_and_type_agree() {
    check_contract::<Referral>("referral.recorded");
}

#[test]
fn referral_acknowledged_schema_and_type_agree() {
    check_contract::<SignedAcknowledgement>("referral.acknowledged");
}

/// The claims a service provider signs, as the schema's `$defs/claims`
/// describes them, decode as the type the judge reads; the schema refuses
/// an acknowledgement that would put a referral back to `referred`.
#[test]
fn referral_acknowledgement_claims_schema_and_type_agree() {
    let schema: Value = serde_json::from_str(include_str!(
        "../../schemas/referral.acknowledged.schema.json"
    ))
    .unwrap();
    let mut claims_schema = schema["$defs"]["claims"].clone();
    claims_schema["$schema"] = schema["$schema"].clone();
    let v = jsonschema::validator_for(&claims_schema).unwrap();
    let claims = serde_json::json!({"jti": "ack-1", "iat": 1796637600,
        "referral_id": "FL-2026-MN/HH-000123/rehabilitation", "status": "declined",
        "note": "moved out of the governorate"});
    assert!(v.is_valid(&claims));
    let typed: AcknowledgementClaims = serde_json::from_value(claims.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), claims);
    let mut bad = claims;
    bad["status"] = "referred".into();
    assert!(!v.is_valid(&bad));
}

#[test]
fn task_command_schema_and_type_agree() {
    check_contract::<SignedTaskCommand>("task.command");
}

#[test]
fn cap_alert_json_schema_and_type_agree() {
    check_contract::<CapAlertJson>("alert.cap");
}

#[test]
fn indicator_reading_schema_and_type_agree() {
    check_contract::<IndicatorReading>("indicator.reading");
}

#[test]
fn every_schema_file_has_valid_and_invalid_examples() {
    for (_, file) in SchemaRegistry::global().event_types() {
        let stem = file.strip_suffix(".schema.json").unwrap();
        assert!(!examples(stem, "valid").is_empty());
        assert!(!examples(stem, "invalid").is_empty());
    }
}

#[test]
fn caseload_export_examples_meet_the_caseload_row_schema() {
    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/caseload.row.schema.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for (name, row) in examples("caseload.row", "valid") {
        assert!(v.is_valid(&row), "{name} should be valid");
    }
    for (name, row) in examples("caseload.row", "invalid") {
        assert!(!v.is_valid(&row), "{name} should be invalid");
    }
}

/// The AsyncAPI document cannot drift from the code: one channel per topic
/// of `Topics` (at its default name), one message per event type the
/// schema registry knows, on the channel whose topic carries it, with the
/// same data schema; every referenced schema file exists.
#[test]
fn the_asyncapi_document_names_every_topic_and_event_type_and_nothing_else() {
    use std::collections::BTreeSet;
    use sumud_shared::topics::Topics;
    let doc: Value = serde_json::from_str(include_str!("../../schemas/asyncapi.json")).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let topics = Topics::default();
    let channels = doc["channels"].as_object().unwrap();
    let addresses: BTreeSet<&str> = channels
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), channels.len(), "one channel per topic");
    assert_eq!(
        addresses,
        topics.all().into_iter().collect::<BTreeSet<_>>(),
        "the channels are exactly the topics"
    );
    let messages = doc["components"]["messages"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (id, m) in messages {
        let event_type = m["name"].as_str().unwrap();
        let parts = m["payload"]["schema"]["allOf"].as_array().unwrap();
        assert_eq!(parts[0]["$ref"], "cloudevent.schema.json", "{id}");
        assert_eq!(parts[1]["properties"]["type"]["const"], event_type, "{id}");
        let data = parts[1]["properties"]["data"]["$ref"].as_str().unwrap();
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../schemas")
                .join(data)
                .is_file(),
            "{id} references {data}, which is not in schemas/"
        );
        // On the channels whose topic carries it, and no other.
        let on: BTreeSet<&str> = channels
            .values()
            .filter(|c| c["messages"].get(id).is_some())
            .map(|c| c["address"].as_str().unwrap())
            .collect();
        let carrying: BTreeSet<&str> = topics
            .all()
            .into_iter()
            .filter(|t| topics.carries(t, event_type))
            .collect();
        assert_eq!(on, carrying, "{id} ({event_type})");
        assert!(
            m["bindings"]["kafka"]["key"]["description"].is_string(),
            "{id}"
        );
        documented.insert((event_type.to_owned(), data.to_owned()));
    }
    let registry: BTreeSet<(String, String)> = SchemaRegistry::global()
        .event_types()
        .map(|(t, f)| (t.to_owned(), f.to_owned()))
        .collect();
    assert_eq!(documented, registry, "every event type, with its schema");
    // Every operation's messages are messages of its channel.
    for (id, op) in doc["operations"].as_object().unwrap() {
        let channel = op["channel"]["$ref"].as_str().unwrap();
        let name = channel.strip_prefix("#/channels/").unwrap();
        for m in op["messages"].as_array().unwrap() {
            let r = m["$ref"].as_str().unwrap();
            assert!(
                r.starts_with(&format!("{channel}/messages/"))
                    && channels[name]["messages"]
                        .get(r.rsplit('/').next().unwrap())
                        .is_some(),
                "{id}: {r}"
            );
        }
    }
}
