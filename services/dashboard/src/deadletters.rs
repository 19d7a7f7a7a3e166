//! Dead-letter counts. No service stores its dead letters in PostgreSQL:
//! they live only on the dead-letter topic. So the dashboard reads that
//! topic itself, from the beginning of every partition, and keeps counts by
//! service and reason in memory.
//!
//! It reads without a consumer group's commits (assigned partitions, no
//! offsets stored): the dashboard is an observer, a restart recounts from
//! the start — which is what the counts mean, "since the topic began" — and
//! it never moves the offsets of the `sumud deadletter replay` tooling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use std::thread::JoinHandle;
use sumud_shared::config::Settings;
use tokio_util::sync::CancellationToken;

use crate::model::{DeadLetterCount, DeadLetters};

/// The reason recorded for a dead letter that cannot itself be decoded.
pub const UNREADABLE: &str = "unreadable";

/// The counts so far, shared between the reader thread and the HTTP side.
#[derive(Debug)]
pub struct DeadLetterBoard {
    state: Mutex<State>,
}

/// (service, reason) → (count, time of the last one).
type Counts = HashMap<(String, String), (i64, Option<DateTime<Utc>>)>;

#[derive(Debug, Default)]
struct State {
    available: bool,
    note: Option<String>,
    topic: String,
    total: i64,
    counts: Counts,
}

/// Only what the counts need from a `sumud.deadletter.recorded` event; the
/// reason is kept as a string so that a code added later still counts.
#[derive(Deserialize)]
struct Recorded {
    time: Option<DateTime<Utc>>,
    data: RecordedData,
}

#[derive(Deserialize)]
struct RecordedData {
    reason: String,
    service: String,
}

impl DeadLetterBoard {
    /// An empty board for `topic`, not attached yet.
    pub fn new(topic: &str) -> Arc<Self> {
        Arc::new(DeadLetterBoard {
            state: Mutex::new(State {
                topic: topic.to_owned(),
                note: Some("the dead-letter reader has not attached yet".into()),
                ..State::default()
            }),
        })
    }

    /// The counts as the API shows them, most frequent first.
    pub fn view(&self) -> DeadLetters {
        let s = self.state.lock().expect("dead-letter board lock");
        let mut by_reason: Vec<DeadLetterCount> = s
            .counts
            .iter()
            .map(|((service, reason), (count, last_at))| DeadLetterCount {
                service: service.clone(),
                reason: reason.clone(),
                count: *count,
                last_at: *last_at,
            })
            .collect();
        by_reason.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.reason.cmp(&b.reason))
                .then_with(|| a.service.cmp(&b.service))
        });
        DeadLetters {
            available: s.available,
            note: s.note.clone(),
            topic: s.topic.clone(),
            total: s.total,
            by_reason,
        }
    }

    /// Counts one dead letter from its payload.
    pub fn record(&self, payload: &[u8]) {
        let (service, reason, at) = match serde_json::from_slice::<Recorded>(payload) {
            Ok(r) => (r.data.service, r.data.reason, r.time),
            Err(_) => ("unknown".to_owned(), UNREADABLE.to_owned(), None),
        };
        let mut s = self.state.lock().expect("dead-letter board lock");
        s.total += 1;
        let e = s.counts.entry((service, reason)).or_insert((0, None));
        e.0 += 1;
        if at > e.1 {
            e.1 = at;
        }
    }

    fn set_status(&self, available: bool, note: Option<String>) {
        let mut s = self.state.lock().expect("dead-letter board lock");
        s.available = available;
        s.note = note;
    }
}

/// Reads the dead-letter topic into `board` until `shutdown`, on its own
/// thread: librdkafka's poll blocks, and a thread of its own (unlike
/// `spawn_blocking`) never holds up the shutdown of a runtime whose owner
/// forgot to cancel — a panicking test, say. Waits for the topic to exist.
pub fn spawn(
    settings: &Settings,
    board: Arc<DeadLetterBoard>,
    shutdown: CancellationToken,
) -> sumud_shared::Result<JoinHandle<()>> {
    let topic = settings.topics.deadletter.clone();
    let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
        // A group id is required by librdkafka; nothing is ever committed under it.
        .set(
            "group.id",
            format!("{}-dashboard-reader", settings.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    std::thread::Builder::new()
        .name("dashboard-deadletters".into())
        .spawn(move || {
            read(&consumer, &topic, &board, &shutdown);
            // Its group id makes closing it wait on the coordinator: not
            // on this thread, which the dashboard's stop joins.
            sumud_shared::kafka::drop_detached(consumer);
        })
        .map_err(|e| {
            sumud_shared::Error::Other(format!("cannot start the dead-letter reader: {e}"))
        })
}

fn read(
    consumer: &BaseConsumer,
    topic: &str,
    board: &DeadLetterBoard,
    shutdown: &CancellationToken,
) {
    // Attach: wait until the topic exists, then assign every partition from the start.
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(meta) => {
                let partitions: Vec<i32> = meta
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if !partitions.is_empty() {
                    let mut tpl = TopicPartitionList::new();
                    for p in partitions {
                        // Adding a partition to a fresh list cannot fail.
                        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
                    }
                    match consumer.assign(&tpl) {
                        Ok(()) => break,
                        Err(e) => {
                            board.set_status(false, Some(format!("cannot read {topic}: {e}")))
                        }
                    }
                } else {
                    board.set_status(false, Some(format!("topic {topic} does not exist yet")));
                }
            }
            Err(e) => board.set_status(false, Some(format!("Kafka does not answer: {e}"))),
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    board.set_status(true, None);
    tracing::info!(
        topic,
        "Counting dead letters from the beginning of the topic."
    );
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => board.record(m.payload().unwrap_or_default()),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "Dead-letter reader: transient Kafka error.")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_service_and_reason_with_unreadable_ones_apart() {
        let b = DeadLetterBoard::new("dl");
        let dl = |service: &str, reason: &str, time: &str| {
            serde_json::json!({
                "specversion": "1.0", "id": "x", "source": "s", "type": "t", "time": time,
                "data": {"reason": reason, "service": service, "detail": "d", "future_field": 1}
            })
            .to_string()
        };
        b.record(dl("registry", "not_json", "2026-01-01T00:00:00Z").as_bytes());
        b.record(dl("registry", "not_json", "2026-01-02T00:00:00Z").as_bytes());
        b.record(dl("control", "bad_signature", "2026-01-01T00:00:00Z").as_bytes());
        b.record(b"garbage");
        let v = b.view();
        assert_eq!(v.total, 4);
        assert_eq!(v.by_reason[0].reason, "not_json");
        assert_eq!(v.by_reason[0].count, 2);
        assert_eq!(
            v.by_reason[0].last_at.unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
        assert!(v
            .by_reason
            .iter()
            .any(|c| c.reason == UNREADABLE && c.count == 1));
        assert!(!v.available, "not attached to a topic in this test");
    }
}
