//! Dead-letter reason codes: the closed vocabulary an operator filters on when
//! inspecting `sumud.deadletter.v1`, and the payload of a dead-letter event.

use serde::{Deserialize, Serialize};

/// Why a message was set aside. Codes are stable strings: dashboards, alert
/// rules and the replay command match on them, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Larger than the configured message size limit.
    TooLarge,
    /// Not parseable as JSON (or empty).
    NotJson,
    /// JSON, but not a CloudEvents 1.0 structured-mode event.
    NotCloudevent,
    /// A CloudEvents `specversion` other than 1.0.
    UnsupportedSpecversion,
    /// An event type this consumer does not handle.
    UnknownEventType,
    /// `data` does not match the JSON Schema of its event type.
    SchemaInvalid,
    /// The event time is implausibly far in the future or past.
    TimestampOutOfRange,
    /// An area code that is not in the area hierarchy.
    UnknownArea,
    /// A reference to a crisis this system does not know.
    UnknownCrisis,
    /// A reference to a household this system does not know.
    UnknownHousehold,
    /// A status report for an instruction (or attempt) never issued.
    UnknownInstruction,
    /// An acknowledgement of a referral never made.
    UnknownReferral,
    /// A status report from a provider other than the one holding the
    /// instruction, or a referral's acknowledgement signed by another
    /// agency than the one the referral names.
    WrongProvider,
    /// A status report from a provider that is not registered.
    UnknownProvider,
    /// The Kafka key is not the id the event is about (a status report's
    /// key must be its `reference_id`, so that every report on one payment
    /// shares a partition and its order).
    KeyMismatch,
    /// An older or equal version than what is already stored.
    StaleVersion,
    /// The message is a replay of one already processed.
    Replayed,
    /// A signed command without a signature.
    Unsigned,
    /// A signature that does not verify.
    BadSignature,
    /// A signature by a key that is not registered.
    UnknownKey,
    /// A signature by a revoked key.
    RevokedKey,
    /// The signer lacks the role the command needs.
    WrongRole,
    /// A signed command issued too long ago.
    Expired,
    /// A command that is not valid in the current state.
    InvalidTransition,
    /// A command whose content is invalid (dates, playbook, amounts).
    InvalidCommand,
    /// An approval that breaks the four-eyes rule (own proposal, twice).
    FourEyesViolation,
    /// An approval of a proposal other than the one pending (it was
    /// replaced, superseded or approved already): the signer never saw
    /// what is pending now.
    StaleApproval,
    /// An alert from a sender that is not on the trusted-sender list, or
    /// an update or cancel from a sender other than the original alert's.
    UntrustedSender,
    /// Malformed or unusable CAP alert content.
    CapInvalid,
    /// The handler failed permanently on this message alone.
    HandlerFailed,
}

impl Reason {
    /// The stable wire code, e.g. `schema_invalid`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::NotJson => "not_json",
            Reason::NotCloudevent => "not_cloudevent",
            Reason::UnsupportedSpecversion => "unsupported_specversion",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::SchemaInvalid => "schema_invalid",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::UnknownArea => "unknown_area",
            Reason::UnknownCrisis => "unknown_crisis",
            Reason::UnknownHousehold => "unknown_household",
            Reason::UnknownInstruction => "unknown_instruction",
            Reason::UnknownReferral => "unknown_referral",
            Reason::WrongProvider => "wrong_provider",
            Reason::UnknownProvider => "unknown_provider",
            Reason::KeyMismatch => "key_mismatch",
            Reason::StaleVersion => "stale_version",
            Reason::Replayed => "replayed",
            Reason::Unsigned => "unsigned",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::RevokedKey => "revoked_key",
            Reason::WrongRole => "wrong_role",
            Reason::Expired => "expired",
            Reason::InvalidTransition => "invalid_transition",
            Reason::InvalidCommand => "invalid_command",
            Reason::FourEyesViolation => "four_eyes_violation",
            Reason::StaleApproval => "stale_approval",
            Reason::UntrustedSender => "untrusted_sender",
            Reason::CapInvalid => "cap_invalid",
            Reason::HandlerFailed => "handler_failed",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The `data` of a `sumud.deadletter.recorded` event: enough to find, explain
/// and replay the original message without reading service logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Machine-readable reason code.
    pub reason: Reason,
    /// Human-readable detail (never personal data).
    pub detail: String,
    /// The service that rejected the message.
    pub service: String,
    /// Where the original came from.
    pub source_topic: String,
    /// Partition of the original.
    pub source_partition: i32,
    /// Offset of the original.
    pub source_offset: i64,
    /// The original Kafka key, if it was valid UTF-8 and no longer than
    /// [`MAX_FIELD_BYTES`] (a replay re-sends it as it was, never cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_key: Option<String>,
    /// CloudEvent id of the original, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_id: Option<String>,
    /// CloudEvent type of the original, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
    /// The original bytes, base64 (standard alphabet), possibly truncated.
    pub original_base64: String,
    /// Size of the original in bytes.
    pub original_size: u64,
    /// Whether `original_base64` holds only a prefix of the original.
    pub original_truncated: bool,
    /// Whether personal identifiers were taken out of the original before it
    /// was kept (see [`withhold_personal`]); a replay then carries none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub personal_redacted: bool,
}

