//! All SQL of the eligibility service, on PostgreSQL and on SQLite. The
//! caseload is computed set-based in the database ([`expand`]), and changes
//! to decisions already made are set-based too ([`amend`]); this module
//! holds the crisis projection, publication and the read side.

mod amend;
mod expand;
mod ledger;
mod own_assistance;
mod partner_match;
mod partners;
mod redecide;
mod referrals;

pub use amend::{
    cancel_households, cancel_outside_areas, cancel_waitlist, fit_budget, reprice_and_promote,
};
pub use expand::{expand, lock_ledger, Expansion};
pub use ledger::{assisted_against, ledger, LedgerEntry};
pub use own_assistance::{
    mark_shared, reshare_crisis, try_lock_sharing, unshared, Shared, Unshared,
};
pub use partner_match::{household_of, rematch_records, Match, Moved, Scope};
pub use partners::{
    add_partner_key, apply_record, judged, partner_key, partner_keys, record_judged,
    revoke_partner_key, reweigh, PartnerKey, Position,
};
pub use redecide::{redecide_households, Redecided};
pub use referrals::{
    answer, mark_referrals_published, refer, referral_for_update, referrals_of,
    unpublished_referrals, ReferralAnswer, ReferralRow, Unpublished,
};

use sumud_shared::db::sqlite::json_list;
use sumud_shared::db::{Conn, Store, Tx};
use sumud_shared::events::crisis::{CrisisDefinition, CrisisEvent, CrisisState};
use sumud_shared::playbook::Resolved;
use sumud_shared::{on_conn, on_store, on_tx, Error, Result};

/// The eligibility service's PostgreSQL migrations (schema `eligibility`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The eligibility service's SQLite migrations (the attached `eligibility`).
pub static MIGRATOR_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The service's migrations, on both backends.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&MIGRATOR_SQLITE),
};

/// The priority order when the budget does not reach everyone: more priority
/// flags first, then the poorer (lower welfare score), then household id, so
/// that the same inputs always cover the same households.
pub const PRIORITY_ORDER: &str = "priority DESC, welfare_score ASC, household_id ASC";

/// [`PRIORITY_ORDER`] on a table aliased `e`.
const PRIORITY_ORDER_E: &str = "e.priority DESC, e.welfare_score ASC, e.household_id ASC";

/// The reason suffix of a waitlisted decision.
pub(crate) const WAITLISTED: &str =
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

