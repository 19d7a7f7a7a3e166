//! The SQL of the instructions' outbox: `disbursement.instruction_batches`,
//! one row per transaction that created or re-issued attempts, listing them
//! in publication order with their shared deadline. The relay publishes a
//! batch and then marks that one row; the deadline watch reads the batches
//! whose deadline passed. Re-issuing retries writes its batch here too.
//! On SQLite a batch's attempts are one JSON array of [id, attempt] pairs.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sumud_shared::db::sqlite::{json_list, timestamp};
use sumud_shared::db::{Conn, Store};
use sumud_shared::events::payment::RejectionReason;
use sumud_shared::{on_conn, Result};

/// An instruction attempt as published (and as exported to pain.001).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InstructionRow {
    /// Id.
    pub instruction_id: String,
    /// Attempt.
    pub attempt: i32,
    /// Crisis.
    pub crisis_id: String,
    /// Crisis revision.
    pub crisis_revision: i32,
    /// Pseudonym.
    pub beneficiary_ref: String,
    /// Account token.
    pub account_token: String,
    /// Amount.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Channel.
    pub channel: String,
    /// Provider.
    pub provider: String,
    /// Tranche.
    pub tranche: i32,
    /// 0 for the tranche itself, n for its n-th top-up.
    pub part: i32,
    /// Due time.
    pub scheduled_at: DateTime<Utc>,
}

/// The columns of [`InstructionRow`].
pub(crate) const INSTRUCTION_COLUMNS: &str =
    "instruction_id, attempt, crisis_id, crisis_revision, beneficiary_ref, account_token, amount_minor, \
     currency, channel, provider, tranche, part, scheduled_at";

/// A committed batch not yet marked published.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Its outbox sequence number.
    pub batch_id: i64,
    /// The attempts it publishes, in order: (instruction id, attempt).
    pub attempts: Vec<(String, i32)>,
    /// The trace context its messages continue.
    pub traceparent: Option<String>,
}

/// Records a batch of attempts of one crisis in the caller's SQLite
/// transaction: the outbox entry the relay publishes them by, and their
/// deadline watch. Returns its sequence number. (On PostgreSQL the pass
/// and the re-issue each write their batch in the statement that reserves
/// or re-issues.)
pub async fn insert_batch_sqlite(
    conn: &mut SqliteConnection,
    crisis_id: &str,
    attempts: &[(String, i32)],
    traceparent: Option<&str>,
    deadline_at: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO disbursement.instruction_batches \
             (crisis_id, attempts, traceparent, deadline_at) VALUES (?1, ?2, ?3, ?4) \
         RETURNING batch_id",
    )
    .bind(crisis_id)
    .bind(json_list(attempts))
    .bind(traceparent)
    .bind(timestamp(deadline_at))
    .fetch_one(conn)
    .await?)
}

/// The oldest batches not yet marked published, at most `limit`: their ids
/// only, so that a relay looking for batches nobody handed over does not
/// read again the lists of those it is publishing.
pub async fn unpublished_batch_ids(conn: &mut Conn, limit: i64) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT batch_id FROM disbursement.instruction_batches \
         WHERE published_at IS NULL ORDER BY batch_id LIMIT $1";
    Ok(on_conn!(conn, c => sqlx::query_scalar(SQL).bind(limit).fetch_all(c).await)?)
}

/// A batch by id, if it is still unpublished.
pub async fn unpublished_batch(conn: &mut Conn, batch_id: i64) -> Result<Option<Batch>> {
    Ok(match conn {
        Conn::Postgres(c) => {
            let row: Option<(Vec<String>, Vec<i32>, Option<String>)> = sqlx::query_as(
                "SELECT ids, attempts, traceparent FROM disbursement.instruction_batches \
                 WHERE batch_id = $1 AND published_at IS NULL",
            )
            .bind(batch_id)
            .fetch_optional(&mut **c)
            .await?;
            row.map(|(ids, attempts, traceparent)| Batch {
                batch_id,
                attempts: ids.into_iter().zip(attempts).collect(),
                traceparent,
            })
        }
        Conn::Sqlite(c) => {
            let row: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT attempts, traceparent FROM disbursement.instruction_batches \
                 WHERE batch_id = ?1 AND published_at IS NULL",
            )
            .bind(batch_id)
            .fetch_optional(&mut **c)
            .await?;
            match row {
                None => None,
                Some((attempts, traceparent)) => Some(Batch {
                    batch_id,
                    attempts: serde_json::from_str(&attempts).map_err(|e| {
                        sumud_shared::Error::unreadable(
                            format!("attempt list of instruction batch {batch_id}"),
                            e,
                        )
                    })?,
                    traceparent,
                }),
            }
        }
    })
}

