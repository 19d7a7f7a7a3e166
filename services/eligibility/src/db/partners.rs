//! Partner agencies' side of the assistance ledger: their signing keys,
//! every message judged once, the records they keep (one per agency and
//! record id, matched to a household through the registry's match keys),
//! and what a changed record does to decisions already made — each live
//! decision of the household in an active crisis whose period overlaps is
//! re-weighed under its crisis's overlap rule, from the next tranche on.

use sumud_shared::db::{Store, Tx};
use sumud_shared::events::assistance::{AssistanceAction, AssistanceClaims};
use sumud_shared::{on_store, on_tx, Result};

use super::amend::{log_changes, recompute_committed, Dialect};
use super::partner_match::household_of;
use super::redecide::{facts_of, live_decisions};
use super::CrisisRow;
use crate::policy::{self, Verdict};

/// A registered partner key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct PartnerKey {
    /// Key id (the JWS `kid`).
    pub kid: String,
    /// The agency the key speaks for.
    pub agency: String,
    /// Public key, base64url.
    pub public_x: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl sumud_shared::signed::RegisteredKey for PartnerKey {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_x(&self) -> &str {
        &self.public_x
    }
}

const KEY_COLUMNS: &str = "kid, agency, public_x, revoked_at IS NOT NULL AS revoked";

/// The partner key `kid`, if registered.
pub async fn partner_key(store: &Store, kid: &str) -> Result<Option<PartnerKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM eligibility.partner_keys WHERE kid = $1");
    Ok(on_store!(store, pool => sqlx::query_as(&sql).bind(kid).fetch_optional(pool).await)?)
}

/// Every partner key, by agency.
pub async fn partner_keys(store: &Store) -> Result<Vec<PartnerKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM eligibility.partner_keys ORDER BY agency, kid");
    Ok(on_store!(store, pool => sqlx::query_as(&sql).fetch_all(pool).await)?)
}

/// Registers a partner key; a key id is never reused.
pub async fn add_partner_key(store: &Store, kid: &str, agency: &str, public_x: &str) -> Result<()> {
    const SQL: &str =
        "INSERT INTO eligibility.partner_keys (kid, agency, public_x) VALUES ($1, $2, $3)";
    on_store!(store, pool => sqlx::query(SQL).bind(kid).bind(agency).bind(public_x).execute(pool).await.map(drop))?;
    Ok(())
}

