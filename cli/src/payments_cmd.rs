//! `sumud reconcile`: per crisis and provider, what was instructed,
//! acknowledged, paid, failed, reversed and is outstanding — and whether
//! anything is unexplained (against a provider's statement: `statement_cmd.rs`).

use sumud_disbursement::db::{self, ReconLine};
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::money::Money;

/// What does not add up, in words; empty when everything is explained.
pub fn unexplained(lines: &[ReconLine], budget: Option<(i64, i64, i64)>) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        let parts = l.paid_minor + l.failed_minor + l.reversed_minor + l.outstanding_minor;
        if parts != l.instructed_minor {
            out.push(format!(
                "{}: paid + failed + reversed + outstanding = {parts}, instructed = {}",
                l.provider, l.instructed_minor
            ));
        }
        if l.overdue > 0 {
            out.push(format!(
                "{}: {} instructions have no final status past their deadline",
                l.provider, l.overdue
            ));
        }
    }
    if let Some((cap, reserved, live)) = budget {
        if reserved != live {
            out.push(format!(
                "reserved {reserved} does not match live instructions {live}"
            ));
        }
        if reserved > cap {
            out.push(format!("reserved {reserved} exceeds the budget {cap}"));
        }
    }
    out
}

/// Writes the pain.001.001.09 file of a provider's open instructions.
pub async fn export_pain001(
    settings: &Settings,
    crisis: &str,
    provider: &str,
    out: &std::path::Path,
) -> anyhow::Result<usize> {
    let rows = db::open_instructions(&connect(settings).await?, crisis, provider).await?;
    anyhow::ensure!(
        !rows.is_empty(),
        "provider {provider} has no open instructions in crisis {crisis}"
    );
    let debtor = sumud_disbursement::pain001::Debtor {
        name: "Ministry of Social Development".into(),
        account: format!("CRISIS-{crisis}"),
    };
    let now = chrono::Utc::now();
    let id = format!("{crisis}-{provider}-{}", now.format("%Y%m%d%H%M%S"));
    let xml = sumud_disbursement::pain001::document(&id, now, &debtor, &rows);
    std::fs::write(out, xml).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(rows.len())
}

/// Closes incident `id` as settled with the provider by `by`, saying how.
pub async fn resolve_incident(
    settings: &Settings,
    id: i64,
    by: &str,
    resolution: &str,
) -> anyhow::Result<()> {
    let store = disbursement_store(settings).await?;
    if !db::resolve_incident(&store, id, by, resolution).await? {
        anyhow::bail!(
            "no open incident {id}: `sumud reconcile --crisis <id>` lists the open ones with their ids"
        );
    }
    println!("incident {id} resolved by {by}");
    Ok(())
}

/// Prints the reconciliation table; returns the unexplained items.
pub async fn reconcile(settings: &Settings, crisis: &str) -> anyhow::Result<Vec<String>> {
    print_table(&connect(settings).await?, crisis).await
}

/// `sumud reconcile --crisis C [--json]`: prints the table (or its JSON);
/// returns how many items are unexplained or await a provider (the caller
/// exits [`EXIT_DISCREPANCIES`] when there are any).
pub async fn reconcile_cmd(settings: &Settings, crisis: &str, json: bool) -> anyhow::Result<usize> {
    let s = summary(&connect(settings).await?, crisis).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_summary(&s);
    }
    Ok(s.problems().len())
}

/// The disbursement schema on either backend (migrating it if needed), for
/// the provider registry.
pub async fn disbursement_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = connect(settings).await?;
    store.migrate(&sumud_disbursement::db::MIGRATIONS).await?;
    Ok(store)
}

/// The pipeline's database, on either backend (a small pool: the CLI runs
/// one statement at a time).
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::connect_with(
        &settings.database_url,
        2,
        std::time::Duration::from_secs(10),
        settings.db_timeouts,
    )
    .await?)
}

/// Prints the table for a crisis from an open store; returns the
/// unexplained items and those awaiting a provider.
pub async fn print_table(store: &Store, crisis: &str) -> anyhow::Result<Vec<String>> {
    let s = summary(store, crisis).await?;
    print_summary(&s);
    Ok(s.problems())
}

/// A crisis's payments reconciled against our own records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The crisis.
    pub crisis: String,
    /// Per provider and currency.
    pub providers: Vec<ReconLine>,
    /// The crisis budget, if disbursement knows the crisis.
    pub budget: Option<Budget>,
    /// What does not add up (sums, overdue, reservations, open incidents).
    pub unexplained: Vec<String>,
    /// Payments whose outcome is unknown until the provider answers.
    pub awaiting_provider: Vec<String>,
}

/// A crisis's budget position, minor units.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Budget {
    /// The cap.
    pub budget_minor: i64,
    /// Reserved by instructions.
    pub reserved_minor: i64,
    /// Sum of the live (not failed, not reversed) instructions.
    pub live_minor: i64,
}

