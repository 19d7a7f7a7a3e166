//! The pipelined table relay: the leader reads and enqueues batch after
//! batch without waiting, one task awaits the acknowledgements in order,
//! and a marker writes the published marks on a connection of its own,
//! deferring them while a burst is still being published.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::table::enqueue_batch;
use super::{Leadership, SendSpans, TableOutbox, BATCH};
use crate::db::{Conn, Store};
use crate::kafka::producer::{Ack, EventProducer};
use crate::Result;

/// Batches enqueued and not yet acknowledged, at most (pipelined relay):
/// bounds the messages in the producer's queue.
const IN_FLIGHT_BATCHES: usize = 16;

/// Most rows marked published in one statement (pipelined relay).
const MARK_MAX: usize = 20_000;

/// Most rows acknowledged and not yet marked (pipelined relay): past this,
/// publishing waits for the marks. Eight bytes a row.
const UNMARKED_MAX: usize = 1_000_000;

/// Acknowledged rows whose marks may wait while rows are still being
/// enqueued (pipelined relay). Marking costs the database about as much as
/// creating the rows did, so in a burst it goes after publishing: the
/// marker catches up once the relay has been quiet for [`QUIET`], or as
/// soon as this many rows wait. It is also what a crash in a burst may
/// republish (consumers are idempotent).
pub(super) const MARKS_DEFERRED_MAX: usize = 500_000;

/// How long the relay must have enqueued nothing before deferred marks
/// are written.
const QUIET: Duration = Duration::from_secs(1);

/// A batch enqueued in change order, awaiting its acknowledgements.
struct InFlight {
    seqs: Vec<i64>,
    acks: Vec<Ack>,
    /// Its `send` spans, ended once the acknowledgements are in.
    _sends: SendSpans,
}

/// What the leader, the acknowledgement reader and the marker share.
struct Pipeline {
    /// Rows enqueued and not yet marked (or given up on).
    unmarked: AtomicUsize,
    /// Change counters acknowledged and not yet marked.
    acked: std::sync::Mutex<Vec<i64>>,
    /// Nudged when rows were acknowledged.
    ready: Notify,
    /// Nudged when rows were marked, or the marker stopped.
    marked: Notify,
    /// Set when the acknowledgement reader or the marker stopped.
    stopped: std::sync::atomic::AtomicBool,
    /// When the leader last enqueued a batch.
    last_enqueued: std::sync::Mutex<std::time::Instant>,
}

impl Pipeline {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.ready.notify_one();
        self.marked.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Leads a pipelined [`TableOutbox`]: the leader's reads and enqueues,
/// the acknowledgement reader and the marker run side by side until one
/// stops.
pub(super) async fn lead<O: TableOutbox>(
    store: &Store,
    leader: &mut Leadership,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT_BATCHES);
    let shared = Pipeline {
        unmarked: AtomicUsize::new(0),
        acked: std::sync::Mutex::new(Vec::new()),
        ready: Notify::new(),
        marked: Notify::new(),
        stopped: std::sync::atomic::AtomicBool::new(false),
        last_enqueued: std::sync::Mutex::new(std::time::Instant::now()),
    };
    let (enqueued, acked, marked) = tokio::join!(
        enqueue_batches(leader, outbox, producer, wake, shutdown, tx, &shared),
        read_acks(rx, &shared),
        mark_acked(store, outbox, &shared),
    );
    acked.and(marked).and(enqueued)
}

