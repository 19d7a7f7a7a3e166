//! Creating the instructions now due on SQLite. Each chunk is one
//! transaction holding the file's write lock (`BEGIN IMMEDIATE`): it reads
//! the crisis's budget, reads the first [`CHUNK`] tranches due and not yet
//! instructed, in due order, keeps the prefix that fits the remaining
//! budget, inserts it, reserves its amount and records its outbox batch.
//! Nothing can insert between the read and the write, so a chunk never
//! meets an instruction another pass created.

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::Result;

use super::{fitting, Chunk, Due, CHUNK};
use crate::config::DisbursementConfig;
use crate::db;
use crate::publisher::Handoff;

/// The tranches due and not yet instructed, and the top-ups of tranches an
/// amendment raised, in due order, with what their instructions need: the
/// same selection as PostgreSQL's cursor. `?1` crisis, `?2` seconds per
/// day, `?3` now, `?4` how many.
const DUE: &str = "
    WITH RECURSIVE t(n) AS (
        SELECT 1
        UNION ALL
        SELECT n + 1 FROM t
        WHERE n < (SELECT coalesce(max(tranches), 1) FROM disbursement.entitlements WHERE crisis_id = ?1)
    )
    SELECT d.household_id, d.kind, d.tranche, d.part, d.amount_minor, d.currency, d.crisis_revision,
           d.scheduled_at, h.payment_channel, h.payment_provider, h.account_token
    FROM (SELECT e.household_id, e.kind, t.n AS tranche, 0 AS part, e.amount_minor, e.currency,
                 e.crisis_revision,
                 strftime('%Y-%m-%dT%H:%M:%fZ', c.activated_at,
                          '+' || ((t.n - 1) * e.interval_days * ?2) || ' seconds') AS scheduled_at
          FROM disbursement.entitlements e
          JOIN disbursement.crises c ON c.crisis_id = e.crisis_id
          JOIN t ON t.n <= e.tranches
          WHERE e.crisis_id = ?1 AND e.status = 'entitled' AND c.state = 'active'
            -- Not found ineligible by a field team.
            AND NOT EXISTS (SELECT 1 FROM disbursement.entitlement_stops s
                            WHERE s.crisis_id = e.crisis_id AND s.household_id = e.household_id)
            -- Not instructed yet, and not paid under the household's other
            -- kind (a registry change switched it): one payment per tranche
            -- period.
            AND NOT EXISTS (SELECT 1 FROM disbursement.instructions i
                            WHERE i.crisis_id = e.crisis_id AND i.household_id = e.household_id
                              AND i.tranche = t.n
                              AND (i.kind = e.kind OR i.status NOT IN ('failed', 'reversed')))
          UNION ALL
          -- Top-ups: tranches already instructed for less than the
          -- entitlement's amount now, under an earlier crisis revision (a
          -- registry change keeps the revision and raises future tranches
          -- only), none of whose parts failed or was reversed, and still
          -- among its tranches; due at once.
          SELECT e.household_id, e.kind, p.tranche, p.next_part, e.amount_minor - p.instructed,
                 e.currency, e.crisis_revision, ?3
          FROM disbursement.entitlements e
          JOIN disbursement.crises c ON c.crisis_id = e.crisis_id
          JOIN (SELECT household_id, kind, tranche, sum(amount_minor) AS instructed,
                       max(part) + 1 AS next_part, max(status IN ('failed', 'reversed')) AS broken,
                       max(crisis_revision) AS revision
                FROM disbursement.instructions WHERE crisis_id = ?1
                GROUP BY household_id, kind, tranche) p
            ON p.household_id = e.household_id AND p.kind = e.kind
          WHERE e.crisis_id = ?1 AND e.status = 'entitled' AND c.state = 'active'
            -- Not found ineligible by a field team.
            AND NOT EXISTS (SELECT 1 FROM disbursement.entitlement_stops s
                            WHERE s.crisis_id = e.crisis_id AND s.household_id = e.household_id)
            AND e.amount_minor > p.instructed AND NOT p.broken AND p.tranche <= e.tranches
            AND e.crisis_revision > p.revision) d
    JOIN registry.households_v h ON h.household_id = d.household_id
    WHERE d.scheduled_at <= ?3
    ORDER BY d.scheduled_at, d.household_id, d.kind, d.tranche, d.part
    LIMIT ?4";

/// See [`super::create_due`].
pub(super) async fn create_due(
    pool: &SqlitePool,
    crisis_id: &str,
    config: &DisbursementConfig,
    handoff: &Handoff,
) -> Result<u64> {
    let mut created = 0;
    loop {
        let mut tx = sumud_shared::db::sqlite::begin(pool).await?;
        let now = Utc::now();
        let Some((budget, reserved, traceparent)) =
            sqlx::query_as::<_, (i64, i64, Option<String>)>(
                "SELECT budget_minor, reserved_minor, traceparent FROM disbursement.crises \
             WHERE crisis_id = ?1 AND state = 'active'",
            )
            .bind(crisis_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            break;
        };
        let due: Vec<Due> = sqlx::query_as(DUE)
            .bind(crisis_id)
            .bind(config.day_seconds)
            .bind(timestamp(now))
            .bind(CHUNK as i64)
            .fetch_all(&mut *tx)
            .await?;
        let full = due.len() == CHUNK;
        let mut chunk = Chunk::new(crisis_id, &config.pseudonym_secret, due);
        let fits = fitting(
            chunk.news.iter().map(|n| n.row.amount_minor),
            budget - reserved,
        );
        let complete = fits == chunk.len();
        chunk.truncate(fits);
        if fits > 0 {
            let deadline = now + chrono::Duration::seconds(config.deadline_secs);
            insert(&mut tx, &chunk, deadline).await?;
            // The CHECK on the crisis row refuses a reservation past the cap.
            sqlx::query(
                "UPDATE disbursement.crises SET reserved_minor = reserved_minor + ?2 WHERE crisis_id = ?1",
            )
            .bind(crisis_id)
            .bind(chunk.total())
            .execute(&mut *tx)
            .await?;
            let batch_id = db::insert_batch_sqlite(
                &mut tx,
                crisis_id,
                &chunk.attempts(),
                traceparent.as_deref(),
                deadline,
            )
            .await?;
            tx.commit().await?;
            created += fits as u64;
            handoff
                .committed(chunk.committed(batch_id, traceparent))
                .await;
        }
        if !(complete && full) {
            break;
        }
    }
    Ok(created)
}

/// Inserts a chunk in due order, in one statement over a JSON array of rows.
async fn insert(conn: &mut SqliteConnection, c: &Chunk, deadline_at: DateTime<Utc>) -> Result<()> {
    let rows: Vec<serde_json::Value> = c
        .news
        .iter()
        .map(|n| {
            let r = &n.row;
            serde_json::json!([
                r.instruction_id,
                n.household_id,
                n.kind,
                r.tranche,
                r.part,
                r.amount_minor,
                r.currency,
                r.beneficiary_ref,
                r.channel,
                r.provider,
                r.account_token,
                timestamp(r.scheduled_at),
                r.crisis_revision,
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO disbursement.instructions \
            (instruction_id, household_id, kind, tranche, part, amount_minor, currency, beneficiary_ref, \
             channel, provider, account_token, scheduled_at, crisis_revision, crisis_id, deadline_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, \
                value->>8, value->>9, value->>10, value->>11, value->>12, ?2, ?3 \
         FROM json_each(?1) ORDER BY key",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(&c.crisis_id)
    .bind(timestamp(deadline_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
