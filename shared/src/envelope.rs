//! The CloudEvents 1.0 envelope (JSON structured mode) every Sumud message
//! travels in, and the decoding ladder that turns raw bytes into either a
//! trusted event or a precise dead-letter reason.

use chrono::{DateTime, Duration, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::deadletter::Reason;
use crate::events::alert::{ALERT_CAP, CAP_XML};
use crate::schema::SchemaRegistry;

/// The only CloudEvents version we speak.
pub const SPEC_VERSION: &str = "1.0";

/// A CloudEvent in structured mode. `data` is generic so the same type serves
/// typed producers and the schema-validating consumer (which sees `Value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Always "1.0".
    pub specversion: String,
    /// Unique per event from one source; together with `source` it identifies
    /// the event, which makes redelivery detectable.
    pub id: String,
    /// URI-reference of the producer, e.g. `urn:sumud:registry`.
    pub source: String,
    /// Reverse-DNS event type, e.g. `org.sumud.household.upserted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the fact happened, RFC 3339.
    pub time: DateTime<Utc>,
    /// The entity the event is about (household id, crisis id, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Media type of `data`: `application/json` or `application/cap+xml`.
    #[serde(default = "default_content_type")]
    pub datacontenttype: String,
    /// The schema `data` adheres to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// W3C trace context, duplicated from the Kafka header as the CloudEvents
    /// distributed-tracing extension so it survives header-stripping bridges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The payload.
    pub data: T,
}

fn default_content_type() -> String {
    "application/json".to_owned()
}

impl<T: Serialize> Envelope<T> {
    /// Wraps `data` in a new event with a fresh id and the current time.
    pub fn new(source: &str, event_type: &str, subject: Option<String>, data: T) -> Self {
        Envelope {
            specversion: SPEC_VERSION.to_owned(),
            id: uuid::Uuid::new_v4().to_string(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            time: Utc::now(),
            subject,
            datacontenttype: default_content_type(),
            dataschema: Some(crate::schema::schema_uri(event_type)),
            traceparent: None,
            data,
        }
    }

    /// Serializes to the bytes that go on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelope of serializable data always serializes")
    }
}

impl Envelope<Value> {
    /// Reads `data` into the event's Rust type. Only called after schema
    /// validation, so a failure here means schema and type disagree. serde
    /// quotes the offending value, so the detail names the field and, under
    /// `personal`, withholds the value (as schema violations do).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_path_to_error::deserialize(&self.data).map_err(|e| {
            let path = e.path().to_string();
            let detail = if crate::deadletter::under_personal(&path, '.') {
                format!("at {path}: does not fit the event type (value withheld: personal data)")
            } else {
                format!("at {path}: {}", e.inner())
            };
            Rejection::new(Reason::SchemaInvalid, detail)
        })
    }
}

/// A decoding failure: the reason code and a short explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Machine-readable reason.
    pub reason: Reason,
    /// Human-readable detail, no personal data.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection; the detail is cut to
    /// [`MAX_FIELD_BYTES`](crate::deadletter::MAX_FIELD_BYTES), since it may
    /// quote the message it rejects.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: crate::deadletter::cut_short(detail.into(), crate::deadletter::MAX_FIELD_BYTES),
        }
    }
}

/// Limits applied before a message is trusted.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Largest accepted message, in bytes.
    pub max_bytes: usize,
    /// How far in the future an event time may lie (clock skew allowance).
    pub max_future: Duration,
    /// How far in the past an event time may lie.
    pub max_past: Duration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bytes: 1024 * 1024,
            max_future: Duration::minutes(5),
            max_past: Duration::days(3650),
        }
    }
}

