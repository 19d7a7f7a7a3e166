//! The payment provider simulator alone, against the real broker, on both
//! backends for its ledger: every instruction for the providers it serves is
//! answered as its behaviour decides, redeliveries are answered again but
//! never paid twice, and an attempt that comes back with other content is
//! flagged in the ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use sumud_provider_sim::behaviour::{Behaviour, Outcome};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::household::Channel;
use sumud_shared::events::payment::{Instruction, PaymentStatus, StatusReport, INSTRUCTION_ISSUED};
use sumud_tests::pipeline::DEADLINE;
use sumud_tests::{on_both_backends, wait_for, Backend, Running, TestEnv};

fn instruction(n: usize, provider: &str) -> Instruction {
    Instruction {
        reference_id: format!("{:032x}", 0x5eed_0000_u64 + n as u64),
        attempt: 1,
        crisis_id: "FL-SIM".into(),
        crisis_revision: 1,
        beneficiary_ref: format!("ben-{n:06}"),
        payee_fa: format!("tok-{n:06}"),
        amount: 50_000 + n as i64,
        currency_code: "JOD".into(),
        channel: Channel::EWallet,
        provider: provider.into(),
        tranche: 1,
        scheduled_timestamp: Utc::now(),
        purpose: "CASH".into(),
        note: "test".into(),
    }
}

async fn publish(env: &TestEnv, i: &Instruction) {
    let e = Envelope::new(
        "urn:sumud:disbursement",
        INSTRUCTION_ISSUED,
        Some(i.reference_id.clone()),
        i,
    );
    env.publish(
        &env.settings.topics.instructions,
        &i.beneficiary_ref,
        &e.to_bytes(),
    )
    .await;
}

/// Every status report on the topic so far.
fn statuses(env: &TestEnv) -> Vec<Envelope<StatusReport>> {
    env.read_topic(
        &env.settings.topics.status,
        usize::MAX,
        Duration::from_secs(3),
    )
    .into_iter()
    .map(|(_, b)| serde_json::from_slice(&b).expect("a status report"))
    .collect()
}

async fn every_served_instruction_is_answered_and_none_is_paid_twice(backend: Backend) {
    let env = TestEnv::with(backend).await;
    let behaviour = Behaviour {
        providers: vec!["wallet-a".into()],
        latency_ms: 5,
        retryable_reject_rate: 0.1,
        permanent_reject_rate: 0.05,
        duplicate_rate: 0.2,
        late_pending_rate: 0.0,
        timeout_rate: 0.0,
        seed: 7,
        keys: Default::default(),
    };
    let app = sumud_provider_sim::App::build(env.settings.clone(), behaviour.clone())
        .await
        .expect("the simulator builds");
    let sim = Running::spawn(|t| app.run(t));

    let served: Vec<Instruction> = (0..200).map(|n| instruction(n, "wallet-a")).collect();
    let foreign: Vec<Instruction> = (200..220).map(|n| instruction(n, "bank-b")).collect();
    for i in served.iter().chain(&foreign) {
        publish(&env, i).await;
    }
    // Redeliveries of the same attempts, and one attempt again with other content.
    for i in &served[..50] {
        publish(&env, i).await;
    }
    let mut altered = served[60].clone();
    altered.amount += 1;
    publish(&env, &altered).await;

    wait_for("every served attempt in the ledger", DEADLINE, || async {
        let (seen, _, _) = sumud_provider_sim::ledger_audit(&env.store).await.unwrap();
        (seen == 200).then_some(())
    })
    .await;
    let finals = |reports: &[Envelope<StatusReport>]| -> BTreeMap<String, Envelope<StatusReport>> {
        reports
            .iter()
            .filter(|e| {
                matches!(
                    e.data.status,
                    PaymentStatus::Succeeded | PaymentStatus::Rejected
                )
            })
            .map(|e| (e.data.reference_id.clone(), e.clone()))
            .collect()
    };
    let started = Instant::now();
    let reports = loop {
        let reports = statuses(&env);
        if finals(&reports).len() >= served.len() || started.elapsed() > DEADLINE {
            break reports;
        }
    };

    // Each served attempt has exactly one final answer, as its behaviour
    // decides; the other provider's instructions are not answered at all.
    let answered = finals(&reports);
    assert_eq!(answered.len(), served.len());
    for i in &served {
        let e = &answered[&i.reference_id];
        match behaviour.outcome(&i.reference_id, i.attempt) {
            Outcome::Pay => assert_eq!(e.data.status, PaymentStatus::Succeeded),
            Outcome::Reject(reason) => {
                assert_eq!(e.data.status, PaymentStatus::Rejected);
                assert_eq!(e.data.reason_code, Some(reason));
            }
            Outcome::Silence => panic!("no timeouts were configured"),
            Outcome::AlreadyPaid => panic!("the behaviour alone never says already paid"),
        }
    }
    let foreign_ids: BTreeSet<&str> = foreign.iter().map(|i| i.reference_id.as_str()).collect();
    assert!(reports
        .iter()
        .all(|e| !foreign_ids.contains(e.data.reference_id.as_str())));
    // Answers to redeliveries and duplicates repeat the same event ids: one
    // id per (attempt, status), whatever was delivered twice.
    let distinct: BTreeSet<(&str, &str)> = reports
        .iter()
        .map(|e| (e.id.as_str(), e.data.status.as_str()))
        .collect();
    let per_id: BTreeSet<&str> = reports.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(distinct.len(), per_id.len());
    assert!(
        reports.len() > per_id.len(),
        "some answers were delivered twice"
    );

    let (seen, paid_twice, conflicts) = sumud_provider_sim::ledger_audit(&env.store).await.unwrap();
    assert_eq!((seen, paid_twice, conflicts), (200, 0, 1));
    assert_eq!(
        env.count("SELECT count(*) FROM provider_sim.ledger WHERE times_seen = 2")
            .await,
        51,
        "the 50 redeliveries and the altered attempt"
    );
    sim.stop().await;
}