/// Longest text a dead letter carries in one field, in bytes. A rejected
/// message may be as large as the decode limit; echoing one of its
/// attributes whole (a huge `specversion`, key or id) could make the dead
/// letter larger than the producer may send, and publishing it would then be
/// retried for ever while the partition waits.
pub const MAX_FIELD_BYTES: usize = 512;

/// `text` cut to at most `max` bytes on a character boundary, a `…` marking
/// the cut: for anything a dead letter or a log line echoes from a message.
pub fn cut_short(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The field of a registry record that holds personal identifiers (name,
/// national id, phone). Only the registry's own table may keep it.
pub const PERSONAL: &str = "personal";

/// Whether a path into `data` (its segments split by `sep`: `/` for a JSON
/// pointer, `.` for serde's paths) lies under [`PERSONAL`], where a value
/// must never be quoted.
pub fn under_personal(path: &str, sep: char) -> bool {
    let path = path.strip_prefix(sep).unwrap_or(path);
    path.split(sep).next() == Some(PERSONAL)
}

/// What of a rejected message may be kept on the dead-letter topic, which
/// operators read and replay from and which is retained like any topic:
/// never personal identifiers. A CloudEvent whose `data` has `personal`
/// keeps everything else; bytes that mention it but cannot be parsed (a
/// truncated registry record, say, or any with a `\u` escape that might
/// spell it) are not kept at all. Returns the bytes
/// to keep and whether anything was withheld.
pub fn withhold_personal(original: &[u8]) -> (std::borrow::Cow<'_, [u8]>, bool) {
    let mentions = |needle: &[u8]| original.windows(needle.len()).any(|w| w == needle);
    // JSON may spell the key with escapes (`"person\u0061l"`), which the
    // parser reads as `personal` but a byte search cannot see: a message
    // with any `\u` escape is parsed too (an invariant of the `envelope`
    // fuzz target).
    if !mentions(PERSONAL.as_bytes()) && !mentions(b"\\u") {
        return (std::borrow::Cow::Borrowed(original), false);
    }
    match serde_json::from_slice::<serde_json::Value>(original) {
        Ok(mut v) => {
            let removed = v
                .get_mut("data")
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|d| d.remove(PERSONAL))
                .is_some();
            if !removed {
                // "personal" appeared elsewhere (a title, a note): nothing
                // to take out.
                return (std::borrow::Cow::Borrowed(original), false);
            }
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            (std::borrow::Cow::Owned(bytes), true)
        }
        Err(_) => (std::borrow::Cow::Owned(Vec::new()), true),
    }
}

#[cfg(test)]
mod personal_tests {
    use super::{cut_short, withhold_personal};

    #[test]
    fn only_paths_that_start_at_personal_are_personal() {
        use super::under_personal;
        assert!(under_personal("/personal", '/') && under_personal("/personal/name", '/'));
        assert!(under_personal("personal", '.') && under_personal("personal.name", '.'));
        assert!(!under_personal("/personality", '/') && !under_personal("/payment/personal", '/'));
        assert!(!under_personal(".", '.') && !under_personal("version", '.'));
    }

    #[test]
    fn a_registry_record_is_kept_without_its_personal_identifiers() {
        let original = br#"{"specversion":"1.0","id":"e1","data":{"household_id":"HH-1","personal":{"name":"Rania"}}}"#;
        let (kept, withheld) = withhold_personal(original);
        assert!(withheld);
        let v: serde_json::Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(v["data"]["household_id"], "HH-1");
        assert!(v["data"].get("personal").is_none());
        assert!(!String::from_utf8_lossy(&kept).contains("Rania"));
    }

    #[test]
    fn unparseable_bytes_that_mention_personal_are_not_kept() {
        let (kept, withheld) = withhold_personal(br#"{"data":{"personal":{"name":"Ra"#);
        assert!(withheld);
        assert!(kept.is_empty());
    }

    #[test]
    fn a_personal_key_spelt_with_json_escapes_is_withheld_too() {
        let original = br#"{"data":{"household_id":"HH-1","person\u0061l":{"name":"Rania"}}}"#;
        let (kept, withheld) = withhold_personal(original);
        assert!(withheld);
        assert!(!String::from_utf8_lossy(&kept).contains("Rania"));
        let (kept, withheld) = withhold_personal(br#"{"data":{"\u0070ersonal":{"name":"Ra"#);
        assert!(withheld);
        assert!(kept.is_empty());
    }

    #[test]
    fn other_messages_are_kept_as_they_are() {
        let original = br#"{"data":{"title":"personal hygiene kits"}}"#;
        let (kept, withheld) = withhold_personal(original);
        assert!(!withheld);
        assert_eq!(&kept[..], &original[..]);
        let (kept, withheld) = withhold_personal(b"not json");
        assert!(!withheld);
        assert_eq!(&kept[..], b"not json");
    }

    #[test]
    fn text_is_cut_on_a_character_boundary_and_the_cut_is_marked() {
        assert_eq!(cut_short("short".into(), 10), "short");
        assert_eq!(cut_short("abcdef".into(), 3), "abc…");
        // "é" is two bytes: a cut at 3 would split the second one.
        assert_eq!(cut_short("ééé".into(), 3), "é…");
    }
}
