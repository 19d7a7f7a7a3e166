//! The assistance ledger (`eligibility.assistance_ledger`): every
//! assistance a household holds, by source and period. The expansion weighs
//! it set-based; this module reads it for one household, for `sumud ledger`
//! and for `explain`, which weighs it with the policy in Rust.

use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::{on_store, Result};

use super::CrisisRow;
use crate::policy::Assisted;

/// One assistance a household holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerEntry {
    /// Who gives it: `crisis` (a Sumud crisis response) or `partner` (an
    /// agency's record on the assistance topic).
    pub source: String,
    /// The crisis id, or the agency.
    pub source_id: String,
    /// The decision it comes from, or the agency's record id.
    pub reference: String,
    /// `vertical` or `horizontal`; `partner` for an agency's record.
    pub kind: String,
    /// Per-tranche amount, minor units.
    pub amount_minor: i64,
    /// Number of tranches.
    pub tranches: i32,
    /// Amount over the period, minor units.
    pub total_minor: i64,
    /// Currency.
    pub currency: String,
    /// First day of the period it covers (ISO date).
    pub period_from: String,
    /// Last day of the period it covers (ISO date).
    pub period_to: String,
}

impl LedgerEntry {
    /// Whether its period shares a day with `[from, to]` (ISO dates).
    pub fn overlaps(&self, from: &str, to: &str) -> bool {
        self.period_from.as_str() <= to && from <= self.period_to.as_str()
    }
}

/// Every assistance `household_id` holds, oldest period first.
pub async fn ledger(store: &Store, household_id: &str) -> Result<Vec<LedgerEntry>> {
    const SQL: &str = "SELECT source, source_id, reference, kind, amount_minor, tranches, \
                              CAST(total_minor AS bigint) AS total_minor, currency, period_from, period_to \
                       FROM eligibility.assistance_ledger WHERE household_id = $1 \
                       ORDER BY period_from, source_id, reference";
    Ok(on_store!(store, pool => sqlx::query_as(SQL)
        .bind(household_id)
        .fetch_all(pool)
        .await)?)
}

/// What the household holds from sources other than crisis `c`, in `c`'s
/// currency, for periods overlapping `c`'s: the overlap rule's input, as the expansion
/// computes it set-based.
pub fn assisted_against(c: &CrisisRow, entries: &[LedgerEntry]) -> Assisted {
    let (from, to) = (
        c.definition.starts_on.to_string(),
        c.definition.ends_on.to_string(),
    );
    let mut by: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
    for e in entries.iter().filter(|e| {
        !(e.source == "crisis" && e.source_id == c.crisis_id)
            && e.currency == c.definition.budget.currency
            && e.overlaps(&from, &to)
    }) {
        *by.entry((e.source_id.as_str(), e.source.as_str()))
            .or_default() += e.total_minor;
    }
    Assisted {
        total_minor: by.values().sum(),
        by: by
            .keys()
            .map(|(id, source)| format!("{source} {id}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
