//! `sumud ledger`: everything a household holds across crises and partner
//! agencies, as the overlap rules weigh it — each crisis's decision and
//! period from eligibility's assistance ledger, with what disbursement has
//! paid and reversed of it, and each partner's record as the agency
//! reports it. The one place that answers "has this household already
//! been helped for this shock, by whom, how much?".

use serde::Serialize;
use sumud_eligibility::db::LedgerEntry;
use sumud_shared::db::Store;
use sumud_shared::money::Money;

/// One assistance, with its payments so far.
#[derive(Debug, Serialize)]
pub struct LedgerLine {
    /// The ledger's entry.
    #[serde(flatten)]
    pub entry: LedgerEntry,
    /// Paid so far (succeeded instructions), minor units.
    pub paid_minor: i64,
    /// Reversed after being paid, minor units.
    pub reversed_minor: i64,
    /// Instructions not yet settled either way.
    pub in_flight: i64,
}

/// The ledger of `household_id`, oldest period first; payments are zero
/// when disbursement's records are not in this database.
pub async fn ledger(store: &Store, household_id: &str) -> anyhow::Result<Vec<LedgerLine>> {
    anyhow::ensure!(
        store.has_table("eligibility", "entitlements").await?,
        "eligibility's records are not in this database: point DATABASE_URL at the pipeline's \
         database (sqlite://.sumud/sumud.db for the embedded default of `sumud up`)"
    );
    let entries = sumud_eligibility::db::ledger(store, household_id).await?;
    let payments: Vec<(String, String, String, i64, i64)> =
        if store.has_table("disbursement", "instructions").await? {
            const SQL: &str = "SELECT crisis_id, kind, status, count(*), \
                           CAST(coalesce(sum(amount_minor), 0) AS bigint) \
                           FROM disbursement.instructions WHERE household_id = $1 GROUP BY 1, 2, 3";
            sumud_shared::on_store!(store, pool => sqlx::query_as(SQL)
                .bind(household_id)
                .fetch_all(pool)
                .await)?
        } else {
            Vec::new()
        };
    Ok(entries
        .into_iter()
        .map(|entry| {
            let of = |statuses: &[&str]| {
                payments
                    .iter()
                    .filter(|(c, k, s, _, _)| {
                        *c == entry.source_id && *k == entry.kind && statuses.contains(&s.as_str())
                    })
                    .fold((0, 0), |(n, a), (_, _, _, cn, ca)| (n + cn, a + ca))
            };
            LedgerLine {
                paid_minor: of(&["succeeded"]).1,
                reversed_minor: of(&["reversed"]).1,
                in_flight: of(&["instructed", "received", "pending", "retry_scheduled"]).0,
                entry,
            }
        })
        .collect())
}

/// The ledger in sentences, one a line.
pub fn lines(household_id: &str, ledger: &[LedgerLine]) -> Vec<String> {
    if ledger.is_empty() {
        return vec![format!(
            "Household {household_id} holds no assistance from any crisis."
        )];
    }
    let money = |minor: i64, currency: &str| Money {
        minor,
        currency: currency.to_owned(),
    };
    let mut out = vec![format!("Household {household_id}:")];
    for l in ledger {
        let e = &l.entry;
        if e.source == "partner" {
            out.push(format!(
                "  partner {} record {}, {} to {}: {} (as the agency reports it).",
                e.source_id,
                e.reference,
                e.period_from,
                e.period_to,
                money(e.total_minor, &e.currency).display()
            ));
            continue;
        }
        out.push(format!(
            "  {} {} ({} expansion), {} to {}: {} x {} = {}; paid {}, reversed {}, {} in flight.",
            e.source,
            e.source_id,
            e.kind,
            e.period_from,
            e.period_to,
            money(e.amount_minor, &e.currency).display(),
            e.tranches,
            money(e.total_minor, &e.currency).display(),
            money(l.paid_minor, &e.currency).display(),
            money(l.reversed_minor, &e.currency).display(),
            l.in_flight
        ));
    }
    out
}
