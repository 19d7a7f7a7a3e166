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
//!
//! The parts, in the order a row travels: `enqueue` (here) writes it;
//! `rows` relays a `<schema>.outbox` table, `table` a [`TableOutbox`]
//! (an entity table that is its own outbox) one batch at a time or, for a
//! pipelined one, through `pipelined`; `leadership` decides who may relay;
//! `send_spans` gives each relayed batch its `send` spans; `crisis_trace`
//! keeps the crisis's trace context for rows written set-based later;
//! `forgotten` hands everything over again to a broker that lost it.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{Store, Tx};
use crate::envelope::Envelope;
use crate::Result;

mod crisis_trace;
mod forgotten;
mod leadership;
mod pipelined;
mod rows;
mod send_spans;
mod table;

pub use crisis_trace::{crisis_traceparents, set_crisis_traceparent};
pub use forgotten::{republish_rows, republish_rows_except, republish_table};
pub use leadership::{Leadership, CHECK_WITHIN};
pub use rows::{relay, relay_lock_key};
pub use send_spans::SendSpans;
pub use table::{lagging, mark_published_at, relay_table, TableOutbox};

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

/// A relay that does not lead waits a second (or for shutdown) before it
/// tries for the lock again.
async fn stand_by(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// A leader that read nothing waits for a writer's nudge, 100 ms or
/// shutdown, whichever comes first, before it reads again.
async fn idle(shutdown: &CancellationToken, wake: &Notify) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = wake.notified() => {}
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
}
