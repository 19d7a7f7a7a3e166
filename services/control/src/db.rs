//! All SQL of the control service.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use sumud_shared::events::crisis::{CrisisDefinition, CrisisState};
use sumud_shared::{Error, Result};

use crate::lifecycle::{Crisis, Role};

/// The control service's migrations (schema `control`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's migrations: PostgreSQL only so far.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: None,
};

/// A registered operator key.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorKey {
    /// Key id (`kid`).
    pub key_id: String,
    /// Who holds it.
    pub principal: String,
    /// Ed25519 public key, base64url.
    pub public_key: String,
    /// Granted roles.
    pub roles: Vec<Role>,
    /// Role names as stored.
    pub role_names: Vec<String>,
    /// When revoked, if ever.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Looks up a key by id.
pub async fn operator_key(pool: &PgPool, key_id: &str) -> Result<Option<OperatorKey>> {
    let row = sqlx::query(
        "SELECT key_id, principal, public_key, roles, revoked_at FROM control.operator_keys WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        let role_names: Vec<String> = r.get("roles");
        OperatorKey {
            key_id: r.get("key_id"),
            principal: r.get("principal"),
            public_key: r.get("public_key"),
            roles: role_names.iter().filter_map(|n| Role::parse(n)).collect(),
            role_names,
            revoked_at: r.get("revoked_at"),
        }
    }))
}

/// Registers (or re-registers, un-revoking) an operator key.
pub async fn add_operator(
    pool: &PgPool,
    key_id: &str,
    principal: &str,
    public_key: &str,
    roles: &[String],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO control.operator_keys (key_id, principal, public_key, roles) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key_id) DO UPDATE SET principal = EXCLUDED.principal, public_key = EXCLUDED.public_key, \
         roles = EXCLUDED.roles, revoked_at = NULL",
    )
    .bind(key_id)
    .bind(principal)
    .bind(public_key)
    .bind(roles)
    .execute(pool)
    .await?;
    Ok(())
}

/// Revokes a key; returns whether it existed.
pub async fn revoke_operator(pool: &PgPool, key_id: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE control.operator_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL")
        .bind(key_id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Where a message was read from: topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// Kafka topic.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// Whether this command was already applied from exactly this position,
/// i.e. the message is a redelivery (at-least-once) rather than a replay. The
/// command id is part of the test: after a topic is recreated, another
/// command can arrive at a position an earlier one was applied from.
pub async fn applied_from(pool: &PgPool, at: &SourcePosition, command_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM control.commands \
         WHERE source_topic = $1 AND source_partition = $2 AND source_offset = $3 AND command_id = $4)",
    )
    .bind(&at.topic)
    .bind(at.partition)
    .bind(at.offset)
    .bind(command_id)
    .fetch_one(pool)
    .await?)
}

/// Where a command id took effect from, if it has (`None` position for
/// commands recorded before positions were kept).
pub async fn command_seen(
    conn: &mut PgConnection,
    command_id: &str,
) -> Result<Option<Option<SourcePosition>>> {
    let row: Option<(Option<String>, Option<i32>, Option<i64>)> = sqlx::query_as(
        "SELECT source_topic, source_partition, source_offset FROM control.commands WHERE command_id = $1",
    )
    .bind(command_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(t, p, o)| match (t, p, o) {
        (Some(topic), Some(partition), Some(offset)) => Some(SourcePosition {
            topic,
            partition,
            offset,
        }),
        _ => None,
    }))
}

fn def_from(v: serde_json::Value) -> Result<CrisisDefinition> {
    serde_json::from_value(v)
        .map_err(|e| Error::Other(format!("stored crisis definition is unreadable: {e}")))
}

fn crisis_from(r: &sqlx::postgres::PgRow) -> Result<Crisis> {
    let state: String = r.get("state");
    Ok(Crisis {
        id: r.get("crisis_id"),
        state: CrisisState::parse(&state)
            .ok_or_else(|| Error::Other(format!("unknown stored state {state}")))?,
        revision: r.get("revision"),
        definition: def_from(r.get("definition"))?,
        pending: r
            .get::<Option<serde_json::Value>, _>("pending")
            .map(def_from)
            .transpose()?,
        pending_by: r.get("pending_by"),
        approvals: r.get("approvals"),
        declared_by: r.get("declared_by"),
    })
}