/// The attempts of a batch still open (the instruction is at that attempt
/// and has no final status from its provider yet), in the batch's order.
/// One the provider already acknowledged (`received`, `pending`) goes out
/// again too: a batch is read back only when its publication is in doubt,
/// and after a broker that forgot its topics the provider's final answer
/// may be gone; asked again, a provider answers with what it did. An
/// attempt that moved on since (final, or re-issued) is left out.
pub async fn batch_rows(conn: &mut Conn, batch: &Batch) -> Result<Vec<InstructionRow>> {
    let columns = INSTRUCTION_COLUMNS
        .split(", ")
        .map(|c| format!("i.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(match conn {
        Conn::Postgres(c) => {
            let (ids, attempts): (Vec<&str>, Vec<i32>) = batch
                .attempts
                .iter()
                .map(|(id, a)| (id.as_str(), *a))
                .unzip();
            sqlx::query_as(&format!(
                "SELECT {columns} FROM UNNEST($1::text[], $2::int4[]) WITH ORDINALITY AS u(id, attempt, n) \
                 JOIN disbursement.instructions i ON i.instruction_id = u.id AND i.attempt = u.attempt \
                 WHERE i.status IN ('instructed', 'received', 'pending') ORDER BY u.n"
            ))
            .bind(&ids)
            .bind(&attempts)
            .fetch_all(&mut **c)
            .await?
        }
        Conn::Sqlite(c) => {
            sqlx::query_as(&format!(
                "SELECT {columns} FROM json_each(?1) u \
                 JOIN disbursement.instructions i \
                   ON i.instruction_id = u.value ->> 0 AND i.attempt = u.value ->> 1 \
                 WHERE i.status IN ('instructed', 'received', 'pending') ORDER BY u.key"
            ))
            .bind(json_list(&batch.attempts))
            .fetch_all(&mut **c)
            .await?
        }
    })
}

/// Marks unpublished every published batch that lists an attempt still
/// open (`instructed`, `received`, `pending`, and still the instruction's
/// current attempt), for a broker that forgot what it acknowledged (see
/// `sumud_shared::outbox::republish_rows`): the provider may never have
/// read the instruction, or its answer may be gone. Asked again, a provider
/// answers with what it did (contracts: a reference is paid once and a
/// repeated request gets the same answer). Returns how many batches.
pub async fn republish_open_batches(store: &Store) -> Result<u64> {
    let done = match store {
        Store::Postgres(pool) => sqlx::query(
            "UPDATE disbursement.instruction_batches b SET published_at = NULL \
                 WHERE b.published_at IS NOT NULL AND EXISTS ( \
                     SELECT 1 FROM UNNEST(b.ids, b.attempts) AS u(id, attempt) \
                     JOIN disbursement.instructions i \
                       ON i.instruction_id = u.id AND i.attempt = u.attempt \
                     WHERE i.status IN ('instructed', 'received', 'pending'))",
        )
        .execute(pool)
        .await?
        .rows_affected(),
        Store::Sqlite(pool) => sqlx::query(
            "UPDATE disbursement.instruction_batches SET published_at = NULL \
                 WHERE published_at IS NOT NULL AND EXISTS ( \
                     SELECT 1 FROM json_each(instruction_batches.attempts) u \
                     JOIN disbursement.instructions i \
                       ON i.instruction_id = u.value ->> 0 AND i.attempt = u.value ->> 1 \
                     WHERE i.status IN ('instructed', 'received', 'pending'))",
        )
        .execute(pool)
        .await?
        .rows_affected(),
    };
    Ok(done)
}

