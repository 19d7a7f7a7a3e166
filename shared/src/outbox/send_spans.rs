//! The `send` spans of a relayed batch, shared by every relay (and by
//! disbursement's instruction relay).

/// The `send` spans of a relayed batch: one per topic and stored trace
/// context, child of that context, counting its messages. Empty (and free)
/// when spans are not exported: the stored context then travels as is.
/// Kept until the batch's acknowledgements are in, so the spans end then.
pub struct SendSpans {
    spans: std::collections::HashMap<(String, Option<String>), (tracing::Span, Option<String>)>,
}

impl SendSpans {
    /// The spans of a batch of (topic, stored trace context) messages.
    pub fn of<'a>(messages: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> SendSpans {
        let mut spans = std::collections::HashMap::new();
        if crate::telemetry::exporting() {
            let mut counts: std::collections::HashMap<(&str, Option<&str>), usize> =
                std::collections::HashMap::new();
            for m in messages {
                *counts.entry(m).or_default() += 1;
            }
            for ((topic, stored), n) in counts {
                let span = crate::kafka::spans::send(topic, n, stored);
                let header = crate::kafka::spans::header(&span, stored);
                spans.insert(
                    (topic.to_owned(), stored.map(str::to_owned)),
                    (span, header),
                );
            }
        }
        SendSpans { spans }
    }

    /// The `traceparent` header of a message of the batch.
    pub fn header<'a>(&'a self, topic: &str, stored: Option<&'a str>) -> Option<&'a str> {
        if self.spans.is_empty() {
            return stored;
        }
        self.spans
            .get(&(topic.to_owned(), stored.map(str::to_owned)))
            .and_then(|(_, h)| h.as_deref())
            .or(stored)
    }
}
