//! All SQL of the eligibility service. The caseload is computed set-based in
//! the database: one statement selects, prices, ranks and inserts every
//! decision of an expansion, with the budget cut-off decided by a running sum
//! in priority order.

use sqlx::{PgConnection, PgPool, Row};
use sumud_shared::events::crisis::{CrisisDefinition, CrisisEvent, CrisisState};
use sumud_shared::playbook::Resolved;
use sumud_shared::{Error, Result};

/// The eligibility service's migrations (schema `eligibility`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's migrations: PostgreSQL only so far.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: None,
};

/// The priority order when the budget does not reach everyone: more priority
/// flags first, then the poorer (lower welfare score), then household id, so
/// that the same inputs always cover the same households.
pub const PRIORITY_ORDER: &str = "priority DESC, welfare_score ASC, household_id ASC";

/// [`PRIORITY_ORDER`] on a table aliased `e`.
const PRIORITY_ORDER_E: &str = "e.priority DESC, e.welfare_score ASC, e.household_id ASC";

/// The reason suffix of a waitlisted decision.
const WAITLISTED: &str =
    "; waitlisted: the remaining budget does not reach this household in priority order";

/// The service's view of a crisis.
#[derive(Debug, Clone)]
pub struct CrisisRow {
    /// Id.
    pub crisis_id: String,
    /// State.
    pub state: CrisisState,
    /// Revision.
    pub revision: i32,
    /// Definition in force.
    pub definition: CrisisDefinition,
    /// Resolved playbook.
    pub resolved: Resolved,
    /// Budget cap.
    pub budget_minor: i64,
    /// Committed so far.
    pub committed_minor: i64,
}

/// Reads and locks a crisis for the rest of the transaction.
pub async fn crisis_for_update(
    conn: &mut PgConnection,
    crisis_id: &str,
) -> Result<Option<(CrisisState, i32)>> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT state, revision FROM eligibility.crises WHERE crisis_id = $1 FOR UPDATE",
    )
    .bind(crisis_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(s, r)| CrisisState::parse(&s).map(|s| (s, r))))
}

/// Stores (or replaces) the crisis projection from a lifecycle event.
pub async fn save_crisis(
    conn: &mut PgConnection,
    e: &CrisisEvent,
    resolved: &Resolved,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO eligibility.crises (crisis_id, state, revision, definition, resolved, currency, budget_minor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (crisis_id) DO UPDATE SET state = EXCLUDED.state, revision = EXCLUDED.revision, \
         definition = EXCLUDED.definition, resolved = EXCLUDED.resolved, \
         budget_minor = GREATEST(EXCLUDED.budget_minor, eligibility.crises.committed_minor), updated_at = now()",
    )
    .bind(&e.crisis_id)
    .bind(e.state.as_str())
    .bind(e.revision)
    .bind(serde_json::to_value(&e.definition).expect("serialises"))
    .bind(serde_json::to_value(resolved).expect("serialises"))
    .bind(&e.definition.budget.currency)
    .bind(e.definition.budget.minor)
    .execute(conn)
    .await?;
    Ok(())
}

fn crisis_from(r: &sqlx::postgres::PgRow) -> Result<CrisisRow> {
    let state: String = r.get("state");
    let bad = |e: serde_json::Error| Error::Other(format!("stored crisis is unreadable: {e}"));
    Ok(CrisisRow {
        crisis_id: r.get("crisis_id"),
        state: CrisisState::parse(&state)
            .ok_or_else(|| Error::Other(format!("unknown state {state}")))?,
        revision: r.get("revision"),
        definition: serde_json::from_value(r.get("definition")).map_err(bad)?,
        resolved: resolved_from(r.get("resolved"))?,
        budget_minor: r.get("budget_minor"),
        committed_minor: r.get("committed_minor"),
    })
}

