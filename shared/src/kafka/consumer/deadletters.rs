//! Dead letters: a rejected message is published to the dead-letter topic
//! (personal fields withheld, the original cut to fit) and acknowledged
//! before its batch's offsets may be stored.

use base64::Engine;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::fetch::Raw;
use super::retry::retry_transient;
use crate::deadletter::{cut_short, DeadLetter, Reason, MAX_FIELD_BYTES};
use crate::envelope::{Envelope, Rejection};
use crate::events::deadletter::DEADLETTER_RECORDED;
use crate::kafka::producer::{EventProducer, MAX_RECORD_BYTES};

/// Publishes dead letters and waits for their acknowledgement.
pub(super) struct DeadLetterSink<'a> {
    pub(super) producer: &'a EventProducer,
    pub(super) topic: String,
    pub(super) service: String,
    pub(super) max_bytes: usize,
}

impl DeadLetterSink<'_> {
    /// Returns false only if shutdown interrupted a retry: the offset must
    /// then not be stored, so the message is seen again after restart.
    pub(super) async fn publish(
        &self,
        raw: &Raw,
        envelope: Option<&Envelope<Value>>,
        rej: &Rejection,
        shutdown: &CancellationToken,
    ) -> bool {
        let short = |s: String| cut_short(s, MAX_FIELD_BYTES);
        let original_id = envelope
            .map(|e| e.id.clone())
            .or_else(|| peek(&raw.payload, "id"))
            .map(short);
        let original_type = envelope
            .map(|e| e.event_type.clone())
            .or_else(|| peek(&raw.payload, "type"))
            .map(short);
        let (shown, personal_redacted) = crate::deadletter::withhold_personal(&raw.payload);
        // Half the decode limit, and never more than base64 (4 bytes per 3)
        // can carry in a record the producer may send, with room to spare
        // for the other fields (each at most MAX_FIELD_BYTES).
        let room = (MAX_RECORD_BYTES - 64 * 1024) / 4 * 3;
        let kept = &shown[..shown.len().min(self.max_bytes / 2).min(room)];
        let letter = DeadLetter {
            reason: rej.reason,
            detail: rej.detail.clone(),
            service: self.service.clone(),
            source_topic: raw.topic.clone(),
            source_partition: raw.partition,
            source_offset: raw.offset,
            source_key: raw
                .key
                .as_ref()
                .filter(|k| k.len() <= MAX_FIELD_BYTES)
                .and_then(|k| String::from_utf8(k.clone()).ok()),
            original_id,
            original_type,
            original_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            original_size: raw.payload.len() as u64,
            original_truncated: kept.len() < shown.len(),
            personal_redacted,
        };
        warn!(
            reason = %rej.reason, topic = %raw.topic, partition = raw.partition, offset = raw.offset,
            detail = %rej.detail, "Message dead-lettered."
        );
        let mut event = Envelope::new(
            &format!("urn:sumud:{}", self.service),
            DEADLETTER_RECORDED,
            Some(format!("{}/{}/{}", raw.topic, raw.partition, raw.offset)),
            letter,
        );
        event.traceparent = raw.traceparent.clone();
        let key = format!("{}/{}", raw.topic, raw.partition);
        let sent =
            retry_transient(|| self.producer.send(&self.topic, &key, &event), shutdown).await;
        match sent {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                error!(error = %e, "Dead letter could not be published.");
                false
            }
            None => false,
        }
    }
}

/// Whether a reject on `topic` is left to the topic's owner to dead-letter.
/// The owner rejects what it cannot decode or accept; a handler failing
/// here is this service's own story and is always told.
pub(super) fn owner_records(foreign_topics: &[String], topic: &str, reason: Reason) -> bool {
    reason != Reason::HandlerFailed && foreign_topics.iter().any(|t| t == topic)
}

/// Reads one top-level string attribute from a possibly invalid message.
fn peek(payload: &[u8], field: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get(field)?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_on_a_foreign_topic_are_left_to_its_owner_but_handler_failures_are_not() {
        let foreign = vec!["sumud.crisis.v1".to_string()];
        assert!(owner_records(&foreign, "sumud.crisis.v1", Reason::NotJson));
        assert!(owner_records(
            &foreign,
            "sumud.crisis.v1",
            Reason::SchemaInvalid
        ));
        assert!(!owner_records(
            &foreign,
            "sumud.crisis.v1",
            Reason::HandlerFailed
        ));
        assert!(!owner_records(
            &foreign,
            "sumud.entitlements.v1",
            Reason::NotJson
        ));
    }
}
