//! All SQL of the control service, on PostgreSQL and on SQLite. Statements
//! that read the same on both are written once ([`on_store!`],
//! [`on_tx!`]); where the backends differ (arrays and jsonb on PostgreSQL,
//! JSON text on SQLite; `FOR UPDATE`, which SQLite's write-locking
//! transactions make unnecessary) each has its own.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sumud_shared::db::{Migrations, Store, Tx};
use sumud_shared::events::crisis::{CrisisDefinition, CrisisState};
use sumud_shared::{on_store, on_tx, Error, Result};

use crate::lifecycle::Crisis;

pub mod authority;
mod operators;
pub use operators::*;

/// The control service's migrations (schema `control`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The same schema on the embedded default's SQLite file.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The service's migrations on both backends.
pub static MIGRATIONS: Migrations = Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&SQLITE_MIGRATOR),
};

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

/// Whether `key_id`'s command was already applied from exactly this
/// position, i.e. the message is a redelivery (at-least-once) rather than a
/// replay. The key and command id are part of the test: after a topic is
/// recreated (or the embedded broker restarted), another command, perhaps
/// another key's under the same id, can arrive at a position an earlier one
/// was applied from.
pub async fn applied_from(
    store: &Store,
    at: &SourcePosition,
    key_id: &str,
    command_id: &str,
) -> Result<bool> {
    const SQL: &str = "SELECT EXISTS (SELECT 1 FROM control.commands \
         WHERE source_topic = $1 AND source_partition = $2 AND source_offset = $3 \
           AND key_id = $4 AND command_id = $5)";
    Ok(on_store!(store, pool => sqlx::query_scalar(SQL)
        .bind(&at.topic)
        .bind(at.partition)
        .bind(at.offset)
        .bind(key_id)
        .bind(command_id)
        .fetch_one(pool)
        .await?))
}

/// The ids of every command judged: applied or refused.
pub async fn judged_command_ids(store: &Store) -> Result<std::collections::HashSet<String>> {
    const SQL: &str = "SELECT command_id FROM control.commands \
         UNION SELECT command_id FROM control.rejected_commands";
    let ids: Vec<String> = on_store!(store, pool => sqlx::query_scalar(SQL).fetch_all(pool).await?);
    Ok(ids.into_iter().collect())
}

/// Whether a key's command id took effect (from anywhere). Ids are the
/// signer's: another key's command under the same id is another command.
pub async fn was_applied(store: &Store, key_id: &str, command_id: &str) -> Result<bool> {
    const SQL: &str =
        "SELECT EXISTS (SELECT 1 FROM control.commands WHERE key_id = $1 AND command_id = $2)";
    Ok(on_store!(store, pool => sqlx::query_scalar(SQL)
        .bind(key_id)
        .bind(command_id)
        .fetch_one(pool)
        .await?))
}

/// Where a key's command id took effect from, if it has (`None` position
/// for commands recorded before positions were kept).
pub async fn command_seen(
    tx: &mut Tx,
    key_id: &str,
    command_id: &str,
) -> Result<Option<Option<SourcePosition>>> {
    const SQL: &str = "SELECT source_topic, source_partition, source_offset \
                       FROM control.commands WHERE key_id = $1 AND command_id = $2";
    let row: Option<(Option<String>, Option<i32>, Option<i64>)> = on_tx!(tx, conn => sqlx::query_as(SQL)
        .bind(key_id)
        .bind(command_id)
        .fetch_optional(conn)
        .await?);
    Ok(row.map(|(t, p, o)| match (t, p, o) {
        (Some(topic), Some(partition), Some(offset)) => Some(SourcePosition {
            topic,
            partition,
            offset,
        }),
        _ => None,
    }))
}

/// A list column as SQLite stores it (a JSON array).
fn json_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| Error::unreadable("list", e))
}