fn resolved_from(v: serde_json::Value) -> Result<Resolved> {
    // Resolved is Serialize-only in shared; read the fields we stored.
    let get = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let amounts = |k: &str| -> Option<sumud_shared::playbook::Amounts> {
        let a = get(k);
        Some(sumud_shared::playbook::Amounts {
            flat_minor: a.get("flat_minor")?.as_i64()?,
            per_member_minor: a.get("per_member_minor")?.as_i64()?,
            cap_minor: a.get("cap_minor")?.as_i64()?,
        })
    };
    Ok(Resolved {
        playbook: get("playbook").as_str().unwrap_or_default().to_owned(),
        programme: get("programme").as_str().map(str::to_owned),
        vertical: amounts("vertical"),
        max_welfare_score: get("max_welfare_score").as_f64(),
        horizontal: amounts("horizontal"),
        priority_flags: serde_json::from_value(get("priority_flags")).unwrap_or_default(),
        tranches: get("tranches").as_u64().unwrap_or(1) as u32,
        interval_days: get("interval_days").as_u64().unwrap_or(0) as u32,
    })
}

/// Reads one crisis.
pub async fn crisis(conn: &mut PgConnection, crisis_id: &str) -> Result<Option<CrisisRow>> {
    let row = sqlx::query("SELECT * FROM eligibility.crises WHERE crisis_id = $1")
        .bind(crisis_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(crisis_from).transpose()
}

/// Every active crisis.
pub async fn active_crises(conn: &mut PgConnection) -> Result<Vec<CrisisRow>> {
    let rows =
        sqlx::query("SELECT * FROM eligibility.crises WHERE state = 'active' ORDER BY crisis_id")
            .fetch_all(conn)
            .await?;
    rows.iter().map(crisis_from).collect()
}

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
/// those in `only`), in one statement, within the remaining budget.
///
/// Vertical: enrolled in the playbook's programme. Horizontal: not enrolled,
/// welfare score under the (relaxed) threshold. Both: living in one of the
/// crisis areas. Per-tranche amount: min(flat + per-member × members, cap).
/// A household is entitled while the running total of (amount × tranches)
/// in [`PRIORITY_ORDER`] stays within the remaining budget; the rest are
/// waitlisted with that reason.
pub async fn expand(
    conn: &mut PgConnection,
    c: &CrisisRow,
    only: Option<&[String]>,
) -> Result<Expansion> {
    let r = &c.resolved;
    let remaining = c.budget_minor - c.committed_minor;
    let v = r.vertical.clone();
    let h = r.horizontal.clone();
    let flags: Vec<&str> = r.priority_flags.iter().map(|f| f.as_str()).collect();
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
                        ELSE LEAST($10::bigint + $11::bigint * members, $12::bigint) END AS amount
            FROM cand c
            WHERE is_vertical OR ($13::float8 IS NOT NULL AND welfare_score < $13::float8)
        ), fresh AS (
            -- Households without a live decision in this crisis; a cancelled
            -- decision of the same kind is re-enrolled in place.
            SELECT e.*, x.entitlement_id AS cancelled_id,
                   sum(e.amount * $14::int) OVER (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING) AS running
            FROM eligible e
            LEFT JOIN eligibility.entitlements x
                   ON x.crisis_id = $1 AND x.household_id = e.household_id AND x.kind = e.kind
            WHERE NOT EXISTS (SELECT 1 FROM eligibility.entitlements y
                              WHERE y.crisis_id = $1 AND y.household_id = e.household_id
                                AND y.status <> 'cancelled')
        ), decided AS (
            SELECT f.*, running <= $15 AS covered,
                   CASE WHEN kind = 'vertical'
                        THEN 'vertical top-up: enrolled in ' || $2
                        ELSE 'horizontal enrolment: welfare score ' || welfare_score || ' under ' || $13::float8 END
                   || '; area ' || area_code || ' is in the crisis areas; '
                   || amount || ' per tranche for ' || members || ' members x ' || $14 || ' tranches'
                   || CASE WHEN running <= $15 THEN '' ELSE '{WAITLISTED}' END AS reason
            FROM fresh f
        ), inserted AS (
            INSERT INTO eligibility.entitlements
                (entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, tranches,
                 interval_days, committed_minor, priority, members, welfare_score, area_code, governorate,
                 district, crisis_revision, registry_version, playbook, reason)
            SELECT $1 || '/' || household_id || '/' || kind, $1, household_id, kind,
                   CASE WHEN covered THEN 'entitled' ELSE 'waitlisted' END,
                   amount, $16, $14, $17, CASE WHEN covered THEN amount * $14 ELSE 0 END,
                   priority, members, welfare_score, area_code, governorate, district, $18, version, $19, reason
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
    .fetch_one(conn)
    .await?;
    Ok(Expansion {
        entitled: row.get("entitled"),
        waitlisted: row.get("waitlisted"),
        committed_minor: row.get("committed"),
    })
}

/// Logs the current state of the entitlements matched by `filter` (a SQL
/// condition on `e`) into the decision trail, marking them for republication.
async fn log_changes(conn: &mut PgConnection, crisis_id: &str, ids: &[String]) -> Result<()> {
    sqlx::query(
        "INSERT INTO eligibility.decision_log (entitlement_id, crisis_id, household_id, status, amount_minor, crisis_revision, reason) \
         SELECT entitlement_id, crisis_id, household_id, status, amount_minor, crisis_revision, reason \
         FROM eligibility.entitlements WHERE crisis_id = $1 AND entitlement_id = ANY($2)",
    )
    .bind(crisis_id)
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels the crisis's live decisions matched by `condition` (SQL on `e`),
/// releasing their budget; returns how many were cancelled.
async fn cancel_where(
    conn: &mut PgConnection,
    crisis_id: &str,
    revision: i32,
    condition: &str,
    arg: &[String],
    why: &str,
) -> Result<i64> {
    let ids: Vec<String> = sqlx::query_scalar(&format!(
        "WITH gone AS ( \
            UPDATE eligibility.entitlements e SET status = 'cancelled', committed_minor = 0, crisis_revision = $2, \
                   reason = $4, updated_at = now(), change_seq = nextval('eligibility.change_seq') \
            WHERE e.crisis_id = $1 AND e.status <> 'cancelled' AND ({condition}) \
            RETURNING e.entitlement_id, e.committed_minor) \
         SELECT entitlement_id FROM gone"
    ))
    .bind(crisis_id)
    .bind(revision)
    .bind(arg)
    .bind(why)
    .fetch_all(&mut *conn)
    .await?;
    recompute_committed(conn, crisis_id).await?;
    log_changes(conn, crisis_id, &ids).await?;
    Ok(ids.len() as i64)
}

/// Re-derives the crisis's committed total from its entitlements.
async fn recompute_committed(conn: &mut PgConnection, crisis_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE eligibility.crises c SET committed_minor = \
            (SELECT coalesce(sum(committed_minor), 0) FROM eligibility.entitlements WHERE crisis_id = c.crisis_id) \
         WHERE crisis_id = $1",
    )
    .bind(crisis_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels decisions of households whose area is no longer in the crisis.
pub async fn cancel_outside_areas(conn: &mut PgConnection, c: &CrisisRow) -> Result<i64> {
    cancel_where(
        conn,
        &c.crisis_id,
        c.revision,
        "NOT (e.governorate = ANY($3) OR e.district = ANY($3) OR e.area_code = ANY($3))",
        &c.definition.areas,
        "cancelled: the household's area was removed from the crisis",
    )
    .await
}

/// Cancels the live decisions of removed households.
pub async fn cancel_households(
    conn: &mut PgConnection,
    c: &CrisisRow,
    households: &[String],
) -> Result<i64> {
    cancel_where(
        conn,
        &c.crisis_id,
        c.revision,
        "e.household_id = ANY($3)",
        households,
        "cancelled: the household was removed from the registry",
    )
    .await
}

/// Cancels waitlisted decisions (the crisis closed before the budget reached them).
pub async fn cancel_waitlist(conn: &mut PgConnection, c: &CrisisRow) -> Result<i64> {
    cancel_where(
        conn,
        &c.crisis_id,
        c.revision,
        "e.status = 'waitlisted' AND cardinality($3::text[]) = 0",
        &[],
        "cancelled: the crisis closed",
    )
    .await
}

/// Applies new amounts and tranche counts to live decisions. Decreases always
/// apply; increases apply in priority order while the remaining budget
/// allows (the rest keep their amount, with the reason recorded). Then
/// waitlisted households are promoted in priority order while budget allows.
pub async fn reprice_and_promote(conn: &mut PgConnection, c: &CrisisRow) -> Result<(i64, i64)> {
    let r = &c.resolved;
    let v = r.vertical.clone();
    let h = r.horizontal.clone();
    let price = "CASE WHEN e.kind = 'vertical' THEN LEAST($2::bigint + $3::bigint * e.members, $4::bigint) \
                 ELSE LEAST($5::bigint + $6::bigint * e.members, $7::bigint) END";
    // 1. Decreases and unchanged totals: free budget first.
    let lowered: Vec<String> = sqlx::query_scalar(&format!(
        "UPDATE eligibility.entitlements e SET amount_minor = {price}, tranches = $8, interval_days = $9, \
             committed_minor = CASE WHEN e.status = 'entitled' THEN {price} * $8 ELSE 0 END, crisis_revision = $10, \
             reason = e.reason || '; revision ' || $10 || ': amount ' || {price} || ' x ' || $8 || ' tranches', \
             updated_at = now(), change_seq = nextval('eligibility.change_seq') \
         WHERE e.crisis_id = $1 AND e.status <> 'cancelled' \
           AND (e.amount_minor <> {price} OR e.tranches <> $8 OR e.interval_days <> $9) \
           AND {price} * $8 <= e.amount_minor * e.tranches \
         RETURNING e.entitlement_id"
    ))
    .bind(&c.crisis_id)
    .bind(v.as_ref().map_or(0, |a| a.flat_minor))
    .bind(v.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(v.as_ref().map_or(0, |a| a.cap_minor))
    .bind(h.as_ref().map_or(0, |a| a.flat_minor))
    .bind(h.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(h.as_ref().map_or(0, |a| a.cap_minor))
    .bind(r.tranches as i32)
    .bind(r.interval_days as i32)
    .bind(c.revision)
    .fetch_all(&mut *conn)
    .await?;
    recompute_committed(conn, &c.crisis_id).await?;
    // 2. Increases of entitled decisions, in priority order, within budget.
    let raised: Vec<String> = sqlx::query_scalar(&format!(
        "WITH room AS (SELECT budget_minor - committed_minor AS left FROM eligibility.crises WHERE crisis_id = $1), \
         wanted AS ( \
            SELECT e.entitlement_id, {price} AS amount, \
                   sum({price} * $8 - e.committed_minor) OVER (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING) AS running \
            FROM eligibility.entitlements e \
            WHERE e.crisis_id = $1 AND e.status = 'entitled' AND {price} * $8 > e.amount_minor * e.tranches) \
         UPDATE eligibility.entitlements e SET amount_minor = w.amount, tranches = $8, interval_days = $9, \
             committed_minor = w.amount * $8, crisis_revision = $10, \
             reason = e.reason || '; revision ' || $10 || ': raised to ' || w.amount || ' x ' || $8 || ' tranches', \
             updated_at = now(), change_seq = nextval('eligibility.change_seq') \
         FROM wanted w, room WHERE e.entitlement_id = w.entitlement_id AND w.running <= room.left \
         RETURNING e.entitlement_id"
    ))
    .bind(&c.crisis_id)
    .bind(v.as_ref().map_or(0, |a| a.flat_minor))
    .bind(v.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(v.as_ref().map_or(0, |a| a.cap_minor))
    .bind(h.as_ref().map_or(0, |a| a.flat_minor))
    .bind(h.as_ref().map_or(0, |a| a.per_member_minor))
    .bind(h.as_ref().map_or(0, |a| a.cap_minor))
    .bind(r.tranches as i32)
    .bind(r.interval_days as i32)
    .bind(c.revision)
    .fetch_all(&mut *conn)
    .await?;
    recompute_committed(conn, &c.crisis_id).await?;
    // 3. Promote the waitlist in priority order.
    let promoted: Vec<String> = sqlx::query_scalar(
        "WITH room AS (SELECT budget_minor - committed_minor AS left FROM eligibility.crises WHERE crisis_id = $1), \
         queue AS ( \
            SELECT e.entitlement_id, sum(e.amount_minor * e.tranches) OVER (ORDER BY e.priority DESC, e.welfare_score ASC, e.household_id ASC ROWS UNBOUNDED PRECEDING) AS running \
            FROM eligibility.entitlements e WHERE e.crisis_id = $1 AND e.status = 'waitlisted') \
         UPDATE eligibility.entitlements e SET status = 'entitled', committed_minor = e.amount_minor * e.tranches, \
             crisis_revision = $2, reason = replace(e.reason, '; waitlisted: the remaining budget does not reach this household in priority order', '') \
                 || '; entitled from revision ' || $2 || ' as budget became available', \
             updated_at = now(), change_seq = nextval('eligibility.change_seq') \
         FROM queue q, room WHERE e.entitlement_id = q.entitlement_id AND q.running <= room.left \
         RETURNING e.entitlement_id"
    )
    .bind(&c.crisis_id)
    .bind(c.revision)
    .fetch_all(&mut *conn)
    .await?;
    recompute_committed(conn, &c.crisis_id).await?;
    let mut changed = lowered;
    changed.extend(raised.iter().cloned());
    changed.extend(promoted.iter().cloned());
    log_changes(conn, &c.crisis_id, &changed).await?;
    Ok((raised.len() as i64, promoted.len() as i64))
}

/// Brings the crisis within `budget` after a cut: the lowest-priority
/// entitled decisions go back to the waitlist (in reverse priority order)
/// until what is committed fits, then the cap is lowered. Instructions
/// already issued by disbursement are its own reservation and unaffected.
pub async fn fit_budget(conn: &mut PgConnection, c: &CrisisRow, budget: i64) -> Result<i64> {
    let demoted: Vec<String> = sqlx::query_scalar(
        "WITH ranked AS ( \
            SELECT e.entitlement_id, sum(e.committed_minor) OVER (ORDER BY e.priority DESC, e.welfare_score ASC, e.household_id ASC ROWS UNBOUNDED PRECEDING) AS running \
            FROM eligibility.entitlements e WHERE e.crisis_id = $1 AND e.status = 'entitled') \
         UPDATE eligibility.entitlements e SET status = 'waitlisted', committed_minor = 0, crisis_revision = $3, \
             reason = e.reason || '; revision ' || $3 || ': waitlisted again as the budget was cut', \
             updated_at = now(), change_seq = nextval('eligibility.change_seq') \
         FROM ranked r WHERE e.entitlement_id = r.entitlement_id AND r.running > $2 \
         RETURNING e.entitlement_id",
    )
    .bind(&c.crisis_id)
    .bind(budget)
    .bind(c.revision)
    .fetch_all(&mut *conn)
    .await?;
    recompute_committed(conn, &c.crisis_id).await?;
    sqlx::query("UPDATE eligibility.crises SET budget_minor = $2 WHERE crisis_id = $1")
        .bind(&c.crisis_id)
        .bind(budget)
        .execute(&mut *conn)
        .await?;
    log_changes(conn, &c.crisis_id, &demoted).await?;
    Ok(demoted.len() as i64)
}

/// Marks the crisis closed.
pub async fn close(conn: &mut PgConnection, crisis_id: &str, revision: i32) -> Result<()> {
    sqlx::query("UPDATE eligibility.crises SET state = 'closed', revision = $2, updated_at = now() WHERE crisis_id = $1")
        .bind(crisis_id)
        .bind(revision)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stored registry versions for households (tombstones included).
pub async fn registry_versions(pool: &PgPool, ids: &[String]) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT household_id, version FROM registry.households WHERE household_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// An entitlement as stored, for publication and explanation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntitlementRow {
    /// Id.
    pub entitlement_id: String,
    /// Crisis.
    pub crisis_id: String,
    /// Household.
    pub household_id: String,
    /// Kind.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Per-tranche amount.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Tranches.
    pub tranches: i32,
    /// Interval.
    pub interval_days: i32,
    /// Revision.
    pub crisis_revision: i32,
    /// Registry version.
    pub registry_version: i64,
    /// Playbook.
    pub playbook: String,
    /// Why.
    pub reason: String,
    /// Change counter (event identity).
    pub change_seq: i64,
}

const ENTITLEMENT_COLUMNS: &str =
    "entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, \
    tranches, interval_days, crisis_revision, registry_version, playbook, reason, change_seq";

/// Decisions changed since last published, in change order.
pub async fn unpublished(conn: &mut PgConnection, limit: i64) -> Result<Vec<EntitlementRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENTITLEMENT_COLUMNS} FROM eligibility.entitlements \
         WHERE published_seq IS DISTINCT FROM change_seq ORDER BY change_seq LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Marks decisions published at the change they were published at (a row
/// changed again meanwhile stays unpublished).
pub async fn mark_published(conn: &mut PgConnection, ids: &[String], seqs: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE eligibility.entitlements e SET published_seq = u.seq \
         FROM UNNEST($1::text[], $2::int8[]) AS u(id, seq) WHERE e.entitlement_id = u.id",
    )
    .bind(ids)
    .bind(seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// A household's decisions in a crisis, and the trail of changes.
pub async fn decisions_of(
    pool: &PgPool,
    crisis_id: &str,
    household_id: &str,
) -> Result<(
    Vec<EntitlementRow>,
    Vec<(chrono::DateTime<chrono::Utc>, String, i64, i32, String)>,
)> {
    let rows = sqlx::query_as(&format!(
        "SELECT {ENTITLEMENT_COLUMNS} FROM eligibility.entitlements WHERE crisis_id = $1 AND household_id = $2"
    ))
    .bind(crisis_id)
    .bind(household_id)
    .fetch_all(pool)
    .await?;
    let log = sqlx::query_as(
        "SELECT at, status, amount_minor, crisis_revision, reason FROM eligibility.decision_log \
         WHERE crisis_id = $1 AND household_id = $2 ORDER BY seq",
    )
    .bind(crisis_id)
    .bind(household_id)
    .fetch_all(pool)
    .await?;
    Ok((rows, log))
}

/// The crisis's live decisions by district and expansion type (the
/// simulation's report, and the figures an operator compares it with).
pub async fn caseload(
    conn: &mut PgConnection,
    crisis_id: &str,
) -> Result<Vec<crate::simulate::CaseloadLine>> {
    let rows: Vec<(String, String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT governorate, coalesce(district, governorate), kind, \
                count(*) FILTER (WHERE status = 'entitled'), \
                count(*) FILTER (WHERE status = 'waitlisted'), \
                coalesce(sum(amount_minor) FILTER (WHERE status = 'entitled'), 0)::bigint, \
                coalesce(sum(amount_minor) FILTER (WHERE status = 'waitlisted'), 0)::bigint \
         FROM eligibility.entitlements WHERE crisis_id = $1 AND status <> 'cancelled' \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(crisis_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(g, d, k, e, w, ea, wa)| crate::simulate::CaseloadLine {
            governorate: g,
            district: d,
            kind: k,
            entitled: e,
            waitlisted: w,
            entitled_per_tranche_minor: ea,
            waitlisted_per_tranche_minor: wa,
        })
        .collect())
}

/// Crises by state, and entitlements (count and committed amount) by crisis
/// and status, for the Prometheus gauges.
pub async fn gauges(pool: &PgPool) -> Result<crate::metrics::Figures> {
    let crises: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM eligibility.crises GROUP BY 1")
            .fetch_all(pool)
            .await?;
    let entitlements: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT e.crisis_id, e.status, c.currency, count(*), coalesce(sum(e.committed_minor), 0)::bigint \
         FROM eligibility.entitlements e JOIN eligibility.crises c USING (crisis_id) \
         GROUP BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    Ok(crate::metrics::Figures {
        crises,
        entitlements,
    })
}