/// A reference is the provider's unit of work: a second attempt of a
/// reference already paid is answered with that payment (same provider
/// reference) and not paid again.
async fn a_second_attempt_of_a_paid_reference_is_answered_with_that_payment_not_paid_again(
    backend: Backend,
) {
    let env = TestEnv::with(backend).await;
    let behaviour = Behaviour {
        providers: vec!["wallet-a".into()],
        latency_ms: 5,
        ..Behaviour::honest()
    };
    let app = sumud_provider_sim::App::build(env.settings.clone(), behaviour)
        .await
        .expect("the simulator builds");
    let sim = Running::spawn(|t| app.run(t));
    let first = instruction(1, "wallet-a");
    publish(&env, &first).await;
    wait_for("attempt 1 paid", DEADLINE, || async {
        let (_, paid, _) = paid_rows(&env).await;
        (paid == 1).then_some(())
    })
    .await;

    // Act: the same reference again as attempt 2 (our retry after a
    // report we took for a timeout).
    let second = Instruction {
        attempt: 2,
        ..first.clone()
    };
    publish(&env, &second).await;
    wait_for("attempt 2 answered", DEADLINE, || async {
        let (seen, _, _) = paid_rows(&env).await;
        (seen == 2).then_some(())
    })
    .await;

    // Assert: one payment in the ledger; both answers name it.
    assert_eq!(paid_rows(&env).await, (2, 1, 0));
    let refs: BTreeSet<(u32, Option<String>)> = wait_for("two successes", DEADLINE, || async {
        let refs: BTreeSet<(u32, Option<String>)> = statuses(&env)
            .into_iter()
            .filter(|e| e.data.status == PaymentStatus::Succeeded)
            .map(|e| (e.data.attempt, e.data.provider_ref))
            .collect();
        (refs.len() == 2).then_some(refs)
    })
    .await;
    let provider_refs: BTreeSet<Option<String>> = refs.into_iter().map(|(_, r)| r).collect();
    assert_eq!(provider_refs.len(), 1, "{provider_refs:?}");
    sim.stop().await;
}

/// (attempts recorded, attempts paid, references paid twice) in the ledger.
async fn paid_rows(env: &TestEnv) -> (i64, i64, i64) {
    let (seen, twice, _) = sumud_provider_sim::ledger_audit(&env.store).await.unwrap();
    let paid = env
        .count("SELECT count(*) FROM provider_sim.ledger WHERE paid")
        .await;
    (seen, paid, twice)
}

on_both_backends!(
    every_served_instruction_is_answered_and_none_is_paid_twice,
    a_second_attempt_of_a_paid_reference_is_answered_with_that_payment_not_paid_again,
);
