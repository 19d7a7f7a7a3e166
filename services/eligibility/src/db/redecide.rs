//! Registry changes reaching decisions already made: the live decisions of
//! the changed households are re-decided by [`crate::policy::redecide`] on
//! their new records, and the answers applied — cancellations and
//! decreases first, then raises in priority order while the remaining
//! budget reaches them. Every change names the registry version that
//! caused it and lands in the decision trail. Deterministic and idempotent:
//! a redelivered change finds nothing to do.

use std::collections::HashMap;

use sumud_shared::db::sqlite::{json_list, parse_json_list};
use sumud_shared::db::Tx;
use sumud_shared::Result;

use super::amend::{log_changes, recompute_committed, Dialect};
use super::CrisisRow;
use crate::policy::{self, Facts, LiveDecision, Redecision, Verdict};

/// What re-deciding changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redecided {
    /// Decisions cancelled (moved away, no longer qualifying, other kind).
    pub cancelled: i64,
    /// Decisions repriced (up or down).
    pub repriced: i64,
    /// Raises the remaining budget did not reach (the amount stays).
    pub held: i64,
}

/// A registry record as [`FACTS_SELECT`] reads it: id, version, area code,
/// governorate, district, members, welfare score, programmes, flags, event
/// id; the lists as arrays on PostgreSQL, JSON text on SQLite.
pub(super) type FactsRow<L> = (
    String,
    i64,
    String,
    String,
    Option<String>,
    i32,
    f64,
    L,
    L,
    String,
);

/// The registry view's columns the policy reads; a `WHERE` follows.
pub(super) const FACTS_SELECT: &str =
    "SELECT household_id, version, area_code, governorate, district, members, welfare_score, \
            programmes, flags, event_id FROM registry.households_v WHERE ";

/// Reads SQLite's JSON lists of a [`FactsRow`].
pub(super) fn decode_lists(row: FactsRow<String>) -> Result<FactsRow<Vec<String>>> {
    let (id, v, a, g, d, m, w, p, f, e) = row;
    let p = parse_json_list(&p, "programmes")?;
    let f = parse_json_list(&f, "flags")?;
    Ok((id, v, a, g, d, m, w, p, f, e))
}

/// A [`FactsRow`] as (household id, (facts, event id)).
pub(super) fn into_facts(row: FactsRow<Vec<String>>) -> (String, (Facts, String)) {
    let (
        id,
        version,
        area_code,
        governorate,
        district,
        members,
        welfare_score,
        programmes,
        flags,
        event_id,
    ) = row;
    let facts = Facts {
        version,
        area_code,
        governorate,
        district,
        members,
        welfare_score,
        programmes,
        flags,
    };
    (id, (facts, event_id))
}

/// The current registry records of `ids` (absent or removed ones are
/// missing from the map), with the event that set each.
pub(super) async fn facts_of(
    tx: &mut Tx,
    ids: &[String],
) -> Result<HashMap<String, (Facts, String)>> {
    let d = Dialect::of(tx);
    let sql = format!("{FACTS_SELECT}{}", d.in_list("household_id", 1));
    let rows: Vec<FactsRow<Vec<String>>> = match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(&sql)
                .bind(ids.to_vec())
                .fetch_all(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx) => {
            let rows: Vec<FactsRow<String>> = sqlx::query_as(&sql)
                .bind(json_list(ids))
                .fetch_all(&mut **tx)
                .await?;
            rows.into_iter().map(decode_lists).collect::<Result<_>>()?
        }
    };
    Ok(rows.into_iter().map(into_facts).collect())
}

/// The crisis's live decisions of `households`.
pub(super) async fn live_decisions(
    tx: &mut Tx,
    crisis_id: &str,
    households: &[String],
) -> Result<Vec<LiveDecision>> {
    let d = Dialect::of(tx);
    let sql = format!(
        "SELECT entitlement_id, household_id, kind, status, amount_minor, tranches, registry_version, \
                assisted_minor, assisted_by, partner_minor \
         FROM eligibility.entitlements \
         WHERE crisis_id = $1 AND status <> 'cancelled' AND {} ORDER BY entitlement_id",
        d.in_list("household_id", 2)
    );
    Ok(match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(&sql)
                .bind(crisis_id)
                .bind(households.to_vec())
                .fetch_all(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(&sql)
                .bind(crisis_id)
                .bind(json_list(households))
                .fetch_all(&mut **tx)
                .await?
        }
    })
}

/// One decision's new state, with the record that decided it.
struct Change<'a> {
    id: &'a str,
    status: &'a str,
    amount_minor: i64,
    committed_minor: i64,
    facts: &'a Facts,
    reason: String,
}

