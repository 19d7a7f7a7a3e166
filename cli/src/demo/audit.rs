//! The demo's last act, the loop an operations team and an auditor live in:
//! one household's full explanation (authority, rules, registry record,
//! decision, every payment and its status history), then the provider's
//! own statement — written by the simulator from its ledger, as a
//! provider's back office would — reconciled against our instructions.

use std::path::PathBuf;

use sumud_disbursement::statement::{self, Kind};
use sumud_provider_sim::statement::{self as sim, Header};
use sumud_shared::db::Store;
use sumud_shared::on_store;

use crate::explain_cmd::{self, Subject};

/// What the demo's audit found, for a test to check.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The household explained.
    pub household: String,
    /// How many lines its explanation had.
    pub explanation_lines: usize,
    /// Where the provider's statement was written.
    pub statement: PathBuf,
    /// Statement entries read back.
    pub entries: usize,
    /// References matched.
    pub matched: usize,
    /// Discrepancies found (0 when reconciled).
    pub discrepancies: usize,
}

/// Explains one household that needed a retry (or any paid one) and
/// reconciles the simulator's camt.054 statement of the crisis.
pub async fn close_the_loop(store: &Store, crisis_id: &str) -> anyhow::Result<Audit> {
    // A household whose payment needed a retry tells the fuller story.
    let sql = "SELECT household_id FROM disbursement.instructions WHERE crisis_id = $1 \
               AND status = 'succeeded' ORDER BY attempt DESC, instruction_id LIMIT 1";
    let household: String = on_store!(store, pool => sqlx::query_scalar(sql)
        .bind(crisis_id)
        .fetch_optional(pool)
        .await)?
    .ok_or_else(|| anyhow::anyhow!("crisis {crisis_id} has no payment to explain"))?;
    let e = explain_cmd::explanation(
        store,
        Subject::Household {
            crisis: crisis_id.to_owned(),
            household: household.clone(),
        },
    )
    .await?;
    println!("\nAn auditor's question, answered: sumud explain --crisis {crisis_id} --household {household}");
    let lines = e.lines();
    for line in &lines {
        println!("  {line}");
    }

    // The provider's statement of this crisis's references, from its ledger.
    let ours: Vec<String> = on_store!(store, pool => sqlx::query_scalar(
        "SELECT instruction_id FROM disbursement.instructions WHERE crisis_id = $1"
    )
    .bind(crisis_id)
    .fetch_all(pool)
    .await)?;
    let ours: std::collections::HashSet<String> = ours.into_iter().collect();
    let rows: Vec<_> = sim::ledger(store, None)
        .await?
        .into_iter()
        .filter(|r| ours.contains(&r.reference_id))
        .collect();
    let header = Header {
        message_id: format!("SIM-{crisis_id}"),
        account: format!("CRISIS-{crisis_id}"),
        currency: "JOD".into(),
        created: chrono::Utc::now(),
    };
    let file = std::env::temp_dir().join(format!("sumud-demo-{crisis_id}-camt054.xml"));
    std::fs::write(&file, sim::camt054(&rows, &header))?;
    let parsed = statement::parse(&std::fs::read(&file)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let r = crate::statement_cmd::compare(store, crisis_id, None, &parsed).await?;
    println!(
        "\nThe provider's own statement ({}, camt.054, {} bookings) against our instructions: \
         {} matched, {} discrepancies{}.",
        file.display(),
        r.entries,
        r.lines(Kind::Matched).len(),
        r.discrepancies(),
        if r.discrepancies() == 0 {
            " — reconciled"
        } else {
            ""
        }
    );
    println!("  Reconcile any statement: sumud reconcile --crisis {crisis_id} --statement FILE");
    Ok(Audit {
        household,
        explanation_lines: lines.len(),
        statement: file,
        entries: r.entries,
        matched: r.lines(Kind::Matched).len(),
        discrepancies: r.discrepancies(),
    })
}
