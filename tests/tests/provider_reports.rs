//! Provider status reports from the attacker's and the unlucky provider's
//! side, on the real broker and database (both backends): a report from a
//! provider that does not hold the instruction changes nothing, and an
//! ambiguous timeout that was paid after all is the payment — never paid
//! again — while a second, different payment of one reference is an
//! incident reconcile shows.

use chrono::Utc;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::payment::{PaymentStatus, RejectionReason, StatusReport, PAYMENT_STATUS};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

/// A pipeline whose provider simulator serves nobody: the test is the
/// provider. One tranche per household; a retry falls due `retry_secs`
/// after a retryable rejection.
async fn start(backend: Backend, crisis: &str, retry_secs: i64) -> (Pipeline, Held) {
    let silent = Behaviour {
        providers: vec!["no-such-provider".into()],
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        retry_base_secs: retry_secs,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let p = Pipeline::start_with_payments_on(backend, 300, no_four_eyes(), schedule, silent).await;
    let areas = ["JO-AM"];
    let n = expected(&p.households, &areas).len() as i64;
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(&p.alice, &claims(CommandKind::Declare, crisis, Some(one)))
        .await;
    p.wait_count(
        "every instruction created",
        "SELECT count(*) FROM disbursement.instructions",
        n,
    )
    .await;
    let (id, provider): (String, String) = p
        .env
        .rows("SELECT instruction_id, provider FROM disbursement.instructions ORDER BY instruction_id LIMIT 1")
        .await
        .remove(0);
    (p, Held { id, provider })
}

/// The instruction the test reports on, and the provider that holds it.
struct Held {
    id: String,
    provider: String,
}

/// Publishes a report on the status topic, keyed by the instruction.
async fn send(
    p: &Pipeline,
    held: &Held,
    provider: &str,
    attempt: u32,
    status: PaymentStatus,
    provider_ref: Option<&str>,
) {
    let mut report = StatusReport {
        reference_id: held.id.clone(),
        attempt,
        provider: provider.to_owned(),
        status,
        reason_code: (status == PaymentStatus::Rejected).then_some(RejectionReason::Timeout),
        provider_ref: provider_ref.map(str::to_owned),
        timestamp: Utc::now(),
        signature: None,
    };
    // Signed as the named provider would, when the test holds its key.
    if let Some(key) = p.provider_keys.get(provider) {
        report.signature = Some(sumud_shared::jws::sign(&report, key).unwrap());
    }
    publish(p, held, report).await;
}

/// Publishes a report as given (forged ones too).
async fn publish(p: &Pipeline, held: &Held, report: StatusReport) {
    let e = Envelope::new(
        &format!("urn:provider:{}", report.provider),
        PAYMENT_STATUS,
        None,
        report,
    );
    p.env
        .publish(&p.env.settings.topics.status, &held.id, &e.to_bytes())
        .await;
}

/// (status, attempt) of the held instruction.
async fn standing(p: &Pipeline, held: &Held) -> (String, i32) {
    p.env
        .rows(&format!(
            "SELECT status, attempt FROM disbursement.instructions WHERE instruction_id = '{}'",
            held.id
        ))
        .await
        .remove(0)
}

/// Waits until `n` reports on the held instruction are recorded.
async fn recorded(p: &Pipeline, held: &Held, n: i64) {
    p.wait_count(
        "the reports recorded",
        &format!(
            "SELECT count(*) FROM disbursement.status_log WHERE instruction_id = '{}'",
            held.id
        ),
        n,
    )
    .await;
}

async fn a_report_from_a_provider_that_does_not_hold_the_instruction_changes_nothing(
    backend: Backend,
) {
    let (p, held) = start(backend, "PR-WRONG", 3600).await;
    let (_, reserved) = p.assert_budget_holds("PR-WRONG").await;

    // Act: another provider says it paid, then says it was reversed.
    send(
        &p,
        &held,
        "rogue-pay",
        1,
        PaymentStatus::Succeeded,
        Some("R-1"),
    )
    .await;
    send(&p, &held, "rogue-pay", 1, PaymentStatus::Reversed, None).await;

    // Assert: both dead-lettered as wrong_provider; nothing moved.
    let letters = p.dead_letters(2);
    let reasons: Vec<Reason> = letters.iter().map(|l| l.reason).collect();
    assert_eq!(reasons, vec![Reason::WrongProvider; 2], "{letters:#?}");
    assert_eq!(standing(&p, &held).await, ("instructed".into(), 1));
    assert_eq!(p.assert_budget_holds("PR-WRONG").await.1, reserved);

    // The holder's own report still pays it.
    send(
        &p,
        &held,
        &held.provider.clone(),
        1,
        PaymentStatus::Succeeded,
        Some("P-1"),
    )
    .await;
    recorded(&p, &held, 1).await;
    assert_eq!(standing(&p, &held).await, ("succeeded".into(), 1));
    p.stop().await;
}

/// The holder's name on a report is not proof: without its signature, with
/// another key, altered after signing, or from a provider no longer
/// registered, a report is dead-lettered and changes nothing.
async fn forged_reports_in_the_holders_name_are_dead_lettered_and_change_nothing(backend: Backend) {
    let (p, held) = start(backend, "PR-FORGED", 3600).await;
    let (_, reserved) = p.assert_budget_holds("PR-FORGED").await;
    let genuine = |status| StatusReport {
        reference_id: held.id.clone(),
        attempt: 1,
        provider: held.provider.clone(),
        status,
        reason_code: None,
        provider_ref: Some("F-1".into()),
        timestamp: Utc::now(),
        signature: None,
    };

    // Act: unsigned; signed by a key of the attacker's naming the holder's
    // kid; signed by the holder, then altered; all claiming success or a
    // reversal.
    publish(&p, &held, genuine(PaymentStatus::Succeeded)).await;
    let mut own = sumud_shared::jws::Jwk::generate(&p.provider_keys[&held.provider].kid);
    own.kid = p.provider_keys[&held.provider].kid.clone();
    let mut forged = genuine(PaymentStatus::Reversed);
    forged.signature = Some(sumud_shared::jws::sign(&forged, &own).unwrap());
    publish(&p, &held, forged).await;
    let mut altered = genuine(PaymentStatus::Received);
    altered.signature =
        Some(sumud_shared::jws::sign(&altered, &p.provider_keys[&held.provider]).unwrap());
    altered.status = PaymentStatus::Succeeded;
    publish(&p, &held, altered).await;

    // Assert: three dead letters with their codes; nothing moved.
    let letters = p.dead_letters(3);
    let reasons: Vec<Reason> = letters.iter().map(|l| l.reason).collect();
    assert_eq!(
        reasons,
        vec![Reason::Unsigned, Reason::BadSignature, Reason::BadSignature],
        "{letters:#?}"
    );
    assert_eq!(standing(&p, &held).await, ("instructed".into(), 1));
    assert_eq!(p.assert_budget_holds("PR-FORGED").await.1, reserved);

    // A provider no longer registered is not heard at all, even signed.
    let deleted = format!(
        "DELETE FROM disbursement.providers WHERE provider_id = '{}'",
        held.provider
    );
    sumud_shared::on_store!(&p.env.store, pool => sqlx::query(&deleted).execute(pool).await.map(drop))
        .unwrap();
    send(
        &p,
        &held,
        &held.provider.clone(),
        1,
        PaymentStatus::Succeeded,
        Some("P-1"),
    )
    .await;
    let letters = p.dead_letters(4);
    assert_eq!(letters[3].reason, Reason::UnknownProvider, "{letters:#?}");
    assert_eq!(standing(&p, &held).await, ("instructed".into(), 1));
    p.stop().await;
}

async fn a_success_after_a_timeout_is_the_payment_and_cancels_the_retry(backend: Backend) {
    // Arrange: the retry falls due an hour after the timeout, so it is
    // still scheduled when the success arrives.
    let (p, held) = start(backend, "PR-TIMEOUT", 3600).await;
    let provider = held.provider.clone();

    // Act: received, timeout, then the success of that same attempt.
    send(&p, &held, &provider, 1, PaymentStatus::Received, None).await;
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    recorded(&p, &held, 2).await;
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));
    send(
        &p,
        &held,
        &provider,
        1,
        PaymentStatus::Succeeded,
        Some("P-1"),
    )
    .await;
    recorded(&p, &held, 3).await;

    // Assert: paid once, on attempt 1, and no retry pending.
    assert_eq!(standing(&p, &held).await, ("succeeded".into(), 1));
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM disbursement.instructions WHERE instruction_id = '{}' \
             AND next_attempt_at IS NOT NULL",
            held.id
        ))
        .await,
        0
    );
    p.assert_budget_holds("PR-TIMEOUT").await;
    p.stop().await;
}

