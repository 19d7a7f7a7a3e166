//! Handling one batch: split by topic, each topic's part through the
//! handler (with retries) inside its `process` span, then each part's
//! rejects dead-lettered and the batch counted.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use super::deadletters::{owner_records, DeadLetterSink};
use super::fetch::{raw_of, Raw};
use super::retry::handle_with_retries;
use super::{Handler, Incoming, LoopConfig, Verdict};
use crate::envelope::{Envelope, Rejection};
use crate::metrics::Metrics;

/// Handles one batch, split by topic into `parts`: every part's handler,
/// then every part's dead letters. Gives the messages back to be freed
/// once the batch is durable (its offsets may then be stored); `None` when
/// shutdown or giving up on the consumer came first, and nothing of the
/// batch may be stored.
pub(super) async fn batch<H: Handler>(
    handler: &H,
    config: &LoopConfig,
    deadletters: &DeadLetterSink<'_>,
    parts: Vec<Part>,
    shutdown: &CancellationToken,
    abandon: &CancellationToken,
) -> Option<Vec<Vec<Incoming>>> {
    // One handler call and one `process` span per topic of the batch
    // (see `spans.rs`): a span then names its hop and continues the
    // trace of that topic's first message, instead of whichever topic
    // the poll happened to return first. Per-partition order is kept;
    // Kafka orders nothing across topics, so neither do handlers.
    // Every topic's handler first, then every topic's dead letters: a
    // shutdown during a later topic's retries leaves nothing published
    // that the redelivered batch would publish again.
    let n = parts.len();
    let mut judged = Vec::with_capacity(n);
    config.health.handling(true);
    for part in parts {
        // While the handler works the fetcher does not poll, so the
        // consumer cannot rejoin its group: a handler stuck past the
        // join bound (a send waiting on a producer that lost the
        // broker) is dropped with the consumer, as a crash would drop
        // it, and the batch comes again to the new one.
        let given_up = async {
            abandon.cancelled().await;
            if shutdown.is_cancelled() {
                // Shutdown lets the handler finish its call.
                std::future::pending::<()>().await;
            }
        };
        let j = tokio::select! {
            j = handle_part(handler, config, part, abandon) => j,
            _ = given_up => None,
        };
        match j {
            Some(j) => judged.push(j),
            None => break,
        }
    }
    config.health.handling(false);
    let mut handled = Vec::with_capacity(n);
    if judged.len() == n {
        for j in judged {
            match settle(j, config, deadletters, abandon).await {
                Some(done) => handled.push(done),
                None => break,
            }
        }
    }
    (handled.len() == n).then_some(handled)
}

/// The messages of one topic out of a polled batch, in batch order.
pub(super) struct Part {
    decoded: Vec<Incoming>,
    undecodable: Vec<(Raw, Rejection)>,
}

/// Splits a batch by topic, topics in order of first appearance. A batch of
/// one topic (the usual case) is moved through untouched.
pub(super) fn by_topic(decoded: Vec<Incoming>, undecodable: Vec<(Raw, Rejection)>) -> Vec<Part> {
    let mut order: Vec<String> = Vec::with_capacity(1);
    for t in decoded
        .iter()
        .map(|m| &m.topic)
        .chain(undecodable.iter().map(|(r, _)| &r.topic))
    {
        if !order.contains(t) {
            order.push(t.clone());
        }
    }
    if order.len() <= 1 {
        return vec![Part {
            decoded,
            undecodable,
        }];
    }
    let mut parts: Vec<Part> = order
        .iter()
        .map(|_| Part {
            decoded: Vec::new(),
            undecodable: Vec::new(),
        })
        .collect();
    let at = |t: &str| order.iter().position(|o| o == t).expect("topic listed");
    for m in decoded {
        let i = at(&m.topic);
        parts[i].decoded.push(m);
    }
    for (r, rej) in undecodable {
        let i = at(&r.topic);
        parts[i].undecodable.push((r, rej));
    }
    parts
}

/// One topic's part of a batch after its handler: the verdicts, and the
/// span its dead letters are published in.
struct Judged {
    part: Part,
    verdicts: Vec<Verdict>,
    span: tracing::Span,
}

/// Runs the handler (with retries) over one topic's part of a batch inside
/// its `process` span. `None` means shutdown came first and nothing of the
/// batch may be stored.
async fn handle_part<H: Handler>(
    handler: &H,
    config: &LoopConfig,
    part: Part,
    shutdown: &CancellationToken,
) -> Option<Judged> {
    let span = crate::kafka::spans::process(
        &config.group_id,
        part.decoded
            .iter()
            .map(|m| crate::kafka::spans::Consumed {
                topic: &m.topic,
                partition: m.partition,
                offset: m.offset,
                traceparent: m.traceparent.as_deref(),
            })
            .chain(
                part.undecodable
                    .iter()
                    .map(|(r, _)| crate::kafka::spans::Consumed {
                        topic: &r.topic,
                        partition: r.partition,
                        offset: r.offset,
                        traceparent: r.traceparent.as_deref(),
                    }),
            ),
    );
    let verdicts = handle_with_retries(handler, &part.decoded, shutdown)
        .instrument(span.clone())
        .await?;
    Some(Judged {
        part,
        verdicts,
        span,
    })
}

