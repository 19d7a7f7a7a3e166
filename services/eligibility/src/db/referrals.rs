//! Social-service referrals: made set-based from a crisis's referral rules
//! over the registry's households in its areas, moved by providers'
//! acknowledgements, each change written to the outbox in the same
//! transaction so that `sumud.referrals.v1` never misses one.

use chrono::Utc;
use sumud_shared::db::{Store, Tx};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::referral::{Referral, ReferralStatus, REFERRAL_RECORDED};
use sumud_shared::outbox::{self, Pending};
use sumud_shared::playbook::ReferralRule;
use sumud_shared::{on_store, on_tx, Error, Result};

use super::amend::Dialect;
use super::{CrisisRow, PartnerKey};

/// The CloudEvents `source` of referral events.
const SOURCE: &str = "urn:sumud:eligibility";

/// A referral as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReferralRow {
    /// `<crisis>/<household>/<service>`.
    pub referral_id: String,
    /// Crisis.
    pub crisis_id: String,
    /// Household.
    pub household_id: String,
    /// Its area code.
    pub area_code: String,
    /// Service referred to.
    pub service: String,
    /// The agency that provides it.
    pub provider: String,
    /// `referred`, `accepted`, `served` or `declined`.
    pub status: String,
    /// The rule it met.
    pub reason: String,
    /// The provider's last note.
    pub note: Option<String>,
}

impl ReferralRow {
    /// Where it stands.
    pub fn status(&self) -> Result<ReferralStatus> {
        ReferralStatus::parse(&self.status)
            .ok_or_else(|| Error::Other(format!("stored referral status {:?}", self.status)))
    }

    fn event(&self) -> Result<Envelope<Referral>> {
        let data = Referral {
            referral_id: self.referral_id.clone(),
            crisis_id: self.crisis_id.clone(),
            household_id: self.household_id.clone(),
            area_code: self.area_code.clone(),
            service: self.service.clone(),
            provider: self.provider.clone(),
            status: self.status()?,
            reason: self.reason.clone(),
            changed_at: Utc::now(),
        };
        Ok(Envelope::new(
            SOURCE,
            REFERRAL_RECORDED,
            Some(self.referral_id.clone()),
            data,
        ))
    }
}

const COLUMNS: &str =
    "referral_id, crisis_id, household_id, area_code, service, provider, status, reason, note";

/// Refers every household of crisis `c`'s areas (or only those of `only`)
/// that one of its referral rules names and that has no referral to that
/// service in this crisis yet, and queues each new referral's event for
/// `topic`. Set-based: one statement per rule. Returns how many were made.
pub async fn refer(
    tx: &mut Tx,
    c: &CrisisRow,
    only: Option<&[String]>,
    topic: &str,
) -> Result<usize> {
    let mut made = 0;
    for rule in &c.resolved.referrals {
        let rows = refer_by(tx, c, rule, only).await?;
        made += rows.len();
        enqueue(tx, topic, &rows).await?;
    }
    Ok(made)
}

async fn refer_by(
    tx: &mut Tx,
    c: &CrisisRow,
    rule: &ReferralRule,
    only: Option<&[String]>,
) -> Result<Vec<ReferralRow>> {
    let d = Dialect::of(tx);
    let flags: Vec<&str> = rule.flags.iter().map(|f| f.as_str()).collect();
    let carries_all = if d.json_lists {
        "NOT EXISTS (SELECT 1 FROM json_each($6) r \
                     WHERE r.value NOT IN (SELECT value FROM json_each(hh.flags)))"
    } else {
        "hh.flags @> $6::text[]"
    };
    let sql = format!(
        "INSERT INTO eligibility.referrals \
             (referral_id, crisis_id, household_id, area_code, governorate, service, provider, status, reason) \
         SELECT $1 || '/' || hh.household_id || '/' || $2, $1, hh.household_id, hh.area_code, \
                hh.governorate, $2, $3, 'referred', $4 \
         FROM registry.households_v hh \
         WHERE ({} OR {} OR {}) AND {carries_all} AND ($7 IS NULL OR {}) \
         ORDER BY hh.household_id \
         ON CONFLICT DO NOTHING \
         RETURNING {COLUMNS}",
        d.in_list("hh.governorate", 5),
        d.in_list("hh.district", 5),
        d.in_list("hh.area_code", 5),
        d.in_list("hh.household_id", 7),
    );
    let reason = crate::referral::reason(rule);
    let rows: Vec<ReferralRow> = match tx {
        Tx::Postgres(conn) => {
            sqlx::query_as(&sql)
                .bind(&c.crisis_id)
                .bind(&rule.service)
                .bind(&rule.provider)
                .bind(&reason)
                .bind(&c.definition.areas)
                .bind(&flags)
                .bind(only)
                .fetch_all(&mut **conn)
                .await?
        }
        Tx::Sqlite(conn) => {
            use sumud_shared::db::sqlite::json_list;
            sqlx::query_as(&sql)
                .bind(&c.crisis_id)
                .bind(&rule.service)
                .bind(&rule.provider)
                .bind(&reason)
                .bind(json_list(&c.definition.areas))
                .bind(json_list(&flags))
                .bind(only.map(json_list))
                .fetch_all(&mut **conn)
                .await?
        }
    };
    Ok(rows)
}