fn def_from(v: serde_json::Value) -> Result<CrisisDefinition> {
    serde_json::from_value(v).map_err(|e| Error::unreadable("crisis definition", e))
}

fn json_from(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::unreadable("crisis definition", e))
}

/// A crisis row's columns, read from either backend.
struct CrisisColumns {
    id: String,
    state: String,
    revision: i32,
    definition: serde_json::Value,
    pending: Option<serde_json::Value>,
    pending_by: Option<String>,
    approvals: Vec<String>,
    declared_by: String,
}

impl CrisisColumns {
    fn postgres(r: &sqlx::postgres::PgRow) -> Result<Self> {
        Ok(CrisisColumns {
            id: r.get("crisis_id"),
            state: r.get("state"),
            revision: r.get("revision"),
            definition: r.get("definition"),
            pending: r.get("pending"),
            pending_by: r.get("pending_by"),
            approvals: r.get("approvals"),
            declared_by: r.get("declared_by"),
        })
    }

    fn sqlite(r: &sqlx::sqlite::SqliteRow) -> Result<Self> {
        Ok(CrisisColumns {
            id: r.get("crisis_id"),
            state: r.get("state"),
            revision: r.get("revision"),
            definition: json_from(r.get("definition"))?,
            pending: r
                .get::<Option<String>, _>("pending")
                .as_deref()
                .map(json_from)
                .transpose()?,
            pending_by: r.get("pending_by"),
            approvals: json_list(r.get("approvals"))?,
            declared_by: r.get("declared_by"),
        })
    }

    fn crisis(self) -> Result<Crisis> {
        let state = self.state;
        Ok(Crisis {
            id: self.id,
            state: CrisisState::parse(&state).ok_or_else(|| {
                Error::unreadable("crisis state", format!("{state:?} is no state"))
            })?,
            revision: self.revision,
            definition: def_from(self.definition)?,
            pending: self.pending.map(def_from).transpose()?,
            pending_by: self.pending_by,
            approvals: self.approvals,
            declared_by: self.declared_by,
        })
    }
}

/// Reads a crisis inside a transaction that will write it: locked for the
/// rest of the transaction (PostgreSQL: `FOR UPDATE`; SQLite: the
/// transaction already holds the file's write lock).
pub async fn crisis_for_update(tx: &mut Tx, crisis_id: &str) -> Result<Option<Crisis>> {
    let columns = match tx {
        Tx::Postgres(tx) => {
            sqlx::query("SELECT * FROM control.crises WHERE crisis_id = $1 FOR UPDATE")
                .bind(crisis_id)
                .fetch_optional(&mut **tx)
                .await?
                .as_ref()
                .map(CrisisColumns::postgres)
        }
        Tx::Sqlite(tx) => sqlx::query("SELECT * FROM control.crises WHERE crisis_id = $1")
            .bind(crisis_id)
            .fetch_optional(&mut **tx)
            .await?
            .as_ref()
            .map(CrisisColumns::sqlite),
    };
    columns.transpose()?.map(CrisisColumns::crisis).transpose()
}

