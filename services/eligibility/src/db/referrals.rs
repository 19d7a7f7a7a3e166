//! Social-service referrals: made set-based from a crisis's referral rules
//! over the registry's households in its areas, moved by providers'
//! answers. The table is its own outbox (as entitlements are): every
//! change bumps `change_seq` in the transaction that makes it, and the
//! referral relay ([`crate::publisher::Referrals`]) publishes rows whose
//! published mark lags, so `sumud.referrals.v1` never misses one.

use chrono::{DateTime, Utc};
use sumud_shared::db::{Conn, Store, Tx};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::referral::{Referral, ReferralStatus, REFERRAL_RECORDED};
use sumud_shared::playbook::ReferralRule;
use sumud_shared::{on_conn, on_store, on_tx, Error, Result};

use super::amend::Dialect;
use super::{CrisisRow, PartnerKey};

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
        ReferralStatus::parse(&self.status).ok_or_else(|| {
            Error::unreadable("referral status", format!("{:?} is no status", self.status))
        })
    }
}

const COLUMNS: &str =
    "referral_id, crisis_id, household_id, area_code, service, provider, status, reason, note";

/// Refers every household of crisis `c`'s areas (or only those of `only`)
/// that one of its referral rules names and that has no referral to that
/// service in this crisis yet; the relay publishes each new one.
/// Set-based: one statement per rule. Returns how many were made.
pub async fn refer(tx: &mut Tx, c: &CrisisRow, only: Option<&[String]>) -> Result<u64> {
    let mut made = 0;
    for rule in &c.resolved.referrals {
        made += refer_by(tx, c, rule, only).await?;
    }
    Ok(made)
}

async fn refer_by(
    tx: &mut Tx,
    c: &CrisisRow,
    rule: &ReferralRule,
    only: Option<&[String]>,
) -> Result<u64> {
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
         ON CONFLICT DO NOTHING",
        d.in_list("hh.governorate", 5),
        d.in_list("hh.district", 5),
        d.in_list("hh.area_code", 5),
        d.in_list("hh.household_id", 7),
    );
    let reason = crate::referral::reason(rule);
    let made = match tx {
        Tx::Postgres(conn) => sqlx::query(&sql)
            .bind(&c.crisis_id)
            .bind(&rule.service)
            .bind(&rule.provider)
            .bind(&reason)
            .bind(&c.definition.areas)
            .bind(&flags)
            .bind(only)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
        Tx::Sqlite(conn) => {
            use sumud_shared::db::sqlite::json_list;
            sqlx::query(&sql)
                .bind(&c.crisis_id)
                .bind(&rule.service)
                .bind(&rule.provider)
                .bind(&reason)
                .bind(json_list(&c.definition.areas))
                .bind(json_list(&flags))
                .bind(only.map(json_list))
                .execute(&mut **conn)
                .await?
                .rows_affected()
        }
    };
    Ok(made)
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

/// Moves referral `r` to `to` on an answer signed by `key` (message
/// `jti`), keeps the provider's note and records the answer; the change is
/// published by the relay.
pub async fn answer(
    tx: &mut Tx,
    r: &ReferralRow,
    to: ReferralStatus,
    note: Option<&str>,
    key: &PartnerKey,
    jti: &str,
) -> Result<()> {
    let d = Dialect::of(tx);
    let update = format!(
        "UPDATE eligibility.referrals SET status = $2, note = coalesce($3, note), updated_at = {}{} \
         WHERE referral_id = $1",
        d.now, d.bump
    );
    on_tx!(tx, conn => sqlx::query(&update)
        .bind(&r.referral_id)
        .bind(to.as_str())
        .bind(note)
        .execute(conn)
        .await
        .map(drop))?;
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
    Ok(())
}

/// A referral whose change is not yet published, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Unpublished {
    /// The referral.
    #[sqlx(flatten)]
    pub referral: ReferralRow,
    /// When this change was recorded.
    pub updated_at: DateTime<Utc>,
    /// The change it was read at.
    pub change_seq: i64,
}

impl Unpublished {
    /// Its event (id = referral id @ change).
    pub fn event(&self) -> Envelope<Referral> {
        let r = &self.referral;
        let data = Referral {
            referral_id: r.referral_id.clone(),
            crisis_id: r.crisis_id.clone(),
            household_id: r.household_id.clone(),
            area_code: r.area_code.clone(),
            service: r.service.clone(),
            provider: r.provider.clone(),
            // One of four: the table's CHECK constraint.
            status: ReferralStatus::parse(&r.status).unwrap_or(ReferralStatus::Referred),
            reason: r.reason.clone(),
            changed_at: self.updated_at,
        };
        let mut e = Envelope::new(
            "urn:sumud:eligibility",
            REFERRAL_RECORDED,
            Some(r.referral_id.clone()),
            data,
        );
        e.id = format!("{}@{}", r.referral_id, self.change_seq);
        e
    }
}

/// Referrals changed since published, in change order.
pub async fn unpublished_referrals(conn: &mut Conn, limit: i64) -> Result<Vec<Unpublished>> {
    let sql = format!(
        "SELECT {COLUMNS}, updated_at, change_seq FROM eligibility.referrals \
         WHERE {} ORDER BY change_seq LIMIT $1",
        sumud_shared::outbox::lagging(conn)
    );
    Ok(on_conn!(conn, c => sqlx::query_as(&sql).bind(limit).fetch_all(c).await)?)
}

/// Marks referrals published at the change they were read at.
pub async fn mark_referrals_published(conn: &mut Conn, ids: &[String], seqs: &[i64]) -> Result<()> {
    sumud_shared::outbox::mark_published_at(conn, "eligibility.referrals", "referral_id", ids, seqs)
        .await
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