impl Summary {
    /// Every item that makes reconcile exit [`EXIT_DISCREPANCIES`].
    pub fn problems(&self) -> Vec<String> {
        let held = self
            .awaiting_provider
            .iter()
            .map(|h| format!("awaiting_provider: {h}"));
        self.unexplained.iter().cloned().chain(held).collect()
    }
}

/// The exit status of `sumud reconcile` when it ran and found something to
/// explain (unexplained items, or statement discrepancies); 1 stays "could
/// not run" and 2 a usage error.
pub const EXIT_DISCREPANCIES: i32 = crate::verdict::exit::REFUSED;

fn money(minor: i64, currency: &str) -> String {
    Money {
        minor,
        currency: currency.to_owned(),
    }
    .display()
}

/// Reads a crisis's reconciliation from an open store; an error when no
/// payment is recorded for it (an unknown crisis).
pub async fn summary(store: &Store, crisis: &str) -> anyhow::Result<Summary> {
    let lines = db::reconcile(store, crisis).await?;
    let budget = db::budget(store, crisis).await?;
    if lines.is_empty() && budget.is_none() {
        anyhow::bail!("no payments are recorded for crisis {crisis}");
    }
    let currency = lines.first().map_or("", |l| l.currency.as_str()).to_owned();
    // Outcome unknown with nothing more to send: the money stays reserved
    // and an operator asks the provider whether it paid. Each is a problem
    // (reconcile exits 3) until the provider answers.
    let mut held = Vec::new();
    for (instruction, attempt, provider, amount) in db::held(store, crisis).await? {
        held.push(format!(
            "instruction {instruction}, attempt {attempt}, {provider}, {}: \
             outcome unknown (timeout); its money stays reserved until {provider} reports that attempt",
            money(amount, &currency)
        ));
    }
    let mut problems = unexplained(&lines, budget);
    // Money that moved as the rules forbid (payment_state.rs): each open
    // incident is a problem until an operator resolves it with the provider.
    for (id, kind, instruction, attempt, provider_ref) in db::incidents(store, crisis).await? {
        problems.push(format!(
            "{kind}: instruction {instruction}, attempt {attempt}, provider reference {} \
             (incident {id}: settle it with the provider, then `sumud incidents resolve --id {id}`)",
            provider_ref.as_deref().unwrap_or("none")
        ));
    }
    Ok(Summary {
        crisis: crisis.to_owned(),
        providers: lines,
        budget: budget.map(|(budget_minor, reserved_minor, live_minor)| Budget {
            budget_minor,
            reserved_minor,
            live_minor,
        }),
        unexplained: problems,
        awaiting_provider: held,
    })
}

/// Prints a summary as the operator's table.
pub fn print_summary(s: &Summary) {
    let m = money;
    println!(
        "{:<12} {:>10} {:>18} {:>6} {:>8} {:>18} {:>7} {:>16} {:>9} {:>12} {:>16} {:>8}",
        "provider",
        "instructed",
        "amount",
        "acked",
        "paid",
        "paid amount",
        "failed",
        "failed amount",
        "reversed",
        "outstanding",
        "outstanding amt",
        "overdue"
    );
    for l in &s.providers {
        println!(
            "{:<12} {:>10} {:>18} {:>6} {:>8} {:>18} {:>7} {:>16} {:>9} {:>12} {:>16} {:>8}",
            l.provider,
            l.instructed,
            m(l.instructed_minor, &l.currency),
            l.acknowledged,
            l.paid,
            m(l.paid_minor, &l.currency),
            l.failed,
            m(l.failed_minor, &l.currency),
            l.reversed,
            l.outstanding,
            m(l.outstanding_minor, &l.currency),
            l.overdue
        );
    }
    if let (Some(b), Some(first)) = (s.budget, s.providers.first()) {
        println!(
            "budget {} — reserved {}",
            m(b.budget_minor, &first.currency),
            m(b.reserved_minor, &first.currency)
        );
    }
    for p in &s.unexplained {
        println!("UNEXPLAINED: {p}");
    }
    for h in &s.awaiting_provider {
        println!("AWAITING PROVIDER: {h}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> ReconLine {
        ReconLine {
            provider: "p".into(),
            currency: "JOD".into(),
            instructed: 3,
            instructed_minor: 300,
            acknowledged: 0,
            paid: 2,
            paid_minor: 200,
            failed: 1,
            failed_minor: 100,
            reversed: 0,
            reversed_minor: 0,
            outstanding: 0,
            outstanding_minor: 0,
            overdue: 0,
        }
    }

    #[test]
    fn a_balanced_crisis_has_nothing_unexplained() {
        assert!(unexplained(&[line()], Some((1000, 200, 200))).is_empty());
    }

    #[test]
    fn overdue_payments_and_mismatched_reservations_are_unexplained() {
        let mut l = line();
        l.overdue = 1;
        assert_eq!(unexplained(&[l], Some((1000, 250, 200))).len(), 2);
    }
}