/// Publishes a judged part's dead letters (in its span) and counts it.
/// Gives the messages back to be freed; `None` means shutdown came first.
async fn settle(
    judged: Judged,
    config: &LoopConfig,
    deadletters: &DeadLetterSink<'_>,
    shutdown: &CancellationToken,
) -> Option<Vec<Incoming>> {
    let Judged {
        part: Part {
            decoded,
            undecodable,
        },
        verdicts,
        span,
    } = judged;
    let mut rejects: Vec<(Raw, Option<&Envelope<Value>>, Rejection)> = Vec::new();
    for (inc, verdict) in decoded.iter().zip(verdicts) {
        if let Verdict::Reject(rej) = verdict {
            rejects.push((raw_of(inc), Some(&inc.envelope), rej));
        }
    }
    for (raw, rej) in undecodable {
        rejects.push((raw, None, rej));
    }
    rejects.retain(|(raw, _, rej)| {
        let foreign = owner_records(&config.foreign_topics, &raw.topic, rej.reason);
        if foreign {
            debug!(topic = %raw.topic, offset = raw.offset, reason = %rej.reason, "Skipped a message its owner dead-letters.");
        }
        !foreign
    });
    for (raw, envelope, rej) in &rejects {
        if !deadletters
            .publish(raw, *envelope, rej, shutdown)
            .instrument(span.clone())
            .await
        {
            return None;
        }
    }
    count_batch(&config.service, &decoded, &rejects);
    drop(rejects);
    Some(decoded)
}

/// Counts a handled batch: consumed per topic (decoded messages and the
/// undecodable ones), dead letters per topic and reason.
fn count_batch(
    service: &str,
    decoded: &[Incoming],
    rejects: &[(Raw, Option<&Envelope<Value>>, Rejection)],
) {
    let metrics = Metrics::global();
    let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for m in decoded {
        *per_topic.entry(m.topic.as_str()).or_default() += 1;
    }
    for (raw, envelope, _) in rejects {
        if envelope.is_none() {
            *per_topic.entry(raw.topic.as_str()).or_default() += 1;
        }
    }
    for (topic, n) in per_topic {
        metrics.count_consumed(service, topic, n);
    }
    for (raw, _, rej) in rejects {
        metrics.count_dead_letter(service, &raw.topic, rej.reason.code());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::deadletter::Reason;

    fn incoming(topic: &str, partition: i32, offset: i64) -> Incoming {
        Incoming {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            traceparent: None,
            envelope: Envelope::new("test", "t", None, Value::Null),
            raw: Arc::from(&b"{}"[..]),
        }
    }

    fn raw(topic: &str, partition: i32, offset: i64) -> (Raw, Rejection) {
        let raw = Raw {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            traceparent: None,
            payload: Arc::from(&b"x"[..]),
        };
        (raw, Rejection::new(Reason::NotJson, "test"))
    }

    fn positions(ms: &[Incoming]) -> Vec<(&str, i32, i64)> {
        ms.iter()
            .map(|m| (m.topic.as_str(), m.partition, m.offset))
            .collect()
    }

    #[test]
    fn a_batch_mixing_topics_is_handled_one_topic_at_a_time_in_partition_order() {
        let decoded = vec![
            incoming("registry", 0, 7),
            incoming("crisis", 1, 3),
            incoming("registry", 1, 2),
            incoming("registry", 0, 8),
            incoming("crisis", 1, 4),
        ];
        let undecodable = vec![raw("crisis", 2, 9), raw("status", 0, 1)];

        let parts = by_topic(decoded, undecodable);

        assert_eq!(parts.len(), 3, "one part per topic");
        assert_eq!(
            positions(&parts[0].decoded),
            [("registry", 0, 7), ("registry", 1, 2), ("registry", 0, 8)]
        );
        assert_eq!(
            positions(&parts[1].decoded),
            [("crisis", 1, 3), ("crisis", 1, 4)]
        );
        assert_eq!(parts[1].undecodable[0].0.offset, 9);
        assert!(parts[0].undecodable.is_empty());
        assert!(parts[2].decoded.is_empty());
        assert_eq!(parts[2].undecodable[0].0.topic, "status");
    }

    #[test]
    fn a_batch_of_one_topic_is_one_part() {
        let parts = by_topic(vec![incoming("a", 0, 1), incoming("a", 1, 1)], vec![]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].decoded.len(), 2);
    }
}
