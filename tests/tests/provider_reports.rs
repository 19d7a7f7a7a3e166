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
use sumud_shared::events::household::{HouseholdRemoved, HOUSEHOLD_REMOVED};
use sumud_shared::events::payment::{PaymentStatus, RejectionReason, StatusReport, PAYMENT_STATUS};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

/// A pipeline whose provider simulator serves nobody: the test is the
/// provider. One tranche per household; a retry falls due `retry_secs`
/// after a retryable rejection, a timeout's inquiry as soon.
async fn start(backend: Backend, crisis: &str, retry_secs: i64) -> (Pipeline, Held) {
    start_with(
        backend,
        crisis,
        DisbursementConfig {
            retry_base_secs: retry_secs,
            inquiry_secs: retry_secs,
            ..DisbursementConfig::default()
        },
    )
    .await
}

/// [`start`] with the retry settings of `retries`.
async fn start_with(
    backend: Backend,
    crisis: &str,
    retries: DisbursementConfig,
) -> (Pipeline, Held) {
    let silent = Behaviour {
        providers: vec!["no-such-provider".into()],
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        tick_ms: 100,
        ..retries
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

/// Publishes a report on the status topic, keyed by the instruction; a
/// rejection is a timeout (its outcome unknown).
async fn send(
    p: &Pipeline,
    held: &Held,
    provider: &str,
    attempt: u32,
    status: PaymentStatus,
    provider_ref: Option<&str>,
) {
    let reason = (status == PaymentStatus::Rejected).then_some(RejectionReason::Timeout);
    send_with(p, held, provider, attempt, status, reason, provider_ref).await;
}

/// [`send`] with the rejection code given.
async fn send_with(
    p: &Pipeline,
    held: &Held,
    provider: &str,
    attempt: u32,
    status: PaymentStatus,
    reason_code: Option<RejectionReason>,
    provider_ref: Option<&str>,
) {
    let mut report = StatusReport {
        reference_id: held.id.clone(),
        attempt,
        provider: provider.to_owned(),
        status,
        reason_code,
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
/// another key, altered after signing, keyed by another payment, or from a
/// provider no longer registered, a report is dead-lettered and changes
/// nothing.
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

    // The holder's genuine, signed report under another Kafka key (it would
    // land on another partition, out of order with the payment's others).
    let mut misfiled = genuine(PaymentStatus::Succeeded);
    misfiled.signature =
        Some(sumud_shared::jws::sign(&misfiled, &p.provider_keys[&held.provider]).unwrap());
    let e = Envelope::new(
        &format!("urn:provider:{}", held.provider),
        PAYMENT_STATUS,
        None,
        misfiled,
    );
    p.env
        .publish(
            &p.env.settings.topics.status,
            "another-reference",
            &e.to_bytes(),
        )
        .await;
    // (Dead letters keep their source's key, so this one may be read
    // before the others: found by reason, not position.)
    let letters = p.dead_letters(4);
    assert!(
        letters.iter().any(|l| l.reason == Reason::KeyMismatch),
        "{letters:#?}"
    );
    assert_eq!(standing(&p, &held).await, ("instructed".into(), 1));

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
    let letters = p.dead_letters(5);
    assert!(
        letters.iter().any(|l| l.reason == Reason::UnknownProvider),
        "{letters:#?}"
    );
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

    // The incident is a recovery task: open until an operator settles it
    // with the provider and resolves it, once.
    let open = sumud_disbursement::db::incidents(&p.env.store, "PR-LATE")
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0].0;
    assert!(problems[0].contains(&format!("--id {id}")), "{problems:?}");
    let resolve = |by: &'static str| {
        sumud_disbursement::db::resolve_incident(
            &p.env.store,
            id,
            by,
            "P-2 recovered from the wallet",
        )
    };
    assert!(resolve("ops-lead").await.unwrap());
    assert!(
        !resolve("someone-else").await.unwrap(),
        "resolved only once"
    );
    let problems = sumud::payments_cmd::print_table(&p.env.store, "PR-LATE")
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    p.stop().await;
}

async fn a_scheduled_retry_of_a_closed_crisis_is_never_issued_and_ends_with_its_reason(
    backend: Backend,
) {
    // Arrange: the provider is unavailable for one attempt (certainly
    // unpaid); its retry falls due in an hour (a retry is ended when its
    // crisis closes, whenever it falls due).
    let (p, held) = start(backend, "PR-CLOSE", 3600).await;
    let provider = held.provider.clone();
    let (_, reserved) = p.assert_budget_holds("PR-CLOSE").await;
    let amount = amount_of(&p, &held).await;
    send_with(
        &p,
        &held,
        &provider,
        1,
        PaymentStatus::Rejected,
        Some(RejectionReason::ProviderUnavailable),
        None,
    )
    .await;
    recorded(&p, &held, 1).await;
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));

    // Act: the crisis is closed before the retry falls due.
    p.send(&p.alice, &claims(CommandKind::Close, "PR-CLOSE", None))
        .await;

    // Assert: the retry ends failed with its reason, never as attempt 2,
    // and its money is back in the budget.
    wait_ended_as(&p, &held, "crisis_closed").await;
    assert_eq!(standing(&p, &held).await, ("failed".into(), 1));
    let (_, after) = p.assert_budget_holds("PR-CLOSE").await;
    assert_eq!(after, reserved - amount);
    p.stop().await;
}

