//! The disbursement service's Prometheus gauges, refreshed from its tables
//! when `/metrics` is scraped: instructions by crisis and status, the money
//! instructed, paid and failed per crisis, and the attempts committed but
//! not yet published (the outbox backlog). Labels stop at the crisis
//! id: never an instruction or household id.

use std::collections::BTreeMap;

use sumud_shared::db::Store;
use sumud_shared::metrics::{CrisisAmountLabels, CrisisStatusLabels, Metrics, ServiceLabels};

/// Reads the figures and replaces the gauges' values. A failed read leaves
/// the last values.
pub async fn refresh(store: &Store) {
    let m = Metrics::global();
    if let Ok(n) = crate::db::unpublished_attempts(store).await {
        m.outbox_backlog
            .get_or_create(&ServiceLabels {
                service: crate::SERVICE.to_owned(),
            })
            .set(n);
    }
    let Ok(rows) = crate::db::gauges(store).await else {
        return;
    };
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
