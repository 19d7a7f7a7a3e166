//! The expansion: every not-yet-decided eligible household of a crisis,
//! selected, priced, ranked and decided set-based in the database, with the
//! budget cut-off decided by a running sum in priority order.

use sqlx::{PgConnection, Row, SqliteConnection};
use sumud_shared::db::sqlite::json_list;
use sumud_shared::db::Tx;
use sumud_shared::Result;

use super::{CrisisRow, PRIORITY_ORDER_E, WAITLISTED};
use crate::policy::{overlap_reason_sql, overlapped_sql};

/// Counts of an expansion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expansion {
    /// New entitled decisions.
    pub entitled: i64,
    /// New waitlisted decisions.
    pub waitlisted: i64,
    /// Amount newly committed against the budget.
    pub committed_minor: i64,
}

/// Decides every not-yet-decided eligible household of the crisis (or only
/// those in `only`), within the remaining budget: on PostgreSQL in one
/// statement, on SQLite in one statement that stages the decisions and a
/// few that apply them, in the same transaction.
///
/// Vertical: enrolled in the playbook's programme. Horizontal: not enrolled,
/// welfare score under the (relaxed) threshold. Both: living in one of the
/// crisis areas. Per-tranche amount: min(flat + per-member × members, cap).
/// Then the overlap rule ([`crate::policy::overlapped`]) weighs what the household
/// already holds from other crises whose period overlaps this one's (the
/// assistance ledger): a household it leaves nothing to pay gets no
/// decision (`explain` says why), a reduced one says by whom and how much.
/// A household is entitled while the running total of (amount × tranches)
/// in [`PRIORITY_ORDER`] stays within the remaining budget; the rest are
/// waitlisted with that reason.
///
/// On PostgreSQL the expansions of different crises take one lock in turn,
/// so that two crises declared together each see the other's decisions and
/// neither pays a household the other already covers (SQLite's transaction
/// holds the file's write lock already).
pub async fn expand(tx: &mut Tx, c: &CrisisRow, only: Option<&[String]>) -> Result<Expansion> {
    lock_ledger(tx).await?;
    match tx {
        Tx::Postgres(tx) => expand_postgres(tx, c, only).await,
        Tx::Sqlite(tx) => expand_sqlite(tx, c, only).await,
    }
}

/// Takes the ledger's transaction lock on PostgreSQL: every transaction
/// that changes decisions takes it first (the handler, before anything
/// else), so that what one reads of other crises' decisions cannot change
/// before it commits. Held again by the same transaction, it is a no-op;
/// on SQLite the transaction holds the file's write lock already.
pub async fn lock_ledger(tx: &mut Tx) -> Result<()> {
    if let Tx::Postgres(pg) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LEDGER_LOCK)
            .execute(&mut **pg)
            .await?;
    }
    Ok(())
}

/// The transaction lock expansions take in turn ("SUMUDLG1").
const LEDGER_LOCK: i64 = 0x5355_4d55_444c_4731;

/// The period of crisis `c` as the ledger's ISO dates.
fn period(c: &CrisisRow) -> (String, String) {
    (
        c.definition.starts_on.to_string(),
        c.definition.ends_on.to_string(),
    )
}

