//! Consumer lag of every service's consumer group, read from Kafka: for each
//! group its committed offsets (one OffsetFetch per group, without joining
//! the group, so the services' assignments are never disturbed) against
//! the partitions' high watermarks.
//!
//! Each service reports its own lag on `/metrics` too, but only while it
//! runs; read from the broker, the lag of a stopped service keeps growing on
//! the dashboard, which is when staff need to see it. It is read every few
//! seconds rather than per snapshot: one request per partition adds up.
//!
//! A group whose committed offsets on a topic stand still while messages
//! wait, past the stall bound, is shown as stalled: the same judgement a
//! service's `/readyz` makes of its own consumer, made here from outside.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sumud_shared::config::Settings;
use sumud_shared::kafka::Detached;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::{ConsumerLag, GroupLag};

/// The services whose groups are watched, in the order data flows.
pub const SERVICES: &[&str] = &[
    "alerts",
    "registry",
    "control",
    "eligibility",
    "disbursement",
    "provider-sim",
];

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The latest reading, shared with the HTTP side.
#[derive(Debug)]
pub struct LagBoard {
    state: Mutex<ConsumerLag>,
}

impl LagBoard {
    /// An empty board.
    pub fn new() -> Arc<Self> {
        Arc::new(LagBoard {
            state: Mutex::new(ConsumerLag {
                note: Some("consumer lag has not been read yet".into()),
                ..ConsumerLag::default()
            }),
        })
    }

    /// The latest reading.
    pub fn view(&self) -> ConsumerLag {
        self.state.lock().expect("lag board lock").clone()
    }

    fn set(&self, lag: ConsumerLag) {
        *self.state.lock().expect("lag board lock") = lag;
    }
}

struct Reader {
    topics: Vec<String>,
    /// A consumer per watched group, destroyed on a thread of its own
    /// however the reader ends (its group id makes closing it wait on the
    /// coordinator).
    groups: Vec<(&'static str, String, Detached<BaseConsumer>)>,
    /// Per (group, topic): the sum of committed offsets last seen with
    /// messages waiting, and since when it has stood there.
    standing: Mutex<HashMap<(String, String), (i64, Instant)>>,
    stall_after: Duration,
}

/// Where a (group, topic) stands after a reading of `at` (the sum of its
/// committed offsets) with `lag` waiting, given where it stood before.
/// `None` when nothing waits.
fn stand(
    before: Option<(i64, Instant)>,
    at: i64,
    lag: i64,
    now: Instant,
) -> Option<(i64, Instant)> {
    match before {
        _ if lag <= 0 => None,
        Some((was, since)) if was == at => Some((was, since)),
        _ => Some((at, now)),
    }
}

/// Reads lag every `every` until `shutdown`.
pub fn spawn(
    settings: &Settings,
    board: Arc<LagBoard>,
    every: Duration,
    shutdown: CancellationToken,
) -> sumud_shared::Result<JoinHandle<()>> {
    let mut groups = Vec::new();
    for service in SERVICES {
        let group = settings.group_id(service);
        let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        groups.push((*service, group, Detached::new(consumer)));
    }
    let reader = Arc::new(Reader {
        topics: settings
            .topics
            .all()
            .iter()
            .map(|t| t.to_string())
            .collect(),
        groups,
        standing: Mutex::new(HashMap::new()),
        stall_after: settings.consumer_bounds.stall_after,
    });
    Ok(tokio::spawn(async move {
        loop {
            let r = reader.clone();
            match tokio::task::spawn_blocking(move || r.read()).await {
                Ok(lag) => board.set(lag),
                Err(e) => tracing::warn!(error = %e, "Consumer lag reader failed."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        // The reader's consumers have group ids: closing them waits on the
        // coordinator, which must not hold a runtime thread.
        sumud_shared::kafka::drop_detached(reader);
    }))
}

impl Reader {
    fn read(&self) -> ConsumerLag {
        match self.try_read() {
            Ok(groups) => ConsumerLag {
                available: true,
                note: None,
                read_at: Some(Utc::now()),
                groups,
            },
            Err(e) => ConsumerLag {
                available: false,
                note: Some(format!("cannot read offsets from Kafka: {e}")),
                read_at: Some(Utc::now()),
                groups: Vec::new(),
            },
        }
    }

    fn try_read(&self) -> Result<Vec<GroupLag>, rdkafka::error::KafkaError> {
        let Some((_, _, probe)) = self.groups.first() else {
            return Ok(Vec::new());
        };
        let meta = probe.fetch_metadata(None, REQUEST_TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        for t in meta.topics() {
            if self.topics.iter().any(|n| n == t.name()) {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        let mut high: HashMap<(String, i32), i64> = HashMap::new();
        let mut out = Vec::new();
        for (service, group, consumer) in &self.groups {
            let committed = consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)?;
            // (lag, partitions, sum of committed offsets) per topic.
            let mut per_topic: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
            for e in committed.elements() {
                let Offset::Offset(at) = e.offset() else {
                    continue; // this group never committed on this partition
                };
                let key = (e.topic().to_owned(), e.partition());
                let hw = match high.get(&key) {
                    Some(h) => *h,
                    None => {
                        let (_, h) =
                            probe.fetch_watermarks(e.topic(), e.partition(), REQUEST_TIMEOUT)?;
                        high.insert(key, h);
                        h
                    }
                };
                let t = per_topic.entry(e.topic().to_owned()).or_default();
                t.0 += (hw - at).max(0);
                t.1 += 1;
                t.2 += at;
            }
            let now = Instant::now();
            let mut standing = self.standing.lock().expect("lag standing lock");
            for (topic, (lag, partitions, at)) in per_topic {
                let key = (group.clone(), topic.clone());
                let stalled_s = match stand(standing.remove(&key), at, lag, now) {
                    Some(s) => {
                        standing.insert(key, s);
                        let still = now.saturating_duration_since(s.1);
                        (still >= self.stall_after).then_some(still.as_secs())
                    }
                    None => None,
                };
                out.push(GroupLag {
                    service: (*service).to_owned(),
                    group: group.clone(),
                    topic,
                    lag,
                    partitions,
                    stalled_s,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_stands_from_its_first_reading_at_a_position_with_messages_waiting() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(30);
        let first = stand(None, 100, 5, t0);
        assert_eq!(first, Some((100, t0)));
        assert_eq!(stand(first, 100, 7, t1), Some((100, t0)), "still there");
        assert_eq!(stand(first, 101, 7, t1), Some((101, t1)), "moved");
        assert_eq!(stand(first, 100, 0, t1), None, "caught up");
    }
}
