//! The disbursement service's Prometheus gauges, refreshed from its tables
//! when `/metrics` is scraped: instructions by crisis and status, and the
//! money instructed, paid and failed per crisis. Labels stop at the crisis
//! id: never an instruction or household id.

use std::collections::BTreeMap;

use sumud_shared::db::Store;
use sumud_shared::metrics::{CrisisAmountLabels, CrisisStatusLabels, Metrics};

/// Reads the figures and replaces the gauges' values. A failed read leaves
/// the last values.
pub async fn refresh(store: &Store) {
    let Ok(rows) = crate::db::gauges(store).await else {
        return;
    };
    let m = Metrics::global();
    m.instructions.clear();
    let mut amounts: BTreeMap<(String, String, &str), i64> = BTreeMap::new();
    for (crisis, currency, status, n, amount) in rows {
        // One currency per crisis; summed all the same.
        m.instructions
            .get_or_create(&CrisisStatusLabels {
                crisis: crisis.clone(),
                status: status.clone(),
            })
            .inc_by(n);
        for state in amount_states(&status) {
            *amounts
                .entry((crisis.clone(), currency.clone(), state))
                .or_default() += amount;
        }
    }
    m.payment_amounts.clear();
    for ((crisis, currency, status), amount) in amounts {
        m.payment_amounts
            .get_or_create(&CrisisAmountLabels {
                crisis,
                currency,
                status: status.to_owned(),
            })
            .set(amount);
    }
}

/// Which amounts an instruction in `status` counts towards: every one was
/// instructed; `succeeded` is paid; `failed` and `reversed` failed.
fn amount_states(status: &str) -> Vec<&'static str> {
    match status {
        "succeeded" => vec!["instructed", "paid"],
        "failed" | "reversed" => vec!["instructed", "failed"],
        _ => vec!["instructed"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_counts_as_instructed_and_finals_as_paid_or_failed() {
        assert_eq!(amount_states("pending"), vec!["instructed"]);
        assert_eq!(amount_states("succeeded"), vec!["instructed", "paid"]);
        assert_eq!(amount_states("reversed"), vec!["instructed", "failed"]);
    }
}
