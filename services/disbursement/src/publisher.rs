//! Publishes instruction attempts to `sumud.payments.instructions.v1`.
//!
//! The outbox is `disbursement.instruction_batches`: the transaction that
//! creates or re-issues attempts inserts one batch row listing them, so a
//! committed attempt is never lost, and the relay marks that row once every
//! message of the batch is acknowledged. A crash between acknowledgement and
//! mark republishes the batch; consumers are idempotent on the event id,
//! which is (instruction, attempt), and the content is rendered from the
//! same fields every time.
//!
//! Two ways in, one way out:
//! - **Handed over.** The pass that commits a batch hands its rendered
//!   messages to the relay in memory ([`Handoff`]), so the relay neither
//!   reads the rows back nor renders them again.
//! - **Read back.** Whatever was not handed over (the relay was not leading,
//!   the process crashed, another instance wrote it, retries re-issued) is
//!   found by reading the unpublished batches, oldest first, when the relay
//!   starts leading, when nudged, and every second.
//!
//! Only the leader publishes: each batch goes to the producer once the
//! relay has checked, on its lock's session, that it still leads
//! (`Leadership::check`), so a relay deposed while it was being handed
//! batches drops them for the new leader to read back.
//!
//! Batches are enqueued whole and in the order they arrive; librdkafka keeps
//! per-partition order with idempotence on, and the key is the beneficiary
//! reference, so one household's messages stay in order on one partition.
//! An attempt is only ever re-issued after a status report for the one
//! before it, so a later attempt is never published ahead of an earlier one.
//!
//! What a message says is `instruction_event.rs`'s; this file only moves
//! rendered messages.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sumud_shared::db::{Conn, Store};
use sumud_shared::kafka::producer::{Ack, EventProducer};
use sumud_shared::outbox::{Leadership, SendSpans};
use sumud_shared::Result;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::db::{self, Batch};
use crate::instruction_event::Renderer;

/// The relay's advisory-lock key ("SUMUDIS1"): one relay publishes at a time.
pub const LOCK_KEY: i64 = 0x5355_4d55_4449_5331;

/// Batches handed over and not yet taken by the relay, at most: a pass
/// waits (its memory bounded) while the relay is this far behind.
const HANDOFF_BATCHES: usize = 1;

/// Batches enqueued and not yet acknowledged, at most.
const IN_FLIGHT_BATCHES: usize = 16;

/// Unpublished batches read back per look.
const READ_BACK: i64 = 16;

/// How often a leading relay looks for batches nobody handed over.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A committed batch's messages, handed to the relay by the pass that
/// committed it.
pub struct Committed {
    /// The batch's outbox sequence number.
    pub batch_id: i64,
    /// The trace context its messages continue.
    pub traceparent: Option<String>,
    /// (key, payload) of each attempt, in order.
    pub messages: Vec<(String, Vec<u8>)>,
}

/// A committed batch on its way to the relay, stamped with the relay's
/// leadership count as it was before the batch committed.
pub struct Handed {
    leadership: u64,
    batch: Committed,
}

/// The writers' side of the relay: committed batches go to it in memory,
/// and a nudge makes it look for batches it was not handed.
///
/// Why the stamp: a batch can wait in the handoff while the relay reads it
/// back from the table, publishes and marks it, and then loses its
/// leadership before taking the handed copy. The next leadership starts with
/// nothing seen; publishing that copy would repeat attempts that may have
/// moved on since (re-issued after a rejection), out of order. A leadership
/// therefore only publishes batches stamped with its own count: those
/// committed after it began, which no earlier leadership can have read
/// back. Older ones are left to the read-back, which checks the table.
#[derive(Clone)]
pub struct Handoff {
    batches: mpsc::Sender<Handed>,
    wake: Arc<Notify>,
    leaderships: Arc<AtomicU64>,
    stamp: u64,
}

impl Handoff {
    /// A handoff and the receiving end the relay takes.
    pub fn new() -> (Handoff, mpsc::Receiver<Handed>) {
        let (batches, rx) = mpsc::channel(HANDOFF_BATCHES);
        (
            Handoff {
                batches,
                wake: Arc::new(Notify::new()),
                leaderships: Arc::new(AtomicU64::new(0)),
                stamp: 0,
            },
            rx,
        )
    }

