//! The transactional outbox: a service writes the events it must publish into
//! its own `<schema>.outbox` table in the same transaction as the state
//! change, and a relay publishes them afterwards. A crash between commit and
//! publish therefore delays an event; it never loses one.
//!
//! The relay:
//! - holds a PostgreSQL advisory lock for its schema (on SQLite, an exclusive
//!   lock on a file beside the database), so exactly one relay publishes at
//!   a time and per-key order (which is sequence order) holds, and checks
//!   that it still holds it right before each batch goes to the producer
//!   (the fencing: see `outbox/leadership.rs`);
//! - reads every row not yet marked published, in sequence order — not "rows
//!   after the last sequence seen", which would skip a row whose transaction
//!   committed after a later sequence number's;
//! - enqueues the whole batch on the idempotent producer in order, waits for
//!   every acknowledgement, then marks the rows published. A crash after the
//!   acknowledgement but before the mark republishes: consumers are
//!   idempotent on the event id, which is kept in the stored payload.
//!
//! Each owning service creates the table in its migrations:
//! `(seq bigserial primary key, topic text, key text, payload bytea,
//!   traceparent text, created_at timestamptz, published_at timestamptz)`
//! (on SQLite: `seq integer primary key autoincrement`, blob, text).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool, SqlitePool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::sqlite::FileLock;
use crate::db::{Conn, Store, Tx};
use crate::envelope::Envelope;
use crate::kafka::producer::{Ack, EventProducer};
use crate::Result;

mod leadership;

pub use leadership::{Leadership, CHECK_WITHIN};

/// Most rows published per round.
const BATCH: i64 = 5000;

/// A row to be published.
pub struct Pending {
    /// Destination topic.
    pub topic: String,
    /// Kafka key.
    pub key: String,
    /// The serialized CloudEvent.
    pub payload: Vec<u8>,
    /// W3C trace context.
    pub traceparent: Option<String>,
}

impl Pending {
    /// An outbox row for an event.
    pub fn event<T: Serialize>(topic: &str, key: &str, event: &Envelope<T>) -> Self {
        Pending {
            topic: topic.to_owned(),
            key: key.to_owned(),
            payload: event.to_bytes(),
            traceparent: event.traceparent.clone(),
        }
    }
}

