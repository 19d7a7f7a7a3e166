//! Sumud's own assistance for the partner agencies: the decisions changed
//! since last shared, read in change order with the household's match key,
//! and marked shared in the transaction that writes their records to the
//! outbox — so a record is never lost nor written twice for one change.

use sumud_shared::db::Tx;
use sumud_shared::{on_tx, Result};

/// A decision not yet shared at its current change.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Unshared {
    /// Decision id.
    pub entitlement_id: String,
    /// Crisis.
    pub crisis_id: String,
    /// `entitled`, `waitlisted` or `cancelled`.
    pub status: String,
    /// What the ledger counts it for over the period, minor units.
    pub total_minor: i64,
    /// Currency.
    pub currency: String,
    /// The change it was read at.
    pub change_seq: i64,
    /// Whether the partners hold it as given.
    pub shared_live: bool,
    /// The opaque id partners know its current record by.
    pub shared_record: Option<String>,
    /// The household's match key, if the registry has one.
    pub match_key: Option<String>,
    /// The crisis's first day.
    pub period_from: String,
    /// The crisis's last day.
    pub period_to: String,
    /// The crisis's title.
    pub title: String,
    /// The playbook it was decided under.
    pub playbook: String,
}

/// The transaction lock one sharing pass holds at a time ("SUMUDSH1");
/// SQLite's transaction holds the file's write lock already.
const SHARE_LOCK: i64 = 0x5355_4d55_4453_4831;

/// Takes the pass's lock for the transaction; false if another pass holds it.
pub async fn try_lock_sharing(tx: &mut Tx) -> Result<bool> {
    Ok(match tx {
        Tx::Postgres(c) => {
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SHARE_LOCK)
                .fetch_one(&mut **c)
                .await?
        }
        Tx::Sqlite(_) => true,
    })
}

/// Up to `limit` decisions changed since last shared, in change order.
pub async fn unshared(tx: &mut Tx, limit: i64) -> Result<Vec<Unshared>> {
    let sql = match tx {
        Tx::Postgres(_) => {
            "SELECT e.entitlement_id, e.crisis_id, e.status, \
                    GREATEST(e.amount_minor * e.tranches, e.ledger_floor_minor) AS total_minor, \
                    e.currency, e.change_seq, e.shared_live, e.shared_record, m.match_key, \
                    c.definition ->> 'starts_on' AS period_from, c.definition ->> 'ends_on' AS period_to, \
                    c.definition ->> 'title' AS title, e.playbook \
             FROM eligibility.entitlements e \
             JOIN eligibility.crises c ON c.crisis_id = e.crisis_id \
             LEFT JOIN registry.match_keys m ON m.household_id = e.household_id \
             WHERE e.shared_seq IS DISTINCT FROM e.change_seq ORDER BY e.change_seq LIMIT $1"
        }
        Tx::Sqlite(_) => {
            "SELECT e.entitlement_id, e.crisis_id, e.status, \
                    max(e.amount_minor * e.tranches, e.ledger_floor_minor) AS total_minor, \
                    e.currency, e.change_seq, e.shared_live, e.shared_record, m.match_key, \
                    json_extract(c.definition, '$.starts_on') AS period_from, \
                    json_extract(c.definition, '$.ends_on') AS period_to, \
                    json_extract(c.definition, '$.title') AS title, e.playbook \
             FROM eligibility.entitlements e \
             JOIN eligibility.crises c ON c.crisis_id = e.crisis_id \
             LEFT JOIN registry.match_keys m ON m.household_id = e.household_id \
             WHERE e.shared_seq IS NOT e.change_seq ORDER BY e.change_seq LIMIT $1"
        }
    };
    Ok(on_tx!(tx, conn => sqlx::query_as(sql).bind(limit).fetch_all(conn).await)?)
}

/// How a pass leaves one decision: the change it was read at, whether the
/// partners now hold it as given, and the record id they know it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Decision id.
    pub entitlement_id: String,
    /// The change it was read at.
    pub change_seq: i64,
    /// Whether the partners hold it as given.
    pub live: bool,
    /// The record id partners know it by, if it was ever shared.
    pub record: Option<String>,
}

/// Marks decisions shared at the change each was read at; a decision
/// changed since is read again by the next pass.
pub async fn mark_shared(tx: &mut Tx, marks: &[Shared]) -> Result<()> {
    let ids: Vec<&str> = marks.iter().map(|m| m.entitlement_id.as_str()).collect();
    let seqs: Vec<i64> = marks.iter().map(|m| m.change_seq).collect();
    let live: Vec<bool> = marks.iter().map(|m| m.live).collect();
    let records: Vec<Option<&str>> = marks.iter().map(|m| m.record.as_deref()).collect();
    match tx {
        Tx::Postgres(c) => {
            sqlx::query(
                "UPDATE eligibility.entitlements t \
                 SET shared_seq = u.seq, shared_live = u.live, shared_record = u.record \
                 FROM UNNEST($1::text[], $2::int8[], $3::bool[], $4::text[]) AS u(id, seq, live, record) \
                 WHERE t.entitlement_id = u.id",
            )
            .bind(&ids)
            .bind(&seqs)
            .bind(&live)
            .bind(&records)
            .execute(&mut **c)
            .await?;
        }
        Tx::Sqlite(c) => {
            use sumud_shared::db::sqlite::json_list;
            sqlx::query(
                "UPDATE eligibility.entitlements \
                 SET shared_seq = s.value, shared_live = l.value, shared_record = r.value \
                 FROM json_each(?1) i JOIN json_each(?2) s ON s.key = i.key \
                 JOIN json_each(?3) l ON l.key = i.key JOIN json_each(?4) r ON r.key = i.key \
                 WHERE entitlement_id = i.value",
            )
            .bind(json_list(&ids))
            .bind(json_list(&seqs))
            .bind(json_list(&live))
            .bind(json_list(&records))
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// Has the decisions of crisis `crisis_id` that partners hold shared
/// again by the next pass (its period or title changed: their records
/// must say so), without touching the decisions themselves.
pub async fn reshare_crisis(tx: &mut Tx, crisis_id: &str) -> Result<()> {
    const SQL: &str =
        "UPDATE eligibility.entitlements SET shared_seq = NULL WHERE crisis_id = $1 AND shared_live";
    on_tx!(tx, conn => sqlx::query(SQL).bind(crisis_id).execute(conn).await.map(drop))?;
    Ok(())
}
