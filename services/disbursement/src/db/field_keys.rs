//! The SQL of field teams' keys (`disbursement.field_keys`) and of the
//! task commands judged with them (`disbursement.task_commands`): who may
//! assign and resolve verification tasks over the tasks topic, and the
//! record that judges each command once.

use sumud_shared::db::{Store, Tx};
use sumud_shared::{on_store, on_tx, Result};

/// A field team's key as `sumud tasks keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct FieldKey {
    /// Key id, the `kid` of its JWS headers.
    pub kid: String,
    /// The team or device holding it.
    pub principal: String,
    /// Ed25519 public key, base64url.
    pub public_x: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl sumud_shared::signed::RegisteredKey for FieldKey {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_x(&self) -> &str {
        &self.public_x
    }
}

/// Registers a field key. A key id is never reused: one already
/// registered (revoked or not) is refused with a message saying so.
pub async fn add_field_key(store: &Store, kid: &str, principal: &str, x: &str) -> Result<()> {
    const SQL: &str = "INSERT INTO disbursement.field_keys (kid, principal, public_x) \
         VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING";
    let n = on_store!(store, pool => sqlx::query(SQL)
        .bind(kid)
        .bind(principal)
        .bind(x)
        .execute(pool)
        .await
        .map(|d| d.rows_affected()))?;
    if n == 0 {
        return Err(sumud_shared::Error::Config(format!(
            "field key {kid} is already registered (key ids are never reused): generate a key with a new id"
        )));
    }
    Ok(())
}

/// Revokes a field key: its commands are refused from now on (`revoked_key`).
/// Whether it was registered and not yet revoked.
pub async fn revoke_field_key(store: &Store, kid: &str) -> Result<bool> {
    let now = match store {
        Store::Postgres(_) => "now()",
        Store::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
    let sql = format!(
        "UPDATE disbursement.field_keys SET revoked_at = {now} WHERE kid = $1 AND revoked_at IS NULL"
    );
    Ok(on_store!(store, pool => sqlx::query(&sql)
        .bind(kid)
        .execute(pool)
        .await
        .map(|d| d.rows_affected() == 1))?)
}

/// Every field key, by id.
pub async fn field_keys(store: &Store) -> Result<Vec<FieldKey>> {
    const SQL: &str = "SELECT kid, principal, public_x, revoked_at IS NOT NULL AS revoked \
         FROM disbursement.field_keys ORDER BY kid";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// The field key `kid`, if registered.
pub async fn field_key(store: &Store, kid: &str) -> Result<Option<FieldKey>> {
    const SQL: &str = "SELECT kid, principal, public_x, revoked_at IS NOT NULL AS revoked \
         FROM disbursement.field_keys WHERE kid = $1";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(kid).fetch_optional(pool).await)?)
}

/// Where a command was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Topic.
    pub source_topic: String,
    /// Partition.
    pub source_partition: i32,
    /// Offset.
    pub source_offset: i64,
}

/// How the task command `jti` of field key `kid` was judged, if it was:
/// where it was read, and the refusal (code, detail) recorded, if
/// refused. Ids are per key, so that no other key (a rival's, or a revoked
/// one) can use up a team's command ids.
pub async fn task_command_judged(
    store: &Store,
    kid: &str,
    jti: &str,
) -> Result<Option<(Position, Option<(String, String)>)>> {
    const SQL: &str = "SELECT source_topic, source_partition, source_offset, refused_reason, \
            refused_detail FROM disbursement.task_commands WHERE kid = $1 AND jti = $2";
    type Row = (String, i32, i64, Option<String>, Option<String>);
    let row: Option<Row> = on_store!(store, pool => sqlx::query_as(SQL)
        .bind(kid)
        .bind(jti)
        .fetch_optional(pool)
        .await)?;
    Ok(row.map(|(topic, partition, offset, reason, detail)| {
        (
            Position {
                source_topic: topic,
                source_partition: partition,
                source_offset: offset,
            },
            reason.zip(detail),
        )
    }))
}

/// A judged task command, as recorded.
#[derive(Debug, Clone)]
pub struct Judged<'a> {
    /// Command id.
    pub jti: &'a str,
    /// The key it verified with.
    pub kid: &'a str,
    /// That key's principal.
    pub principal: &'a str,
    /// `task.assign`, `task.resolve` or `grievance.file`.
    pub cmd: &'a str,
    /// What it is bound to: the task id, or the household of a grievance.
    pub subject: &'a str,
    /// Where it was read.
    pub at: Position,
    /// Why it was refused (dead-letter code, detail); `None` if applied.
    pub refused: Option<(&'a str, &'a str)>,
}

/// Records a judged command inside `tx` (with the change it made, when
/// applied). A second record of the same key's `jti` fails on the primary
/// key: a command is judged once.
pub async fn record_task_command(tx: &mut Tx, j: &Judged<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO disbursement.task_commands \
             (jti, kid, principal, cmd, subject, source_topic, source_partition, source_offset, \
              refused_reason, refused_detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    let (reason, detail) = j.refused.unzip();
    on_tx!(tx, conn => sqlx::query(SQL)
        .bind(j.jti)
        .bind(j.kid)
        .bind(j.principal)
        .bind(j.cmd)
        .bind(j.subject)
        .bind(&j.at.source_topic)
        .bind(j.at.source_partition)
        .bind(j.at.source_offset)
        .bind(reason)
        .bind(detail)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// Whether `payload` is, byte for byte, a task event this service wrote to
/// its outbox under `key`: only disbursement writes task events.
pub async fn published_task_event(store: &Store, key: &str, payload: &[u8]) -> Result<bool> {
    const SQL: &str =
        "SELECT EXISTS (SELECT 1 FROM disbursement.outbox WHERE key = $1 AND payload = $2)";
    Ok(on_store!(store, pool => sqlx::query_scalar(SQL)
        .bind(key)
        .bind(payload)
        .fetch_one(pool)
        .await)?)
}