async fn an_earlier_attempts_success_after_the_retry_went_out_is_paid_once_and_a_second_payment_is_an_incident(
    backend: Backend,
) {
    // Arrange: retries fall due at once; attempt 1 times out and attempt 2
    // goes out.
    let (p, held) = start(backend, "PR-LATE", 0).await;
    let provider = held.provider.clone();
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    wait_for("attempt 2 issued", DEADLINE, || async {
        (standing(&p, &held).await == ("instructed".into(), 2)).then_some(())
    })
    .await;

    // Act: attempt 1's success arrives after all; the provider answers
    // attempt 2 with the same payment (as the contract asks).
    send(
        &p,
        &held,
        &provider,
        1,
        PaymentStatus::Succeeded,
        Some("P-1"),
    )
    .await;
    recorded(&p, &held, 2).await;
    assert_eq!(standing(&p, &held).await, ("succeeded".into(), 2));
    send(
        &p,
        &held,
        &provider,
        2,
        PaymentStatus::Succeeded,
        Some("P-1"),
    )
    .await;
    recorded(&p, &held, 3).await;
    let problems = sumud::payments_cmd::print_table(&p.env.store, "PR-LATE")
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    // Act: a provider that paid attempt 2 as a payment of its own.
    send(
        &p,
        &held,
        &provider,
        2,
        PaymentStatus::Succeeded,
        Some("P-2"),
    )
    .await;
    recorded(&p, &held, 4).await;

    // Assert: still one payment on our books, and an incident reconcile
    // names.
    assert_eq!(standing(&p, &held).await, ("succeeded".into(), 2));
    let problems = sumud::payments_cmd::print_table(&p.env.store, "PR-LATE")
        .await
        .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("duplicate_payment: instruction ") && problems[0].contains("P-2"),
        "{problems:?}"
    );
    p.assert_budget_holds("PR-LATE").await;
    p.stop().await;
}

