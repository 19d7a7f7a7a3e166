//! Field teams on the task commands topic, from the attacker's side first,
//! on the real broker and database, on both backends. A crisis is paid by
//! a provider that refuses some payments for good; each refusal raises a
//! task that disbursement announces on `sumud.tasks.v1`. Then:
//!
//! - messages from anyone but a registered, unrevoked field key — unsigned,
//!   an unknown key, a forged signature under a registered key id, a
//!   revoked key, a stale command, a command keyed to another task, a
//!   replay, a task event disbursement never wrote (put on the tasks topic
//!   by a writer past its ACL), an entitlement decision written to the
//!   task commands topic — are dead-lettered
//!   with their reason and change nothing;
//! - the field team's own signed commands assign and resolve tasks,
//!   recorded as made by the key's principal (not by anything the message
//!   claims), and every change is announced on the tasks topic in order,
//!   which holds nothing else but the forged event.

use std::collections::BTreeMap;
use std::time::Duration;

use sumud_shared::envelope::Envelope;
use sumud_shared::events::task::{
    FieldGrievance, SignedTaskCommand, TaskClaims, TaskCommandKind, TaskEvent, TASK_ASSIGNED,
    TASK_COMMAND, TASK_EVENTS, TASK_OPENED, TASK_RESOLVED,
};
use sumud_shared::jws::{self, Jwk};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

const CRISIS: &str = "FC-1";

/// The field team's key, and who it is.
const FIELD_KID: &str = "field-irbid-1";
const FIELD_PRINCIPAL: &str = "field-app-irbid";

fn command(jti: &str, cmd: TaskCommandKind, task: i64) -> TaskClaims {
    TaskClaims {
        jti: jti.into(),
        iat: chrono::Utc::now().timestamp(),
        cmd,
        task_id: task,
        grievance: None,
        assign_to: None,
        outcome: None,
        destination: None,
        note: None,
    }
}

fn resolve(jti: &str, task: i64, outcome: &str) -> TaskClaims {
    TaskClaims {
        outcome: Some(outcome.into()),
        note: Some("visited".into()),
        ..command(jti, TaskCommandKind::Resolve, task)
    }
}

/// Publishes a task command keyed `key`, signed or not, as a field app would.
async fn send(p: &Pipeline, key: i64, jws: String) {
    send_as(p, &key.to_string(), jws).await;
}

/// Publishes a task command with the Kafka key `key`.
async fn send_as(p: &Pipeline, key: &str, jws: String) {
    let e = Envelope::new(
        "urn:field-app:test",
        TASK_COMMAND,
        Some(key.to_owned()),
        SignedTaskCommand { jws },
    );
    p.env
        .publish(&p.env.settings.topics.task_commands, key, &e.to_bytes())
        .await;
}

fn signed(claims: &TaskClaims, key: &Jwk) -> String {
    jws::sign(claims, key).unwrap()
}

async fn task_state(
    p: &Pipeline,
    task: i64,
) -> (String, Option<String>, Option<String>, Option<String>) {
    p.env
        .rows(&format!(
            "SELECT state, assigned_to, outcome, resolved_by FROM disbursement.verification_tasks \
             WHERE task_id = {task}"
        ))
        .await
        .remove(0)
}

async fn wait_state(p: &Pipeline, task: i64, state: &str) {
    wait_for(
        &format!("task {task} {state}"),
        Duration::from_secs(60),
        || async { (task_state(p, task).await.0 == state).then_some(()) },
    )
    .await;
}