/// Revokes a partner key; false if there is no active key `kid`.
pub async fn revoke_partner_key(store: &Store, kid: &str) -> Result<bool> {
    let sql = match store {
        Store::Postgres(_) => {
            "UPDATE eligibility.partner_keys SET revoked_at = now() \
                               WHERE kid = $1 AND revoked_at IS NULL"
        }
        Store::Sqlite(_) => {
            "UPDATE eligibility.partner_keys \
                             SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                             WHERE kid = $1 AND revoked_at IS NULL"
        }
    };
    let done = on_store!(store, pool => sqlx::query(sql).bind(kid).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Where a message was read: (topic, partition, offset).
pub type Position = (String, i32, i64);

/// (topic, partition, offset, refusal code, refusal detail).
type JudgedRow = (String, i32, i64, Option<String>, Option<String>);

/// A message of key `kid` judged before: where it was read, and its
/// refusal if any. Ids are per key, so that no other key (a rival's, or a
/// revoked one) can use up an agency's message ids.
pub async fn judged(
    store: &Store,
    kid: &str,
    jti: &str,
) -> Result<Option<(Position, Option<(String, String)>)>> {
    const SQL: &str =
        "SELECT source_topic, source_partition, source_offset, refused_code, refused_detail \
         FROM eligibility.partner_messages WHERE kid = $1 AND jti = $2";
    let row: Option<JudgedRow> = on_store!(store, pool => sqlx::query_as(SQL)
        .bind(kid)
        .bind(jti)
        .fetch_optional(pool)
        .await)?;
    Ok(row
        .map(|(t, p, o, code, detail)| ((t, p, o), code.map(|c| (c, detail.unwrap_or_default())))))
}

/// Records that message `jti` was judged at `at`, refused with
/// `refused` (code, detail) or applied (`None`).
pub async fn record_judged(
    tx: &mut Tx,
    key: &PartnerKey,
    jti: &str,
    at: &Position,
    refused: Option<(&str, &str)>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO eligibility.partner_messages \
         (jti, kid, agency, source_topic, source_partition, source_offset, refused_code, refused_detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    on_tx!(tx, conn => sqlx::query(SQL)
        .bind(jti)
        .bind(&key.kid)
        .bind(&key.agency)
        .bind(&at.0)
        .bind(at.1)
        .bind(at.2)
        .bind(refused.map(|r| r.0))
        .bind(refused.map(|r| r.1))
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// The households a record touched: the one its match key names now, and
/// the one the agency's record was attached to before (a correction may
/// move it, a reversal may no longer resolve).
pub type Touched = Vec<String>;

/// Applies a verified record of `agency`; `Err(detail)` when the action
/// does not fit what the agency recorded before (`invalid_transition`).
/// Returns the households it concerns.
pub async fn apply_record(
    tx: &mut Tx,
    agency: &str,
    c: &AssistanceClaims,
) -> Result<std::result::Result<Touched, String>> {
    const STATUS: &str = "SELECT status, household_id FROM eligibility.partner_records \
                          WHERE agency = $1 AND record_id = $2";
    let before: Option<(String, Option<String>)> = on_tx!(tx, conn => sqlx::query_as(STATUS)
        .bind(agency)
        .bind(&c.record_id)
        .fetch_optional(conn)
        .await)?;
    let (status, previous) = match before {
        Some((s, h)) => (Some(s), h),
        None => (None, None),
    };
    let matched = household_of(tx, &c.match_key).await?;
    let (household, ambiguous) = (matched.household(), matched.is_ambiguous());
    let fits = matches!(
        (c.action, status.as_deref()),
        (AssistanceAction::Given, None)
            | (AssistanceAction::Corrected, Some("given"))
            | (AssistanceAction::Reversed, Some("given"))
    );
    if !fits {
        return Ok(Err(format!(
            "{:?} of record {} of {agency}, which is {}",
            c.action,
            c.record_id,
            status
                .as_deref()
                .map_or("not recorded".to_owned(), str::to_owned)
        )
        .to_lowercase()));
    }
    if ambiguous {
        tracing::warn!(agency, record = %c.record_id, "Partner record's match key names several registered households (a national id entered twice?); it counts for none of them until the registry is corrected.");
    }
    let now = Dialect::of(tx).now;
    match (c.action, &c.amount, c.period_from, c.period_to) {
        (AssistanceAction::Reversed, ..) => {
            let sql = format!(
                "UPDATE eligibility.partner_records SET status = 'reversed', ambiguous = false, last_jti = $3, \
                     updated_at = {now} \
                 WHERE agency = $1 AND record_id = $2"
            );
            on_tx!(tx, conn => sqlx::query(&sql).bind(agency).bind(&c.record_id).bind(&c.jti).execute(conn).await.map(drop))?;
        }
        (_, Some(amount), Some(from), Some(to)) => {
            let sql = format!(
                "INSERT INTO eligibility.partner_records (agency, record_id, match_key, household_id, \
                     amount_minor, currency, period_from, period_to, programme, status, last_jti, \
                     ambiguous) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'given', $10, $11) \
                 ON CONFLICT (agency, record_id) DO UPDATE SET match_key = excluded.match_key, \
                     household_id = excluded.household_id, ambiguous = excluded.ambiguous, \
                     amount_minor = excluded.amount_minor, \
                     currency = excluded.currency, period_from = excluded.period_from, \
                     period_to = excluded.period_to, programme = excluded.programme, \
                     last_jti = excluded.last_jti, updated_at = {now}"
            );
            on_tx!(tx, conn => sqlx::query(&sql)
                .bind(agency)
                .bind(&c.record_id)
                .bind(&c.match_key)
                .bind(&household)
                .bind(amount.minor)
                .bind(&amount.currency)
                .bind(from.to_string())
                .bind(to.to_string())
                .bind(&c.programme)
                .bind(&c.jti)
                .bind(ambiguous)
                .execute(conn)
                .await
                .map(drop))?;
        }
        _ => unreachable!("the judge checked the shape of given and corrected records"),
    }
    let mut touched: Touched = household.into_iter().chain(previous).collect();
    touched.sort();
    touched.dedup();
    Ok(Ok(touched))
}

/// What live decision `entitlement_id` of crisis `c` weighs now, for
/// `household`: every partner record and the other crises' decisions made
/// before it, for `c`'s period and currency — (total, partners' part,
/// "source id, …" in id order).
async fn weighed_against(
    tx: &mut Tx,
    c: &CrisisRow,
    household: &str,
    entitlement_id: &str,
) -> Result<(i64, i64, String)> {
    let order = match tx {
        Tx::Postgres(_) => "o.source_id COLLATE \"C\"",
        Tx::Sqlite(_) => "o.source_id",
    };
    let sql = format!(
        "SELECT o.source, o.source_id, CAST(sum(o.total_minor) AS bigint) \
         FROM eligibility.assistance_ledger o \
         WHERE o.household_id = $1 AND o.currency = $2 AND o.period_from <= $4 AND $3 <= o.period_to \
           AND (o.source = 'partner' OR (o.source_id <> $5 AND o.recorded_at < \
                (SELECT decided_at FROM eligibility.entitlements WHERE entitlement_id = $6))) \
         GROUP BY o.source, o.source_id ORDER BY {order}"
    );
    let rows: Vec<(String, String, i64)> = on_tx!(tx, conn => sqlx::query_as(&sql)
        .bind(household)
        .bind(&c.definition.budget.currency)
        .bind(c.definition.starts_on.to_string())
        .bind(c.definition.ends_on.to_string())
        .bind(&c.crisis_id)
        .bind(entitlement_id)
        .fetch_all(conn)
        .await)?;
    let total = rows.iter().map(|r| r.2).sum();
    let partners = rows.iter().filter(|r| r.0 == "partner").map(|r| r.2).sum();
    let by = rows
        .iter()
        .map(|(source, id, _)| format!("{source} {id}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((total, partners, by))
}

/// Re-weighs `household`'s live decisions in crisis `c` against the
/// partner assistance it holds now (the other crises' part stays as it
/// was weighed), from the next tranche on: a decrease applies, nothing
/// left cancels, a raise applies while the budget reaches it. `why` names
/// the record that changed. Returns the decisions changed.
pub async fn reweigh(tx: &mut Tx, c: &CrisisRow, household: &str, why: &str) -> Result<usize> {
    let households = [household.to_owned()];
    let live = live_decisions(tx, &c.crisis_id, &households).await?;
    if live.is_empty() {
        return Ok(0);
    }
    let facts = facts_of(tx, &households).await?;
    let Some((f, _)) = facts.get(household) else {
        return Ok(0); // removed: cancel_households deals with it
    };
    let r = &c.resolved;
    let mut changed = Vec::new();
    for l in &live {
        let (assisted, partner_now, by) =
            weighed_against(tx, c, household, &l.entitlement_id).await?;
        if assisted == l.assisted_minor && partner_now == l.partner_minor {
            continue;
        }
        let Verdict::Qualifies {
            kind, amount_minor, ..
        } = policy::judge_alone(r, &c.definition.areas, f)
        else {
            continue; // no longer qualifies: the registry change re-decides it
        };
        if kind != l.kind {
            continue;
        }
        // The decision's own tranche count: an amendment's raise the
        // budget did not reach left it as it was.
        let tranches = i64::from(l.tranches);
        let paid = policy::overlapped(r, amount_minor, tranches, assisted);
        let stand = "tranches already instructed stand";
        let (status, amount, committed, reason) = if paid == 0 {
            (
                "cancelled",
                l.amount_minor,
                0,
                format!("cancelled: {why}: {by} now give {assisted} for an overlapping period and the overlap rule leaves nothing to pay; {stand}"),
            )
        } else if l.status != "entitled" || paid <= l.amount_minor {
            let committed = if l.status == "entitled" {
                paid * tranches
            } else {
                0
            };
            (
                l.status.as_str(),
                paid,
                committed,
                format!("{why}: other assistance for an overlapping period now {assisted} ({by}): {paid} per tranche from the next tranche on (was {}); {stand}", l.amount_minor),
            )
        } else {
            let room: i64 = on_tx!(tx, conn => sqlx::query_scalar(
                "SELECT budget_minor - committed_minor FROM eligibility.crises WHERE crisis_id = $1")
                .bind(&c.crisis_id)
                .fetch_one(conn)
                .await)?;
            if (paid - l.amount_minor) * tranches <= room {
                (
                    "entitled",
                    paid,
                    paid * tranches,
                    format!("{why}: other assistance for an overlapping period now {assisted} ({by}): {paid} per tranche from the next tranche on (was {}); {stand}", l.amount_minor),
                )
            } else {
                (
                    "entitled",
                    l.amount_minor,
                    l.amount_minor * tranches,
                    format!("{why} would raise the amount to {paid} per tranche, but the remaining budget does not reach it: it stays {}", l.amount_minor),
                )
            }
        };
        let d = Dialect::of(tx);
        let sql = format!(
            "UPDATE eligibility.entitlements SET status = $2, amount_minor = $3, committed_minor = $4, \
                 assisted_minor = $5, partner_minor = $6, assisted_by = $7, reason = $8, \
                 ledger_floor_minor = {}(ledger_floor_minor, amount_minor * tranches), \
                 updated_at = {}{} WHERE entitlement_id = $1",
            d.greatest, d.now, d.bump
        );
        let by = (!by.is_empty()).then_some(by);
        on_tx!(tx, conn => sqlx::query(&sql)
            .bind(&l.entitlement_id)
            .bind(status)
            .bind(amount)
            .bind(committed)
            .bind(assisted)
            .bind(partner_now)
            .bind(&by)
            .bind(&reason)
            .execute(conn)
            .await
            .map(drop))?;
        recompute_committed(tx, &c.crisis_id).await?;
        changed.push(l.entitlement_id.clone());
    }
    log_changes(tx, &c.crisis_id, &changed).await?;
    Ok(changed.len())
}