/// Reads a crisis's state and revision, locking it for the rest of the
/// transaction (on SQLite the transaction already holds the write lock).
pub async fn crisis_for_update(tx: &mut Tx, crisis_id: &str) -> Result<Option<(CrisisState, i32)>> {
    const SQL: &str = "SELECT state, revision FROM eligibility.crises WHERE crisis_id = $1";
    let row: Option<(String, i32)> = match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(&format!("{SQL} FOR UPDATE"))
                .bind(crisis_id)
                .fetch_optional(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(SQL)
                .bind(crisis_id)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    Ok(row.and_then(|(s, r)| CrisisState::parse(&s).map(|s| (s, r))))
}

/// Stores (or replaces) the crisis projection from a lifecycle event. A cut
/// never lowers the cap below what is already committed; [`fit_budget`]
/// does that, after demoting decisions.
pub async fn save_crisis(tx: &mut Tx, e: &CrisisEvent, resolved: &Resolved) -> Result<()> {
    let definition = serde_json::to_value(&e.definition).expect("serialises");
    let resolved = serde_json::to_value(resolved).expect("serialises");
    match tx {
        Tx::Postgres(tx) => {
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
            .bind(definition)
            .bind(resolved)
            .bind(&e.definition.budget.currency)
            .bind(e.definition.budget.minor)
            .execute(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query(
                "INSERT INTO eligibility.crises (crisis_id, state, revision, definition, resolved, currency, budget_minor) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (crisis_id) DO UPDATE SET state = excluded.state, revision = excluded.revision, \
                 definition = excluded.definition, resolved = excluded.resolved, \
                 budget_minor = max(excluded.budget_minor, crises.committed_minor), \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .bind(&e.crisis_id)
            .bind(e.state.as_str())
            .bind(e.revision)
            .bind(definition.to_string())
            .bind(resolved.to_string())
            .bind(&e.definition.budget.currency)
            .bind(e.definition.budget.minor)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// A crisis row as both backends return it (JSON as text).
type RawCrisis = (String, String, i32, String, String, i64, i64);

/// The columns of [`RawCrisis`]; `::text` is PostgreSQL's, dropped on SQLite.
const CRISIS_COLUMNS: &str = "crisis_id, state, revision, definition::text, resolved::text, \
                              budget_minor, committed_minor";

fn crisis_select(tx_is_sqlite: bool, condition: &str) -> String {
    let columns = if tx_is_sqlite {
        CRISIS_COLUMNS.replace("::text", "")
    } else {
        CRISIS_COLUMNS.to_owned()
    };
    format!("SELECT {columns} FROM eligibility.crises WHERE {condition} ORDER BY crisis_id")
}

fn crisis_from(r: RawCrisis) -> Result<CrisisRow> {
    let (crisis_id, state, revision, definition, resolved, budget_minor, committed_minor) = r;
    let what = |part: &str| format!("crisis {crisis_id}'s {part}");
    let bad = |e: serde_json::Error| Error::unreadable(what("definition"), e);
    let state = CrisisState::parse(&state)
        .ok_or_else(|| Error::unreadable(what("state"), format!("{state:?} is no state")))?;
    let definition = serde_json::from_str(&definition).map_err(bad)?;
    let resolved = resolved_from(serde_json::from_str(&resolved).map_err(bad)?)?;
    Ok(CrisisRow {
        crisis_id,
        state,
        revision,
        definition,
        resolved,
        budget_minor,
        committed_minor,
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
        // A crisis stored before overlap rules existed weighs overlaps by
        // the default rule, which never pays one need twice.
        overlap: serde_json::from_value(get("overlap")).unwrap_or_default(),
        household_cap_minor: get("household_cap_minor").as_i64(),
        // A crisis stored before referrals existed refers no one.
        referrals: serde_json::from_value(get("referrals")).unwrap_or_default(),
    })
}

/// Reads one crisis inside a transaction.
pub async fn crisis(tx: &mut Tx, crisis_id: &str) -> Result<Option<CrisisRow>> {
    let sql = crisis_select(matches!(tx, Tx::Sqlite(_)), "crisis_id = $1");
    let row: Option<RawCrisis> =
        on_tx!(tx, conn => sqlx::query_as(&sql).bind(crisis_id).fetch_optional(conn).await)?;
    row.map(crisis_from).transpose()
}

/// Reads one crisis outside any transaction (`sumud explain`).
pub async fn crisis_now(store: &Store, crisis_id: &str) -> Result<Option<CrisisRow>> {
    let sql = crisis_select(matches!(store, Store::Sqlite(_)), "crisis_id = $1");
    let row: Option<RawCrisis> =
        on_store!(store, pool => sqlx::query_as(&sql).bind(crisis_id).fetch_optional(pool).await)?;
    row.map(crisis_from).transpose()
}

/// Every active crisis, inside a transaction.
pub async fn active_crises_in(tx: &mut Tx) -> Result<Vec<CrisisRow>> {
    let sql = crisis_select(matches!(tx, Tx::Sqlite(_)), "state = 'active'");
    let rows: Vec<RawCrisis> = on_tx!(tx, conn => sqlx::query_as(&sql).fetch_all(conn).await)?;
    rows.into_iter().map(crisis_from).collect()
}

/// Every active crisis, those that decided `household` first, in the order
/// they did, then the rest by id.
pub async fn active_crises_by_decision(tx: &mut Tx, household: &str) -> Result<Vec<CrisisRow>> {
    const SQL: &str = "SELECT crisis_id FROM eligibility.entitlements \
                       WHERE household_id = $1 AND status <> 'cancelled' \
                       GROUP BY crisis_id ORDER BY min(decided_at), crisis_id";
    let order: Vec<String> =
        on_tx!(tx, conn => sqlx::query_scalar(SQL).bind(household).fetch_all(conn).await)?;
    let mut crises = active_crises_in(tx).await?;
    crises.sort_by_key(|c| {
        (
            order
                .iter()
                .position(|id| *id == c.crisis_id)
                .unwrap_or(usize::MAX),
            c.crisis_id.clone(),
        )
    });
    Ok(crises)
}

/// Every active crisis.
pub async fn active_crises(store: &Store) -> Result<Vec<CrisisRow>> {
    let sql = crisis_select(matches!(store, Store::Sqlite(_)), "state = 'active'");
    let rows: Vec<RawCrisis> =
        on_store!(store, pool => sqlx::query_as(&sql).fetch_all(pool).await)?;
    rows.into_iter().map(crisis_from).collect()
}

/// Marks the crisis closed.
pub async fn close(tx: &mut Tx, crisis_id: &str, revision: i32) -> Result<()> {
    let now = match tx {
        Tx::Postgres(_) => "now()",
        Tx::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
    let sql = format!(
        "UPDATE eligibility.crises SET state = 'closed', revision = $2, updated_at = {now} \
         WHERE crisis_id = $1"
    );
    on_tx!(tx, conn => sqlx::query(&sql)
        .bind(crisis_id)
        .bind(revision)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// Stored registry versions for households (tombstones included).
pub async fn registry_versions(store: &Store, ids: &[String]) -> Result<Vec<(String, i64)>> {
    Ok(match store {
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT household_id, version FROM registry.households WHERE household_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(pool)
        .await?,
        Store::Sqlite(pool) => {
            sqlx::query_as(
                "SELECT household_id, version FROM registry.households \
                 WHERE household_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(json_list(ids))
            .fetch_all(pool)
            .await?
        }
    })
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
pub async fn unpublished(conn: &mut Conn, limit: i64) -> Result<Vec<EntitlementRow>> {
    let sql = format!(
        "SELECT {ENTITLEMENT_COLUMNS} FROM eligibility.entitlements \
         WHERE {} ORDER BY change_seq LIMIT $1",
        sumud_shared::outbox::lagging(conn)
    );
    Ok(on_conn!(conn, c => sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
}

/// Marks decisions published at the change they were published at (a row
/// changed again meanwhile stays unpublished).
pub async fn mark_published(conn: &mut Conn, ids: &[String], seqs: &[i64]) -> Result<()> {
    sumud_shared::outbox::mark_published_at(
        conn,
        "eligibility.entitlements",
        "entitlement_id",
        ids,
        seqs,
    )
    .await
}

/// One change in a household's decision trail: when, status, amount,
/// crisis revision, why.
pub type TrailEntry = (chrono::DateTime<chrono::Utc>, String, i64, i32, String);

/// A household's decisions in a crisis, and the trail of changes.
pub async fn decisions_of(
    store: &Store,
    crisis_id: &str,
    household_id: &str,
) -> Result<(Vec<EntitlementRow>, Vec<TrailEntry>)> {
    let decisions = format!(
        "SELECT {ENTITLEMENT_COLUMNS} FROM eligibility.entitlements \
         WHERE crisis_id = $1 AND household_id = $2"
    );
    const TRAIL: &str = "SELECT at, status, amount_minor, crisis_revision, reason \
                         FROM eligibility.decision_log \
                         WHERE crisis_id = $1 AND household_id = $2 ORDER BY seq";
    let rows = on_store!(store, pool => sqlx::query_as(&decisions)
        .bind(crisis_id)
        .bind(household_id)
        .fetch_all(pool)
        .await)?;
    let log = on_store!(store, pool => sqlx::query_as(TRAIL)
        .bind(crisis_id)
        .bind(household_id)
        .fetch_all(pool)
        .await)?;
    Ok((rows, log))
}

/// Where each of a household's decisions stood against the budget when it
/// was made: (entitlement id, rank in its expansion's priority order,
/// budget left when its turn came); both absent for decisions older than
/// the record of it.
pub async fn budget_positions(
    store: &Store,
    crisis_id: &str,
    household_id: &str,
) -> Result<Vec<(String, Option<i32>, Option<i64>)>> {
    const SQL: &str = "SELECT entitlement_id, budget_rank, budget_left_minor \
                       FROM eligibility.entitlements WHERE crisis_id = $1 AND household_id = $2";
    Ok(on_store!(store, pool => sqlx::query_as(SQL)
        .bind(crisis_id)
        .bind(household_id)
        .fetch_all(pool)
        .await)?)
}

/// A household's current registry record as the policy reads it, and the
/// id of the registry event that set it; `None` when it is not in the
/// registry (or was removed).
pub async fn household_facts(
    store: &Store,
    household_id: &str,
) -> Result<Option<(crate::policy::Facts, String)>> {
    let sql = format!("{}household_id = $1", redecide::FACTS_SELECT);
    let row: Option<redecide::FactsRow<Vec<String>>> = match store {
        Store::Postgres(pool) => {
            sqlx::query_as(&sql)
                .bind(household_id)
                .fetch_optional(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            let row: Option<redecide::FactsRow<String>> = sqlx::query_as(&sql)
                .bind(household_id)
                .fetch_optional(pool)
                .await?;
            row.map(redecide::decode_lists).transpose()?
        }
    };
    Ok(row.map(|r| redecide::into_facts(r).1))
}

/// The crisis's live decisions by district and expansion type (the
/// simulation's report, and the figures an operator compares it with).
pub async fn caseload(tx: &mut Tx, crisis_id: &str) -> Result<Vec<crate::simulate::CaseloadLine>> {
    const SQL: &str = "SELECT governorate, coalesce(district, governorate), kind, \
                count(*) FILTER (WHERE status = 'entitled'), \
                count(*) FILTER (WHERE status = 'waitlisted'), \
                CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'entitled'), 0) AS bigint), \
                CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'waitlisted'), 0) AS bigint) \
         FROM eligibility.entitlements WHERE crisis_id = $1 AND status <> 'cancelled' \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let rows: Vec<(String, String, String, i64, i64, i64, i64)> =
        on_tx!(tx, conn => sqlx::query_as(SQL).bind(crisis_id).fetch_all(conn).await)?;
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
pub async fn gauges(store: &Store) -> Result<crate::metrics::Figures> {
    const CRISES: &str = "SELECT state, count(*) FROM eligibility.crises GROUP BY 1";
    const ENTITLEMENTS: &str = "SELECT e.crisis_id, e.status, c.currency, count(*), \
                CAST(coalesce(sum(e.committed_minor), 0) AS bigint) \
         FROM eligibility.entitlements e JOIN eligibility.crises c USING (crisis_id) \
         GROUP BY 1, 2, 3";
    let crises = on_store!(store, pool => sqlx::query_as(CRISES).fetch_all(pool).await)?;
    let entitlements =
        on_store!(store, pool => sqlx::query_as(ENTITLEMENTS).fetch_all(pool).await)?;
    Ok(crate::metrics::Figures {
        crises,
        entitlements,
    })
}