    /// This handoff for one pass: what it hands over is stamped with the
    /// relay's leadership count as it is now, before the pass commits
    /// anything.
    pub fn for_pass(&self) -> Handoff {
        Handoff {
            stamp: self.leaderships.load(Ordering::SeqCst),
            ..self.clone()
        }
    }

    /// Hands over a committed batch; waits while the relay is
    /// [`HANDOFF_BATCHES`] behind. A relay that has stopped drops it: it is
    /// read back from the table by whichever relay leads.
    pub async fn committed(&self, batch: Committed) {
        let handed = Handed {
            leadership: self.stamp,
            batch,
        };
        let _ = self.batches.send(handed).await;
    }

    /// Counts a new leadership; returns its number.
    fn lead(&self) -> u64 {
        self.leaderships.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Asks the relay to look for batches committed without a handoff.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }
}

/// Publishes instruction batches until `shutdown`: leads while it holds
/// [`LOCK_KEY`]; while another relay leads it drops what it is handed (that
/// relay reads it back). Errors start leadership over after a backoff.
pub async fn relay(
    store: Store,
    topic: String,
    producer: EventProducer,
    handoff: &Handoff,
    mut handed: mpsc::Receiver<Handed>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut backoff =
        sumud_shared::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        let leader = match Leadership::try_acquire(&store, LOCK_KEY).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "Instruction relay cannot reach the database; retrying.");
                None
            }
        };
        let Some(mut leader) = leader else {
            // Standing by: what is handed over now is another relay's to read.
            let standby = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(standby);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = &mut standby => break,
                    b = handed.recv() => if b.is_none() { return Ok(()) },
                }
            }
            continue;
        };
        let result = lead(
            &store,
            &mut leader,
            &topic,
            &producer,
            handoff,
            &mut handed,
            &shutdown,
        )
        .await;
        leader.release().await;
        if handed.is_closed() && handed.is_empty() {
            // Every writer is gone: the service is stopping.
            return result;
        }
        match result {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let wait = backoff.next_wait();
                warn!(error = %e, wait_ms = wait.as_millis() as u64, "Instruction relay failed; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    Ok(())
}

/// A batch enqueued, awaiting its acknowledgements.
struct InFlight {
    batch_id: i64,
    acks: Vec<Ack>,
    /// Its `send` spans, ended once the acknowledgements are in.
    _sends: SendSpans,
}

/// Batch ids this leadership has enqueued (so a batch handed over and also
/// read back is published once), the oldest forgotten past a bound: a
/// duplicate is harmless, only wasteful.
#[derive(Default)]
struct Seen {
    ids: BTreeSet<i64>,
    order: VecDeque<i64>,
}

impl Seen {
    const MAX: usize = 100_000;

    /// Records `id`; false if it was already there.
    fn first_time(&mut self, id: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

/// The leader's work: what is handed over, and what is read back; a second
/// task awaits acknowledgements in order and marks the batches. Each batch
/// goes to the producer only once [`Leadership::check`] has shown this
/// relay still leads: a handed batch otherwise never touches the lock's
/// session, and a deposed relay went on publishing them (for up to
/// [`LOOK_EVERY`], until its next read back failed) beside the new leader,
/// which read the same batches back from the table.
async fn lead(
    store: &Store,
    leader: &mut Leadership,
    topic: &str,
    producer: &EventProducer,
    handoff: &Handoff,
    handed: &mut mpsc::Receiver<Handed>,
    shutdown: &CancellationToken,
) -> Result<()> {
    // Counted before the first look: every batch committed from now on
    // carries at most this number, and is found either way.
    let leadership = handoff.lead();
    let wake = &handoff.wake;
    let (in_flight, acks) = mpsc::channel::<InFlight>(IN_FLIGHT_BATCHES);
    let publishing = async move {
        let mut seen = Seen::default();
        // Look at once: a new leader first publishes what is left.
        let mut look = true;
        // A marker that failed closes the queue: this leadership is over.
        while !shutdown.is_cancelled() && !in_flight.is_closed() {
            if look {
                look = false;
                for batch_id in db::unpublished_batch_ids(leader.conn(), READ_BACK).await? {
                    if !seen.first_time(batch_id) {
                        continue;
                    }
                    // Marked meanwhile (by another relay before this one led).
                    let Some(batch) = db::unpublished_batch(leader.conn(), batch_id).await? else {
                        continue;
                    };
                    let messages = read_back(leader.conn(), &batch).await?;
                    leader.check().await?;
                    let flight = enqueue(
                        topic,
                        producer,
                        batch.batch_id,
                        batch.traceparent.as_deref(),
                        &messages,
                    )
                    .await?;
                    if in_flight.send(flight).await.is_err() {
                        return Ok(());
                    }
                    // A full read: there may be more.
                    look = true;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = in_flight.closed() => {}
                h = handed.recv() => match h {
                    Some(h) if h.leadership != leadership => {
                        // Stamped before this leadership began: an earlier
                        // one may have published it; the table says.
                        debug!(batch = h.batch.batch_id, "Handed batch left to the read-back.");
                        look = true;
                    }
                    Some(Handed { batch: b, .. }) if seen.first_time(b.batch_id) => {
                        // A deposed relay drops it here: it is in the table,
                        // for whichever relay leads.
                        leader.check().await?;
                        let flight = enqueue(topic, producer, b.batch_id, b.traceparent.as_deref(), &b.messages).await?;
                        if in_flight.send(flight).await.is_err() {
                            return Ok(());
                        }
                    }
                    Some(_) => {}
                    None => return Ok(()),
                },
                _ = wake.notified() => look = true,
                _ = tokio::time::sleep(LOOK_EVERY) => look = true,
            }
        }
        Ok(())
    };
    // When publishing ends, its end of the queue closes: the marker
    // finishes what is in flight, then stops.
    let (enqueued, marked) = tokio::join!(publishing, mark_acknowledged(store, acks));
    enqueued.and(marked)
}

/// Reads a batch's attempts back and renders their messages.
async fn read_back(conn: &mut Conn, batch: &Batch) -> Result<Vec<(String, Vec<u8>)>> {
    let rows = db::batch_rows(conn, batch).await?;
    let messages = tokio::task::spawn_blocking(move || {
        let mut r = Renderer::new(Utc::now());
        rows.iter().map(|row| r.render(row)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| sumud_shared::Error::Other(format!("rendering a batch failed: {e}")))?;
    debug!(
        batch = batch.batch_id,
        attempts = messages.len(),
        "Instruction batch read back."
    );
    Ok(messages)
}

/// Enqueues a batch's messages in order.
async fn enqueue(
    topic: &str,
    producer: &EventProducer,
    batch_id: i64,
    traceparent: Option<&str>,
    messages: &[(String, Vec<u8>)],
) -> Result<InFlight> {
    let sends = SendSpans::of(std::iter::once((topic, traceparent)));
    let header = sends.header(topic, traceparent);
    let mut acks = Vec::with_capacity(messages.len());
    for (key, payload) in messages {
        acks.push(
            producer
                .enqueue_traced(topic, key.as_bytes(), payload, header)
                .await?,
        );
    }
    Ok(InFlight {
        batch_id,
        acks,
        _sends: sends,
    })
}

/// Awaits each batch's acknowledgements, in order, and marks the batches
/// acknowledged so far in one statement, on a connection of its own.
async fn mark_acknowledged(store: &Store, mut acks: mpsc::Receiver<InFlight>) -> Result<()> {
    let mut conn = None;
    while let Some(first) = acks.recv().await {
        let mut done = vec![first];
        while let Ok(more) = acks.try_recv() {
            done.push(more);
        }
        let mut ids = Vec::with_capacity(done.len());
        for flight in done {
            for ack in flight.acks {
                ack.await?;
            }
            ids.push(flight.batch_id);
        }
        let conn = match &mut conn {
            Some(c) => c,
            None => conn.insert(store.acquire().await?),
        };
        db::mark_batches_published(conn, &ids).await?;
        debug!(batches = ids.len(), "Instruction batches published.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_seen_once_is_not_published_twice() {
        let mut seen = Seen::default();
        assert!(seen.first_time(7));
        assert!(!seen.first_time(7));
        for id in 0..Seen::MAX as i64 + 10 {
            seen.first_time(1000 + id);
        }
        assert!(seen.ids.len() <= Seen::MAX);
        // The oldest is forgotten first.
        assert!(seen.first_time(7));
    }
}