async fn a_scheduled_retry_of_a_closed_crisis_is_never_issued_and_ends_with_its_reason(
    backend: Backend,
) {
    // Arrange: one attempt times out, its retry due in 3 s.
    let (p, held) = start(backend, "PR-CLOSE", 3).await;
    let provider = held.provider.clone();
    let (_, reserved) = p.assert_budget_holds("PR-CLOSE").await;
    let amount: i64 = p
        .count(&format!(
            "SELECT amount_minor FROM disbursement.instructions WHERE instruction_id = '{}'",
            held.id
        ))
        .await;
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    recorded(&p, &held, 1).await;
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));

    // Act: the crisis is closed before the retry falls due.
    p.send(&p.alice, &claims(CommandKind::Close, "PR-CLOSE", None))
        .await;

    // Assert: the retry ends failed with its reason, never as attempt 2,
    // and its money is back in the budget.
    let sql = format!(
        "SELECT count(*) FROM disbursement.instructions WHERE instruction_id = '{}' \
         AND status = 'failed' AND reason_code = 'crisis_closed'",
        held.id
    );
    p.wait_count("the retry ended as crisis_closed", &sql, 1)
        .await;
    // Past the retry's due time, it stays as it ended.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(standing(&p, &held).await, ("failed".into(), 1));
    let (_, after) = p.assert_budget_holds("PR-CLOSE").await;
    assert_eq!(after, reserved - amount);
    p.stop().await;
}

on_both_backends!(
    forged_reports_in_the_holders_name_are_dead_lettered_and_change_nothing,
    a_scheduled_retry_of_a_closed_crisis_is_never_issued_and_ends_with_its_reason,
    a_report_from_a_provider_that_does_not_hold_the_instruction_changes_nothing,
    a_success_after_a_timeout_is_the_payment_and_cancels_the_retry,
    an_earlier_attempts_success_after_the_retry_went_out_is_paid_once_and_a_second_payment_is_an_incident,
);
