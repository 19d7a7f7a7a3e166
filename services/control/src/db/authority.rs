//! The read side of "on whose authority?": every command the audit trail
//! holds for a crisis (its id, who signed it, when, what it did) and the
//! trigger — the alert or indicator readings and the rule — behind an
//! automatic declaration. `sumud explain` prints both beside each payment.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::{on_store, Error, Result};

/// One audit entry, as an auditor reads it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    /// When control applied (or recorded) it.
    pub at: DateTime<Utc>,
    /// The signed command's id (`jti`).
    pub command_id: String,
    /// `crisis.declare`, `crisis.approve`, …
    pub kind: String,
    /// Who signed it.
    pub principal: String,
    /// With which key.
    pub key_id: String,
    /// Crisis revision after it.
    pub revision: i32,
    /// State before, if the crisis existed.
    pub from_state: Option<String>,
    /// State after.
    pub to_state: String,
    /// What it did (`activated`, `approval_recorded`, `amended`, …).
    pub outcome: String,
    /// The command's note, if any.
    pub note: Option<String>,
}

/// A crisis's audit trail, oldest first.
pub async fn audit(store: &Store, crisis_id: &str) -> Result<Vec<AuditRow>> {
    const SQL: &str = "SELECT at, command_id, kind, principal, key_id, revision, from_state, \
                       to_state, outcome, note FROM control.audit WHERE crisis_id = $1 ORDER BY seq";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await?))
}

/// The trigger recorded with an automatic declaration (rule, rule book,
/// alert or readings), as the alerts service signed it; `None` for a crisis
/// an operator declared.
pub async fn trigger(store: &Store, crisis_id: &str) -> Result<Option<serde_json::Value>> {
    const SQL: &str = "SELECT trigger FROM control.crises WHERE crisis_id = $1";
    Ok(match store {
        Store::Postgres(pool) => sqlx::query_scalar::<_, Option<serde_json::Value>>(SQL)
            .bind(crisis_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
        Store::Sqlite(pool) => {
            let text: Option<String> = sqlx::query_scalar::<_, Option<String>>(SQL)
                .bind(crisis_id)
                .fetch_optional(pool)
                .await?
                .flatten();
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| Error::unreadable(format!("trigger of {crisis_id}"), e))
            })
            .transpose()?
        }
    })
}
