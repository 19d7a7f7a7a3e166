//! Field-verification tasks on the real broker and database, on both
//! backends: a two-tranche crisis is paid by a provider that rejects some
//! payments for good and some until their retries run out; a task is
//! raised for exactly those (computed here from the instructions), and
//! field workers resolve them — a corrected destination pays the same
//! reference once as its next attempt, an ineligible household gets no
//! second tranche, an unreachable one is closed — while the budget holds.

use std::collections::BTreeSet;

use sumud::tasks_cmd::{self, ExportFormat, FilterArgs};
use sumud_disbursement::config::DisbursementConfig;
use sumud_disbursement::db::{self, Answer, TaskFilter};
use sumud_disbursement::field_task::{Destination, Resolution, TaskState};
use sumud_provider_sim::behaviour::{Behaviour, Outcome};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

const CRISIS: &str = "FT-1";
const MAX_ATTEMPTS: u32 = 2;

/// A provider that refuses some payments for good and some for a while.
fn provider() -> Behaviour {
    Behaviour {
        retryable_reject_rate: 0.3,
        permanent_reject_rate: 0.08,
        ..Behaviour::honest()
    }
}

/// Retries at once; a "day" of 1 s, so tranche 2 (30 days on) falls due
/// 30 s after activation: time to resolve tranche 1's tasks first.
fn schedule() -> DisbursementConfig {
    DisbursementConfig {
        day_seconds: 1.0,
        retry_base_secs: 0,
        tick_ms: 100,
        max_attempts: MAX_ATTEMPTS,
        ..DisbursementConfig::default()
    }
}

/// The (instruction, attempt) pairs that must have raised a task, read
/// from the instructions alone: failed for good, or failed with a
/// retryable reason on the last attempt.
async fn must_raise(p: &Pipeline, tranche: Option<i32>) -> BTreeSet<(String, i32)> {
    let only = tranche.map_or(String::new(), |t| format!(" AND tranche = {t}"));
    p.env
        .rows::<(String, i32)>(&format!(
            "SELECT instruction_id, attempt FROM disbursement.instructions \
             WHERE status = 'failed' AND (reason_code = 'account_closed' \
                OR (reason_code = 'provider_unavailable' AND attempt = {MAX_ATTEMPTS})){only}"
        ))
        .await
        .into_iter()
        .collect()
}

async fn raised(p: &Pipeline) -> BTreeSet<(String, i32)> {
    p.env
        .rows::<(String, i32)>(
            "SELECT instruction_id, attempt FROM disbursement.verification_tasks",
        )
        .await
        .into_iter()
        .collect()
}

async fn reserved(p: &Pipeline) -> i64 {
    db::budget(&p.env.store, CRISIS).await.unwrap().unwrap().1
}

/// One task: (task id, household, instruction, attempt, amount).
type Picked = (i64, String, String, i32, i64);

