//! The registry's SQL on the embedded default's SQLite file: the same
//! decision as the PostgreSQL paths ([`decide`] against what is stored, then
//! an upsert with the `version <` guard), in one `BEGIN IMMEDIATE`
//! transaction, one prepared statement per winner. SQLite has no `COPY`;
//! one writer per file and statements cached by sqlx keep this at tens of
//! thousands of rows a second, plenty for a demo-size registry.

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};
use sumud_shared::Result;

use super::{Path, Written};
use crate::changes::{decide, Change, Decision, Stored, Versioned};

/// Ids per `json_each` lookup (one bound JSON array each).
const LOOKUP_CHUNK: usize = 5000;

/// What is stored for the given households.
pub async fn stored(conn: &mut SqliteConnection, ids: &[&str]) -> Result<HashMap<String, Stored>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let ids =
            serde_json::to_string(chunk).map_err(|e| sumud_shared::Error::Other(e.to_string()))?;
        let rows: Vec<(String, i64, String, i32, i64)> = sqlx::query_as(
            "SELECT household_id, version, event_id, src_partition, src_offset \
             FROM registry.households WHERE household_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        out.extend(
            rows.into_iter()
                .map(|(id, version, event_id, partition, offset)| {
                    (
                        id,
                        Stored {
                            version,
                            event_id,
                            partition,
                            offset,
                        },
                    )
                }),
        );
    }
    Ok(out)
}

/// The winners go in only over an older version: idempotent under
/// redelivery, as on PostgreSQL.
const UPSERT: &str = concat!(
    "INSERT INTO registry.households AS h
        (household_id, version, removed, area_code, governorate, district, members,
         welfare_score, flags, programmes, payment_channel, payment_provider, account_token,
         personal, event_id, src_partition, src_offset, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    newer_version_wins!()
);

/// Decides and writes a batch in one transaction. `BEGIN IMMEDIATE` takes
/// the file's write lock before reading, so no other writer can slip in
/// between the read and the upsert (and the upgrade can never fail with
/// `SQLITE_BUSY_SNAPSHOT` halfway).
pub async fn write(pool: &SqlitePool, batch: &[Versioned]) -> Result<Written> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<&str> = batch.iter().map(|v| v.household_id.as_str()).collect();
    let stored = stored(&mut tx, &ids).await?;
    let decision: Decision = decide(batch, &stored);
    let mut rows = 0;
    for &i in &decision.winners {
        let v = &batch[i];
        let q = sqlx::query(UPSERT).bind(&v.household_id).bind(v.version);
        let q = match &v.change {
            Change::Upsert(u) => {
                let h = &u.household;
                let personal = h
                    .personal
                    .as_ref()
                    .map(|p| serde_json::to_string(p).unwrap_or_else(|_| "{}".into()));
                q.bind(false)
                    .bind(&h.area_code)
                    .bind(&u.area.governorate)
                    .bind(&u.area.district)
                    .bind(h.members)
                    .bind(h.welfare_score)
                    .bind(json_array(h.flags.iter().map(|f| f.as_str())))
                    .bind(json_array(h.programmes.iter().map(String::as_str)))
                    .bind(h.payment.channel.as_str())
                    .bind(&h.payment.provider)
                    .bind(&h.payment.account_token)
                    .bind(personal)
            }
            Change::Remove => q
                .bind(true)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<i32>)
                .bind(None::<f64>)
                .bind("[]")
                .bind("[]")
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>),
        };
        rows += q
            .bind(&v.event_id)
            .bind(v.partition)
            .bind(v.offset)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(Written {
        decision,
        path: Path::Merge {
            stored: stored.len(),
        },
        rows,
    })
}

/// A JSON array with the elements PostgreSQL's
/// `string_to_array(<items joined by ','>, ',')` gives, so that both
/// backends store the same list (no element for an empty string; an item
/// holding a comma splits).
pub fn json_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let joined = items.collect::<Vec<_>>().join(",");
    let parts: Vec<&str> = if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(',').collect()
    };
    // A list of strings always serialises.
    serde_json::to_string(&parts).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_like_string_to_array() {
        assert_eq!(json_array([].into_iter()), "[]");
        assert_eq!(json_array([""].into_iter()), "[]");
        assert_eq!(json_array(["", ""].into_iter()), r#"["",""]"#);
        assert_eq!(
            json_array(["a,b", "q\"\\"].into_iter()),
            r#"["a","b","q\"\\"]"#
        );
    }
}
