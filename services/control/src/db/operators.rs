//! Operator keys and their history. A key id is registered once and a
//! revoked key stays revoked (the schema refuses anything else); every
//! change is appended to `control.operator_changes` with who made it: an
//! admin's signed command, the one bootstrap, or a direct setup (tests, the
//! embedded default's own alerts key).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sumud_shared::db::{Store, Tx};
use sumud_shared::{on_tx, Error, Result};

use super::json_list;
use crate::lifecycle::Role;

/// A registered operator key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OperatorKey {
    /// Key id (`kid`).
    pub key_id: String,
    /// Who holds it.
    pub principal: String,
    /// Ed25519 public key, base64url.
    pub public_key: String,
    /// Granted roles.
    #[serde(skip)]
    pub roles: Vec<Role>,
    /// Role names as stored.
    pub role_names: Vec<String>,
    /// When revoked, if ever.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key to register.
#[derive(Debug, Clone, Copy)]
pub struct NewOperator<'a> {
    /// Key id.
    pub key_id: &'a str,
    /// Who holds it.
    pub principal: &'a str,
    /// Ed25519 public key, base64url.
    pub public_key: &'a str,
    /// Role names.
    pub roles: &'a [String],
}

/// Who changed the operator keys, for `control.operator_changes`.
#[derive(Debug, Clone, Copy)]
pub struct ChangedBy<'a> {
    /// `operator.add`, `operator.revoke`, `operator.bootstrap`,
    /// `setup.add` or `setup.revoke`.
    pub kind: &'a str,
    /// The signer (or who ran the bootstrap or setup).
    pub principal: &'a str,
    /// The signing key, for a command.
    pub key_id: Option<&'a str>,
    /// The command, for a command.
    pub command_id: Option<&'a str>,
    /// Free text.
    pub note: Option<&'a str>,
}

const SELECT_KEY: &str = "SELECT key_id, principal, public_key, roles, revoked_at \
                          FROM control.operator_keys";

fn key_from(
    (key_id, principal, public_key, role_names, revoked_at): (
        String,
        String,
        String,
        Vec<String>,
        Option<DateTime<Utc>>,
    ),
) -> OperatorKey {
    OperatorKey {
        key_id,
        principal,
        public_key,
        roles: role_names.iter().filter_map(|n| Role::parse(n)).collect(),
        role_names,
        revoked_at,
    }
}

type KeyRow = (String, String, String, Vec<String>, Option<DateTime<Utc>>);