/// Reads a crisis, locking its row for the rest of the transaction.
pub async fn crisis_for_update(conn: &mut PgConnection, crisis_id: &str) -> Result<Option<Crisis>> {
    let row = sqlx::query("SELECT * FROM control.crises WHERE crisis_id = $1 FOR UPDATE")
        .bind(crisis_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(crisis_from).transpose()
}

/// Reads a crisis.
pub async fn crisis(pool: &PgPool, crisis_id: &str) -> Result<Option<Crisis>> {
    let row = sqlx::query("SELECT * FROM control.crises WHERE crisis_id = $1")
        .bind(crisis_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(crisis_from).transpose()
}

/// Every crisis, newest first.
pub async fn crises(pool: &PgPool) -> Result<Vec<Crisis>> {
    let rows = sqlx::query("SELECT * FROM control.crises ORDER BY created_at DESC")
        .fetch_all(pool)
        .await?;
    rows.iter().map(crisis_from).collect()
}

/// Writes the crisis after a transition.
pub async fn save_crisis(
    conn: &mut PgConnection,
    c: &Crisis,
    trigger: Option<&serde_json::Value>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO control.crises (crisis_id, state, revision, definition, pending, pending_by, approvals, declared_by, trigger) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (crisis_id) DO UPDATE SET state = EXCLUDED.state, revision = EXCLUDED.revision, \
         definition = EXCLUDED.definition, pending = EXCLUDED.pending, pending_by = EXCLUDED.pending_by, \
         approvals = EXCLUDED.approvals, updated_at = now()",
    )
    .bind(&c.id)
    .bind(c.state.as_str())
    .bind(c.revision)
    .bind(serde_json::to_value(&c.definition).expect("definition serialises"))
    .bind(c.pending.as_ref().map(|p| serde_json::to_value(p).expect("definition serialises")))
    .bind(&c.pending_by)
    .bind(&c.approvals)
    .bind(&c.declared_by)
    .bind(trigger)
    .execute(conn)
    .await?;
    Ok(())
}

/// One audit entry.
pub struct AuditEntry<'a> {
    /// Crisis.
    pub crisis_id: &'a str,
    /// Command id.
    pub command_id: &'a str,
    /// Command kind.
    pub kind: &'a str,
    /// Signer.
    pub principal: &'a str,
    /// Key used.
    pub key_id: &'a str,
    /// Revision after the command.
    pub revision: i32,
    /// State before.
    pub from_state: Option<&'a str>,
    /// State after.
    pub to_state: &'a str,
    /// Outcome.
    pub outcome: &'a str,
    /// Operator's note.
    pub note: Option<&'a str>,
}

/// Records the command as applied (the replay guard) and appends the audit entry.
pub async fn record(
    conn: &mut PgConnection,
    e: &AuditEntry<'_>,
    issued_at: DateTime<Utc>,
    from: &SourcePosition,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO control.commands (command_id, kind, crisis_id, principal, key_id, issued_at, source_topic, source_partition, source_offset) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.command_id)
    .bind(e.kind)
    .bind(e.crisis_id)
    .bind(e.principal)
    .bind(e.key_id)
    .bind(issued_at)
    .bind(&from.topic)
    .bind(from.partition)
    .bind(from.offset)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO control.audit (crisis_id, command_id, kind, principal, key_id, revision, from_state, to_state, outcome, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(e.crisis_id)
    .bind(e.command_id)
    .bind(e.kind)
    .bind(e.principal)
    .bind(e.key_id)
    .bind(e.revision)
    .bind(e.from_state)
    .bind(e.to_state)
    .bind(e.outcome)
    .bind(e.note)
    .execute(conn)
    .await?;
    Ok(())
}

/// The audit trail of a crisis, oldest first: (at, kind, principal, revision, to_state, outcome).
pub async fn audit_trail(
    pool: &PgPool,
    crisis_id: &str,
) -> Result<Vec<(DateTime<Utc>, String, String, i32, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT at, kind, principal, revision, to_state, outcome FROM control.audit WHERE crisis_id = $1 ORDER BY seq",
    )
    .bind(crisis_id)
    .fetch_all(pool)
    .await?)
}
