//! Figures by area: households in the registry, entitled, paid.

use sqlx::FromRow;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use super::fetch_only;
use crate::error::Result;

/// Live registered households per area code (for the affected count).
pub async fn households_by_area(store: &Store) -> Result<Vec<(String, i64)>> {
    const SQL: &str = "SELECT area_code, count(*) FROM registry.households_v GROUP BY area_code";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// One line of an area aggregate: a governorate (`district` null) or a
/// district, in one currency.
#[derive(Debug, Clone, FromRow)]
pub struct AreaAggregate {
    /// Governorate code.
    pub governorate: String,
    /// District code; null on the governorate's own line.
    pub district: Option<String>,
    /// Currency.
    pub currency: String,
    /// First count (households entitled, or instructions paid).
    pub n1: i64,
    /// First amount.
    pub m1: i64,
    /// Second count (0, or instructions failed).
    pub n2: i64,
    /// Second amount.
    pub m2: i64,
}

/// Entitled households and their commitment by governorate and by district
/// (two groupings, so that a governorate counts each household once).
pub async fn entitled_by_area(store: &Store, only: Option<&str>) -> Result<Vec<AreaAggregate>> {
    const ENTITLED: &str = "FROM eligibility.entitlements \
         WHERE status = 'entitled' AND (CAST($1 AS text) IS NULL OR crisis_id = $1)";
    fetch_only(
        store,
        &format!(
            "SELECT governorate, district, currency, \
                    count(DISTINCT household_id) AS n1, CAST(coalesce(sum(committed_minor), 0) AS bigint) AS m1, \
                    CAST(0 AS bigint) AS n2, CAST(0 AS bigint) AS m2 \
             {ENTITLED} AND district IS NOT NULL GROUP BY governorate, district, currency \
             UNION ALL \
             SELECT governorate, NULL, currency, \
                    count(DISTINCT household_id), CAST(coalesce(sum(committed_minor), 0) AS bigint), \
                    CAST(0 AS bigint), CAST(0 AS bigint) \
             {ENTITLED} GROUP BY governorate, currency"
        ),
        only,
    )
    .await
}

/// Paid and failed instructions by governorate and district of the
/// household as eligibility decided on it.
pub async fn payments_by_area(store: &Store, only: Option<&str>) -> Result<Vec<AreaAggregate>> {
    const FIGURES: &str = "count(*) FILTER (WHERE i.status = 'succeeded') AS n1, \
                CAST(coalesce(sum(i.amount_minor) FILTER (WHERE i.status = 'succeeded'), 0) AS bigint) AS m1, \
                count(*) FILTER (WHERE i.status IN ('failed', 'reversed')) AS n2, \
                CAST(coalesce(sum(i.amount_minor) FILTER (WHERE i.status IN ('failed', 'reversed')), 0) AS bigint) AS m2";
    const FINAL: &str = "FROM disbursement.instructions i \
         JOIN eligibility.entitlements e \
           ON e.crisis_id = i.crisis_id AND e.household_id = i.household_id AND e.kind = i.kind \
         WHERE i.status IN ('succeeded', 'failed', 'reversed') AND (CAST($1 AS text) IS NULL OR i.crisis_id = $1)";
    fetch_only(
        store,
        &format!(
            "SELECT e.governorate, e.district, i.currency, {FIGURES} \
             {FINAL} AND e.district IS NOT NULL GROUP BY e.governorate, e.district, i.currency \
             UNION ALL \
             SELECT e.governorate, NULL, i.currency, {FIGURES} \
             {FINAL} GROUP BY e.governorate, i.currency"
        ),
        only,
    )
    .await
}
