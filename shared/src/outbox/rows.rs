//! The row outbox's relay: publishes a schema's `<schema>.outbox` table in
//! sequence order while it holds the schema's lock (a PostgreSQL advisory
//! lock, or a lock file beside the SQLite database), marking rows only
//! after every acknowledgement.

use std::sync::Arc;

use sqlx::{PgConnection, PgPool, SqlitePool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{idle, leadership, relay_backoff, stand_by, wait_after, SendSpans, BATCH};
use crate::db::sqlite::FileLock;
use crate::db::Store;
use crate::kafka::producer::EventProducer;
use crate::Result;

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
        stand_by(shutdown).await;
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
            idle(shutdown, wake).await;
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
        stand_by(shutdown).await;
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