/// Waits until the held instruction ended `failed` with `reason`.
async fn wait_ended_as(p: &Pipeline, held: &Held, reason: &str) {
    p.wait_count(
        &format!("the instruction ended as {reason}"),
        &format!(
            "SELECT count(*) FROM disbursement.instructions WHERE instruction_id = '{}' \
             AND status = 'failed' AND reason_code = '{reason}'",
            held.id
        ),
        1,
    )
    .await;
}

/// The held instruction's amount.
async fn amount_of(p: &Pipeline, held: &Held) -> i64 {
    p.count(&format!(
        "SELECT amount_minor FROM disbursement.instructions WHERE instruction_id = '{}'",
        held.id
    ))
    .await
}

/// Seconds until the held instruction's next attempt, if one is scheduled.
async fn next_attempt_in(p: &Pipeline, held: &Held) -> Option<i64> {
    let at: Vec<(Option<String>,)> = p
        .env
        .rows(&format!(
            "SELECT CAST(next_attempt_at AS text) FROM disbursement.instructions \
             WHERE instruction_id = '{}'",
            held.id
        ))
        .await;
    at[0].0.as_deref().map(|t| {
        let t = chrono::DateTime::parse_from_rfc3339(&t.replace(' ', "T"))
            .or_else(|_| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z"))
            .unwrap_or_else(|e| panic!("next_attempt_at {t}: {e}"));
        (t.with_timezone(&Utc) - Utc::now()).num_seconds()
    })
}

async fn a_timeout_is_asked_again_only_after_the_inquiry_window(backend: Backend) {
    // Arrange: certain rejections would be retried at once; the inquiry
    // window is an hour.
    let (p, held) = start_with(
        backend,
        "PR-INQUIRY",
        DisbursementConfig {
            retry_base_secs: 0,
            inquiry_secs: 3600,
            ..DisbursementConfig::default()
        },
    )
    .await;
    let provider = held.provider.clone();

    // Act: the attempt times out: the provider may have paid it.
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    recorded(&p, &held, 1).await;

    // Assert: the same reference is asked again no sooner than the window
    // (the old rules re-issued it at once, as attempt 2).
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));
    let due = next_attempt_in(&p, &held)
        .await
        .expect("an inquiry scheduled");
    assert!(due > 3500, "asked again in {due} s, before the window");
    p.assert_budget_holds("PR-INQUIRY").await;
    p.stop().await;
}

async fn a_timeout_on_the_last_attempt_keeps_its_money_reserved_until_the_provider_answers(
    backend: Backend,
) {
    // Arrange: one attempt per payment.
    let (p, held) = start_with(
        backend,
        "PR-HOLD",
        DisbursementConfig {
            max_attempts: 1,
            retry_base_secs: 0,
            inquiry_secs: 0,
            ..DisbursementConfig::default()
        },
    )
    .await;
    let provider = held.provider.clone();
    let (_, reserved) = p.assert_budget_holds("PR-HOLD").await;

    // Act: the only attempt times out.
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    recorded(&p, &held, 1).await;

    // Assert: held, not failed; nothing more goes out; the money stays
    // reserved (the old rules failed it and released the money, which the
    // provider may have paid out); reconcile names it.
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));
    assert_eq!(next_attempt_in(&p, &held).await, None);
    assert_eq!(p.assert_budget_holds("PR-HOLD").await.1, reserved);
    let amount = amount_of(&p, &held).await;
    assert_eq!(
        sumud_disbursement::db::held(&p.env.store, "PR-HOLD")
            .await
            .unwrap(),
        vec![(held.id.clone(), 1, provider.clone(), amount)]
    );
    let problems = sumud::payments_cmd::print_table(&p.env.store, "PR-HOLD")
        .await
        .unwrap();
    assert!(
        problems
            .iter()
            .any(|l| l.starts_with("awaiting_provider: ") && l.contains(&held.id)),
        "{problems:?}"
    );

    // Act: the provider answers the inquiry: it did pay.
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

    // Assert: paid once, the money spent as reserved, nothing held.
    assert_eq!(standing(&p, &held).await, ("succeeded".into(), 1));
    assert_eq!(p.assert_budget_holds("PR-HOLD").await.1, reserved);
    assert!(sumud_disbursement::db::held(&p.env.store, "PR-HOLD")
        .await
        .unwrap()
        .is_empty());
    let problems = sumud::payments_cmd::print_table(&p.env.store, "PR-HOLD")
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    p.stop().await;
}

