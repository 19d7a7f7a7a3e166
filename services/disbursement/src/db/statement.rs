//! The SQL behind reconciling a provider's statement (`statement.rs`): our
//! side of the comparison, read the same way on both backends.

use sumud_shared::db::Store;
use sumud_shared::money::Money;
use sumud_shared::{on_store, Result};

use crate::statement::Ours;

/// A crisis's instructions as a statement is compared with them, by id;
/// only `provider`'s when one is named (a statement from one provider).
pub async fn statement_side(
    store: &Store,
    crisis_id: &str,
    provider: Option<&str>,
) -> Result<Vec<Ours>> {
    const SQL: &str =
        "SELECT instruction_id, attempt, provider, status, amount_minor, currency, provider_ref \
         FROM disbursement.instructions \
         WHERE crisis_id = $1 AND ($2 IS NULL OR provider = $2) ORDER BY instruction_id";
    type Row = (String, i32, String, String, i64, String, Option<String>);
    let rows: Vec<Row> = on_store!(store, pool => sqlx::query_as(SQL)
        .bind(crisis_id)
        .bind(provider)
        .fetch_all(pool)
        .await)?;
    Ok(rows
        .into_iter()
        .map(
            |(instruction_id, attempt, provider, status, minor, currency, provider_ref)| Ours {
                instruction_id,
                attempt,
                provider,
                status,
                amount: Money { minor, currency },
                provider_ref,
            },
        )
        .collect())
}
