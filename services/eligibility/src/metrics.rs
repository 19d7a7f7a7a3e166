//! The eligibility service's Prometheus gauges, refreshed from its tables
//! when `/metrics` is scraped: crises by state, and entitlements (count and
//! budget held) by crisis and status. Labels stop at the crisis id.

use sumud_shared::db::Store;
use sumud_shared::metrics::{CrisisAmountLabels, CrisisStatusLabels, Metrics, StateLabels};

/// The figures read in one go.
pub struct Figures {
    /// (state, crises).
    pub crises: Vec<(String, i64)>,
    /// (crisis, status, currency, entitlements, committed minor units).
    pub entitlements: Vec<(String, String, String, i64, i64)>,
}

/// Reads the figures and replaces the gauges' values (a crisis gone from the
/// tables disappears from the exposition too). A failed read leaves the
/// last values.
pub async fn refresh(store: &Store) {
    let Ok(f) = crate::db::gauges(store).await else {
        return;
    };
    let m = Metrics::global();
    m.crises.clear();
    for (state, n) in f.crises {
        m.crises.get_or_create(&StateLabels { state }).set(n);
    }
    m.entitlements.clear();
    m.entitlements_committed.clear();
    for (crisis, status, currency, n, committed) in f.entitlements {
        m.entitlements
            .get_or_create(&CrisisStatusLabels {
                crisis: crisis.clone(),
                status: status.clone(),
            })
            .set(n);
        m.entitlements_committed
            .get_or_create(&CrisisAmountLabels {
                crisis,
                currency,
                status,
            })
            .set(committed);
    }
}
