//! All SQL of the alerts service, on PostgreSQL and on SQLite: the alert
//! record, indicator time series, indicator triggers, and the poverty
//! shares read through the registry's read-only view
//! `registry.households_v`. Statements that read the same on both backends
//! are written once; lists (arrays on PostgreSQL) are JSON on SQLite, and
//! date arithmetic is done here, not in SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sumud_shared::db::{Migrations, Store, Tx};
use sumud_shared::events::alert::IndicatorReading;
use sumud_shared::{on_tx, Result};

/// The alerts service's migrations (schema `alerts`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The same schema on the embedded default's SQLite file.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The service's migrations on both backends.
pub static MIGRATIONS: Migrations = Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&SQLITE_MIGRATOR),
};

/// A list as SQLite stores it (a JSON array).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Lists of strings and pairs of strings always serialise.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

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

/// The `sent` time and outcome of an alert already received from this
/// sender under this identifier, locked for the rest of the transaction
/// (SQLite's write transaction holds the file's lock already).
pub async fn alert_seen(
    tx: &mut Tx,
    sender: &str,
    identifier: &str,
) -> Result<Option<(DateTime<Utc>, String)>> {
    const SQL: &str =
        "SELECT sent, outcome FROM alerts.alerts WHERE sender = $1 AND identifier = $2";
    Ok(match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(&format!("{SQL} FOR UPDATE"))
                .bind(sender)
                .bind(identifier)
                .fetch_optional(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(SQL)
                .bind(sender)
                .bind(identifier)
                .fetch_optional(&mut **tx)
                .await?
        }
    })
}

/// Forgets an alert recorded from a sender that was not trusted then, so
/// that it is judged again now that the sender is (a replayed dead letter).
pub async fn forget_untrusted(tx: &mut Tx, sender: &str, identifier: &str) -> Result<()> {
    const SQL: &str = "DELETE FROM alerts.alerts WHERE sender = $1 AND identifier = $2 \
                       AND outcome = 'untrusted_sender' AND crisis_id IS NULL";
    on_tx!(tx, conn => { sqlx::query(SQL).bind(sender).bind(identifier).execute(conn).await?; });
    Ok(())
}