async fn field_teams_resolve_tasks_and_each_outcome_does_what_it_says(backend: Backend) {
    // Arrange: a two-tranche crisis, tranche 1 paid as far as it goes.
    let behaviour = provider();
    let p = Pipeline::start_with_payments_on(
        backend,
        1500,
        no_four_eyes(),
        schedule(),
        behaviour.clone(),
    )
    .await;
    let areas = ["JO-IR"];
    let want = expected(&p.households, &areas);
    let entitled = want.len() as i64;
    let mut def = definition(&areas, "10000000");
    def.response.overrides.tranches = Some(2);
    def.response.overrides.interval_days = Some(30);
    p.send(&p.alice, &claims(CommandKind::Declare, CRISIS, Some(def)))
        .await;
    p.wait_count(
        "tranche 1 final",
        "SELECT count(*) FROM disbursement.instructions \
         WHERE tranche = 1 AND status IN ('succeeded', 'failed')",
        entitled,
    )
    .await;

    // Tasks for exactly the permanent rejections and the exhausted retries.
    let must = must_raise(&p, Some(1)).await;
    let permanent = p
        .count("SELECT count(*) FROM disbursement.instructions WHERE status = 'failed' AND reason_code = 'account_closed'")
        .await;
    assert!(
        permanent > 0 && (must.len() as i64) > permanent,
        "both kinds: {must:?}"
    );
    assert_eq!(raised(&p).await, must);
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE tranche = 2")
            .await,
        0,
        "tranche 2 must not be due yet, or this test proves nothing about stopping it"
    );

    // Four tasks of four households: one whose next attempt the provider
    // pays (decided by the simulator's seed, not by the code under test).
    let tasks: Vec<Picked> = p
        .env
        .rows(
            "SELECT t.task_id, t.household_id, t.instruction_id, t.attempt, i.amount_minor \
             FROM disbursement.verification_tasks t \
             JOIN disbursement.instructions i USING (instruction_id) ORDER BY t.task_id",
        )
        .await;
    let fix = tasks
        .iter()
        .find(|t| behaviour.outcome(&t.2, t.3 as u32 + 1) == Outcome::Pay)
        .expect("a task whose re-issue the provider pays")
        .clone();
    let mut others = tasks.iter().filter(|t| t.1 != fix.1);
    let inel = others.next().unwrap().clone();
    let unr = others.find(|t| t.1 != inel.1).unwrap().clone();
    let spare = tasks
        .iter()
        .find(|t| ![&fix.1, &inel.1, &unr.1].contains(&&t.1))
        .unwrap()
        .clone();

    // Act and assert: assignment.
    let store = &p.env.store;
    assert_eq!(
        db::assign(store, &p.env.settings.topics.tasks, fix.0, "team-irbid-1")
            .await
            .unwrap(),
        Answer::Changed { reissued: None }
    );
    assert_eq!(
        db::assign(store, &p.env.settings.topics.tasks, fix.0, "team-irbid-1")
            .await
            .unwrap(),
        Answer::Unchanged
    );
    let assigned = db::tasks(
        store,
        &TaskFilter {
            crisis: Some(CRISIS.into()),
            state: Some(TaskState::Assigned),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        assigned
            .iter()
            .map(|t| (t.task_id, t.assigned_to.as_deref()))
            .collect::<Vec<_>>(),
        vec![(fix.0, Some("team-irbid-1"))]
    );

    // Ineligible and unreachable: closed, nothing reserved again.
    let before = reserved(&p).await;
    let answer = db::resolve(
        store,
        &p.env.settings.topics.tasks,
        inel.0,
        "amal",
        "moved out of the area",
        &Resolution::Ineligible,
        3600,
    )
    .await
    .unwrap();
    assert_eq!(answer, Answer::Changed { reissued: None });
    let answer = db::resolve(
        store,
        &p.env.settings.topics.tasks,
        unr.0,
        "amal",
        "not found twice",
        &Resolution::Unreachable,
        3600,
    )
    .await
    .unwrap();
    assert_eq!(answer, Answer::Changed { reissued: None });
    assert_eq!(reserved(&p).await, before, "their money stays released");
    // Again the same: unchanged; another outcome: refused.
    assert_eq!(
        db::resolve(
            store,
            &p.env.settings.topics.tasks,
            unr.0,
            "amal",
            "again",
            &Resolution::Unreachable,
            3600
        )
        .await
        .unwrap(),
        Answer::Unchanged
    );
    assert!(matches!(
        db::resolve(store, &p.env.settings.topics.tasks, unr.0, "amal", "changed my mind", &Resolution::Ineligible, 3600)
            .await
            .unwrap(),
        Answer::Refused(why) if why.contains("already resolved as unreachable")
    ));
    // The database keeps a resolved task final and its states whole.
    assert!(p
        .env
        .try_execute(&format!(
            "UPDATE disbursement.verification_tasks SET outcome = 'ineligible' WHERE task_id = {}",
            unr.0
        ))
        .await
        .is_err());
    assert!(p
        .env
        .try_execute(&format!(
            "UPDATE disbursement.verification_tasks SET state = 'resolved' WHERE task_id = {}",
            spare.0
        ))
        .await
        .is_err());

    // Details corrected: the same reference, next attempt, new destination.
    let (holder,) = p
        .env
        .rows::<(String,)>(&format!(
            "SELECT provider FROM disbursement.instructions WHERE instruction_id = '{}'",
            fix.2
        ))
        .await[0]
        .clone();
    let token = "tok_fieldfix00000001";
    let to = Destination::parse("bank", &holder, token).unwrap();
    let answer = db::resolve(
        store,
        &p.env.settings.topics.tasks,
        fix.0,
        "team-irbid-1",
        "new bank account token from the provider agent",
        &Resolution::DetailsCorrected(to),
        3600,
    )
    .await
    .unwrap();
    assert_eq!(
        answer,
        Answer::Changed {
            reissued: Some(fix.3 + 1)
        }
    );
    assert_eq!(reserved(&p).await, before + fix.4, "reserved again");
    // The same correction again changes nothing; another destination for
    // a resolved task is refused rather than acknowledged and dropped.
    let again = |token: &str| {
        let to = Destination::parse("bank", &holder, token).unwrap();
        let topic = p.env.settings.topics.tasks.clone();
        let id = fix.0;
        async move {
            db::resolve(
                store,
                &topic,
                id,
                "team-irbid-1",
                "sent twice",
                &Resolution::DetailsCorrected(to),
                3600,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(again(token).await, Answer::Unchanged);
    assert!(matches!(
        again("tok_someoneelse01").await,
        Answer::Refused(_)
    ));
    assert_eq!(reserved(&p).await, before + fix.4, "nothing reserved twice");
    wait_for("the corrected payment paid", DEADLINE, || async {
        let rows: Vec<(String, i32, String, String)> = p
            .env
            .rows(&format!(
                "SELECT status, attempt, account_token, channel FROM disbursement.instructions \
                 WHERE instruction_id = '{}'",
                fix.2
            ))
            .await;
        (rows[0].0 == "succeeded").then_some(rows[0].clone())
    })
    .await;
    let (status, attempt, account, channel) = p
        .env
        .rows::<(String, i32, String, String)>(&format!(
            "SELECT status, attempt, account_token, channel FROM disbursement.instructions \
             WHERE instruction_id = '{}'",
            fix.2
        ))
        .await[0]
        .clone();
    assert_eq!(
        (status.as_str(), attempt, account.as_str(), channel.as_str()),
        ("succeeded", fix.3 + 1, token, "bank")
    );
    // On the wire: the re-issued attempt went to the new token.
    let topic = &p.env.settings.topics.instructions;
    let published = p.env.read_topic(topic, p.env.topic_len(topic), DEADLINE);
    let sent: Vec<(i64, String)> = published
        .iter()
        .map(|(_, payload)| serde_json::from_slice::<serde_json::Value>(payload).unwrap())
        .filter(|v| v["data"]["reference_id"] == fix.2.as_str())
        .map(|v| {
            (
                v["data"]["attempt"].as_i64().unwrap(),
                v["data"]["payee_fa"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(a, _)| *a == i64::from(fix.3 + 1))
        .collect();
    assert_eq!(
        sent,
        vec![(i64::from(fix.3 + 1), format!("{token}@{holder}"))]
    );
    // At the provider: that reference paid once, by the new attempt.
    let paid: Vec<(i32,)> = p
        .env
        .rows(&format!(
            "SELECT attempt FROM provider_sim.ledger WHERE reference_id = '{}' AND paid",
            fix.2
        ))
        .await;
    assert_eq!(paid, vec![(fix.3 + 1,)]);

    // Tranche 2 comes for everyone but the ineligible household.
    p.wait_count(
        "tranche 2 instructed",
        "SELECT count(*) FROM disbursement.instructions WHERE tranche = 2",
        entitled - 1,
    )
    .await;
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM disbursement.instructions WHERE household_id = '{}' AND tranche = 2",
            inel.1
        ))
        .await,
        0
    );
    for other in [&fix, &unr] {
        assert_eq!(
            p.count(&format!(
                "SELECT count(*) FROM disbursement.instructions WHERE household_id = '{}' AND tranche = 2",
                other.1
            ))
            .await,
            1,
            "only ineligible stops later tranches"
        );
    }
    p.wait_count(
        "tranche 2 final",
        "SELECT count(*) FROM disbursement.instructions \
         WHERE tranche = 2 AND status IN ('succeeded', 'failed')",
        entitled - 1,
    )
    .await;

    // Every task, both tranches: the failures, and the corrected one.
    let mut all = must_raise(&p, None).await;
    all.insert((fix.2.clone(), fix.3));
    assert_eq!(raised(&p).await, all);

    // No room left in the budget: a correction is refused, nothing moves.
    let spare_before = p
        .env
        .rows::<(String, i32)>(&format!(
            "SELECT status, attempt FROM disbursement.instructions WHERE instruction_id = '{}'",
            spare.2
        ))
        .await;
    p.env
        .try_execute(&format!(
            "UPDATE disbursement.crises SET budget_minor = reserved_minor, \
                 authorised_minor = reserved_minor WHERE crisis_id = '{CRISIS}'"
        ))
        .await
        .unwrap();
    let to = Destination::parse("bank", &holder, "tok_fieldfix00000002").unwrap();
    let answer = db::resolve(
        store,
        &p.env.settings.topics.tasks,
        spare.0,
        "amal",
        "new token",
        &Resolution::DetailsCorrected(to),
        3600,
    )
    .await
    .unwrap();
    assert!(
        matches!(&answer, Answer::Refused(why) if why.contains("budget")),
        "{answer:?}"
    );
    assert_eq!(
        p.env
            .rows::<(String, i32)>(&format!(
                "SELECT status, attempt FROM disbursement.instructions WHERE instruction_id = '{}'",
                spare.2
            ))
            .await,
        spare_before
    );
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM disbursement.verification_tasks WHERE task_id = {} AND state = 'open'",
            spare.0
        ))
        .await,
        1
    );

    // The field team's export: open and assigned tasks, by area, no
    // personal data.
    let open = p
        .count(&format!(
            "SELECT count(*) FROM disbursement.verification_tasks t \
             JOIN disbursement.instructions i USING (instruction_id) \
             WHERE i.crisis_id = '{CRISIS}' AND t.state <> 'resolved'"
        ))
        .await;
    let filter = FilterArgs {
        crisis: Some(CRISIS.into()),
        ..FilterArgs::default()
    };
    let rows = tasks_cmd::rows(
        store,
        &filter,
        Some(&[TaskState::Open, TaskState::Assigned]),
    )
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, open);
    let areas_in_order: Vec<_> = rows.iter().map(|t| t.area_code.clone()).collect();
    let mut sorted = areas_in_order.clone();
    sorted.sort();
    assert_eq!(areas_in_order, sorted);
    let catalog = AreaCatalog::default_catalog();
    let csv = tasks_cmd::render(&rows, ExportFormat::Csv, catalog);
    let geojson = tasks_cmd::render(&rows, ExportFormat::Geojson, catalog);
    assert_eq!(csv.lines().count() as i64, open + 1);
    let fc: serde_json::Value = serde_json::from_str(&geojson).unwrap();
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len() as i64, open);
    assert!(features.iter().all(|f| f["geometry"]["type"] == "Point"));
    for h in &p.households {
        for value in h.personal.iter().flat_map(|m| m.values()) {
            assert!(!csv.contains(value.as_str()) && !geojson.contains(value.as_str()));
        }
        assert!(!csv.contains(&h.payment.account_token));
    }

    // The auditor sees what the field team found.
    let e = sumud::explain_cmd::explanation(
        store,
        sumud::explain_cmd::Subject::Instruction(inel.2.clone()),
    )
    .await
    .unwrap();
    let text = e.lines().join("\n");
    assert!(
        text.contains(&format!("Verification task {}", inel.0))
            && text.contains("found ineligible; no later tranche"),
        "{text}"
    );
    p.assert_budget_holds(CRISIS).await;
    p.stop().await;
}

on_both_backends!(field_teams_resolve_tasks_and_each_outcome_does_what_it_says);