async fn expand_postgres(
    conn: &mut PgConnection,
    c: &CrisisRow,
    only: Option<&[String]>,
) -> Result<Expansion> {
    let r = &c.resolved;
    let remaining = c.budget_minor - c.committed_minor;
    let v = r.vertical.clone();
    let h = r.horizontal.clone();
    let flags: Vec<&str> = r.priority_flags.iter().map(|f| f.as_str()).collect();
    let (starts_on, ends_on) = period(c);
    let paid = overlapped_sql(
        r,
        ("GREATEST", "LEAST"),
        "e.base",
        "$14",
        "coalesce(a.total, 0)",
    );
    let overlap_reason = overlap_reason_sql(r, "base", "amount", "assisted", "by_whom");
    let row = sqlx::query(&format!(
        r#"
        WITH cand AS (
            SELECT hh.household_id, hh.version, hh.members, hh.welfare_score, hh.area_code,
                   hh.governorate, hh.district,
                   ($2::text IS NOT NULL AND $3::boolean AND $2 = ANY(hh.programmes)) AS is_vertical,
                   (SELECT count(*) FROM unnest(hh.flags) f WHERE f = ANY($4::text[]))::int AS priority
            FROM registry.households_v hh
            WHERE (hh.governorate = ANY($5::text[]) OR hh.district = ANY($5::text[])
                   OR hh.area_code = ANY($5::text[]))
              AND ($6::text[] IS NULL OR hh.household_id = ANY($6::text[]))
        ), eligible AS (
            SELECT c.*, CASE WHEN is_vertical THEN 'vertical' ELSE 'horizontal' END AS kind,
                   CASE WHEN is_vertical THEN LEAST($7::bigint + $8::bigint * members, $9::bigint)
                        ELSE LEAST($10::bigint + $11::bigint * members, $12::bigint) END AS base
            FROM cand c
            WHERE is_vertical OR ($13::float8 IS NOT NULL AND welfare_score < $13::float8)
        ), assisted AS (
            -- What each eligible household already holds from other crises
            -- for a period overlapping this one's, and from whom.
            SELECT household_id, sum(total)::bigint AS total,
                   coalesce(sum(total) FILTER (WHERE source = 'partner'), 0)::bigint AS partner_total,
                   string_agg(source || ' ' || source_id, ', ' ORDER BY source_id COLLATE "C") AS by_whom
            FROM (SELECT o.household_id, o.source, o.source_id, sum(o.total_minor)::bigint AS total
                  FROM eligible e
                  JOIN eligibility.assistance_ledger o ON o.household_id = e.household_id
                  WHERE NOT (o.source = 'crisis' AND o.source_id = $1) AND o.currency = $16 AND o.period_from <= $21 AND $20 <= o.period_to
                  GROUP BY o.household_id, o.source, o.source_id) s
            GROUP BY household_id
        ), priced AS (
            SELECT e.*, coalesce(a.total, 0) AS assisted, coalesce(a.partner_total, 0) AS partner,
                   a.by_whom, {paid} AS amount
            FROM eligible e LEFT JOIN assisted a ON a.household_id = e.household_id
        ), fresh AS (
            -- Households without a live decision in this crisis that the
            -- overlap rule leaves something to pay; a cancelled decision of
            -- the same kind is re-enrolled in place.
            SELECT e.*, x.entitlement_id AS cancelled_id,
                   sum(e.amount * $14::int) OVER w AS running,
                   row_number() OVER w AS rank
            FROM priced e
            LEFT JOIN eligibility.entitlements x
                   ON x.crisis_id = $1 AND x.household_id = e.household_id AND x.kind = e.kind
            WHERE e.amount > 0
              AND NOT EXISTS (SELECT 1 FROM eligibility.entitlements y
                              WHERE y.crisis_id = $1 AND y.household_id = e.household_id
                                AND y.status <> 'cancelled')
            WINDOW w AS (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING)
        ), decided AS (
            SELECT f.*, running <= $15 AS covered,
                   $15 - running + amount * $14 AS left_before,
                   CASE WHEN kind = 'vertical'
                        THEN 'vertical top-up: enrolled in ' || $2
                        ELSE 'horizontal enrolment: welfare score ' || welfare_score || ' under ' || $13::float8 END
                   || '; area ' || area_code || ' is in the crisis areas; '
                   || base || ' per tranche for ' || members || ' members x ' || $14 || ' tranches'
                   || {overlap_reason}
                   || CASE WHEN running <= $15 THEN '' ELSE '{WAITLISTED}' END AS reason
            FROM fresh f
        ), inserted AS (
            INSERT INTO eligibility.entitlements
                (entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, tranches,
                 interval_days, committed_minor, priority, members, welfare_score, area_code, governorate,
                 district, crisis_revision, registry_version, playbook, reason, budget_rank, budget_left_minor,
                 assisted_minor, assisted_by, partner_minor)
            SELECT $1 || '/' || household_id || '/' || kind, $1, household_id, kind,
                   CASE WHEN covered THEN 'entitled' ELSE 'waitlisted' END,
                   amount, $16, $14, $17, CASE WHEN covered THEN amount * $14 ELSE 0 END,
                   priority, members, welfare_score, area_code, governorate, district, $18, version, $19, reason,
                   rank, left_before, assisted, by_whom, partner
            FROM decided WHERE cancelled_id IS NULL
            -- Index order: the inserts append to the indexes instead of landing at random.
            ORDER BY household_id, kind
            RETURNING status, committed_minor
        ), reenrolled AS (
            UPDATE eligibility.entitlements t SET
                status = CASE WHEN d.covered THEN 'entitled' ELSE 'waitlisted' END,
                amount_minor = d.amount, tranches = $14, interval_days = $17,
                committed_minor = CASE WHEN d.covered THEN d.amount * $14 ELSE 0 END,
                priority = d.priority, members = d.members, welfare_score = d.welfare_score,
                area_code = d.area_code, governorate = d.governorate, district = d.district,
                crisis_revision = $18, registry_version = d.version, playbook = $19, reason = d.reason,
                budget_rank = d.rank, budget_left_minor = d.left_before,
                assisted_minor = d.assisted, assisted_by = d.by_whom, partner_minor = d.partner,
                updated_at = now(), change_seq = nextval('eligibility.change_seq')
            FROM decided d WHERE d.cancelled_id IS NOT NULL AND t.entitlement_id = d.cancelled_id
            RETURNING t.status, t.committed_minor
        ), total AS (
            SELECT count(*) FILTER (WHERE status = 'entitled') AS entitled,
                   count(*) FILTER (WHERE status = 'waitlisted') AS waitlisted,
                   coalesce(sum(committed_minor), 0)::bigint AS committed
            FROM (SELECT * FROM inserted UNION ALL SELECT * FROM reenrolled) u
        ), budget AS (
            UPDATE eligibility.crises SET committed_minor = committed_minor + (SELECT committed FROM total)
            WHERE crisis_id = $1
        )
        SELECT entitled, waitlisted, committed FROM total
        "#
    ))
    .bind(&c.crisis_id)
    .bind(&r.programme)
    .bind(v.is_some())
    .bind(&flags)
    .bind(&c.definition.areas)
    .bind(only)
    .bind(v.as_ref().map_or(0, |a| a.flat_minor))
    .bind(v.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(v.as_ref().map_or(0, |a| a.cap_minor))
    .bind(h.as_ref().map_or(0, |a| a.flat_minor))
    .bind(h.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(h.as_ref().map_or(0, |a| a.cap_minor))
    .bind(h.as_ref().and(r.max_welfare_score))
    .bind(r.tranches as i32)
    .bind(remaining)
    .bind(&c.definition.budget.currency)
    .bind(r.interval_days as i32)
    .bind(c.revision)
    .bind(&r.playbook)
    .bind(&starts_on)
    .bind(&ends_on)
    .fetch_one(conn)
    .await?;
    Ok(Expansion {
        entitled: row.get("entitled"),
        waitlisted: row.get("waitlisted"),
        committed_minor: row.get("committed"),
    })
}

/// The decisions of one expansion, staged per connection on SQLite (which
/// has no data-modifying `WITH`): the same selection, pricing and ranking
/// as PostgreSQL's statement, then applied by the statements below.
const STAGE_SQLITE: &str = r#"
    CREATE TEMP TABLE expansion AS
    WITH cand AS (
        SELECT hh.household_id, hh.version, hh.members, hh.welfare_score, hh.area_code,
               hh.governorate, hh.district,
               (?2 IS NOT NULL AND ?3
                AND EXISTS (SELECT 1 FROM json_each(hh.programmes) p WHERE p.value = ?2)) AS is_vertical,
               (SELECT count(*) FROM json_each(hh.flags) f
                 WHERE f.value IN (SELECT value FROM json_each(?4))) AS priority
        FROM registry.households_v hh
        WHERE (hh.governorate IN (SELECT value FROM json_each(?5))
               OR hh.district IN (SELECT value FROM json_each(?5))
               OR hh.area_code IN (SELECT value FROM json_each(?5)))
          AND (?6 IS NULL OR hh.household_id IN (SELECT value FROM json_each(?6)))
    ), eligible AS (
        SELECT c.*, CASE WHEN is_vertical THEN 'vertical' ELSE 'horizontal' END AS kind,
               CASE WHEN is_vertical THEN min(?7 + ?8 * members, ?9)
                    ELSE min(?10 + ?11 * members, ?12) END AS base
        FROM cand c
        WHERE is_vertical OR (?13 IS NOT NULL AND welfare_score < ?13)
    ), assisted AS (
        SELECT household_id, sum(total) AS total,
               coalesce(sum(total) FILTER (WHERE source = 'partner'), 0) AS partner_total,
               group_concat(source || ' ' || source_id, ', ' ORDER BY source_id) AS by_whom
        FROM (SELECT o.household_id, o.source, o.source_id, sum(o.total_minor) AS total
              FROM eligible e
              JOIN eligibility.assistance_ledger o ON o.household_id = e.household_id
              WHERE NOT (o.source = 'crisis' AND o.source_id = ?1) AND o.currency = ?19 AND o.period_from <= ?18 AND ?17 <= o.period_to
              GROUP BY o.household_id, o.source, o.source_id) s
        GROUP BY household_id
    ), priced AS (
        SELECT e.*, coalesce(a.total, 0) AS assisted, coalesce(a.partner_total, 0) AS partner,
               a.by_whom, PAID AS amount
        FROM eligible e LEFT JOIN assisted a ON a.household_id = e.household_id
    ), fresh AS (
        SELECT e.*, x.entitlement_id AS cancelled_id,
               sum(e.amount * ?14) OVER w AS running,
               row_number() OVER w AS rank
        FROM priced e
        LEFT JOIN eligibility.entitlements x
               ON x.crisis_id = ?1 AND x.household_id = e.household_id AND x.kind = e.kind
        WHERE e.amount > 0 AND NOT EXISTS (SELECT 1 FROM eligibility.entitlements y
                          WHERE y.crisis_id = ?1 AND y.household_id = e.household_id
                            AND y.status <> 'cancelled')
        WINDOW w AS (ORDER BY PRIORITY_ORDER_E ROWS UNBOUNDED PRECEDING)
    )
    SELECT f.*, running <= ?15 AS covered, ?15 - running + amount * ?14 AS left_before,
           CASE WHEN kind = 'vertical'
                THEN 'vertical top-up: enrolled in ' || ?2
                -- A score prints as PostgreSQL prints a float8: 12, not 12.0.
                ELSE 'horizontal enrolment: welfare score '
                     || CASE WHEN welfare_score = CAST(welfare_score AS INTEGER)
                             THEN CAST(CAST(welfare_score AS INTEGER) AS TEXT)
                             ELSE CAST(welfare_score AS TEXT) END
                     || ' under ' || ?16 END
           || '; area ' || area_code || ' is in the crisis areas; '
           || base || ' per tranche for ' || members || ' members x ' || ?14 || ' tranches'
           || OVERLAP_REASON
           || CASE WHEN running <= ?15 THEN '' ELSE 'WAITLISTED' END AS reason
    FROM fresh f
"#;

async fn expand_sqlite(
    conn: &mut SqliteConnection,
    c: &CrisisRow,
    only: Option<&[String]>,
) -> Result<Expansion> {
    let r = &c.resolved;
    let remaining = c.budget_minor - c.committed_minor;
    let v = r.vertical.clone();
    let h = r.horizontal.clone();
    let tranches = r.tranches as i64;
    let threshold = h.as_ref().and(r.max_welfare_score);
    sqlx::query("DROP TABLE IF EXISTS temp.expansion")
        .execute(&mut *conn)
        .await?;
    let (starts_on, ends_on) = period(c);
    sqlx::query(
        &STAGE_SQLITE
            .replace("PRIORITY_ORDER_E", PRIORITY_ORDER_E)
            .replace("'WAITLISTED'", &format!("'{WAITLISTED}'"))
            .replace(
                "PAID",
                &overlapped_sql(r, ("max", "min"), "e.base", "?14", "coalesce(a.total, 0)"),
            )
            .replace(
                "OVERLAP_REASON",
                &overlap_reason_sql(r, "base", "amount", "assisted", "by_whom"),
            ),
    )
    .bind(&c.crisis_id)
    .bind(&r.programme)
    .bind(v.is_some())
    .bind(json_list(&r.priority_flags))
    .bind(json_list(&c.definition.areas))
    .bind(only.map(json_list))
    .bind(v.as_ref().map_or(0, |a| a.flat_minor))
    .bind(v.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(v.as_ref().map_or(0, |a| a.cap_minor))
    .bind(h.as_ref().map_or(0, |a| a.flat_minor))
    .bind(h.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(h.as_ref().map_or(0, |a| a.cap_minor))
    .bind(threshold)
    .bind(tranches)
    .bind(remaining)
    // The threshold as PostgreSQL prints a float8 (40, 35.5).
    .bind(threshold.map(|t| t.to_string()))
    .bind(&starts_on)
    .bind(&ends_on)
    .bind(&c.definition.budget.currency)
    .execute(&mut *conn)
    .await?;
    // New decisions, in index order.
    sqlx::query(
        "INSERT INTO eligibility.entitlements \
            (entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, tranches, \
             interval_days, committed_minor, priority, members, welfare_score, area_code, governorate, \
             district, crisis_revision, registry_version, playbook, reason, budget_rank, budget_left_minor, \
             assisted_minor, assisted_by, partner_minor) \
         SELECT ?1 || '/' || household_id || '/' || kind, ?1, household_id, kind, \
                CASE WHEN covered THEN 'entitled' ELSE 'waitlisted' END, \
                amount, ?2, ?3, ?4, CASE WHEN covered THEN amount * ?3 ELSE 0 END, \
                priority, members, welfare_score, area_code, governorate, district, ?5, version, ?6, reason, \
                rank, left_before, assisted, by_whom, partner \
         FROM temp.expansion WHERE cancelled_id IS NULL ORDER BY household_id, kind",
    )
    .bind(&c.crisis_id)
    .bind(&c.definition.budget.currency)
    .bind(tranches)
    .bind(r.interval_days as i64)
    .bind(c.revision)
    .bind(&r.playbook)
    .execute(&mut *conn)
    .await?;
    // A cancelled decision of the same kind is re-enrolled in place.
    sqlx::query(
        "UPDATE eligibility.entitlements AS t SET \
            status = CASE WHEN d.covered THEN 'entitled' ELSE 'waitlisted' END, \
            amount_minor = d.amount, tranches = ?1, interval_days = ?2, \
            committed_minor = CASE WHEN d.covered THEN d.amount * ?1 ELSE 0 END, \
            priority = d.priority, members = d.members, welfare_score = d.welfare_score, \
            area_code = d.area_code, governorate = d.governorate, district = d.district, \
            crisis_revision = ?3, registry_version = d.version, playbook = ?4, reason = d.reason, \
            budget_rank = d.rank, budget_left_minor = d.left_before, \
            assisted_minor = d.assisted, assisted_by = d.by_whom, partner_minor = d.partner, \
            updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         FROM temp.expansion d WHERE d.cancelled_id IS NOT NULL AND t.entitlement_id = d.cancelled_id",
    )
    .bind(tranches)
    .bind(r.interval_days as i64)
    .bind(c.revision)
    .bind(&r.playbook)
    .execute(&mut *conn)
    .await?;
    let (entitled, waitlisted, committed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE covered), count(*) FILTER (WHERE NOT covered), \
                coalesce(sum(CASE WHEN covered THEN amount * ?1 ELSE 0 END), 0) \
         FROM temp.expansion",
    )
    .bind(tranches)
    .fetch_one(&mut *conn)
    .await?;
    // The CHECK on the crisis refuses this if the budget would be exceeded.
    sqlx::query(
        "UPDATE eligibility.crises SET committed_minor = committed_minor + ?2 WHERE crisis_id = ?1",
    )
    .bind(&c.crisis_id)
    .bind(committed)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DROP TABLE temp.expansion")
        .execute(&mut *conn)
        .await?;
    Ok(Expansion {
        entitled,
        waitlisted,
        committed_minor: committed,
    })
}