/// Appends rows to `<schema>.outbox` inside the caller's transaction, on
/// either backend (PostgreSQL: one statement; SQLite: one prepared insert
/// per row, in order).
pub async fn enqueue_tx(tx: &mut Tx, schema: &str, rows: Vec<Pending>) -> Result<()> {
    match tx {
        Tx::Postgres(tx) => enqueue(tx, schema, rows).await,
        Tx::Sqlite(tx) => {
            let insert = format!(
                "INSERT INTO {schema}.outbox (topic, key, payload, traceparent) VALUES (?1, ?2, ?3, ?4)"
            );
            for r in rows {
                sqlx::query(&insert)
                    .bind(r.topic)
                    .bind(r.key)
                    .bind(r.payload)
                    .bind(r.traceparent)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
    }
}

/// Appends rows to `<schema>.outbox` inside the caller's PostgreSQL
/// transaction, in one statement.
pub async fn enqueue(conn: &mut PgConnection, schema: &str, rows: Vec<Pending>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut topics = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut traces = Vec::with_capacity(rows.len());
    for r in rows {
        topics.push(r.topic);
        keys.push(r.key);
        payloads.push(r.payload);
        traces.push(r.traceparent);
    }
    sqlx::query(&format!(
        "INSERT INTO {schema}.outbox (topic, key, payload, traceparent) \
         SELECT t, k, p, tp FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[]) \
              WITH ORDINALITY AS u(t, k, p, tp, n) \
         ORDER BY n"
    ))
    .bind(&topics)
    .bind(&keys)
    .bind(&payloads)
    .bind(&traces)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows not yet published.
pub async fn backlog(store: &Store, schema: &str) -> Result<i64> {
    let sql = format!("SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL");
    Ok(crate::on_store!(store, pool => sqlx::query_scalar(&sql).fetch_one(pool).await)?)
}

/// Publishes the outbox of `schema` until `shutdown`. `wake` lets the writer
/// nudge the relay right after a commit; without a nudge it polls.
pub async fn relay(
    store: Store,
    schema: &'static str,
    producer: EventProducer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let lock_key = relay_lock_key(schema);
    let mut backoff = relay_backoff();
    while !shutdown.is_cancelled() {
        let started = std::time::Instant::now();
        let led = match &store {
            Store::Postgres(pool) => {
                relay_while_leader(pool, schema, lock_key, &producer, &wake, &shutdown).await
            }
            Store::Sqlite(pool) => {
                relay_sqlite_while_leader(pool, schema, &producer, &wake, &shutdown).await
            }
        };
        match led {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let wait = wait_after(&mut backoff, started);
                warn!(schema, error = %e, wait_ms = wait.as_millis() as u64, "Outbox relay failed; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    info!(schema, "Outbox relay stopped.");
    Ok(())
}

/// An outbox row as the relay reads it: (seq, topic, key, payload, traceparent).
type OutboxRow = (i64, String, String, Vec<u8>, Option<String>);

/// The PostgreSQL advisory-lock key a schema's outbox relay leads under,
/// so that a check for its leader (a test that a killed relay let go) can
/// look for this lock and no other.
pub fn relay_lock_key(schema: &str) -> i64 {
    // A stable 63-bit key per schema (FNV-1a).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("sumud-outbox:{schema}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h >> 1) as i64
}

async fn relay_while_leader(
    pool: &PgPool,
    schema: &str,
    lock_key: i64,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key)
        .fetch_one(&mut *conn)
        .await?;
    if leader {
        // If this future is dropped while leading (its task aborted), the
        // connection must not go back to the pool still holding the lock.
        conn.close_on_drop();
    } else {
        debug!(schema, "Another relay holds the outbox; standing by.");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    }
    let result = publish_rounds(
        Rounds::Postgres(&mut conn, lock_key),
        schema,
        producer,
        wake,
        shutdown,
    )
    .await;
    leadership::unlock_advisory(&mut conn, lock_key).await;
    result
}

/// Where a leading relay reads and marks its outbox, and what shows it
/// still leads.
enum Rounds<'a> {
    /// On the connection that holds the advisory lock (its key).
    Postgres(&'a mut PgConnection, i64),
    /// On the pool; the lock is a file lock.
    Sqlite(&'a SqlitePool, &'a FileLock),
}

impl Rounds<'_> {
    /// [`Leadership::check`] for this relay.
    async fn check(&mut self) -> Result<()> {
        match self {
            Rounds::Postgres(conn, key) => leadership::check_advisory(conn, *key).await,
            Rounds::Sqlite(_, lock) => leadership::check_file(lock),
        }
    }
}

/// The leader's work: read every unpublished row in sequence order, check
/// that it still leads, enqueue them all, await every acknowledgement, then
/// mark them; until shutdown or an error (the caller retries with backoff).
async fn publish_rounds(
    mut on: Rounds<'_>,
    schema: &str,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let select = format!(
        "SELECT seq, topic, key, payload, traceparent FROM {schema}.outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1"
    );
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let rows: Vec<OutboxRow> = match &mut on {
            Rounds::Postgres(conn, _) => {
                sqlx::query_as(&select)
                    .bind(BATCH)
                    .fetch_all(&mut **conn)
                    .await?
            }
            Rounds::Sqlite(pool, _) => sqlx::query_as(&select).bind(BATCH).fetch_all(*pool).await?,
        };
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        // Only the leader publishes: a relay deposed since it last looked
        // stops here, before the producer has any of the batch.
        on.check().await?;
        // Enqueue in sequence order (librdkafka keeps per-partition order with
        // idempotence on), then wait for every acknowledgement; the `send`
        // spans (one per topic and stored context) end with the last one.
        let sends = SendSpans::of(
            rows.iter()
                .map(|(_, topic, _, _, tp)| (topic.as_str(), tp.as_deref())),
        );
        let mut acks = Vec::with_capacity(rows.len());
        for (_, topic, key, payload, tp) in &rows {
            let header = sends.header(topic, tp.as_deref());
            acks.push(
                producer
                    .enqueue_traced(topic, key.as_bytes(), payload, header)
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        drop(sends);
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        match &mut on {
            Rounds::Postgres(conn, _) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.outbox SET published_at = now() WHERE seq = ANY($1)"
                ))
                .bind(&seqs)
                .execute(&mut **conn)
                .await?;
            }
            Rounds::Sqlite(pool, _) => {
                // Every sequence number is an integer: the JSON cannot fail.
                let list = serde_json::to_string(&seqs).unwrap_or_default();
                sqlx::query(&format!(
                    "UPDATE {schema}.outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE seq IN (SELECT value FROM json_each(?1))"
                ))
                .bind(list)
                .execute(*pool)
                .await?;
            }
        }
        debug!(schema, published = seqs.len(), "Outbox rows published.");
    }
}

/// The SQLite leader: whoever holds the exclusive lock on the schema's
/// relay lock file (released by the operating system if the process dies,
/// like a PostgreSQL session's advisory lock).
async fn relay_sqlite_while_leader(
    pool: &SqlitePool,
    schema: &str,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let Some(lock) = crate::db::sqlite::try_lock_file(pool, &format!("{schema}.relay"))? else {
        debug!(schema, "Another relay holds the outbox; standing by.");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    };
    publish_rounds(
        Rounds::Sqlite(pool, &lock),
        schema,
        producer,
        wake,
        shutdown,
    )
    .await
}

/// An entity table that is its own outbox: rows carry a change counter and
/// a published mark, and a changed row is (re)published. Used where the
/// events are projections of rows written in bulk (decisions, instructions),
/// so the bulk transaction writes each fact once.
pub trait TableOutbox: Send + Sync {
    /// A row to publish.
    type Row: Send + Sync;

    /// Whether the relay may keep several batches in flight (see
    /// [`relay_table`]); such an outbox implements
    /// [`TableOutbox::change_seq`], [`TableOutbox::fetch_after`] and
    /// [`TableOutbox::mark_seqs`].
    const PIPELINED: bool = false;

    /// Advisory-lock key: one relay per table at a time (on SQLite it
    /// names the lock file).
    fn lock_key(&self) -> i64;

    /// Rows changed since published, in change order.
    fn fetch(
        &self,
        conn: &mut Conn,
        limit: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Row>>> + Send;

    /// The change counter a row was read at (pipelined outboxes).
    fn change_seq(&self, _row: &Self::Row) -> i64 {
        0
    }

    /// Rows changed since published whose change counter is above `after`,
    /// in change order (pipelined outboxes).
    fn fetch_after(
        &self,
        conn: &mut Conn,
        after: i64,
        limit: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Row>>> + Send {
        let _ = after;
        self.fetch(conn, limit)
    }

    /// Marks published the rows whose change counter is still one of
    /// `seqs`, all acknowledged (pipelined outboxes); a row changed since
    /// stays unpublished.
    fn mark_seqs(
        &self,
        conn: &mut Conn,
        seqs: &[i64],
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        let _ = (conn, seqs);
        std::future::ready(Err(crate::Error::Other(
            "this outbox is not pipelined".into(),
        )))
    }

    /// The message for a row: (topic, key, payload).
    fn message(&self, row: &Self::Row) -> (String, String, Vec<u8>);

    /// The stored trace context (W3C `traceparent`) of each row, in order,
    /// read once per batch; empty if the outbox keeps none. The relay's
    /// `send` span for the row is its child, so the row's event continues
    /// the trace that caused it.
    fn traceparents(
        &self,
        conn: &mut Conn,
        rows: &[Self::Row],
    ) -> impl std::future::Future<Output = Result<Vec<Option<String>>>> + Send {
        let _ = (conn, rows);
        std::future::ready(Ok(Vec::new()))
    }

    /// Marks rows published at the change they were read at.
    fn mark(
        &self,
        conn: &mut Conn,
        rows: &[Self::Row],
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// Publishes a [`TableOutbox`] until `shutdown`, with the same guarantees as
/// [`relay`]: one leader, change order, mark only after acknowledgement.
///
/// A pipelined outbox is published without stopping between batches: the
/// leader reads the next batch (rows whose mark lags, above the last change
/// counter it enqueued) while it enqueues the current one and earlier ones
/// await their acknowledgements; acknowledged rows are marked on a second
/// connection, many per statement, and while rows keep coming the marks wait
/// (up to [`MARKS_DEFERRED_MAX`] rows) for the relay to go quiet, since they
/// cost the database about as much as creating the rows did. A crash before
/// the marks republishes those rows; consumers are idempotent. When the
/// leader has caught up and everything it enqueued is marked, it reads by
/// mark from the start again, so a row committed out of sequence order is
/// published then, never skipped.
pub async fn relay_table<O: TableOutbox>(
    store: Store,
    outbox: O,
    producer: EventProducer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut backoff = relay_backoff();
    while !shutdown.is_cancelled() {
        let started = std::time::Instant::now();
        match lead_table(&store, &outbox, &producer, &wake, &shutdown).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let wait = wait_after(&mut backoff, started);
                warn!(error = %e, wait_ms = wait.as_millis() as u64, "Table outbox relay failed; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    Ok(())
}

/// A relay that loses its database or broker retries from 250 ms, doubling
/// to 10 s, jittered (so that every service's relays do not come back at
/// the same instant).
fn relay_backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
}

/// The wait after a failed leadership; one that had worked for a while
/// starts the backoff over.
fn wait_after(backoff: &mut crate::backoff::Backoff, started: std::time::Instant) -> Duration {
    if started.elapsed() > Duration::from_secs(30) {
        backoff.reset();
    }
    backoff.next_wait()
}

/// Leads while this relay holds the table's lock (see [`Leadership`]).
async fn lead_table<O: TableOutbox>(
    store: &Store,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let Some(mut leader) = Leadership::try_acquire(store, outbox.lock_key()).await? else {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    };
    let result = if O::PIPELINED {
        lead_pipelined(store, &mut leader, outbox, producer, wake, shutdown).await
    } else {
        lead_serial(&mut leader, outbox, producer, wake, shutdown).await
    };
    leader.release().await;
    result
}

/// One batch at a time: read, check the lease, enqueue, await every
/// acknowledgement, mark.
async fn lead_serial<O: TableOutbox>(
    leader: &mut Leadership,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    while !shutdown.is_cancelled() {
        let rows = outbox.fetch(leader.conn(), BATCH).await?;
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        let traces = outbox.traceparents(leader.conn(), &rows).await?;
        leader.check().await?;
        // `_sends` lives until the acknowledgements are in.
        let (_sends, (_, acks)) = enqueue_batch(outbox, producer, &rows, &traces).await?;
        for ack in acks {
            ack.await?;
        }
        outbox.mark(leader.conn(), &rows).await?;
        debug!(published = rows.len(), "Table outbox rows published.");
    }
    Ok(())
}

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
const MARKS_DEFERRED_MAX: usize = 500_000;

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

async fn lead_pipelined<O: TableOutbox>(
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

/// Enqueues a batch in change order: its `send` spans, and (change
/// counters, acknowledgements).
async fn enqueue_batch<O: TableOutbox>(
    outbox: &O,
    producer: &EventProducer,
    rows: &[O::Row],
    traces: &[Option<String>],
) -> Result<(SendSpans, (Vec<i64>, Vec<Ack>))> {
    let messages: Vec<(String, String, Vec<u8>)> = rows.iter().map(|r| outbox.message(r)).collect();
    let trace = |i: usize| traces.get(i).and_then(Option::as_deref);
    let sends = SendSpans::of(
        messages
            .iter()
            .enumerate()
            .map(|(i, (topic, _, _))| (topic.as_str(), trace(i))),
    );
    let mut acks = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    for (i, (row, (topic, key, payload))) in rows.iter().zip(&messages).enumerate() {
        let header = sends.header(topic, trace(i));
        acks.push(
            producer
                .enqueue_traced(topic, key.as_bytes(), payload, header)
                .await?,
        );
        seqs.push(outbox.change_seq(row));
    }
    Ok((sends, (seqs, acks)))
}

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

/// The condition "this row's published mark lags its change counter" of a
/// [`TableOutbox`] table, spelled as each backend's partial index on it is
/// (so that the index serves the read).
pub fn lagging(conn: &Conn) -> &'static str {
    match conn {
        Conn::Postgres(_) => "published_seq IS DISTINCT FROM change_seq",
        Conn::Sqlite(_) => "published_seq IS NOT change_seq",
    }
}

/// Marks rows of a [`TableOutbox`] table (`table`, keyed by `key`) published
/// at the change counter each was read at, in one statement; a row changed
/// since stays unpublished.
pub async fn mark_published_at(
    conn: &mut Conn,
    table: &str,
    key: &str,
    ids: &[String],
    seqs: &[i64],
) -> Result<()> {
    match conn {
        Conn::Postgres(c) => {
            sqlx::query(&format!(
                "UPDATE {table} t SET published_seq = u.seq \
                 FROM UNNEST($1::text[], $2::int8[]) AS u(id, seq) WHERE t.{key} = u.id"
            ))
            .bind(ids)
            .bind(seqs)
            .execute(&mut **c)
            .await?;
        }
        Conn::Sqlite(c) => {
            sqlx::query(&format!(
                "UPDATE {table} SET published_seq = s.value \
                 FROM json_each(?1) i JOIN json_each(?2) s ON s.key = i.key \
                 WHERE {key} = i.value"
            ))
            .bind(crate::db::sqlite::json_list(ids))
            .bind(crate::db::sqlite::json_list(seqs))
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// Remembers, with the crisis in `{schema}.crises`, the trace context of the
/// crisis event being applied: rows a service writes set-based for the
/// crisis later (decisions, instructions) are published under it, so they
/// continue the crisis's trace.
pub async fn set_crisis_traceparent(
    tx: &mut Tx,
    schema: &'static str,
    crisis_id: &str,
    traceparent: Option<&str>,
) -> Result<()> {
    let sql = format!("UPDATE {schema}.crises SET traceparent = $2 WHERE crisis_id = $1");
    crate::on_tx!(tx, conn => sqlx::query(&sql)
        .bind(crisis_id)
        .bind(traceparent)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// The trace context stored with the crisis of each row (`crisis_of`), in
/// row order: one lookup per batch, by distinct crisis.
pub async fn crisis_traceparents<R>(
    conn: &mut Conn,
    schema: &'static str,
    rows: &[R],
    crisis_of: impl Fn(&R) -> &str,
) -> Result<Vec<Option<String>>> {
    let crises: Vec<&str> = rows
        .iter()
        .map(&crisis_of)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let found: Vec<(String, String)> = match conn {
        Conn::Postgres(c) => {
            sqlx::query_as(&format!(
                "SELECT crisis_id, traceparent FROM {schema}.crises \
                 WHERE crisis_id = ANY($1) AND traceparent IS NOT NULL"
            ))
            .bind(&crises)
            .fetch_all(&mut **c)
            .await?
        }
        Conn::Sqlite(c) => {
            sqlx::query_as(&format!(
                "SELECT crisis_id, traceparent FROM {schema}.crises \
                 WHERE crisis_id IN (SELECT value FROM json_each(?1)) AND traceparent IS NOT NULL"
            ))
            .bind(crate::db::sqlite::json_list(&crises))
            .fetch_all(&mut **c)
            .await?
        }
    };
    let traces: std::collections::HashMap<String, String> = found.into_iter().collect();
    Ok(rows
        .iter()
        .map(|r| traces.get(crisis_of(r)).cloned())
        .collect())
}