async fn a_timed_out_payment_of_a_closed_crisis_is_held_not_released(backend: Backend) {
    // Arrange: one attempt times out; its inquiry falls due in an hour.
    let (p, held) = start(backend, "PR-CLOSE-T", 3600).await;
    let provider = held.provider.clone();
    let (_, reserved) = p.assert_budget_holds("PR-CLOSE-T").await;
    send(&p, &held, &provider, 1, PaymentStatus::Rejected, None).await;
    recorded(&p, &held, 1).await;

    // Act: the crisis is closed before the inquiry falls due.
    p.send(&p.alice, &claims(CommandKind::Close, "PR-CLOSE-T", None))
        .await;

    // Assert: never issued again, and held with its money reserved, since
    // the provider may have paid it.
    p.wait_count(
        "the inquiry held",
        &format!(
            "SELECT count(*) FROM disbursement.instructions WHERE instruction_id = '{}' \
             AND status = 'retry_scheduled' AND next_attempt_at IS NULL",
            held.id
        ),
        1,
    )
    .await;
    assert_eq!(standing(&p, &held).await, ("retry_scheduled".into(), 1));
    assert_eq!(p.assert_budget_holds("PR-CLOSE-T").await.1, reserved);

    // Act: the provider answers: it did not pay (its system was down).
    send_with(
        &p,
        &held,
        &provider,
        1,
        PaymentStatus::Rejected,
        Some(RejectionReason::ProviderUnavailable),
        None,
    )
    .await;

    // Assert: now certainly unpaid, it ends crisis_closed and its money
    // goes back.
    wait_ended_as(&p, &held, "crisis_closed").await;
    let amount = amount_of(&p, &held).await;
    assert_eq!(
        p.assert_budget_holds("PR-CLOSE-T").await.1,
        reserved - amount
    );
    p.stop().await;
}

async fn a_scheduled_retry_for_a_household_removed_from_the_registry_is_never_issued(
    backend: Backend,
) {
    // Arrange: the provider is unavailable for one attempt (certainly
    // unpaid); its retry falls due in an hour.
    let (p, held) = start(backend, "PR-REMOVED", 3600).await;
    let provider = held.provider.clone();
    let (_, reserved) = p.assert_budget_holds("PR-REMOVED").await;
    let amount = amount_of(&p, &held).await;
    let household: Vec<(String, i64)> = p
        .env
        .rows(&format!(
            "SELECT i.household_id, CAST(h.version AS bigint) FROM disbursement.instructions i \
             JOIN registry.households h ON h.household_id = i.household_id \
             WHERE i.instruction_id = '{}'",
            held.id
        ))
        .await;
    let (household, version) = household[0].clone();
    send_with(
        &p,
        &held,
        &provider,
        1,
        PaymentStatus::Rejected,
        Some(RejectionReason::ProviderUnavailable),
        None,
    )
    .await;
    recorded(&p, &held, 1).await;

    // Act: the registry removes the household (a duplicate record, say).
    let removed = HouseholdRemoved {
        household_id: household.clone(),
        version: version + 1,
        reason: Some("duplicate".into()),
    };
    let e = Envelope::new(
        "urn:test",
        HOUSEHOLD_REMOVED,
        Some(household.clone()),
        removed,
    );
    p.env
        .publish(&p.env.settings.topics.registry, &household, &e.to_bytes())
        .await;

    // Assert: the retry ends failed as entitlement_cancelled, never as
    // attempt 2, and its money is back in the budget.
    wait_ended_as(&p, &held, "entitlement_cancelled").await;
    assert_eq!(standing(&p, &held).await, ("failed".into(), 1));
    assert_eq!(
        p.assert_budget_holds("PR-REMOVED").await.1,
        reserved - amount
    );
    p.stop().await;
}

on_both_backends!(
    a_scheduled_retry_for_a_household_removed_from_the_registry_is_never_issued,
    a_timeout_is_asked_again_only_after_the_inquiry_window,
    a_timeout_on_the_last_attempt_keeps_its_money_reserved_until_the_provider_answers,
    a_timed_out_payment_of_a_closed_crisis_is_held_not_released,
    forged_reports_in_the_holders_name_are_dead_lettered_and_change_nothing,
    a_scheduled_retry_of_a_closed_crisis_is_never_issued_and_ends_with_its_reason,
    a_report_from_a_provider_that_does_not_hold_the_instruction_changes_nothing,
    a_success_after_a_timeout_is_the_payment_and_cancels_the_retry,
    an_earlier_attempts_success_after_the_retry_went_out_is_paid_once_and_a_second_payment_is_an_incident,
);