/// Reads a crisis.
pub async fn crisis(store: &Store, crisis_id: &str) -> Result<Option<Crisis>> {
    const SQL: &str = "SELECT * FROM control.crises WHERE crisis_id = $1";
    let columns = match store {
        Store::Postgres(pool) => sqlx::query(SQL)
            .bind(crisis_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(CrisisColumns::postgres),
        Store::Sqlite(pool) => sqlx::query(SQL)
            .bind(crisis_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(CrisisColumns::sqlite),
    };
    columns.transpose()?.map(CrisisColumns::crisis).transpose()
}

/// Every crisis, newest first.
pub async fn crises(store: &Store) -> Result<Vec<Crisis>> {
    const SQL: &str = "SELECT * FROM control.crises ORDER BY created_at DESC, crisis_id";
    let columns: Vec<Result<CrisisColumns>> = match store {
        Store::Postgres(pool) => sqlx::query(SQL)
            .fetch_all(pool)
            .await?
            .iter()
            .map(CrisisColumns::postgres)
            .collect(),
        Store::Sqlite(pool) => sqlx::query(SQL)
            .fetch_all(pool)
            .await?
            .iter()
            .map(CrisisColumns::sqlite)
            .collect(),
    };
    columns.into_iter().map(|c| c?.crisis()).collect()
}

/// Writes the crisis after a transition. A crisis `declared` here (no row
/// when its command was judged) is only inserted, never written over: when
/// another declaration of the same id committed first, nothing is written
/// and `false` comes back, so the first declaration wins whatever the
/// interleaving (`FOR UPDATE` on a missing row locks nothing).
pub async fn save_crisis(
    tx: &mut Tx,
    c: &Crisis,
    trigger: Option<&serde_json::Value>,
    declared: bool,
) -> Result<bool> {
    const INSERT: &str =
        "INSERT INTO control.crises (crisis_id, state, revision, definition, pending, \
             pending_by, approvals, declared_by, trigger, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ";
    let sql = if declared {
        format!("{INSERT}ON CONFLICT (crisis_id) DO NOTHING")
    } else {
        format!(
            "{INSERT}ON CONFLICT (crisis_id) DO UPDATE SET state = EXCLUDED.state, revision = EXCLUDED.revision, \
             definition = EXCLUDED.definition, pending = EXCLUDED.pending, pending_by = EXCLUDED.pending_by, \
             approvals = EXCLUDED.approvals, updated_at = EXCLUDED.updated_at"
        )
    };
    let sql = sql.as_str();
    let definition = serde_json::to_value(&c.definition).expect("definition serialises");
    let pending = c
        .pending
        .as_ref()
        .map(|p| serde_json::to_value(p).expect("definition serialises"));
    let now = Utc::now();
    let written = match tx {
        Tx::Postgres(tx) => sqlx::query(sql)
            .bind(&c.id)
            .bind(c.state.as_str())
            .bind(c.revision)
            .bind(definition)
            .bind(pending)
            .bind(&c.pending_by)
            .bind(&c.approvals)
            .bind(&c.declared_by)
            .bind(trigger)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        Tx::Sqlite(tx) => sqlx::query(sql)
            .bind(&c.id)
            .bind(c.state.as_str())
            .bind(c.revision)
            .bind(definition.to_string())
            .bind(pending.map(|p| p.to_string()))
            .bind(&c.pending_by)
            .bind(sumud_shared::db::sqlite::json_list(&c.approvals))
            .bind(&c.declared_by)
            .bind(trigger.map(|t| t.to_string()))
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    };
    Ok(written > 0)
}

/// A command that took effect, for the replay guard.
pub struct Applied<'a> {
    /// Command id.
    pub command_id: &'a str,
    /// Command kind.
    pub kind: &'a str,
    /// What it is about: a crisis id, or `operators`.
    pub subject: &'a str,
    /// Signer.
    pub principal: &'a str,
    /// Key used.
    pub key_id: &'a str,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// One audit entry: the applied command and the transition it made.
pub struct AuditEntry<'a> {
    /// The command (its subject is the crisis).
    pub applied: Applied<'a>,
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

/// Records a command as applied from `from`: the replay guard.
pub async fn record_applied(tx: &mut Tx, a: &Applied<'_>, from: &SourcePosition) -> Result<()> {
    const COMMAND: &str =
        "INSERT INTO control.commands (command_id, kind, crisis_id, principal, key_id, \
             issued_at, source_topic, source_partition, source_offset) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    on_tx!(tx, conn => {
        sqlx::query(COMMAND)
            .bind(a.command_id)
            .bind(a.kind)
            .bind(a.subject)
            .bind(a.principal)
            .bind(a.key_id)
            .bind(a.issued_at)
            .bind(&from.topic)
            .bind(from.partition)
            .bind(from.offset)
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Records the command as applied (the replay guard) and appends the audit entry.
pub async fn record(tx: &mut Tx, e: &AuditEntry<'_>, from: &SourcePosition) -> Result<()> {
    const AUDIT: &str =
        "INSERT INTO control.audit (crisis_id, command_id, kind, principal, key_id, \
             revision, from_state, to_state, outcome, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    record_applied(tx, &e.applied, from).await?;
    let a = &e.applied;
    on_tx!(tx, conn => {
        sqlx::query(AUDIT)
            .bind(a.subject)
            .bind(a.command_id)
            .bind(a.kind)
            .bind(a.principal)
            .bind(a.key_id)
            .bind(e.revision)
            .bind(e.from_state)
            .bind(e.to_state)
            .bind(e.outcome)
            .bind(e.note)
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// The audit trail of a crisis, oldest first: (at, kind, principal, revision, to_state, outcome).
pub async fn audit_trail(
    store: &Store,
    crisis_id: &str,
) -> Result<Vec<(DateTime<Utc>, String, String, i32, String, String)>> {
    const SQL: &str = "SELECT at, kind, principal, revision, to_state, outcome \
                       FROM control.audit WHERE crisis_id = $1 ORDER BY seq";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await?))
}

/// A signed command that was judged and refused.
pub struct Refusal<'a> {
    /// The command's claims (its signature verified).
    pub claims: &'a sumud_shared::events::control::CommandClaims,
    /// Who signed it.
    pub principal: &'a str,
    /// With which key.
    pub key_id: &'a str,
    /// Why it was refused.
    pub rejection: &'a sumud_shared::envelope::Rejection,
}

/// Records a refused command so that it can never take effect later; a
/// second record of the same id (a racing redelivery) changes nothing.
pub async fn record_refusal(store: &Store, r: &Refusal<'_>, from: &SourcePosition) -> Result<()> {
    const SQL: &str =
        "INSERT INTO control.rejected_commands (command_id, kind, crisis_id, principal, \
             key_id, issued_at, reason, detail, source_topic, source_partition, source_offset) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (key_id, command_id) DO NOTHING";
    let issued_at = DateTime::from_timestamp(r.claims.iat, 0).unwrap_or_default();
    on_store!(store, pool => {
        sqlx::query(SQL)
            .bind(&r.claims.jti)
            .bind(r.claims.cmd.as_str())
            .bind(r.claims.subject())
            .bind(r.principal)
            .bind(r.key_id)
            .bind(issued_at)
            .bind(r.rejection.reason.code())
            .bind(&r.rejection.detail)
            .bind(&from.topic)
            .bind(from.partition)
            .bind(from.offset)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Where and why a key's command id was refused, if it was.
pub async fn refusal_of(
    store: &Store,
    key_id: &str,
    command_id: &str,
) -> Result<Option<(SourcePosition, String, String)>> {
    const SQL: &str = "SELECT source_topic, source_partition, source_offset, reason, detail \
                       FROM control.rejected_commands WHERE key_id = $1 AND command_id = $2";
    let row: Option<(String, i32, i64, String, String)> = on_store!(store, pool => sqlx::query_as(SQL)
        .bind(key_id)
        .bind(command_id)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(|(topic, partition, offset, reason, detail)| {
        (
            SourcePosition {
                topic,
                partition,
                offset,
            },
            reason,
            detail,
        )
    }))
}

/// The refused commands on a crisis, oldest first: (at, kind, principal, reason, detail).
pub async fn refusals(
    store: &Store,
    crisis_id: &str,
) -> Result<Vec<(DateTime<Utc>, String, String, String, String)>> {
    const SQL: &str = "SELECT rejected_at, kind, principal, reason, detail \
                       FROM control.rejected_commands WHERE crisis_id = $1 ORDER BY rejected_at, command_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await?))
}