/// Writes one re-decided row (its snapshot of the household follows the
/// record that re-decided it); the crisis revision is left as it was, so
/// that disbursement tops up no tranche already instructed.
async fn write(tx: &mut Tx, c: &Change<'_>) -> Result<()> {
    let d = Dialect::of(tx);
    let sql = format!(
        "UPDATE eligibility.entitlements SET status = $2, amount_minor = $3, committed_minor = $4, \
             members = $5, welfare_score = $6, area_code = $7, governorate = $8, district = $9, \
             registry_version = $10, reason = $11, \
             ledger_floor_minor = {}(ledger_floor_minor, amount_minor * tranches), updated_at = {}{} \
         WHERE entitlement_id = $1",
        d.greatest, d.now, d.bump
    );
    let f = c.facts;
    sumud_shared::on_tx!(tx, conn => sqlx::query(&sql)
        .bind(c.id)
        .bind(c.status)
        .bind(c.amount_minor)
        .bind(c.committed_minor)
        .bind(f.members)
        .bind(f.welfare_score)
        .bind(&f.area_code)
        .bind(&f.governorate)
        .bind(&f.district)
        .bind(f.version)
        .bind(&c.reason)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// Re-decides the crisis's live decisions of `households` on their current
/// registry records. Run before the expansion of the same households, which
/// then decides those that now qualify as the other kind.
pub async fn redecide_households(
    tx: &mut Tx,
    c: &CrisisRow,
    households: &[String],
) -> Result<Redecided> {
    if households.is_empty() {
        return Ok(Redecided::default());
    }
    let live = live_decisions(tx, &c.crisis_id, households).await?;
    if live.is_empty() {
        return Ok(Redecided::default());
    }
    let ids: Vec<String> = live.iter().map(|l| l.household_id.clone()).collect();
    let facts = facts_of(tx, &ids).await?;
    let (r, areas) = (&c.resolved, &c.definition.areas);
    let mut out = Redecided::default();
    let mut changed = Vec::new();
    let mut raises = Vec::new();
    // 1. Cancellations and decreases (and any change to a waitlisted
    //    decision, which holds no budget): they only free money.
    for l in &live {
        // A removed household is cancelled by cancel_households.
        let Some((f, event)) = facts.get(&l.household_id) else {
            continue;
        };
        let (status, amount, reason) = match policy::redecide(r, areas, l, f, event) {
            Redecision::Keep => continue,
            Redecision::Cancel { reason } => {
                out.cancelled += 1;
                ("cancelled", l.amount_minor, reason)
            }
            Redecision::Reprice {
                amount_minor,
                reason,
            } if l.status != "entitled" || amount_minor < l.amount_minor => {
                out.repriced += 1;
                (l.status.as_str(), amount_minor, reason)
            }
            Redecision::Reprice {
                amount_minor,
                reason,
            } => {
                raises.push((l, f, amount_minor, reason));
                continue;
            }
        };
        let committed = if status == "entitled" {
            amount * i64::from(l.tranches)
        } else {
            0
        };
        let change = Change {
            id: &l.entitlement_id,
            status,
            amount_minor: amount,
            committed_minor: committed,
            facts: f,
            reason,
        };
        write(tx, &change).await?;
        changed.push(l.entitlement_id.clone());
    }
    recompute_committed(tx, &c.crisis_id).await?;
    // 2. Raises, in the expansion's priority order, while the budget reaches.
    if !raises.is_empty() {
        let key = |f: &Facts| match policy::judge_alone(r, areas, f) {
            Verdict::Qualifies { priority, .. } => priority,
            _ => 0,
        };
        raises.sort_by(|a, b| {
            key(b.1)
                .cmp(&key(a.1))
                .then(a.1.welfare_score.total_cmp(&b.1.welfare_score))
                .then(a.0.household_id.cmp(&b.0.household_id))
        });
        let committed = super::crisis(tx, &c.crisis_id)
            .await?
            .map_or(c.committed_minor, |now| now.committed_minor);
        let mut room = c.budget_minor - committed;
        for (l, f, amount, reason) in raises {
            let tranches = i64::from(l.tranches);
            let more = (amount - l.amount_minor) * tranches;
            let change = if more <= room {
                room -= more;
                out.repriced += 1;
                Change {
                    id: &l.entitlement_id,
                    status: "entitled",
                    amount_minor: amount,
                    committed_minor: amount * tranches,
                    facts: f,
                    reason,
                }
            } else {
                out.held += 1;
                Change {
                    id: &l.entitlement_id,
                    status: "entitled",
                    amount_minor: l.amount_minor,
                    committed_minor: l.amount_minor * tranches,
                    facts: f,
                    reason: format!(
                        "registry version {} would raise the amount to {amount} per tranche, but the remaining budget does not reach it: it stays {}",
                        f.version, l.amount_minor
                    ),
                }
            };
            write(tx, &change).await?;
            changed.push(l.entitlement_id.clone());
        }
        recompute_committed(tx, &c.crisis_id).await?;
    }
    log_changes(tx, &c.crisis_id, &changed).await?;
    Ok(out)
}