async fn outsiders_change_nothing_and_field_teams_close_tasks(backend: Backend) {
    // Arrange: one tranche, every refusal final, so each raises one task.
    let p = Pipeline::paid_once_with_refusals(backend, 600, CRISIS, &["JO-IR"], 0.15).await;
    // The tasks, read from the instructions alone (not from the tasks table).
    let failed: Vec<(String, String)> = p
        .env
        .rows("SELECT instruction_id, household_id FROM disbursement.instructions WHERE status = 'failed' ORDER BY instruction_id")
        .await;
    assert!(failed.len() >= 3, "need three refused payments: {failed:?}");
    let tasks: Vec<(i64, String, String)> = p
        .env
        .rows("SELECT task_id, instruction_id, household_id FROM disbursement.verification_tasks ORDER BY instruction_id")
        .await;
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.1.clone(), t.2.clone()))
            .collect::<Vec<_>>(),
        failed
    );
    let (t1, t2, t3) = (tasks[0].0, tasks[1].0, tasks[2].0);

    let store = &p.env.store;
    let field = Jwk::generate(FIELD_KID);
    sumud_disbursement::db::add_field_key(store, FIELD_KID, FIELD_PRINCIPAL, &field.x)
        .await
        .unwrap();
    let retired = Jwk::generate("field-irbid-0");
    sumud_disbursement::db::add_field_key(store, &retired.kid, "old tablet", &retired.x)
        .await
        .unwrap();
    assert!(
        sumud_disbursement::db::revoke_field_key(store, &retired.kid)
            .await
            .unwrap()
    );
    let stranger = Jwk::generate("field-nobody");
    let forger = Jwk::generate(FIELD_KID); // claims the team's key id

    // Act, as outsiders: each tries to stop task 3's household's payments.
    let mut stale = resolve("a-stale", t3, "ineligible");
    stale.iat -= 3600;
    send(&p, t3, String::new()).await;
    send(
        &p,
        t3,
        signed(&resolve("a-unknown", t3, "ineligible"), &stranger),
    )
    .await;
    send(
        &p,
        t3,
        signed(&resolve("a-forged", t3, "ineligible"), &forger),
    )
    .await;
    // The revoked key sends under the id the team's own app will use for
    // task 2 (below): ids are per key, so it cannot use that one up.
    send(
        &p,
        t3,
        signed(&resolve("f-resolve-2", t3, "ineligible"), &retired),
    )
    .await;
    send(&p, t3, signed(&stale, &field)).await;
    // A genuine signature for task 3, put under task 2's key.
    send(
        &p,
        t2,
        signed(&resolve("a-rekeyed", t3, "ineligible"), &field),
    )
    .await;
    // A task event disbursement never wrote, claiming task 3 resolved.
    let forged_event = Envelope::new(
        "urn:sumud:disbursement",
        TASK_RESOLVED,
        Some(t3.to_string()),
        TaskEvent {
            task_id: t3,
            crisis_id: CRISIS.into(),
            household_id: tasks[2].2.clone(),
            instruction_id: tasks[2].1.clone(),
            attempt: 1,
            reason_code: "account_closed".into(),
            state: "resolved".into(),
            assigned_to: None,
            outcome: Some("ineligible".into()),
            resolved_by: Some(FIELD_PRINCIPAL.into()),
            reissued_attempt: None,
            changed_at: chrono::Utc::now(),
        },
    );
    p.env
        .publish(
            &p.env.settings.topics.tasks,
            &t3.to_string(),
            &forged_event.to_bytes(),
        )
        .await;

    // Act, as the field team: assign and resolve task 1, resolve task 2.
    let mut assign = command("f-assign-1", TaskCommandKind::Assign, t1);
    assign.assign_to = Some("team-irbid-1".into());
    let assign_jws = signed(&assign, &field);
    send(&p, t1, assign_jws.clone()).await;
    wait_state(&p, t1, "assigned").await;
    send(
        &p,
        t1,
        signed(&resolve("f-resolve-1", t1, "unreachable"), &field),
    )
    .await;
    wait_state(&p, t1, "resolved").await;
    // The same assignment again (a replay), and a second resolution.
    send(&p, t1, assign_jws).await;
    send(
        &p,
        t1,
        signed(&resolve("f-resolve-1b", t1, "ineligible"), &field),
    )
    .await;
    send(
        &p,
        t2,
        signed(&resolve("f-resolve-2", t2, "ineligible"), &field),
    )
    .await;
    wait_state(&p, t2, "resolved").await;

    // A field worker files a grievance for a household outside the crisis
    // areas (from the test's own registry); a stranger files one for
    // another, and the team's own is sent under a task's key.
    let mut outside = p
        .households
        .iter()
        .filter(|h| !h.area_code.starts_with("JO-IR"))
        .map(|h| h.household_id.clone());
    let (met, other) = (outside.next().unwrap(), outside.next().unwrap());
    let grievance = |jti: &str, household: &str| TaskClaims {
        grievance: Some(FieldGrievance {
            crisis_id: CRISIS.into(),
            household_id: household.into(),
            kind: "not_included".into(),
            instruction_id: None,
        }),
        note: Some("says the water reached the house".into()),
        ..command(jti, TaskCommandKind::FileGrievance, 0)
    };
    send_as(
        &p,
        &other,
        signed(&grievance("a-grievance", &other), &stranger),
    )
    .await;
    send_as(
        &p,
        &t1.to_string(),
        signed(&grievance("f-grievance-rekeyed", &met), &field),
    )
    .await;
    send_as(&p, &met, signed(&grievance("f-grievance", &met), &field)).await;
    // A genuine entitlement decision, re-addressed to that household and
    // written to the task commands topic (which field apps may write): not
    // eligibility's word, so it must not entitle anyone.
    let (_, genuine) = p
        .env
        .read_topic(
            &p.env.settings.topics.entitlements,
            1,
            Duration::from_secs(30),
        )
        .remove(0);
    let mut forged: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    forged["id"] = serde_json::Value::from(format!("forged-{}", forged["id"].as_str().unwrap()));
    forged["data"]["household_id"] = serde_json::Value::from(met.clone());
    p.env
        .publish(
            &p.env.settings.topics.task_commands,
            &met,
            &serde_json::to_vec(&forged).unwrap(),
        )
        .await;
    p.wait_count(
        "the field worker's grievance",
        "SELECT count(*) FROM disbursement.grievances",
        1,
    )
    .await;
    let filed: Vec<(String, String, String, String)> = p
        .env
        .rows("SELECT household_id, kind, channel, filed_by FROM disbursement.grievances")
        .await;
    assert_eq!(
        filed,
        vec![(
            met,
            "not_included".into(),
            "field".into(),
            FIELD_PRINCIPAL.into()
        )]
    );

    // Assert: every outsider's message dead-lettered with its reason.
    let mut reasons: Vec<String> = dead_letters(&p.env, 13)
        .into_iter()
        .map(|d| d.reason.to_string())
        .collect();
    reasons.sort();
    let mut want = vec![
        "unsigned",
        "unknown_key",
        "bad_signature",
        "revoked_key",
        "expired",
        "key_mismatch",
        "untrusted_sender",
        "replayed",
        "invalid_transition",
        "unknown_key",
        "key_mismatch",
        "untrusted_sender",
    ];
    want.sort();
    assert_eq!(reasons, want);
    // ... and none changed anything: task 3 stands open, only task 2's
    // household is stopped, task 1 stays as the field team resolved it.
    assert_eq!(task_state(&p, t3).await, ("open".into(), None, None, None));
    assert_eq!(
        task_state(&p, t1).await,
        (
            "resolved".into(),
            Some("team-irbid-1".into()),
            Some("unreachable".into()),
            Some(FIELD_PRINCIPAL.into())
        )
    );
    assert_eq!(
        task_state(&p, t2).await.3.as_deref(),
        Some(FIELD_PRINCIPAL),
        "resolved_by is the key's principal"
    );
    let stops: Vec<(String,)> = p
        .env
        .rows("SELECT household_id FROM disbursement.entitlement_stops")
        .await;
    assert_eq!(stops, vec![(tasks[1].2.clone(),)]);
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM disbursement.entitlements WHERE household_id = '{}'",
            filed[0].0
        ))
        .await,
        0,
        "a decision forged on the tasks topic entitles nobody"
    );
    // Judged once: applied ones and refusals after the signature verified
    // are recorded; the rest (no attributable signer, or an unsigned key)
    // are not.
    let judged: BTreeMap<(String, String), Option<String>> = p
        .env
        .rows::<(String, String, Option<String>)>(
            "SELECT kid, jti, refused_reason FROM disbursement.task_commands",
        )
        .await
        .into_iter()
        .map(|(k, j, r)| ((k, j), r))
        .collect();
    let want: BTreeMap<(String, String), Option<String>> = [
        (&retired, "f-resolve-2", Some("revoked_key")),
        (&field, "a-stale", Some("expired")),
        (&field, "f-assign-1", None),
        (&field, "f-grievance", None),
        (&field, "f-resolve-1", None),
        (&field, "f-resolve-1b", Some("invalid_transition")),
        (&field, "f-resolve-2", None),
    ]
    .into_iter()
    .map(|(k, j, r)| ((k.kid.clone(), j.to_owned()), r.map(str::to_owned)))
    .collect();
    assert_eq!(judged, want);

    // Every change announced, in order, by disbursement: one `opened` per
    // refused payment; task 1 opened, assigned, resolved.
    // The commands went to their own topic; the one message on the tasks
    // topic that is not disbursement's is the forged event (a writer past
    // the ACL).
    let expected_events = tasks.len() + 2 + 1; // + task 1's two changes + task 2's
    let read = p.env.read_topic(
        &p.env.settings.topics.tasks,
        expected_events + 1,
        Duration::from_secs(60),
    );
    assert!(
        read.iter().all(|(_, b)| {
            let e: Envelope<serde_json::Value> = serde_json::from_slice(b).unwrap();
            TASK_EVENTS.contains(&e.event_type.as_str())
        }),
        "a command reached the tasks topic"
    );
    let ours: Vec<(String, Envelope<serde_json::Value>)> = read
        .into_iter()
        .map(|(k, b)| {
            (
                k,
                serde_json::from_slice::<Envelope<serde_json::Value>>(&b).unwrap(),
            )
        })
        .filter(|(_, e)| TASK_EVENTS.contains(&e.event_type.as_str()))
        .filter(|(_, e)| e.id != forged_event.id)
        .collect();
    assert_eq!(
        ours.len(),
        expected_events,
        "{:?}",
        ours.iter()
            .map(|(k, e)| (k, &e.event_type, &e.data))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ours.iter()
            .filter(|(_, e)| e.event_type == TASK_OPENED)
            .count(),
        tasks.len()
    );
    let of_t1: Vec<(String, TaskEvent)> = ours
        .iter()
        .filter(|(k, _)| *k == t1.to_string())
        .map(|(_, e)| {
            (
                e.event_type.clone(),
                serde_json::from_value(e.data.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        of_t1.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec![TASK_OPENED, TASK_ASSIGNED, TASK_RESOLVED]
    );
    let last = &of_t1[2].1;
    assert_eq!(
        (
            last.state.as_str(),
            last.outcome.as_deref(),
            last.resolved_by.as_deref(),
            last.instruction_id.as_str()
        ),
        (
            "resolved",
            Some("unreachable"),
            Some(FIELD_PRINCIPAL),
            tasks[0].1.as_str()
        )
    );
    p.stop().await;
}

on_both_backends!(outsiders_change_nothing_and_field_teams_close_tasks);
