//! The agencies' match keys of the households a batch wrote
//! (`registry.match_keys`), when the deployment shares a match-key secret.
//! Written before the batch's households and their offsets, so that a
//! household's key is in place when its version is (a crash in between
//! replays the batch and writes them again); a newer version of a household
//! always wins, and readers join the key's version to the household's.

use sumud_shared::db::Store;
use sumud_shared::match_key::MatchKeySecret;
use sumud_shared::Result;

use crate::changes::{Change, Versioned};

/// (household, version, match key) of every upsert in `batch` that carries
/// a national id.
pub fn keys_of(secret: &MatchKeySecret, batch: &[Versioned]) -> Vec<(String, i64, String)> {
    batch
        .iter()
        .filter_map(|v| match &v.change {
            Change::Upsert(u) => {
                let nid = u.household.personal.as_ref()?.get("national_id")?;
                Some((v.household_id.clone(), v.version, secret.key(nid)))
            }
            Change::Remove => None,
        })
        .collect()
}

/// Stores `keys`, newer versions winning.
pub async fn write(store: &Store, keys: &[(String, i64, String)]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    match store {
        Store::Postgres(pool) => {
            let ids: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
            let versions: Vec<i64> = keys.iter().map(|k| k.1).collect();
            let values: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
            sqlx::query(
                "INSERT INTO registry.match_keys AS m (household_id, version, match_key) \
                 SELECT DISTINCT ON (id) id, v, k FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS u(id, v, k) \
                 ORDER BY id, v DESC \
                 ON CONFLICT (household_id) DO UPDATE SET version = EXCLUDED.version, \
                     match_key = EXCLUDED.match_key WHERE m.version < EXCLUDED.version",
            )
            .bind(&ids)
            .bind(&versions)
            .bind(&values)
            .execute(pool)
            .await?;
        }
        Store::Sqlite(pool) => {
            for (id, version, key) in keys {
                sqlx::query(
                    "INSERT INTO registry.match_keys (household_id, version, match_key) VALUES ($1, $2, $3) \
                     ON CONFLICT (household_id) DO UPDATE SET version = excluded.version, \
                         match_key = excluded.match_key WHERE match_keys.version < excluded.version",
                )
                .bind(id)
                .bind(version)
                .bind(key)
                .execute(pool)
                .await?;
            }
        }
    }
    Ok(())
}
