//! The README's first command runs `sumud demo`; this runs the same code on
//! a private database and topics, smaller, and checks it completes: alert →
//! rule-declared crisis → four-eyes amendment → eligibility → payments →
//! reconciliation with nothing unexplained.

use sumud_tests::pipeline::SEED;
use sumud_tests::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_from_alert_to_reconciled_payments() {
    let env = TestEnv::new().await;
    // A fixed registry: on 2,000 households a random one can leave the
    // south with no area poor enough for the flood rule (it did once in CI).
    let audit = sumud::demo::run_seeded(env.settings.clone(), 2000, SEED, false)
        .await
        .expect("the demo completes");
    let (crisis, revision, trigger): (String, i32, serde_json::Value) = sqlx::query_as(
        "SELECT crisis_id, revision, trigger FROM control.crises WHERE crisis_id LIKE 'EW-%'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(revision, 2, "scaled up under four eyes");
    assert_eq!(trigger["rule"]["id"], "flood-severe-poor-areas");
    let unpaid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eligibility.entitlements e WHERE e.crisis_id = $1 AND e.status = 'entitled' \
         AND NOT EXISTS (SELECT 1 FROM disbursement.instructions i WHERE i.crisis_id = e.crisis_id AND i.household_id = e.household_id)",
    )
    .bind(&crisis)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(unpaid, 0, "every entitled household was instructed");
    let problems = sumud::payments_cmd::reconcile(&env.settings, &crisis)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // The demo ends as an auditor would: one household explained, and the
    // provider's own statement reconciled — every booking one of our
    // succeeded instructions, counted here from the tables.
    let (paid, with_household): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE household_id = $2) FROM disbursement.instructions \
         WHERE crisis_id = $1 AND status = 'succeeded'",
    )
    .bind(&crisis)
    .bind(&audit.household)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(with_household > 0, "the household explained was paid");
    assert!(audit.explanation_lines > 5, "{audit:?}");
    assert_eq!(
        (
            audit.entries as i64,
            audit.matched as i64,
            audit.discrepancies
        ),
        (paid, paid, 0),
        "{audit:?}"
    );
    // A payment that failed for good was visited and re-issued as the next
    // attempt of the same reference (the seed's run has one or none).
    if let Some((task, instruction, attempt)) = &audit.field_visit {
        let (state, outcome): (String, Option<String>) = sqlx::query_as(
            "SELECT state, outcome FROM disbursement.verification_tasks WHERE task_id = $1",
        )
        .bind(task)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        assert_eq!(
            (state.as_str(), outcome.as_deref()),
            ("resolved", Some("details_corrected"))
        );
        let now: i32 = sqlx::query_scalar(
            "SELECT attempt FROM disbursement.instructions WHERE instruction_id = $1",
        )
        .bind(instruction)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        assert_eq!(now, *attempt);
    }
    // A household with no payment complained and was answered with its
    // explanation (the synthetic registry has households outside the areas).
    let (grievance, household) = audit.grievance.clone().expect("a household left out");
    let (state, paid_there, answer): (String, i64, String) = sqlx::query_as(
        "SELECT g.state, (SELECT count(*) FROM disbursement.instructions i \
                          WHERE i.crisis_id = g.crisis_id AND i.household_id = g.household_id), \
                g.answer \
         FROM disbursement.grievances g WHERE g.grievance_id = $1",
    )
    .bind(grievance)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), paid_there), ("resolved", 0));
    assert!(
        answer.contains(&format!("Household {household}")),
        "{answer}"
    );
    let camt = std::fs::read_to_string(&audit.statement).unwrap();
    assert!(camt.contains("urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"));
}