/// The leader's side: reads and enqueues batch after batch, in change order,
/// without waiting for acknowledgements or marks; each batch only once the
/// lease check has shown it still leads (a batch read ahead may have waited
/// for acknowledgements and marks since).
async fn enqueue_batches<O: TableOutbox>(
    leader: &mut Leadership,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
    tx: tokio::sync::mpsc::Sender<InFlight>,
    shared: &Pipeline,
) -> Result<()> {
    let stopped = || crate::Error::Other("the outbox marker stopped".into());
    // The last change counter enqueued in this session; 0 reads by mark
    // from the start.
    let mut after = 0;
    // The next batch, read ahead, with its rows' trace contexts.
    let mut rows = Vec::new();
    let mut traces = Vec::new();
    while !shutdown.is_cancelled() {
        if shared.is_stopped() {
            return Err(stopped());
        }
        if rows.is_empty() {
            let started = std::time::Instant::now();
            (rows, traces) = fetch_traced(outbox, leader.conn(), after).await?;
            if rows.is_empty() {
                // Caught up. Once everything enqueued is marked, read by
                // mark from the start (before that, it would return rows in
                // flight).
                if after > 0 && shared.unmarked.load(Ordering::Acquire) == 0 {
                    after = 0;
                    continue;
                }
                // An empty read is slow while a large transaction writes rows
                // it cannot see yet; poll less often then (a commit wakes).
                let pause = (started.elapsed() * 10)
                    .clamp(Duration::from_millis(100), Duration::from_secs(2));
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = wake.notified() => {}
                    _ = shared.marked.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        }
        while shared.acked.lock().expect("not poisoned").len() >= UNMARKED_MAX {
            if shared.is_stopped() {
                return Err(stopped());
            }
            shared.marked.notified().await;
        }
        let batch = std::mem::take(&mut rows);
        let batch_traces = std::mem::take(&mut traces);
        let last = batch.last().map_or(after, |r| outbox.change_seq(r));
        leader.check().await?;
        // Read the next batch while this one is serialised and enqueued.
        let started = std::time::Instant::now();
        let (next, sent) = tokio::join!(
            fetch_traced(outbox, leader.conn(), last),
            enqueue_batch(outbox, producer, &batch, &batch_traces),
        );
        let (sends, (seqs, acks)) = sent?;
        debug!(
            enqueued = seqs.len(),
            ms = started.elapsed().as_millis() as u64,
            "Table outbox rows enqueued."
        );
        after = last;
        shared.unmarked.fetch_add(seqs.len(), Ordering::AcqRel);
        *shared.last_enqueued.lock().expect("not poisoned") = std::time::Instant::now();
        if tx
            .send(InFlight {
                seqs,
                acks,
                _sends: sends,
            })
            .await
            .is_err()
        {
            return Err(stopped());
        }
        (rows, traces) = next?;
    }
    Ok(())
}

/// Rows changed since published above `after`, with their trace contexts.
async fn fetch_traced<O: TableOutbox>(
    outbox: &O,
    conn: &mut Conn,
    after: i64,
) -> Result<(Vec<O::Row>, Vec<Option<String>>)> {
    let rows = outbox.fetch_after(conn, after, BATCH).await?;
    if rows.is_empty() {
        return Ok((rows, Vec::new()));
    }
    let traces = outbox.traceparents(conn, &rows).await?;
    Ok((rows, traces))
}

/// Awaits each batch's acknowledgements, in order, and hands the batch to
/// the marker; drains what was enqueued when the leader stops.
async fn read_acks(mut rx: tokio::sync::mpsc::Receiver<InFlight>, shared: &Pipeline) -> Result<()> {
    let result = async {
        while let Some(batch) = rx.recv().await {
            for ack in batch.acks {
                ack.await?;
            }
            shared
                .acked
                .lock()
                .expect("not poisoned")
                .extend_from_slice(&batch.seqs);
            shared.ready.notify_one();
        }
        Ok(())
    }
    .await;
    // Done (the leader stopped) or failed: the marker finishes what was
    // acknowledged, then stops.
    rx.close();
    shared.stop();
    result
}

/// Marks acknowledged rows, as many per statement as have queued up (at
/// most [`MARK_MAX`]), on a connection of its own.
async fn mark_acked<O: TableOutbox>(store: &Store, outbox: &O, shared: &Pipeline) -> Result<()> {
    let result = async {
        let mut conn = None;
        loop {
            let quiet_for = shared.last_enqueued.lock().expect("not poisoned").elapsed();
            let seqs: Vec<i64> = {
                let mut acked = shared.acked.lock().expect("not poisoned");
                let now =
                    acked.len() >= MARKS_DEFERRED_MAX || quiet_for >= QUIET || shared.is_stopped();
                let n = if now { acked.len().min(MARK_MAX) } else { 0 };
                acked.drain(..n).collect()
            };
            if seqs.is_empty() {
                let waiting = !shared.acked.lock().expect("not poisoned").is_empty();
                if !waiting && shared.is_stopped() {
                    return Ok(());
                }
                if waiting {
                    // Deferred, publishing first: look again when more is
                    // acknowledged or the relay may have gone quiet.
                    tokio::select! {
                        _ = shared.ready.notified() => {}
                        _ = tokio::time::sleep(QUIET.saturating_sub(quiet_for)) => {}
                    }
                } else {
                    shared.ready.notified().await;
                }
                continue;
            }
            let conn = match &mut conn {
                Some(c) => c,
                None => conn.insert(store.acquire().await?),
            };
            let started = std::time::Instant::now();
            outbox.mark_seqs(conn, &seqs).await?;
            shared.unmarked.fetch_sub(seqs.len(), Ordering::AcqRel);
            shared.marked.notify_one();
            debug!(
                published = seqs.len(),
                mark_ms = started.elapsed().as_millis() as u64,
                "Table outbox rows published."
            );
        }
    }
    .await;
    if result.is_err() {
        shared.stop();
    }
    result
}
