//! The demo's last act, the loop an operations team and an auditor live in:
//! a field worker resolves a verification task (the failed payment goes out
//! again to the corrected destination, as the next attempt of the same
//! reference), a household left out calls the hotline and is answered
//! with its explanation, one household's full explanation (authority, rules, registry
//! record, decision, every payment and its status history), then the
//! provider's own statement — written by the simulator from its ledger, as
//! a provider's back office would — reconciled against our instructions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sumud_disbursement::db::{self, Answer, TaskFilter};
use sumud_disbursement::field_task::{Destination, Resolution, TaskState};
use sumud_disbursement::grievance;
use sumud_disbursement::statement::{self, Kind};
use sumud_provider_sim::statement::{self as sim, Header};
use sumud_shared::db::Store;
use sumud_shared::on_store;

use crate::explain_cmd::{self, Subject};

/// What the demo's audit found, for a test to check.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The task a field worker resolved (id, instruction, the attempt
    /// re-issued), when a payment had failed for good.
    pub field_visit: Option<(i64, String, i32)>,
    /// The household explained.
    pub household: String,
    /// How many lines its explanation had.
    pub explanation_lines: usize,
    /// The grievance of a household left out of the crisis, answered:
    /// (grievance id, household), when the registry has one outside.
    pub grievance: Option<(i64, String)>,
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
pub async fn close_the_loop(
    store: &Store,
    tasks_topic: &str,
    crisis_id: &str,
) -> anyhow::Result<Audit> {
    let field_visit = field_visit(store, tasks_topic, crisis_id).await?;
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

    let grievance = grievance(store, crisis_id).await?;

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
        field_visit,
        household,
        explanation_lines: lines.len(),
        grievance,
        statement: file,
        entries: r.entries,
        matched: r.lines(Kind::Matched).len(),
        discrepancies: r.discrepancies(),
    })
}

/// A field worker takes the oldest open task of the crisis, finds corrected
/// payment details, and resolves it; the payment goes out again and the
/// demo waits for the provider's final answer.
async fn field_visit(
    store: &Store,
    tasks_topic: &str,
    crisis_id: &str,
) -> anyhow::Result<Option<(i64, String, i32)>> {
    let filter = TaskFilter {
        crisis: Some(crisis_id.to_owned()),
        state: Some(TaskState::Open),
    };
    let Some(task) = db::tasks(store, &filter).await?.into_iter().next() else {
        println!("\nNo payment failed for good: no field visit was needed.");
        return Ok(None);
    };
    let (channel, provider): (String, String) = on_store!(store, pool => sqlx::query_as(
        "SELECT channel, provider FROM disbursement.instructions WHERE instruction_id = $1"
    )
    .bind(&task.instruction_id)
    .fetch_one(pool)
    .await)?;
    let worker = "field-team-1";
    db::assign(store, tasks_topic, task.task_id, worker).await?;
    let destination = Destination {
        channel: serde_json::from_value(serde_json::Value::String(channel.clone()))?,
        provider: provider.clone(),
        account_token: format!("tok_demo_corrected_{}", task.task_id),
    };
    let answer = db::resolve(
        store,
        tasks_topic,
        task.task_id,
        worker,
        "visited; the household opened a new wallet",
        &Resolution::DetailsCorrected(destination),
        172_800,
    )
    .await?;
    let Answer::Changed {
        reissued: Some(attempt),
    } = answer
    else {
        println!(
            "\nField task {} could not be resolved: {answer:?}",
            task.task_id
        );
        return Ok(None);
    };
    println!(
        "\nField team: task {} ({} on attempt {}, area {}) assigned to {worker}, resolved details_corrected — \
         the same payment goes to the corrected {channel} account at {provider} as attempt {attempt}.",
        task.task_id,
        task.reason_code,
        task.attempt,
        task.area_code.as_deref().unwrap_or("?")
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let (status, now): (String, i32) = on_store!(store, pool => sqlx::query_as(
            "SELECT status, attempt FROM disbursement.instructions WHERE instruction_id = $1"
        )
        .bind(&task.instruction_id)
        .fetch_one(pool)
        .await)?;
        if now == attempt && matches!(status.as_str(), "succeeded" | "failed") {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the corrected payment had no final answer in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("  The provider's answer to attempt {attempt}: {status}.");
    Ok(Some((task.task_id, task.instruction_id, attempt)))
}

/// A household with no payment in the crisis calls the hotline: "we were
/// left out". The grievance is filed, and answered with what `sumud
/// explain` shows for it.
async fn grievance(store: &Store, crisis_id: &str) -> anyhow::Result<Option<(i64, String)>> {
    let sql = "SELECT h.household_id FROM registry.households_v h WHERE NOT EXISTS \
               (SELECT 1 FROM disbursement.instructions i \
                WHERE i.crisis_id = $1 AND i.household_id = h.household_id) \
               ORDER BY h.household_id LIMIT 1";
    let household: Option<String> = on_store!(store, pool => sqlx::query_scalar(sql)
        .bind(crisis_id)
        .fetch_optional(pool)
        .await)?;
    let Some(household) = household else {
        return Ok(None);
    };
    let complaint = db::Complaint {
        crisis: crisis_id,
        household: &household,
        kind: grievance::Kind::NotIncluded,
        channel: grievance::Channel::Hotline,
        filed_by: "hotline-1",
        instruction: None,
        note: "says the flood reached the street too",
    };
    let id = match db::file_grievance(store, &complaint).await? {
        db::Filed::New(id) | db::Filed::AlreadyOpen(id) => id,
        db::Filed::Refused(why) => anyhow::bail!("the demo's grievance was refused: {why}"),
    };
    let (answer, _) =
        crate::grievances_cmd::answer(store, id, grievance::Outcome::Explained, "hotline-1", "")
            .await?;
    println!(
        "\nA household calls the hotline: sumud grievances file --crisis {crisis_id} --household {household} --kind not_included …; answered (sumud grievances answer --id {id}):"
    );
    for line in answer.lines() {
        println!("  {line}");
    }
    Ok(Some((id, household)))
}