/// Marks batches published (every message of each acknowledged).
pub async fn mark_batches_published(conn: &mut Conn, batch_ids: &[i64]) -> Result<()> {
    match conn {
        Conn::Postgres(c) => {
            sqlx::query(
                "UPDATE disbursement.instruction_batches SET published_at = now() \
                 WHERE batch_id = ANY($1) AND published_at IS NULL",
            )
            .bind(batch_ids)
            .execute(&mut **c)
            .await?;
        }
        Conn::Sqlite(c) => {
            sqlx::query(
                "UPDATE disbursement.instruction_batches \
                 SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE batch_id IN (SELECT value FROM json_each(?1)) AND published_at IS NULL",
            )
            .bind(json_list(batch_ids))
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// Attempts committed and not yet published, for the outbox backlog.
pub async fn unpublished_attempts(store: &Store) -> Result<i64> {
    let sql = match store {
        Store::Postgres(_) => {
            "SELECT CAST(coalesce(sum(cardinality(ids)), 0) AS bigint) \
             FROM disbursement.instruction_batches WHERE published_at IS NULL"
        }
        Store::Sqlite(_) => {
            "SELECT coalesce(sum(json_array_length(attempts)), 0) \
             FROM disbursement.instruction_batches WHERE published_at IS NULL"
        }
    };
    Ok(sumud_shared::on_store!(store, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
}

/// Ends the scheduled retries that must not go out: those of a crisis no
/// longer active (`crisis_closed`) and those whose entitlement is no longer
/// entitled — cancelled, its household removed from the registry, or
/// found ineligible by a field team (`entitlement_cancelled`). One certainly unpaid ends `failed` with that
/// reason and its money goes back to the budget; one whose outcome is
/// unknown (a timeout) may have been paid, so it is held instead: never
/// re-issued, its money reserved until the provider answers. In one
/// transaction; on PostgreSQL an instruction a status report holds locked
/// is left to the next round.
pub async fn stop_retries(store: &Store) -> Result<Stopped> {
    let lock = match store {
        Store::Postgres(_) => " FOR UPDATE OF i SKIP LOCKED",
        Store::Sqlite(_) => "",
    };
    let find = format!(
        "SELECT i.instruction_id, i.crisis_id, i.amount_minor, \
                CASE WHEN c.state <> 'active' THEN 'crisis_closed' ELSE 'entitlement_cancelled' END, \
                coalesce(i.reason_code, '') \
         FROM disbursement.instructions i JOIN disbursement.crises c ON c.crisis_id = i.crisis_id \
         WHERE i.status = 'retry_scheduled' AND i.next_attempt_at IS NOT NULL \
           AND (c.state <> 'active' OR NOT EXISTS ( \
             SELECT 1 FROM disbursement.entitlements e WHERE e.crisis_id = i.crisis_id \
               AND e.household_id = i.household_id AND e.kind = i.kind AND e.status = 'entitled') \
             OR EXISTS (SELECT 1 FROM disbursement.entitlement_stops s \
               WHERE s.crisis_id = i.crisis_id AND s.household_id = i.household_id)) \
         ORDER BY i.instruction_id{lock}"
    );
    let mut tx = store.begin().await?;
    let rows: Vec<(String, String, i64, String, String)> =
        sumud_shared::on_tx!(&mut tx, conn => sqlx::query_as(&find).fetch_all(conn).await)?;
    let mut stopped = Stopped::default();
    for (id, crisis, amount, reason, last) in rows {
        if RejectionReason::UNKNOWN_OUTCOMES.contains(&last.as_str()) {
            super::set_status(&mut tx, &id, "retry_scheduled", None, None, None).await?;
            stopped.held.push((id, crisis, reason));
        } else {
            super::set_status(&mut tx, &id, "failed", Some(&reason), None, None).await?;
            super::release(&mut tx, &crisis, amount).await?;
            stopped.failed.push((id, crisis, reason));
        }
    }
    tx.commit().await?;
    Ok(stopped)
}

/// The retries [`stop_retries`] ended, each (instruction, crisis, reason).
#[derive(Debug, Default)]
pub struct Stopped {
    /// Certainly unpaid: failed, money released.
    pub failed: Vec<(String, String, String)>,
    /// Outcome unknown: held, money reserved until the provider answers.
    pub held: Vec<(String, String, String)>,
}

/// What a re-issue still needs, as `reissue_due`'s condition on the row
/// being updated: its crisis active and its entitlement still entitled (the
/// same test as [`stop_retries`], so a retry that became due between the
/// two statements is ended, not sent).
const STILL_OWED: &str = "EXISTS (SELECT 1 FROM disbursement.crises c \
         WHERE c.crisis_id = instructions.crisis_id AND c.state = 'active') \
     AND EXISTS (SELECT 1 FROM disbursement.entitlements e \
         WHERE e.crisis_id = instructions.crisis_id AND e.household_id = instructions.household_id \
           AND e.kind = instructions.kind AND e.status = 'entitled') \
     AND NOT EXISTS (SELECT 1 FROM disbursement.entitlement_stops s \
         WHERE s.crisis_id = instructions.crisis_id AND s.household_id = instructions.household_id)";

/// Re-issues the instructions whose retry time has come as their next
/// attempt, with a fresh deadline, and records each crisis's re-issued
/// attempts as one batch in the same transaction. Returns how many.
pub async fn reissue_due(store: &Store, deadline_secs: i64) -> Result<u64> {
    match store {
        // One statement: the batches are written with the attempts they list.
        Store::Postgres(pool) => {
            let n: i64 = sqlx::query_scalar(&format!(
                "WITH r AS ( \
                    UPDATE disbursement.instructions SET attempt = attempt + 1, status = 'instructed', \
                        reason_code = NULL, next_attempt_at = NULL, \
                        deadline_at = now() + make_interval(secs => $1::float8), overdue = false, updated_at = now() \
                    WHERE next_attempt_at <= now() AND status = 'retry_scheduled' AND {STILL_OWED} \
                    RETURNING instruction_id, attempt, crisis_id, deadline_at), \
                 b AS ( \
                    INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, traceparent, deadline_at) \
                    SELECT r.crisis_id, array_agg(r.instruction_id ORDER BY r.instruction_id), \
                           array_agg(r.attempt ORDER BY r.instruction_id), \
                           (SELECT c.traceparent FROM disbursement.crises c WHERE c.crisis_id = r.crisis_id), \
                           max(r.deadline_at) \
                    FROM r GROUP BY r.crisis_id RETURNING cardinality(ids) AS n) \
                 SELECT CAST(coalesce(sum(n), 0) AS bigint) FROM b"
            ))
            .bind(deadline_secs as f64)
            .fetch_one(pool)
            .await?;
            Ok(n as u64)
        }
        Store::Sqlite(pool) => {
            let now = Utc::now();
            let deadline = now + chrono::Duration::seconds(deadline_secs);
            let mut tx = sumud_shared::db::sqlite::begin(pool).await?;
            let rows: Vec<(String, i32, String)> = sqlx::query_as(&format!(
                "UPDATE disbursement.instructions SET attempt = attempt + 1, status = 'instructed', \
                     reason_code = NULL, next_attempt_at = NULL, deadline_at = ?2, overdue = 0, updated_at = ?1 \
                 WHERE next_attempt_at <= ?1 AND status = 'retry_scheduled' AND {STILL_OWED} \
                 RETURNING instruction_id, attempt, crisis_id"
            ))
            .bind(timestamp(now))
            .bind(timestamp(deadline))
            .fetch_all(&mut *tx)
            .await?;
            let mut by_crisis: std::collections::BTreeMap<String, Vec<(String, i32)>> =
                Default::default();
            for (id, attempt, crisis) in rows {
                by_crisis.entry(crisis).or_default().push((id, attempt));
            }
            let mut n = 0;
            for (crisis, mut attempts) in by_crisis {
                attempts.sort();
                let trace: Option<String> = sqlx::query_scalar(
                    "SELECT traceparent FROM disbursement.crises WHERE crisis_id = ?1",
                )
                .bind(&crisis)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
                n += attempts.len() as u64;
                insert_batch_sqlite(&mut tx, &crisis, &attempts, trace.as_deref(), deadline)
                    .await?;
            }
            tx.commit().await?;
            Ok(n)
        }
    }
}

/// Flags the attempts that have no final status past their deadline, once
/// per batch: each batch whose deadline passed is checked, and its attempts
/// still open (instructed, received or pending at that attempt) are marked
/// overdue. Returns how many were flagged.
pub async fn flag_overdue(store: &Store) -> Result<u64> {
    let r = match store {
        Store::Postgres(pool) => sqlx::query(
            "WITH due AS ( \
                UPDATE disbursement.instruction_batches SET deadline_checked = true \
                WHERE NOT deadline_checked AND deadline_at < now() RETURNING ids, attempts) \
             UPDATE disbursement.instructions i SET overdue = true, updated_at = now() \
             FROM (SELECT u.id, u.attempt FROM due, UNNEST(due.ids, due.attempts) AS u(id, attempt)) d \
             WHERE i.instruction_id = d.id AND i.attempt = d.attempt \
               AND i.status IN ('instructed', 'received', 'pending') AND NOT i.overdue",
        )
        .execute(pool)
        .await?
        .rows_affected(),
        Store::Sqlite(pool) => {
            let now = timestamp(Utc::now());
            let mut tx = sumud_shared::db::sqlite::begin(pool).await?;
            let flagged = sqlx::query(
                "UPDATE disbursement.instructions SET overdue = 1, updated_at = ?1 \
                 FROM (SELECT u.value ->> 0 AS id, u.value ->> 1 AS attempt \
                       FROM disbursement.instruction_batches b, json_each(b.attempts) u \
                       WHERE NOT b.deadline_checked AND b.deadline_at < ?1) d \
                 WHERE instructions.instruction_id = d.id AND instructions.attempt = d.attempt \
                   AND NOT instructions.overdue AND instructions.status IN ('instructed', 'received', 'pending')",
            )
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE disbursement.instruction_batches SET deadline_checked = 1 \
                 WHERE NOT deadline_checked AND deadline_at < ?1",
            )
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            flagged
        }
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::INSTRUCTION_COLUMNS;

    #[test]
    fn the_row_columns_name_every_field_once() {
        let columns: Vec<&str> = INSTRUCTION_COLUMNS.split(", ").map(str::trim).collect();
        let mut unique = columns.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), columns.len());
        assert_eq!(columns.len(), 13);
    }
}
