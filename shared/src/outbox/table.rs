//! The table outbox: an entity table whose rows carry a change counter
//! and a published mark is its own outbox ([`TableOutbox`]); its relay
//! leads under [`Leadership`] and publishes one batch at a time, or hands a
//! pipelined outbox to `pipelined`. The helpers at the end spell the mark
//! for the tables that implement it.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{idle, pipelined, relay_backoff, stand_by, wait_after, Leadership, SendSpans, BATCH};
use crate::db::{Conn, Store};
use crate::kafka::producer::{Ack, EventProducer};
use crate::Result;

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
/// [`relay`](super::relay): one leader, change order, mark only after acknowledgement.
///
/// A pipelined outbox is published without stopping between batches: the
/// leader reads the next batch (rows whose mark lags, above the last change
/// counter it enqueued) while it enqueues the current one and earlier ones
/// await their acknowledgements; acknowledged rows are marked on a second
/// connection, many per statement, and while rows keep coming the marks wait
/// (up to `MARKS_DEFERRED_MAX` rows) for the relay to go quiet, since they
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

/// Leads while this relay holds the table's lock (see [`Leadership`]).
async fn lead_table<O: TableOutbox>(
    store: &Store,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let Some(mut leader) = Leadership::try_acquire(store, outbox.lock_key()).await? else {
        stand_by(shutdown).await;
        return Ok(());
    };
    let result = if O::PIPELINED {
        pipelined::lead(store, &mut leader, outbox, producer, wake, shutdown).await
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
            idle(shutdown, wake).await;
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

/// Enqueues a batch in change order: its `send` spans, and (change
/// counters, acknowledgements).
pub(super) async fn enqueue_batch<O: TableOutbox>(
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