/// Records an alert.
pub async fn insert_alert(tx: &mut Tx, a: &AlertRecord<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO alerts.alerts (sender, identifier, sent, status, msg_type, \
             refs, events, areas, outcome, rule_id, rule_version, crisis_id, command, document) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
    match tx {
        Tx::Postgres(tx) => {
            sqlx::query(SQL)
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
                .execute(&mut **tx)
                .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query(SQL)
                .bind(a.sender)
                .bind(a.identifier)
                .bind(a.sent)
                .bind(a.status)
                .bind(a.msg_type)
                .bind(json(&a.refs))
                .bind(json(&a.events))
                .bind(json(&a.areas))
                .bind(a.outcome)
                .bind(a.rule.map(|r| r.0))
                .bind(a.rule.map(|r| r.1))
                .bind(a.crisis_id)
                .bind(a.command.as_ref().map(|c| c.to_string()))
                .bind(a.document)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// The crisis (and the rule that caused it) of the most recent referenced
/// alert that has one: an Update or Cancel acts on it.
pub async fn crisis_of_references(
    tx: &mut Tx,
    refs: &[(String, String)],
) -> Result<Option<(String, String)>> {
    Ok(match tx {
        Tx::Postgres(tx) => {
            let senders: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();
            let ids: Vec<&str> = refs.iter().map(|r| r.1.as_str()).collect();
            sqlx::query_as(
                "SELECT a.crisis_id, a.rule_id FROM alerts.alerts a \
                 JOIN unnest($1::text[], $2::text[]) r(sender, identifier) USING (sender, identifier) \
                 WHERE a.crisis_id IS NOT NULL AND a.rule_id IS NOT NULL ORDER BY a.sent DESC LIMIT 1",
            )
            .bind(&senders)
            .bind(&ids)
            .fetch_optional(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT a.crisis_id, a.rule_id FROM alerts.alerts a \
                 JOIN json_each(?1) r \
                   ON a.sender = json_extract(r.value, '$[0]') \
                  AND a.identifier = json_extract(r.value, '$[1]') \
                 WHERE a.crisis_id IS NOT NULL AND a.rule_id IS NOT NULL ORDER BY a.sent DESC LIMIT 1",
            )
            .bind(json(refs))
            .fetch_optional(&mut **tx)
            .await?
        }
    })
}

/// Registered households and the share of them under `threshold`, per area
/// (a governorate, district or locality code).
pub async fn poor_shares(
    tx: &mut Tx,
    areas: &[String],
    threshold: f64,
) -> Result<BTreeMap<String, (i64, f64)>> {
    let rows: Vec<(String, i64, f64)> = match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(
                "SELECT a.code, count(h.household_id), \
                        coalesce(avg(CASE WHEN h.welfare_score < $2 THEN 1.0 ELSE 0.0 END), 0)::float8 \
                 FROM unnest($1::text[]) a(code) \
                 LEFT JOIN registry.households_v h \
                        ON h.governorate = a.code OR h.district = a.code OR h.area_code = a.code \
                 GROUP BY a.code",
            )
            .bind(areas)
            .bind(threshold)
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT a.value, count(h.household_id), \
                        coalesce(avg(CASE WHEN h.welfare_score < ?2 THEN 1.0 ELSE 0.0 END), 0.0) \
                 FROM json_each(?1) a \
                 LEFT JOIN registry.households_v h \
                        ON h.governorate = a.value OR h.district = a.value OR h.area_code = a.value \
                 GROUP BY a.value",
            )
            .bind(json(areas))
            .bind(threshold)
            .fetch_all(&mut **tx)
            .await?
        }
    };
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
pub async fn insert_reading(tx: &mut Tx, r: &IndicatorReading) -> Result<Stored> {
    const INSERT: &str =
        "INSERT INTO alerts.readings (indicator, area, source, period_end, value, unit) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
    const BEFORE: &str = "SELECT value FROM alerts.readings \
         WHERE indicator = $1 AND area = $2 AND source = $3 AND period_end = $4";
    let inserted = on_tx!(tx, conn => sqlx::query(INSERT)
        .bind(&r.indicator)
        .bind(&r.area)
        .bind(&r.source)
        .bind(r.period_end)
        .bind(r.value)
        .bind(&r.unit)
        .execute(conn)
        .await?
        .rows_affected());
    if inserted == 1 {
        return Ok(Stored::New);
    }
    let before: f64 = on_tx!(tx, conn => sqlx::query_scalar(BEFORE)
        .bind(&r.indicator)
        .bind(&r.area)
        .bind(&r.source)
        .bind(r.period_end)
        .fetch_one(conn)
        .await?);
    Ok(if before == r.value {
        Stored::Same
    } else {
        Stored::Conflict(before)
    })
}

/// The latest reading of the same series at least `window_days` before this one.
pub async fn baseline(
    tx: &mut Tx,
    r: &IndicatorReading,
    window_days: u32,
) -> Result<Option<(NaiveDate, f64)>> {
    const SQL: &str = "SELECT period_end, value FROM alerts.readings \
         WHERE indicator = $1 AND area = $2 AND source = $3 AND period_end <= $4 \
         ORDER BY period_end DESC LIMIT 1";
    let until = days_before(r.period_end, window_days);
    Ok(on_tx!(tx, conn => sqlx::query_as(SQL)
        .bind(&r.indicator)
        .bind(&r.area)
        .bind(&r.source)
        .bind(until)
        .fetch_optional(conn)
        .await?))
}

/// `day` minus `days` (the earliest date there is, if that underflows).
fn days_before(day: NaiveDate, days: u32) -> NaiveDate {
    day.checked_sub_days(chrono::Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MIN)
}

/// Records that a rule fired for an area, unless it already fired for it
/// within the window ending at `period_end`; returns whether this is new.
pub async fn claim_trigger(
    tx: &mut Tx,
    rule: (&str, i32),
    area: &str,
    period_end: NaiveDate,
    window_days: u32,
    crisis_id: &str,
) -> Result<bool> {
    const RECENT: &str = "SELECT EXISTS (SELECT 1 FROM alerts.triggers \
         WHERE rule_id = $1 AND area = $2 AND period_end > $3 AND period_end <= $4)";
    const CLAIM: &str =
        "INSERT INTO alerts.triggers (rule_id, rule_version, area, period_end, crisis_id) \
         VALUES ($1, $2, $3, $4, $5)";
    let since = days_before(period_end, window_days);
    let recent: bool = on_tx!(tx, conn => sqlx::query_scalar(RECENT)
        .bind(rule.0)
        .bind(area)
        .bind(since)
        .bind(period_end)
        .fetch_one(conn)
        .await?);
    if recent {
        return Ok(false);
    }
    on_tx!(tx, conn => sqlx::query(CLAIM)
        .bind(rule.0)
        .bind(rule.1)
        .bind(area)
        .bind(period_end)
        .bind(crisis_id)
        .execute(conn)
        .await
        .map(drop)?);
    Ok(true)
}

/// One line of `sumud alerts list`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertSummary {
    /// CAP sent.
    pub sent: DateTime<Utc>,
    /// CAP sender.
    pub sender: String,
    /// CAP identifier.
    pub identifier: String,
    /// CAP status and msgType, as `Actual/Alert`.
    pub kind: String,
    /// What was done about it.
    pub outcome: String,
    /// Our area codes it covers.
    pub areas: Vec<String>,
    /// The crisis it caused or changed.
    pub crisis_id: Option<String>,
}

/// The `limit` most recently received alerts, newest first.
pub async fn recent(store: &Store, limit: i64) -> Result<Vec<AlertSummary>> {
    const SQL: &str =
        "SELECT sent, sender, identifier, status || '/' || msg_type, outcome, areas, crisis_id \
                       FROM alerts.alerts ORDER BY received_at DESC LIMIT $1";
    type Line<L> = (
        DateTime<Utc>,
        String,
        String,
        String,
        String,
        L,
        Option<String>,
    );
    let lines: Vec<Line<Vec<String>>> = match store {
        Store::Postgres(pool) => sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?,
        Store::Sqlite(pool) => {
            let lines: Vec<Line<String>> = sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?;
            lines
                .into_iter()
                .map(|(a, b, c, d, e, areas, g)| {
                    let areas = serde_json::from_str(&areas)
                        .map_err(|e| sumud_shared::Error::unreadable("trigger areas", e))?;
                    Ok((a, b, c, d, e, areas, g))
                })
                .collect::<Result<_>>()?
        }
    };
    Ok(lines
        .into_iter()
        .map(
            |(sent, sender, identifier, kind, outcome, areas, crisis_id)| AlertSummary {
                sent,
                sender,
                identifier,
                kind,
                outcome,
                areas,
                crisis_id,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_back_whole_days() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(days_before(day("2026-03-01"), 1), day("2026-02-28"));
        assert_eq!(days_before(day("2026-03-01"), 0), day("2026-03-01"));
        assert_eq!(days_before(NaiveDate::MIN, 5), NaiveDate::MIN);
    }
}
