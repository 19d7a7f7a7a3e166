//! The crisis's trace context, kept with the crisis so that rows written
//! set-based for it later (decisions, instructions) are published under
//! the trace that declared it.

use crate::db::{Conn, Tx};
use crate::Result;

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
