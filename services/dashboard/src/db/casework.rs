//! The case work beside the cash: grievances by status and age, referrals
//! by provider and status.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use crate::error::Result;

/// Grievances grouped by the area recorded at filing, kind and whether
/// they are answered, with open ones counted by age at `now`.
#[derive(Debug, Clone, FromRow)]
pub struct GrievanceAggregate {
    /// Area code at filing.
    pub area_code: Option<String>,
    /// Complaint kind.
    pub kind: String,
    /// Whether these are answered.
    pub answered: bool,
    /// How many.
    pub n: i64,
    /// Filed less than a day before `now`.
    pub under_1_day: i64,
    /// Filed one to seven days before `now`.
    pub from_1_to_7_days: i64,
    /// The oldest of them.
    pub oldest: Option<DateTime<Utc>>,
}

/// Referrals counted by governorate, service and status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReferralAggregate {
    /// Governorate of the household when referred.
    pub governorate: String,
    /// Service.
    pub service: String,
    /// The agency that provides it.
    pub provider: String,
    /// Where they stand.
    pub status: String,
    /// How many.
    pub n: i64,
}

/// Every [`ReferralAggregate`].
pub async fn referrals(store: &Store) -> Result<Vec<ReferralAggregate>> {
    const SQL: &str =
        "SELECT governorate, service, min(provider) AS provider, status, count(*) AS n \
                       FROM eligibility.referrals GROUP BY governorate, service, status";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// [`GrievanceAggregate`]s at `now` (`over_7_days` is the rest).
pub async fn grievances(store: &Store, now: DateTime<Utc>) -> Result<Vec<GrievanceAggregate>> {
    const SQL: &str = "SELECT area_code, kind, state = 'resolved' AS answered, count(*) AS n, \
            count(*) FILTER (WHERE created_at > $1) AS under_1_day, \
            count(*) FILTER (WHERE created_at <= $1 AND created_at > $2) AS from_1_to_7_days, \
            min(created_at) AS oldest \
         FROM disbursement.grievances GROUP BY area_code, kind, state = 'resolved'";
    let (day, week) = (
        now - chrono::Duration::days(1),
        now - chrono::Duration::days(7),
    );
    Ok(match store {
        Store::Postgres(pool) => {
            sqlx::query_as(SQL)
                .bind(day)
                .bind(week)
                .fetch_all(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            sqlx::query_as(SQL)
                .bind(timestamp(day))
                .bind(timestamp(week))
                .fetch_all(pool)
                .await?
        }
    })
}