fn pg_row(r: &sqlx::postgres::PgRow) -> KeyRow {
    (
        r.get("key_id"),
        r.get("principal"),
        r.get("public_key"),
        r.get("roles"),
        r.get("revoked_at"),
    )
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<KeyRow> {
    Ok((
        r.get("key_id"),
        r.get("principal"),
        r.get("public_key"),
        json_list(r.get("roles"))?,
        r.get("revoked_at"),
    ))
}

/// Looks up a key by id.
pub async fn operator_key(store: &Store, key_id: &str) -> Result<Option<OperatorKey>> {
    let sql = format!("{SELECT_KEY} WHERE key_id = $1");
    let row = match store {
        Store::Postgres(pool) => sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(pg_row),
        Store::Sqlite(pool) => sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(sqlite_row)
            .transpose()?,
    };
    Ok(row.map(key_from))
}

/// Every key, oldest first (revoked ones included).
pub async fn operator_keys(store: &Store) -> Result<Vec<OperatorKey>> {
    let sql = format!("{SELECT_KEY} ORDER BY added_at, key_id");
    let rows = match store {
        Store::Postgres(pool) => sqlx::query(&sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(pg_row)
            .collect(),
        Store::Sqlite(pool) => sqlx::query(&sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(sqlite_row)
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(rows.into_iter().map(key_from).collect())
}

/// Serialises changes to the operator keys for the rest of `tx`, so that
/// two of them judged at once (two bootstraps, two revocations of the last
/// admins) cannot both pass a check the other invalidates. SQLite's write
/// transaction is already exclusive.
pub async fn lock_keys(tx: &mut Tx) -> Result<()> {
    if let Tx::Postgres(pg) = tx {
        sqlx::query("LOCK TABLE control.operator_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **pg)
            .await?;
    }
    Ok(())
}

/// Active (unrevoked) keys holding the admin role, inside `tx`.
pub async fn active_admins(tx: &mut Tx) -> Result<i64> {
    Ok(match tx {
        Tx::Postgres(tx) => sqlx::query_scalar(
            "SELECT count(*) FROM control.operator_keys WHERE revoked_at IS NULL AND 'admin' = ANY(roles)",
        )
        .fetch_one(&mut **tx)
        .await?,
        Tx::Sqlite(tx) => sqlx::query_scalar(
            "SELECT count(*) FROM control.operator_keys k WHERE revoked_at IS NULL \
             AND EXISTS (SELECT 1 FROM json_each(k.roles) WHERE value = 'admin')",
        )
        .fetch_one(&mut **tx)
        .await?,
    })
}

/// Registers a key inside `tx` and records who did; `false` (nothing
/// written) when the key id was ever registered: ids are never reused.
pub async fn register_operator(
    tx: &mut Tx,
    key: NewOperator<'_>,
    by: ChangedBy<'_>,
) -> Result<bool> {
    const SQL: &str =
        "INSERT INTO control.operator_keys (key_id, principal, public_key, roles, added_by) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING";
    let written = match tx {
        Tx::Postgres(tx) => sqlx::query(SQL)
            .bind(key.key_id)
            .bind(key.principal)
            .bind(key.public_key)
            .bind(key.roles)
            .bind(by.principal)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        Tx::Sqlite(tx) => sqlx::query(SQL)
            .bind(key.key_id)
            .bind(key.principal)
            .bind(key.public_key)
            .bind(sumud_shared::db::sqlite::json_list(key.roles))
            .bind(by.principal)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    };
    if written == 1 {
        record_change(tx, key.key_id, key.principal, key.roles, by).await?;
    }
    Ok(written == 1)
}

/// Revokes an active key inside `tx` and records who did; `false` when
/// there is no active key of that id.
pub async fn revoke_operator_in(tx: &mut Tx, key_id: &str, by: ChangedBy<'_>) -> Result<bool> {
    const SQL: &str = "UPDATE control.operator_keys SET revoked_at = $2, revoked_by = $3 \
                       WHERE key_id = $1 AND revoked_at IS NULL RETURNING principal";
    let now = Utc::now();
    let principal: Option<String> = on_tx!(tx, conn => sqlx::query_scalar(SQL)
        .bind(key_id).bind(now).bind(by.principal).fetch_optional(conn).await?);
    match principal {
        Some(p) => {
            record_change(tx, key_id, &p, &[], by).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

async fn record_change(
    tx: &mut Tx,
    key_id: &str,
    principal: &str,
    roles: &[String],
    by: ChangedBy<'_>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO control.operator_changes (kind, key_id, principal, roles, \
             by_principal, by_key_id, command_id, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    macro_rules! bind_rest {
        ($q:expr) => {
            $q.bind(by.principal)
                .bind(by.key_id)
                .bind(by.command_id)
                .bind(by.note)
        };
    }
    match tx {
        Tx::Postgres(tx) => {
            let q = sqlx::query(SQL)
                .bind(by.kind)
                .bind(key_id)
                .bind(principal)
                .bind(roles);
            bind_rest!(q).execute(&mut **tx).await?;
        }
        Tx::Sqlite(tx) => {
            let q = sqlx::query(SQL)
                .bind(by.kind)
                .bind(key_id)
                .bind(principal)
                .bind(sumud_shared::db::sqlite::json_list(roles));
            bind_rest!(q).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Registers the first admin key: the one operator change that is not a
/// signed command, refused once any admin key is active (from then on
/// admins add operators by `operator.add`). `Ok(false)`: refused.
pub async fn bootstrap_admin(store: &Store, key: NewOperator<'_>, by: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    lock_keys(&mut tx).await?;
    if active_admins(&mut tx).await? > 0 {
        return Ok(false);
    }
    let by = ChangedBy {
        kind: "operator.bootstrap",
        principal: by,
        key_id: None,
        command_id: None,
        note: Some("first admin key"),
    };
    if !register_operator(&mut tx, key, by).await? {
        return Err(Error::Config(format!(
            "key id {} was registered before; choose a new key id",
            key.key_id
        )));
    }
    tx.commit().await?;
    Ok(true)
}

/// Registers a key outside the command path, for tests, benchmarks and the
/// embedded default's own alerts key: recorded as `setup.add`. Registering
/// the very same active key again is accepted (a restart); any other reuse
/// of a key id is an error, never an overwrite.
pub async fn add_operator(
    store: &Store,
    key_id: &str,
    principal: &str,
    public_key: &str,
    roles: &[String],
) -> Result<()> {
    let mut tx = store.begin().await?;
    let key = NewOperator {
        key_id,
        principal,
        public_key,
        roles,
    };
    let by = ChangedBy {
        kind: "setup.add",
        principal: "(setup)",
        key_id: None,
        command_id: None,
        note: None,
    };
    if !register_operator(&mut tx, key, by).await? {
        drop(tx);
        let same = operator_key(store, key_id).await?.is_some_and(|k| {
            k.revoked_at.is_none()
                && k.principal == principal
                && k.public_key == public_key
                && k.role_names == roles
        });
        if !same {
            return Err(Error::Config(format!(
                "operator key id {key_id} is already registered (a revoked key stays revoked; \
                 choose a new key id)"
            )));
        }
        return Ok(());
    }
    tx.commit().await?;
    Ok(())
}

/// Revokes a key outside the command path (tests), recorded as
/// `setup.revoke`; returns whether an active key was revoked.
pub async fn revoke_operator(store: &Store, key_id: &str) -> Result<bool> {
    let mut tx = store.begin().await?;
    let by = ChangedBy {
        kind: "setup.revoke",
        principal: "(setup)",
        key_id: None,
        command_id: None,
        note: None,
    };
    let revoked = revoke_operator_in(&mut tx, key_id, by).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// The operator-key history, oldest first: (at, kind, key id, principal,
/// by principal, command id).
pub async fn operator_changes(
    store: &Store,
) -> Result<
    Vec<(
        DateTime<Utc>,
        String,
        String,
        String,
        String,
        Option<String>,
    )>,
> {
    const SQL: &str = "SELECT at, kind, key_id, principal, by_principal, command_id \
                       FROM control.operator_changes ORDER BY seq";
    Ok(sumud_shared::on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await?))
}
