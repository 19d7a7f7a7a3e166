//! All SQL of the alerts service: the alert record, indicator time series,
//! indicator triggers, and the poverty shares read through the registry's
//! read-only view `registry.households_v`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use sumud_shared::events::alert::IndicatorReading;
use sumud_shared::Result;

/// The alerts service's migrations (schema `alerts`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's migrations: PostgreSQL only so far.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: None,
};

/// One received alert and what was done about it.
#[derive(Debug, Clone)]
pub struct AlertRecord<'a> {
    /// CAP sender.
    pub sender: &'a str,
    /// CAP identifier.
    pub identifier: &'a str,
    /// CAP sent.
    pub sent: DateTime<Utc>,
    /// CAP status (`Actual`, `Exercise`…).
    pub status: &'a str,
    /// CAP msgType.
    pub msg_type: &'a str,
    /// Referenced alerts as `sender,identifier,sent`.
    pub refs: Vec<String>,
    /// Event names of the info blocks.
    pub events: Vec<String>,
    /// Our area codes the alert covers.
    pub areas: Vec<String>,
    /// What happened, e.g. `declared`, `dry_run`, `not_our_area`.
    pub outcome: &'a str,
    /// The rule that acted (or would have).
    pub rule: Option<(&'a str, i32)>,
    /// The crisis it caused or changed (only for `Actual` alerts).
    pub crisis_id: Option<&'a str>,
    /// The command sent (or, in a dry run, that would have been).
    pub command: Option<serde_json::Value>,
    /// The CAP XML document.
    pub document: &'a str,
}

/// The `sent` time of an alert already received from this sender under
/// this identifier.
pub async fn alert_sent(
    conn: &mut PgConnection,
    sender: &str,
    identifier: &str,
) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT sent FROM alerts.alerts WHERE sender = $1 AND identifier = $2 FOR UPDATE",
    )
    .bind(sender)
    .bind(identifier)
    .fetch_optional(conn)
    .await?)
}

/// Records an alert.
pub async fn insert_alert(conn: &mut PgConnection, a: &AlertRecord<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO alerts.alerts (sender, identifier, sent, status, msg_type, refs, events, areas, \
         outcome, rule_id, rule_version, crisis_id, command, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(a.sender)
    .bind(a.identifier)
    .bind(a.sent)
    .bind(a.status)
    .bind(a.msg_type)
    .bind(&a.refs)
    .bind(&a.events)
    .bind(&a.areas)
    .bind(a.outcome)
    .bind(a.rule.map(|r| r.0))
    .bind(a.rule.map(|r| r.1))
    .bind(a.crisis_id)
    .bind(&a.command)
    .bind(a.document)
    .execute(conn)
    .await?;
    Ok(())
}

/// The crisis (and the rule that caused it) of the most recent referenced
/// alert that has one: an Update or Cancel acts on it.
pub async fn crisis_of_references(
    conn: &mut PgConnection,
    refs: &[(String, String)],
) -> Result<Option<(String, String)>> {
    let senders: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();
    let ids: Vec<&str> = refs.iter().map(|r| r.1.as_str()).collect();
    Ok(sqlx::query_as(
        "SELECT a.crisis_id, a.rule_id FROM alerts.alerts a \
         JOIN unnest($1::text[], $2::text[]) r(sender, identifier) USING (sender, identifier) \
         WHERE a.crisis_id IS NOT NULL AND a.rule_id IS NOT NULL ORDER BY a.sent DESC LIMIT 1",
    )
    .bind(&senders)
    .bind(&ids)
    .fetch_optional(conn)
    .await?)
}

/// Registered households and the share of them under `threshold`, per area
/// (a governorate, district or locality code).
pub async fn poor_shares(
    conn: &mut PgConnection,
    areas: &[String],
    threshold: f64,
) -> Result<BTreeMap<String, (i64, f64)>> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT a.code, count(h.household_id), \
                coalesce(avg(CASE WHEN h.welfare_score < $2 THEN 1.0 ELSE 0.0 END), 0)::float8 \
         FROM unnest($1::text[]) a(code) \
         LEFT JOIN registry.households_v h \
                ON h.governorate = a.code OR h.district = a.code OR h.area_code = a.code \
         GROUP BY a.code",
    )
    .bind(areas)
    .bind(threshold)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(a, n, s)| (a, (n, s))).collect())
}

/// What storing a reading found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stored {
    /// A new point of the series.
    New,
    /// The same value again (a redelivery).
    Same,
    /// A different value was recorded for this point earlier.
    Conflict(f64),
}

/// Stores a reading unless its point of the series is already known.
pub async fn insert_reading(conn: &mut PgConnection, r: &IndicatorReading) -> Result<Stored> {
    let inserted = sqlx::query(
        "INSERT INTO alerts.readings (indicator, area, source, period_end, value, unit) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&r.indicator)
    .bind(&r.area)
    .bind(&r.source)
    .bind(r.period_end)
    .bind(r.value)
    .bind(&r.unit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Stored::New);
    }
    let before: f64 = sqlx::query_scalar(
        "SELECT value FROM alerts.readings WHERE indicator = $1 AND area = $2 AND source = $3 AND period_end = $4",
    )
    .bind(&r.indicator)
    .bind(&r.area)
    .bind(&r.source)
    .bind(r.period_end)
    .fetch_one(conn)
    .await?;
    Ok(if before == r.value {
        Stored::Same
    } else {
        Stored::Conflict(before)
    })
}

/// The latest reading of the same series at least `window_days` before this one.
pub async fn baseline(
    conn: &mut PgConnection,
    r: &IndicatorReading,
    window_days: u32,
) -> Result<Option<(NaiveDate, f64)>> {
    Ok(sqlx::query_as(
        "SELECT period_end, value FROM alerts.readings \
         WHERE indicator = $1 AND area = $2 AND source = $3 AND period_end <= $4 - $5::int \
         ORDER BY period_end DESC LIMIT 1",
    )
    .bind(&r.indicator)
    .bind(&r.area)
    .bind(&r.source)
    .bind(r.period_end)
    .bind(window_days as i32)
    .fetch_optional(conn)
    .await?)
}

/// Records that a rule fired for an area, unless it already fired for it
/// within the window ending at `period_end`; returns whether this is new.
pub async fn claim_trigger(
    conn: &mut PgConnection,
    rule: (&str, i32),
    area: &str,
    period_end: NaiveDate,
    window_days: u32,
    crisis_id: &str,
) -> Result<bool> {
    let recent: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alerts.triggers WHERE rule_id = $1 AND area = $2 \
                        AND period_end > $3 - $4::int AND period_end <= $3)",
    )
    .bind(rule.0)
    .bind(area)
    .bind(period_end)
    .bind(window_days as i32)
    .fetch_one(&mut *conn)
    .await?;
    if recent {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO alerts.triggers (rule_id, rule_version, area, period_end, crisis_id) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(rule.0)
    .bind(rule.1)
    .bind(area)
    .bind(period_end)
    .bind(crisis_id)
    .execute(conn)
    .await?;
    Ok(true)
}
