//! `sumud explain` from either end, on the real broker and database: for
//! every instruction of a crisis that was proposed, approved, paid with
//! retries and permanent rejections, the explanation names the signed
//! commands and their principals, the approver, the playbook, the registry
//! record and its event, the decision with its reason, and the instruction's
//! status history — each checked against what the test did or read itself.

use std::collections::BTreeMap;

use sumud::explain_cmd::{explanation, Subject};
use sumud_control::config::ControlConfig;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

async fn every_instruction_is_explained_from_either_end(backend: Backend) {
    // Arrange: a crisis large enough for four eyes, a provider that rejects.
    let config = ControlConfig {
        four_eyes_threshold_minor: 1_000_000,
        ..ControlConfig::default()
    };
    let provider = Behaviour {
        retryable_reject_rate: 0.3,
        permanent_reject_rate: 0.05,
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        day_seconds: 0.05,
        retry_base_secs: 0,
        tick_ms: 100,
        max_attempts: 4,
        ..DisbursementConfig::default()
    };
    let p = Pipeline::start_with_payments_on(backend, 1500, config, schedule, provider).await;
    let areas = ["JO-IR"];
    let want = expected(&p.households, &areas);
    let mut def = definition(&areas, "10000000");
    def.response.overrides.tranches = Some(2);
    let declare = claims(CommandKind::Declare, "EX-1", Some(def.clone()));
    p.send(&p.alice, &declare).await;
    wait_for("the proposal", DEADLINE, || async {
        (p.state("EX-1").await.as_deref() == Some("proposed")).then_some(())
    })
    .await;
    let approve = approval("EX-1", 1, &def);
    p.send(&p.bob, &approve).await;

    // Act: wait until every instruction is final.
    let n = (want.len() * 2) as i64;
    p.wait_count(
        "every instruction final",
        "SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')",
        n,
    )
    .await;

    // Assert, for every instruction, from the payment's end.
    let rows: Vec<(String, String, String, String, Option<String>, i64)> = p
        .env
        .rows(
            "SELECT i.instruction_id, i.household_id, i.status, h.event_id, i.provider_ref, \
                    (SELECT count(*) FROM disbursement.status_log s WHERE s.instruction_id = i.instruction_id) \
             FROM disbursement.instructions i JOIN registry.households h USING (household_id) \
             ORDER BY i.instruction_id",
        )
        .await;
    assert_eq!(rows.len() as i64, n);
    let tasks: BTreeMap<String, String> = p
        .env
        .rows::<(String, String)>(
            "SELECT instruction_id, reason_code FROM disbursement.verification_tasks",
        )
        .await
        .into_iter()
        .collect();
    assert!(!tasks.is_empty(), "the provider rejected some for good");
    for (reference, household, status, event_id, provider_ref, reports) in &rows {
        let e = explanation(&p.env.store, Subject::Instruction(reference.clone()))
            .await
            .unwrap();
        assert_eq!(
            (e.crisis_id.as_str(), e.household_id.as_str()),
            ("EX-1", household.as_str())
        );
        // On whose authority: alice's declaration, bob's approval.
        let a = e.authority.as_ref().expect("control's records are here");
        let commands: Vec<(&str, &str, &str, &str)> = a
            .commands
            .iter()
            .map(|c| {
                (
                    c.kind.as_str(),
                    c.command_id.as_str(),
                    c.principal.as_str(),
                    c.outcome.as_str(),
                )
            })
            .collect();
        assert_eq!(
            commands,
            vec![
                ("crisis.declare", declare.jti.as_str(), "alice", "proposed"),
                ("crisis.approve", approve.jti.as_str(), "bob", "activated"),
            ]
        );
        let decided = a.decided.as_ref().unwrap();
        assert_eq!(
            (
                decided.proposed_by.as_deref(),
                decided.approved_by.as_slice()
            ),
            (Some("alice"), ["bob".to_owned()].as_slice())
        );
        assert!(a.trigger.is_none(), "an operator declared it");
        // The decision, its rules and the registry record behind it.
        let (kind, amount) = &want[household];
        let d = &e.eligibility.decisions;
        assert_eq!(d.len(), 1, "{reference}");
        assert_eq!(
            (
                d[0].kind.as_str(),
                d[0].status.as_str(),
                d[0].amount_per_tranche.minor
            ),
            (kind.as_str(), "entitled", *amount)
        );
        assert!(
            d[0].playbook.starts_with("flood-standard@"),
            "{}",
            d[0].playbook
        );
        assert!(
            d[0].reason.starts_with(&format!("{kind} ")),
            "{}",
            d[0].reason
        );
        let record = e.eligibility.registry.as_ref().unwrap();
        assert_eq!((record.facts.version, &record.event_id), (1, event_id));
        // The payment and its history.
        let i = e.instructions.as_ref().unwrap();
        assert_eq!(i.len(), 1);
        assert_eq!(&i[0].instruction.instruction_id, reference);
        assert_eq!(&i[0].instruction.status, status);
        assert_eq!(&i[0].instruction.provider_ref, provider_ref);
        assert_eq!(i[0].statuses.len() as i64, *reports, "{reference}");
        // The last report applied is what put the instruction where it is:
        // a success, or a rejection whose reason the instruction carries.
        let last = i[0].statuses.iter().rfind(|s| s.applied).unwrap();
        let reported = match status.as_str() {
            "succeeded" => "succeeded",
            _ => "rejected",
        };
        assert_eq!(
            (last.status.as_str(), last.attempt, &last.reason_code),
            (
                reported,
                i[0].instruction.attempt,
                &i[0].instruction.reason_code
            ),
            "{reference}"
        );
        assert_eq!(
            i[0].tasks.first().map(|t| t.reason_code.as_str()),
            tasks.get(reference).map(String::as_str)
        );
        if status == "succeeded" {
            assert!(provider_ref.is_some(), "{reference}");
        }
    }

    // From the household's end: both tranches, and the sentences name them.
    let (reference, household, ..) = &rows[0];
    let e = explanation(
        &p.env.store,
        Subject::Household {
            crisis: "EX-1".into(),
            household: household.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(e.instructions.as_ref().unwrap().len(), 2);
    let lines = e.lines();
    for needle in [
        format!("Instruction {reference}: "),
        format!("crisis.declare {} by alice", declare.jti),
        format!("crisis.approve {} by bob", approve.jti),
        "Signed commands:".to_owned(),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(&needle)),
            "{needle:?} in {lines:#?}"
        );
    }
    // The same as one JSON document, round-tripped.
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["household_id"], household.as_str());
    assert_eq!(
        json["authority"]["commands"][1]["command_id"],
        approve.jti.as_str()
    );
    // The pain.001 EndToEndId (no hyphens, upper case) names the same payment.
    let e2e = reference.replace('-', "").to_uppercase();
    let same = explanation(&p.env.store, Subject::Instruction(e2e))
        .await
        .unwrap();
    assert_eq!(same.instruction.as_deref(), Some(reference.as_str()));
    // A reference nobody issued is an error that says what to check.
    let missing = explanation(&p.env.store, Subject::Instruction("nope".into())).await;
    assert!(missing.is_err_and(|e| e.to_string().contains("no payment instruction nope")));
    p.stop().await;
}

on_both_backends!(every_instruction_is_explained_from_either_end);
