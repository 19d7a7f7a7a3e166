//! All SQL of the dashboard, by subject: `crises` (control's record, the
//! per-crisis figures, the audit trail, triggers), `areas`, `providers`,
//! `casework` (grievances, referrals); here the helpers they share and
//! which services' tables exist. Every statement is a read: the dashboard owns no
//! schema and runs no migration, it reads the tables the other services own
//! (control's crises and audit, the registry's documented view, eligibility's
//! entitlements, disbursement's instructions, status log and field tasks,
//! alerts' alerts and triggers). A service that has never started has no
//! tables yet; [`sources`] says which exist so that the callers skip the
//! others instead of failing.
//!
//! Statements aggregate in the database (one row per crisis, area or
//! provider), so the cost of a snapshot does not grow with the number of
//! households on the wire.
//!
//! Every statement reads the same on PostgreSQL and SQLite (`CAST`, not
//! `::`; `UNION ALL` of two groupings, not `GROUPING SETS`; windows, not
//! `DISTINCT ON`), except where noted: control's JSON definition, the
//! tables' existence, and the latency percentiles (computed here on SQLite,
//! which has no `percentile_cont`).

use chrono::Utc;
use sqlx::FromRow;
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use crate::error::Result;
use crate::model::Sources;

mod areas;
mod casework;
mod crises;
mod providers;

pub use areas::*;
pub use casework::*;
pub use crises::*;
pub use providers::*;

/// Window of the provider figures (latency, rejection rate), seconds.
pub const PROVIDER_WINDOW_SECS: i64 = 3600;

/// Runs `sql` binding `only` (a crisis id or none) as `$1`, on either backend.
async fn fetch_only<T>(store: &Store, sql: &str, only: Option<&str>) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    Ok(on_store!(store, pool => sqlx::query_as(sql).bind(only).fetch_all(pool).await)?)
}

/// Runs `sql` with `{since}` standing for the start of the provider
/// figures' window: on PostgreSQL by the database's clock, on SQLite (whose
/// clock is this process's) as [`timestamp`] text.
async fn fetch_window<T>(store: &Store, sql: &str) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    Ok(match store {
        Store::Postgres(pool) => {
            sqlx::query_as(&sql.replace("{since}", "now() - make_interval(secs => $1)"))
                .bind(PROVIDER_WINDOW_SECS as f64)
                .fetch_all(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            let since = Utc::now() - chrono::Duration::seconds(PROVIDER_WINDOW_SECS);
            sqlx::query_as(&sql.replace("{since}", "$1"))
                .bind(timestamp(since))
                .fetch_all(pool)
                .await?
        }
    })
}

/// Which services' tables exist.
pub async fn sources(store: &Store) -> Result<Sources> {
    let (control, registry, eligibility, disbursement, alerts): (bool, bool, bool, bool, bool) =
        match store {
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT to_regclass('control.crises') IS NOT NULL, \
                            to_regclass('registry.households_v') IS NOT NULL, \
                            to_regclass('eligibility.entitlements') IS NOT NULL, \
                            EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'disbursement' \
                                    AND table_name = 'crises' AND column_name = 'last_pass_error'), \
                            to_regclass('alerts.triggers') IS NOT NULL",
                )
                .fetch_one(pool)
                .await?
            }
            // Every schema's file is attached; a service that never started
            // has not created its tables in it.
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM control.sqlite_master WHERE name = 'crises'), \
                            EXISTS (SELECT 1 FROM registry.sqlite_master WHERE name = 'households_v'), \
                            EXISTS (SELECT 1 FROM eligibility.sqlite_master WHERE name = 'entitlements'), \
                            EXISTS (SELECT 1 FROM pragma_table_info('crises', 'disbursement') WHERE name = 'last_pass_error'), \
                            EXISTS (SELECT 1 FROM alerts.sqlite_master WHERE name = 'triggers')",
                )
                .fetch_one(pool)
                .await?
            }
        };
    Ok(Sources {
        control,
        registry,
        eligibility,
        disbursement,
        alerts,
    })
}
