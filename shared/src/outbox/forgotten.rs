//! What to do when the broker forgot what it acknowledged: the embedded
//! default's broker keeps its topics in memory, so after `sumud up` restarts
//! every message the outboxes marked published is gone, read or not. The
//! database cannot tell which of them a consumer read before the broker
//! went, so each outbox hands its consumers everything again; they are
//! idempotent on the event id, and an event already applied changes
//! nothing. Never called on a real cluster, which keeps what it acknowledged.

use crate::db::Store;
use crate::Result;

/// Marks every row of `<schema>.outbox` unpublished, so that its relay
/// publishes them all again, in sequence order. Returns how many.
pub async fn republish_rows(store: &Store, schema: &str) -> Result<u64> {
    let sql =
        format!("UPDATE {schema}.outbox SET published_at = NULL WHERE published_at IS NOT NULL");
    Ok(crate::on_store!(store, pool => sqlx::query(&sql).execute(pool).await?.rows_affected()))
}

/// Marks every row of a [`super::TableOutbox`] table unpublished (its
/// published mark no longer equals any change counter), so that its relay
/// publishes each row again as it stands. Returns how many.
pub async fn republish_table(store: &Store, table: &str) -> Result<u64> {
    let sql = format!("UPDATE {table} SET published_seq = NULL WHERE published_seq IS NOT NULL");
    Ok(crate::on_store!(store, pool => sqlx::query(&sql).execute(pool).await?.rows_affected()))
}

/// [`republish_rows`] for the rows written within `within` whose event id
/// is not in `applied`: for an outbox whose consumer keeps what it applied
/// and takes the same event at a new topic position for a replay, and
/// refuses an event older than `within` anyway (control, for the commands
/// the alerts service signs: an older command would only come back as a
/// dead letter, at every restart). Returns how many rows go out again.
pub async fn republish_rows_except(
    store: &Store,
    schema: &str,
    applied: &std::collections::HashSet<String>,
    within: std::time::Duration,
) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<(i64, Vec<u8>)> = match store {
        Store::Postgres(pool) => {
            sqlx::query_as(&format!(
                "SELECT seq, payload FROM {schema}.outbox WHERE published_at IS NOT NULL \
                 AND created_at >= now() - make_interval(secs => $1)"
            ))
            .bind(within.as_secs_f64())
            .fetch_all(pool)
            .await?
        }
        Store::Sqlite(pool) => {
            sqlx::query_as(&format!(
                "SELECT seq, payload FROM {schema}.outbox WHERE published_at IS NOT NULL \
                 AND created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)"
            ))
            .bind(format!("-{} seconds", within.as_secs()))
            .fetch_all(pool)
            .await?
        }
    };
    let again: Vec<i64> = rows
        .into_iter()
        .filter(|(_, payload)| {
            // A row that does not read as an event cannot have been applied.
            serde_json::from_slice::<Id>(payload).map_or(true, |e| !applied.contains(&e.id))
        })
        .map(|(seq, _)| seq)
        .collect();
    let done = match store {
        Store::Postgres(pool) => sqlx::query(&format!(
            "UPDATE {schema}.outbox SET published_at = NULL WHERE seq = ANY($1)"
        ))
        .bind(&again)
        .execute(pool)
        .await?
        .rows_affected(),
        Store::Sqlite(pool) => sqlx::query(&format!(
            "UPDATE {schema}.outbox SET published_at = NULL \
                 WHERE seq IN (SELECT value FROM json_each(?1))"
        ))
        .bind(crate::db::sqlite::json_list(&again))
        .execute(pool)
        .await?
        .rows_affected(),
    };
    Ok(done)
}
