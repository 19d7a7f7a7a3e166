//! The messaging spans of the Kafka plumbing, after the OpenTelemetry
//! semantic conventions for messaging and Kafka, version 1.27.0:
//!
//! - `process {topic}` (kind CONSUMER, `messaging.operation.type=process`)
//!   around each batch the consumer loop hands to a handler. The
//!   conventions let one "Process" span account for a batch and ask it to
//!   link to every message's creation context; we do, and also make the
//!   first message's context its parent (a MAY for single messages that we
//!   extend to batches) so that the trace continues instead of ending at
//!   each hop. The other messages of the batch stay reachable by link.
//! - `send {topic}` (kind PRODUCER, `messaging.operation.name=send`,
//!   `messaging.operation.type=publish`) around a publication; its context
//!   is what the `traceparent` header carries (no "Create" spans, so the
//!   "Publish" span's context is the creation context). Outbox relays make
//!   one per batch and stored context, child of the context stored with the
//!   rows, with `messaging.batch.message_count`.
//!
//! The consumer loop hands a handler one topic at a time (a polled batch
//! that mixes topics is split, per-partition order kept), so every
//! `process` span names its hop: a span whose first message came from an
//! unrelated topic (eligibility's registry updates beside a crisis event)
//! would otherwise take that message's trace as parent and drop the hop
//! from the crisis's trace.
//!
//! Attributes: `messaging.system=kafka`, `messaging.destination.name`,
//! `messaging.consumer.group.name`, `messaging.destination.partition.id`
//! and `messaging.kafka.offset` (when one partition/message), and
//! `messaging.batch.message_count` (batches). `messaging.kafka.message.key`
//! is never recorded: keys are household ids, beneficiary references and
//! crisis ids, and the first two are personal data.

use std::collections::BTreeSet;

use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry;

/// Most links one span carries (the SDK's default limit).
const LINKS_MAX: usize = 128;

/// What the process span needs to know of one message.
pub struct Consumed<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The message's creation context, if it carried one.
    pub traceparent: Option<&'a str>,
}

/// The span a batch is processed in: parent = the first creation context,
/// links = every distinct creation context (up to 128).
pub fn process<'a>(group: &str, batch: impl IntoIterator<Item = Consumed<'a>>) -> Span {
    let batch: Vec<Consumed<'a>> = batch.into_iter().collect();
    let topics: BTreeSet<&str> = batch.iter().map(|m| m.topic).collect();
    let partitions: BTreeSet<(&str, i32)> = batch.iter().map(|m| (m.topic, m.partition)).collect();
    let topic = (topics.len() == 1).then(|| *topics.iter().next().expect("one topic"));
    let name = match topic {
        Some(t) => format!("process {t}"),
        None => "process".to_owned(),
    };
    let span = tracing::info_span!(
        "process",
        otel.name = %name,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.consumer.group.name = group,
        messaging.destination.name = Empty,
        messaging.destination.partition.id = Empty,
        messaging.kafka.offset = Empty,
        messaging.batch.message_count = Empty,
    );
    if let Some(t) = topic {
        span.record("messaging.destination.name", t);
    }
    if partitions.len() == 1 {
        let (_, p) = partitions.iter().next().expect("one partition");
        span.record("messaging.destination.partition.id", p.to_string());
    }
    if batch.len() == 1 {
        span.record("messaging.kafka.offset", batch[0].offset);
    } else {
        span.record("messaging.batch.message_count", batch.len() as i64);
    }
    if telemetry::exporting() {
        let contexts: Vec<_> = batch
            .iter()
            .filter_map(|m| m.traceparent.and_then(telemetry::parse_traceparent))
            .collect();
        if let Some(first) = contexts.first() {
            telemetry::set_remote_parent(&span, &telemetry::traceparent_of(first));
        }
        let mut seen = std::collections::HashSet::new();
        for cx in contexts {
            if seen.len() >= LINKS_MAX {
                break;
            }
            if seen.insert((cx.trace_id(), cx.span_id())) {
                span.add_link(cx);
            }
        }
    }
    span
}

/// A `send {topic}` span for `count` messages, child of `parent` (a stored
/// creation context) or, without one, of the current span. Disabled (and
/// free) when spans are not exported.
pub fn send(topic: &str, count: usize, parent: Option<&str>) -> Span {
    if !telemetry::exporting() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "send",
        otel.name = %format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.name = "send",
        messaging.operation.type = "publish",
        messaging.destination.name = topic,
        messaging.destination.partition.id = Empty,
        messaging.batch.message_count = Empty,
    );
    if count != 1 {
        span.record("messaging.batch.message_count", count as i64);
    }
    if let Some(p) = parent {
        telemetry::set_remote_parent(&span, p);
    }
    span
}

/// The `traceparent` a message published under `span` carries: the span's
/// own when spans are exported, otherwise the stored one unchanged.
pub fn header(span: &Span, stored: Option<&str>) -> Option<String> {
    telemetry::traceparent_of_span(span).or_else(|| stored.map(str::to_owned))
}