/// Decodes raw bytes into a validated envelope, or says precisely why not.
///
/// The ladder: size → JSON → CloudEvents shape → spec version → known type →
/// time window → JSON Schema of `data`. Each rung has its own reason code so
/// that an operator reading the dead-letter topic knows what to fix.
/// `accepted` lists the event types the caller handles.
pub fn decode(
    bytes: &[u8],
    accepted: &[&str],
    schemas: &SchemaRegistry,
    limits: &DecodeLimits,
    now: DateTime<Utc>,
) -> Result<Envelope<Value>, Rejection> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!(
                "{} bytes exceeds the limit of {}",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::new(Reason::NotJson, e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(Rejection::new(
            Reason::NotCloudevent,
            "top level is not a JSON object",
        ));
    };
    match map.get("specversion") {
        None => return Err(Rejection::new(Reason::NotCloudevent, "missing specversion")),
        Some(Value::String(v)) if v == SPEC_VERSION => {}
        Some(other) => {
            return Err(Rejection::new(
                Reason::UnsupportedSpecversion,
                format!("specversion {other} is not 1.0"),
            ))
        }
    }
    schemas
        .validate_envelope(&value)
        .map_err(|detail| Rejection::new(Reason::NotCloudevent, detail))?;
    let envelope: Envelope<Value> = serde_json::from_value(value)
        .map_err(|e| Rejection::new(Reason::NotCloudevent, e.to_string()))?;
    if !accepted.contains(&envelope.event_type.as_str()) {
        return Err(Rejection::new(
            Reason::UnknownEventType,
            format!("event type {:?} is not handled here", envelope.event_type),
        ));
    }
    if envelope.time > now + limits.max_future || envelope.time < now - limits.max_past {
        return Err(Rejection::new(
            Reason::TimestampOutOfRange,
            format!(
                "event time {} is outside the accepted window",
                envelope.time
            ),
        ));
    }
    // Only a CAP alert may carry its `data` as XML text, which the alerts
    // service parses itself; any other type claiming XML is still held to
    // its JSON Schema, so a content type cannot switch validation off.
    let cap_text = envelope.event_type == ALERT_CAP && envelope.datacontenttype == CAP_XML;
    if !cap_text {
        schemas
            .validate_data(&envelope.event_type, &envelope.data)
            .map_err(|detail| Rejection::new(Reason::SchemaInvalid, detail))?;
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::household::HOUSEHOLD_REMOVED;

    fn removed_event() -> Value {
        serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "urn:test", "type": HOUSEHOLD_REMOVED,
            "time": Utc::now().to_rfc3339(), "subject": "HH-1", "datacontenttype": "application/json",
            "data": {"household_id": "HH-1", "version": 2}
        })
    }

    fn run(v: &Value) -> Result<Envelope<Value>, Rejection> {
        let bytes = serde_json::to_vec(v).unwrap();
        decode(
            &bytes,
            &[HOUSEHOLD_REMOVED],
            SchemaRegistry::global(),
            &DecodeLimits::default(),
            Utc::now(),
        )
    }

    /// The rejection of `data` read as `T`.
    fn typed_error<T: DeserializeOwned + std::fmt::Debug>(data: Value) -> Rejection {
        let mut v = removed_event();
        v["data"] = data;
        let envelope: Envelope<Value> = serde_json::from_value(v).unwrap();
        envelope.typed::<T>().unwrap_err()
    }

    #[test]
    fn a_personal_value_that_does_not_fit_the_type_is_not_quoted() {
        let err = typed_error::<crate::events::household::Household>(
            serde_json::json!({"household_id": "HH-1", "personal": "Canary Qasem"}),
        );
        assert_eq!(err.reason, Reason::SchemaInvalid);
        assert!(err.detail.starts_with("at personal: "), "{}", err.detail);
        assert!(!err.detail.contains("Canary"), "{}", err.detail);
    }

    #[test]
    fn a_value_that_does_not_fit_the_type_is_named_by_its_field() {
        let err = typed_error::<crate::events::household::HouseholdRemoved>(
            serde_json::json!({"household_id": "HH-1", "version": "two"}),
        );
        assert!(
            err.detail.starts_with("at version: invalid type"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn a_content_type_does_not_switch_off_data_validation() {
        let mut v = removed_event();
        v["datacontenttype"] = CAP_XML.into();
        v["data"] = serde_json::json!({"household_id": 7});
        assert_eq!(run(&v).unwrap_err().reason, Reason::SchemaInvalid);
    }

    #[test]
    fn a_huge_attribute_is_not_echoed_whole_in_the_detail() {
        let mut v = removed_event();
        v["specversion"] = "é".repeat(100_000).into();
        let r = run(&v).unwrap_err();
        assert_eq!(r.reason, Reason::UnsupportedSpecversion);
        assert!(r.detail.len() <= crate::deadletter::MAX_FIELD_BYTES + '…'.len_utf8());
        assert!(r.detail.starts_with("specversion \"é"), "{}", r.detail);
    }

    #[test]
    fn a_valid_event_decodes() {
        let env = run(&removed_event()).unwrap();
        assert_eq!(env.subject.as_deref(), Some("HH-1"));
    }

    #[test]
    fn each_rung_of_the_ladder_has_its_own_reason() {
        let reason = |v: &Value| run(v).unwrap_err().reason;
        let bytes = b"{not json";
        let r = decode(
            bytes,
            &[],
            SchemaRegistry::global(),
            &DecodeLimits::default(),
            Utc::now(),
        );
        assert_eq!(r.unwrap_err().reason, Reason::NotJson);
        assert_eq!(reason(&serde_json::json!([1, 2])), Reason::NotCloudevent);

        let mut v = removed_event();
        v["specversion"] = "0.3".into();
        assert_eq!(reason(&v), Reason::UnsupportedSpecversion);

        let mut v = removed_event();
        v.as_object_mut().unwrap().remove("source");
        assert_eq!(reason(&v), Reason::NotCloudevent);

        let mut v = removed_event();
        v["type"] = "org.example.unknown".into();
        assert_eq!(reason(&v), Reason::UnknownEventType);

        let mut v = removed_event();
        v["time"] = (Utc::now() + Duration::days(2)).to_rfc3339().into();
        assert_eq!(reason(&v), Reason::TimestampOutOfRange);

        let mut v = removed_event();
        v["data"]["version"] = (-3).into();
        assert_eq!(reason(&v), Reason::SchemaInvalid);
    }

    #[test]
    fn oversized_messages_are_rejected_before_parsing() {
        let limits = DecodeLimits {
            max_bytes: 10,
            ..DecodeLimits::default()
        };
        let r = decode(
            &[b' '; 11],
            &[],
            SchemaRegistry::global(),
            &limits,
            Utc::now(),
        );
        assert_eq!(r.unwrap_err().reason, Reason::TooLarge);
    }
}
