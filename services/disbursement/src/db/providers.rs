//! Payment providers as disbursement knows them: who is registered (and
//! with which signing key, or revoked), and the incidents their status
//! reports revealed (a second payment of one instruction) until an
//! operator resolves them.

use chrono::Utc;
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::{Store, Tx};
use sumud_shared::{on_store, on_tx, Result};

use super::Held;

/// Records an incident a status report revealed (once per report).
pub async fn record_incident(
    tx: &mut Tx,
    held: &Held,
    r: &sumud_shared::events::payment::StatusReport,
    kind: &str,
    event_id: &str,
) -> Result<()> {
    const SQL: &str = "INSERT INTO disbursement.incidents \
            (instruction_id, crisis_id, kind, attempt, provider, provider_ref, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";
    on_tx!(tx, conn => sqlx::query(SQL)
        .bind(&r.reference_id)
        .bind(&held.crisis_id)
        .bind(kind)
        .bind(r.attempt as i32)
        .bind(&r.provider)
        .bind(r.provider_ref.as_deref())
        .bind(event_id)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// A registered provider as a status report needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Provider {
    /// Provider id, as instructions name it.
    pub provider_id: String,
    /// Key id of its signing key, if it has one.
    pub kid: Option<String>,
    /// Its Ed25519 public key (base64url), if it has one.
    pub public_x: Option<String>,
    /// Whether it was revoked (its reports are refused).
    pub revoked: bool,
}

/// The registered provider `id`, if any.
pub async fn provider(tx: &mut Tx, id: &str) -> Result<Option<Provider>> {
    const SQL: &str = "SELECT provider_id, kid, public_x, revoked_at IS NOT NULL AS revoked \
         FROM disbursement.providers WHERE provider_id = $1";
    Ok(on_tx!(tx, conn => sqlx::query_as(SQL).bind(id).fetch_optional(conn).await)?)
}

/// Registers (or re-keys) a provider; `key` is its public key as
/// (kid, x), or `None` for a provider that cannot sign. A revoked provider
/// stays revoked: it is refused here rather than silently restored.
pub async fn add_provider(store: &Store, id: &str, key: Option<(&str, &str)>) -> Result<()> {
    const SQL: &str = "INSERT INTO disbursement.providers (provider_id, kid, public_x) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (provider_id) DO UPDATE SET kid = excluded.kid, public_x = excluded.public_x \
         WHERE providers.revoked_at IS NULL";
    let (kid, x) = key.unzip();
    let done = on_store!(store, pool => sqlx::query(SQL)
        .bind(id)
        .bind(kid)
        .bind(x)
        .execute(pool)
        .await
        .map(|d| d.rows_affected()))?;
    if done == 0 {
        return Err(sumud_shared::Error::Config(format!(
            "provider {id} was revoked; register it under a new id"
        )));
    }
    Ok(())
}

/// Revokes a provider: its reports are refused from now on. Returns whether
/// it was registered and not yet revoked.
pub async fn revoke_provider(store: &Store, id: &str) -> Result<bool> {
    let now = match store {
        Store::Postgres(_) => "now()",
        Store::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
    let sql = format!(
        "UPDATE disbursement.providers SET revoked_at = {now} \
         WHERE provider_id = $1 AND revoked_at IS NULL"
    );
    Ok(on_store!(store, pool => sqlx::query(&sql)
        .bind(id)
        .execute(pool)
        .await
        .map(|d| d.rows_affected() == 1))?)
}

/// Every registered provider, by id.
pub async fn providers(store: &Store) -> Result<Vec<Provider>> {
    const SQL: &str = "SELECT provider_id, kid, public_x, revoked_at IS NOT NULL AS revoked \
         FROM disbursement.providers ORDER BY provider_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// A crisis's open incidents, oldest first: (incident id, kind,
/// instruction, attempt, provider reference).
pub async fn incidents(
    store: &Store,
    crisis_id: &str,
) -> Result<Vec<(i64, String, String, i32, Option<String>)>> {
    const SQL: &str =
        "SELECT incident_id, kind, instruction_id, attempt, provider_ref FROM disbursement.incidents \
         WHERE crisis_id = $1 AND resolved_at IS NULL ORDER BY incident_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await)?)
}

/// Closes an open incident once an operator settled it with the provider
/// (recovered the second payment, or accepted it), recording who and how.
/// Whether it was open.
pub async fn resolve_incident(
    store: &Store,
    incident_id: i64,
    by: &str,
    resolution: &str,
) -> Result<bool> {
    let n = match store {
        Store::Postgres(pool) => sqlx::query(
            "UPDATE disbursement.incidents SET resolved_at = now(), resolved_by = $2, resolution = $3 \
             WHERE incident_id = $1 AND resolved_at IS NULL",
        )
        .bind(incident_id)
        .bind(by)
        .bind(resolution)
        .execute(pool)
        .await?
        .rows_affected(),
        Store::Sqlite(pool) => sqlx::query(
            "UPDATE disbursement.incidents SET resolved_at = ?4, resolved_by = ?2, resolution = ?3 \
             WHERE incident_id = ?1 AND resolved_at IS NULL",
        )
        .bind(incident_id)
        .bind(by)
        .bind(resolution)
        .bind(timestamp(Utc::now()))
        .execute(pool)
        .await?
        .rows_affected(),
    };
    Ok(n > 0)
}
