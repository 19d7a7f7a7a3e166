//! The transactional outbox: a service writes the events it must publish into
//! its own `<schema>.outbox` table in the same transaction as the state
//! change, and a relay publishes them afterwards. A crash between commit and
//! publish therefore delays an event; it never loses one.
//!
//! The relay:
//! - holds a PostgreSQL advisory lock for its schema, so exactly one relay
//!   publishes at a time and per-key order (which is sequence order) holds;
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
//!   traceparent text, created_at timestamptz, published_at timestamptz)`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::envelope::Envelope;
use crate::kafka::producer::EventProducer;
use crate::Result;

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

/// Appends rows to `<schema>.outbox` inside the caller's transaction, in one
/// statement.
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
pub async fn backlog(pool: &PgPool, schema: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
    ))
    .fetch_one(pool)
    .await?)
}

/// Publishes the outbox of `schema` until `shutdown`. `wake` lets the writer
/// nudge the relay right after a commit; without a nudge it polls.
pub async fn relay(
    pool: PgPool,
    schema: &'static str,
    producer: EventProducer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let lock_key = lock_key(schema);
    while !shutdown.is_cancelled() {
        match relay_while_leader(&pool, schema, lock_key, &producer, &wake, &shutdown).await {
            Ok(()) => {}
            Err(e) => {
                warn!(schema, error = %e, "Outbox relay failed; retrying.");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    info!(schema, "Outbox relay stopped.");
    Ok(())
}

fn lock_key(schema: &str) -> i64 {
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
    if !leader {
        debug!(schema, "Another relay holds the outbox; standing by.");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    }
    let select = format!(
        "SELECT seq, topic, key, payload FROM {schema}.outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1"
    );
    let mark = format!("UPDATE {schema}.outbox SET published_at = now() WHERE seq = ANY($1)");
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let rows: Vec<(i64, String, String, Vec<u8>)> = match sqlx::query_as(&select)
            .bind(BATCH)
            .fetch_all(&mut *conn)
            .await
        {
            Ok(r) => r,
            Err(e) => break Err(e.into()),
        };
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        // Enqueue in sequence order (librdkafka keeps per-partition order with
        // idempotence on), then wait for every acknowledgement.
        let mut acks = Vec::with_capacity(rows.len());
        for (_, topic, key, payload) in &rows {
            acks.push(producer.enqueue(topic, key.as_bytes(), payload).await?);
        }
        for ack in acks {
            ack.await?;
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        if let Err(e) = sqlx::query(&mark).bind(&seqs).execute(&mut *conn).await {
            break Err(e.into());
        }
        debug!(schema, published = seqs.len(), "Outbox rows published.");
    };
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key)
        .execute(&mut *conn)
        .await;
    result
}

/// An entity table that is its own outbox: rows carry a change counter and
/// a published mark, and a changed row is (re)published. Used where the
/// events are projections of rows written in bulk (decisions, instructions),
/// so the bulk transaction writes each fact once.
pub trait TableOutbox: Send + Sync {
    /// A row to publish.
    type Row: Send + Sync;

    /// Advisory-lock key: one relay per table at a time.
    fn lock_key(&self) -> i64;

    /// Rows changed since published, in change order.
    fn fetch(
        &self,
        conn: &mut PgConnection,
        limit: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Row>>> + Send;

    /// The message for a row: (topic, key, payload).
    fn message(&self, row: &Self::Row) -> (String, String, Vec<u8>);

    /// Marks rows published at the change they were read at.
    fn mark(
        &self,
        conn: &mut PgConnection,
        rows: &[Self::Row],
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// Publishes a [`TableOutbox`] until `shutdown`, with the same guarantees as
/// [`relay`]: one leader, change order, mark only after acknowledgement.
pub async fn relay_table<O: TableOutbox>(
    pool: PgPool,
    outbox: O,
    producer: EventProducer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead_table(&pool, &outbox, &producer, &wake, &shutdown).await {
            warn!(error = %e, "Table outbox relay failed; retrying.");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    Ok(())
}

async fn lead_table<O: TableOutbox>(
    pool: &PgPool,
    outbox: &O,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(outbox.lock_key())
        .fetch_one(&mut *conn)
        .await?;
    if !leader {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    }
    let result = async {
        while !shutdown.is_cancelled() {
            let rows = outbox.fetch(&mut conn, BATCH).await?;
            if rows.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let mut acks = Vec::with_capacity(rows.len());
            for row in &rows {
                let (topic, key, payload) = outbox.message(row);
                acks.push(producer.enqueue(&topic, key.as_bytes(), &payload).await?);
            }
            for ack in acks {
                ack.await?;
            }
            outbox.mark(&mut conn, &rows).await?;
            debug!(published = rows.len(), "Table outbox rows published.");
        }
        Ok(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(outbox.lock_key())
        .execute(&mut *conn)
        .await;
    result
}