async fn enqueue(tx: &mut Tx, topic: &str, rows: &[ReferralRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let pending = rows
        .iter()
        .map(|r| Ok(Pending::event(topic, &r.referral_id, &r.event()?)))
        .collect::<Result<Vec<_>>>()?;
    outbox::enqueue_tx(tx, "eligibility", pending).await
}

/// The referral `id`, locked for the rest of the transaction.
pub async fn referral_for_update(tx: &mut Tx, id: &str) -> Result<Option<ReferralRow>> {
    let lock = if matches!(tx, Tx::Postgres(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT {COLUMNS} FROM eligibility.referrals WHERE referral_id = $1{lock}");
    Ok(on_tx!(tx, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)?)
}

/// Moves referral `r` to `to` on an acknowledgement signed by `key`
/// (message `jti`), keeps the provider's note, records the answer and
/// queues the referral's new state for `topic`.
pub async fn answer(
    tx: &mut Tx,
    r: &ReferralRow,
    to: ReferralStatus,
    note: Option<&str>,
    key: &PartnerKey,
    jti: &str,
    topic: &str,
) -> Result<()> {
    let now = Dialect::of(tx).now;
    let update = format!(
        "UPDATE eligibility.referrals SET status = $2, note = coalesce($3, note), updated_at = {now} \
         WHERE referral_id = $1 RETURNING {COLUMNS}"
    );
    let moved: ReferralRow = on_tx!(tx, conn => sqlx::query_as(&update)
        .bind(&r.referral_id)
        .bind(to.as_str())
        .bind(note)
        .fetch_one(conn)
        .await)?;
    const ANSWER: &str = "INSERT INTO eligibility.referral_answers \
                          (referral_id, status, note, agency, kid, jti) VALUES ($1, $2, $3, $4, $5, $6)";
    on_tx!(tx, conn => sqlx::query(ANSWER)
        .bind(&r.referral_id)
        .bind(to.as_str())
        .bind(note)
        .bind(&key.agency)
        .bind(&key.kid)
        .bind(jti)
        .execute(conn)
        .await
        .map(drop))?;
    enqueue(tx, topic, std::slice::from_ref(&moved)).await
}

/// One answer a provider gave, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ReferralAnswer {
    /// The status it moved the referral to.
    pub status: String,
    /// The provider's note.
    pub note: Option<String>,
    /// The agency whose key signed it.
    pub agency: String,
    /// When it was recorded.
    pub answered_at: String,
}

/// Every referral of `household`, each with its answers in order.
pub async fn referrals_of(
    store: &Store,
    household: &str,
) -> Result<Vec<(ReferralRow, Vec<ReferralAnswer>)>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM eligibility.referrals WHERE household_id = $1 \
         ORDER BY referred_at, referral_id"
    );
    let rows: Vec<ReferralRow> =
        on_store!(store, pool => sqlx::query_as(&sql).bind(household).fetch_all(pool).await)?;
    let answers_sql = match store {
        Store::Postgres(_) => {
            "SELECT status, note, agency, \
             to_char(answered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS answered_at \
             FROM eligibility.referral_answers WHERE referral_id = $1 ORDER BY answered_at, jti"
        }
        Store::Sqlite(_) => {
            "SELECT status, note, agency, answered_at \
             FROM eligibility.referral_answers WHERE referral_id = $1 ORDER BY answered_at, jti"
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let answers: Vec<ReferralAnswer> = on_store!(store, pool => sqlx::query_as(answers_sql)
            .bind(&r.referral_id)
            .fetch_all(pool)
            .await)?;
        out.push((r, answers));
    }
    Ok(out)
}
