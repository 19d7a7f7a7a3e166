//! Disbursement, provider status and reconciliation on the real broker and
//! database: registry → control → eligibility → disbursement → provider.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::CrisisDefinition;
use sumud_shared::events::payment::{PaymentStatus, StatusReport, PAYMENT_STATUS};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend, Stage};

/// Tranches every 30 "days" of 0.05 s: three tranches within about 3 s.
fn fast_schedule() -> DisbursementConfig {
    DisbursementConfig {
        day_seconds: 0.05,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    }
}

/// The pipeline with payments on `backend`: the fast schedule and an
/// honest provider.
async fn start(backend: Backend, households: u64) -> Pipeline {
    Pipeline::start_with_payments_on(
        backend,
        households,
        no_four_eyes(),
        fast_schedule(),
        Behaviour::honest(),
    )
    .await
}

async fn ledger(p: &Pipeline) -> (i64, i64, i64) {
    sumud_provider_sim::ledger_audit(&p.env.store)
        .await
        .unwrap()
}

async fn snapshot(p: &Pipeline) -> Vec<(String, i32, String, i64)> {
    p.env
        .rows("SELECT instruction_id, attempt, status, amount_minor FROM disbursement.instructions ORDER BY instruction_id")
        .await
}

async fn statuses(p: &Pipeline) -> Vec<(String, i64)> {
    p.env
        .rows("SELECT status, count(*) FROM disbursement.instructions GROUP BY status ORDER BY status")
        .await
}

async fn a_crisis_flows_to_succeeded_end_to_end_tranche_by_tranche(backend: Backend) {
    let p = start(backend, 3000).await;
    let areas = ["JO-MN", "JO-KA", "JO-AQ"];
    let want = expected(&p.households, &areas);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PAY-1",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    let total = (want.len() * 3) as i64;
    p.wait_count(
        "every tranche paid",
        "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        total,
    )
    .await;

    // Exactly one instruction per entitled household per tranche, with the decided amount.
    let per_tranche: Vec<(i32, i64, i64)> = p
        .env
        .rows("SELECT tranche, count(*), CAST(sum(amount_minor) AS bigint) FROM disbursement.instructions GROUP BY tranche ORDER BY tranche")
        .await;
    let amount: i64 = want.values().map(|(_, a)| a).sum();
    assert_eq!(
        per_tranche,
        vec![
            (1, want.len() as i64, amount),
            (2, want.len() as i64, amount),
            (3, want.len() as i64, amount)
        ]
    );
    // Tranches are spaced by the schedule.
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = p
        .env
        .rows("SELECT min(scheduled_at), max(scheduled_at) FROM disbursement.instructions")
        .await[0];
    let spread = (last - first).num_microseconds().unwrap() as f64 / 1e6;
    assert!(
        (spread - 3.0).abs() < 0.01,
        "60 days at 0.05 s per day: {spread}"
    );
    // Ids are the Rust rule's; pseudonyms are HMAC-SHA-256 of the household
    // under the secret, computed here with the MAC alone.
    let rows: Vec<(String, String, String, i32, String)> = p
        .env
        .rows("SELECT instruction_id, household_id, kind, tranche, beneficiary_ref FROM disbursement.instructions LIMIT 50")
        .await;
    let secret = fast_schedule().pseudonym_secret;
    for (id, household, kind, tranche, ben) in rows {
        assert_eq!(
            id,
            sumud_disbursement::instruction::instruction_id(
                "PAY-1",
                &household,
                &kind,
                tranche as u32
            )
        );
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(household.as_bytes());
        let hex: String = mac.finalize().into_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ben, format!("ben-{hex}"));
    }
    // The provider was asked once per instruction and paid each once.
    assert_eq!(ledger(&p).await, (total, 0, 0));
    let lines = sumud_disbursement::db::reconcile(&p.env.store, "PAY-1")
        .await
        .unwrap();
    assert_eq!(lines.iter().map(|l| l.paid).sum::<i64>(), total);
    assert_eq!(lines.iter().map(|l| l.paid_minor).sum::<i64>(), amount * 3);
    assert_eq!(lines.iter().map(|l| l.outstanding).sum::<i64>(), 0);
    p.assert_budget_holds("PAY-1").await;
    // Instructions carry no personal data.
    let published = p.env.read_topic(
        &p.env.settings.topics.instructions,
        total as usize,
        DEADLINE,
    );
    let text = String::from_utf8_lossy(&published[0].1).into_owned();
    assert!(
        !text.contains("Synthetic Person") && !text.contains("HH-"),
        "{text}"
    );
    p.stop().await;
}

async fn retryable_rejections_are_retried_and_permanent_or_exhausted_ones_raise_field_verification(
    backend: Backend,
) {
    let provider = Behaviour {
        retryable_reject_rate: 0.3,
        permanent_reject_rate: 0.05,
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        max_attempts: 4,
        ..fast_schedule()
    };
    let p =
        Pipeline::start_with_payments_on(backend, 2000, no_four_eyes(), schedule, provider).await;
    let areas = ["JO-IR"];
    let want = expected(&p.households, &areas);
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(&p.alice, &claims(CommandKind::Declare, "PAY-2", Some(one)))
        .await;
    let n = want.len() as i64;
    p.wait_count(
        "every instruction final",
        "SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')",
        n,
    )
    .await;

    let retried = p
        .count("SELECT count(*) FROM disbursement.instructions WHERE attempt > 1")
        .await;
    assert!(retried > 0, "some instructions needed a second attempt");
    let failed = p
        .count("SELECT count(*) FROM disbursement.instructions WHERE status = 'failed'")
        .await;
    let permanent = p.count("SELECT count(*) FROM disbursement.instructions WHERE status = 'failed' AND reason_code = 'account_closed'").await;
    assert!(permanent > 0);
    // Exhausted retries fail too; nothing else fails, and each failure
    // asks for a field visit: permanent or out of retries, only someone
    // on the ground can get the money to the household.
    let exhausted = p.count("SELECT count(*) FROM disbursement.instructions WHERE status = 'failed' AND reason_code = 'provider_unavailable' AND attempt = 4").await;
    assert_eq!(failed, permanent + exhausted);
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.verification_tasks")
            .await,
        permanent + exhausted
    );
    let (attempts, paid_twice, conflicts) = ledger(&p).await;
    assert!(attempts > n);
    assert_eq!((paid_twice, conflicts), (0, 0));
    // Failed amounts went back to the budget.
    p.assert_budget_holds("PAY-2").await;
    p.stop().await;
}

async fn late_and_duplicate_statuses_change_nothing(backend: Backend) {
    let provider = Behaviour {
        duplicate_rate: 1.0,
        late_pending_rate: 1.0,
        ..Behaviour::honest()
    };
    let p =
        Pipeline::start_with_payments_on(backend, 1000, no_four_eyes(), fast_schedule(), provider)
            .await;
    let areas = ["JO-AM"];
    let want = expected(&p.households, &areas);
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(&p.alice, &claims(CommandKind::Declare, "PAY-3", Some(one)))
        .await;
    let n = want.len() as i64;
    p.wait_count(
        "every instruction paid",
        "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        n,
    )
    .await;
    // Every duplicate was recognised by its event id and every late pending ignored.
    wait_for("the late pendings", DEADLINE, || async {
        (p.count(
            "SELECT count(*) FROM disbursement.status_log WHERE status = 'pending' AND NOT applied",
        )
        .await
            == n)
            .then_some(())
    })
    .await;
    assert_eq!(statuses(&p).await, vec![("succeeded".to_string(), n)]);
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.status_log WHERE status = 'succeeded'")
            .await,
        n
    );
    p.stop().await;
}

async fn the_budget_holds_under_concurrent_amendments(backend: Backend) {
    let p = start(backend, 3000).await;
    let areas = ["JO-AM", "JO-AZ"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PAY-4",
            Some(definition(&areas, "40000")),
        ),
    )
    .await;
    // A storm of budget changes, up and down, while instructions are created.
    for (i, budget) in [
        "60000", "20000", "90000", "30000", "45000", "15000", "80000",
    ]
    .iter()
    .enumerate()
    {
        let who = if i % 2 == 0 { &p.alice } else { &p.bob };
        p.send(
            who,
            &claims(
                CommandKind::Amend,
                "PAY-4",
                Some(definition(&areas, budget)),
            ),
        )
        .await;
        let over = p
            .count("SELECT count(*) FROM disbursement.crises WHERE reserved_minor > budget_minor")
            .await
            + p.count(
                "SELECT count(*) FROM eligibility.crises WHERE committed_minor > budget_minor",
            )
            .await;
        assert_eq!(over, 0);
    }
    wait_for("the last revision", DEADLINE, || async {
        (p.count("SELECT CAST(coalesce(max(revision), 0) AS bigint) FROM eligibility.crises WHERE crisis_id = 'PAY-4'").await == 8).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await; // let tranches fall due
    let (budget, reserved, live) = sumud_disbursement::db::budget(&p.env.store, "PAY-4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reserved, live, "reservations match instructions");
    // Money already instructed before a cut cannot be un-instructed; otherwise the cap holds.
    let peak_cap: i64 = 90_000_000;
    assert!(
        reserved <= budget && reserved <= peak_cap,
        "{reserved} <= {budget}"
    );
    assert_eq!(p.count("SELECT count(*) FROM (SELECT 1 FROM disbursement.instructions GROUP BY crisis_id, household_id, kind, tranche HAVING count(*) > 1) d").await, 0);
    p.stop().await;
}

async fn replaying_the_instruction_and_status_topics_twice_changes_nothing(backend: Backend) {
    let p = start(backend, 1500).await;
    let areas = ["JO-MA", "JO-BA"];
    let want = expected(&p.households, &areas);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PAY-5",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    let total = (want.len() * 3) as i64;
    p.wait_count(
        "every tranche paid",
        "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        total,
    )
    .await;
    let before = snapshot(&p).await;
    let t = &p.env.settings.topics;
    let instructions = p.env.read_topic(&t.instructions, total as usize, DEADLINE);
    let statuses_seen = p.env.read_topic(&t.status, (total * 2) as usize, DEADLINE);
    assert_eq!(instructions.len() as i64, total);
    for _ in 0..2 {
        for (k, v) in &instructions {
            p.env.publish(&t.instructions, k, v).await;
        }
        for (k, v) in &statuses_seen {
            p.env.publish(&t.status, k, v).await;
        }
    }
    wait_for("the replays to be consumed", DEADLINE, || async {
        (p.count("SELECT CAST(coalesce(sum(times_seen), 0) AS bigint) FROM provider_sim.ledger")
            .await
            == total * 3)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot(&p).await, before);
    assert_eq!(ledger(&p).await, (total, 0, 0));
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.status_log")
            .await,
        statuses_seen.len() as i64
    );
    p.stop().await;
}

/// Sends `def` as revision 2 of `crisis` and waits until eligibility has
/// applied it: the entitlements after it, and the rise of each entitled
/// household's amount that rose (more than ten of them, or the scenario
/// tests nothing).
async fn amend_to_revision_2(
    p: &Pipeline,
    crisis: &str,
    def: CrisisDefinition,
) -> (
    BTreeMap<String, (String, String, i64)>,
    BTreeMap<String, i64>,
) {
    let before = p.entitlements(crisis).await;
    p.send(&p.alice, &claims(CommandKind::Amend, crisis, Some(def)))
        .await;
    p.wait_count(
        "eligibility at revision 2",
        &format!(
            "SELECT count(*) FROM eligibility.crises WHERE crisis_id = '{crisis}' AND revision = 2"
        ),
        1,
    )
    .await;
    let after = p.entitlements(crisis).await;
    let raised: BTreeMap<String, i64> = after
        .iter()
        .filter(|(h, (_, s, a))| s == "entitled" && *a > before[*h].2)
        .map(|(h, (_, _, a))| (h.clone(), *a - before[h].2))
        .collect();
    assert!(
        raised.len() > 10,
        "the amendment raised amounts ({})",
        raised.len()
    );
    (after, raised)
}

async fn an_amount_raise_pays_the_difference_of_tranches_already_instructed(backend: Backend) {
    // Tranche 2 falls due 30 schedule days later: out of reach of this test.
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        ..fast_schedule()
    };
    let p = Pipeline::start_with_payments_on(
        backend,
        1500,
        no_four_eyes(),
        schedule,
        Behaviour::honest(),
    )
    .await;
    let areas = ["JO-AM"];
    let mut def = definition(&areas, "10000000");
    def.response.overrides.tranches = Some(2);
    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "PAY-UP", Some(def.clone())),
    )
    .await;
    let n = expected(&p.households, &areas).len() as i64;
    p.wait_count(
        "tranche 1 paid",
        "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-UP' AND status = 'succeeded'",
        n,
    )
    .await;
    // The amendment raises the flat amount of the top-up (vertical) kind.
    def.response.overrides.vertical_flat_minor = Some(90_000);
    let (after, raised) = amend_to_revision_2(&p, "PAY-UP", def).await;
    p.wait_count(
        "every top-up paid",
        "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-UP' AND part = 1 AND status = 'succeeded'",
        raised.len() as i64,
    )
    .await;

    // Each household's tranche 1 now sums to its amount at revision 2, in one
    // or two parts; the top-up is exactly the difference.
    let parts: Vec<(String, i32, i64)> = p
        .env
        .rows("SELECT household_id, part, amount_minor FROM disbursement.instructions WHERE crisis_id = 'PAY-UP' AND tranche = 1")
        .await;
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    for (h, part, amount) in &parts {
        assert!(*part <= 1, "one top-up per raise, not more");
        *total.entry(h.clone()).or_default() += amount;
    }
    for (h, (_, status, amount)) in &after {
        if status == "entitled" {
            assert_eq!(total[h], *amount, "household {h}");
        }
    }
    for (h, diff) in &raised {
        let top_up = parts
            .iter()
            .find(|(x, part, _)| x == h && *part == 1)
            .unwrap();
        assert_eq!(top_up.2, *diff);
    }
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-UP' AND tranche = 2").await,
        0
    );
    let (_, paid_twice, conflicts) = ledger(&p).await;
    assert_eq!((paid_twice, conflicts), (0, 0));
    p.assert_budget_holds("PAY-UP").await;
    p.stop().await;
}

async fn a_raise_that_also_cuts_tranches_tops_up_only_the_tranches_still_due(backend: Backend) {
    // All three tranches go out within a second; then an amendment raises
    // the amount and cuts the crisis to two tranches. The third tranche was
    // paid already and cannot be taken back, but it is no longer an
    // entitlement: only tranches 1 and 2 may get a top-up.
    let p = start(backend, 1500).await;
    let areas = ["JO-AM"];
    let mut def = definition(&areas, "10000000");
    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "PAY-CUT", Some(def.clone())),
    )
    .await;
    let n = expected(&p.households, &areas).len() as i64;
    p.wait_count(
        "three tranches paid",
        "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-CUT' AND status = 'succeeded'",
        3 * n,
    )
    .await;
    def.response.overrides.vertical_flat_minor = Some(90_000);
    def.response.overrides.tranches = Some(2);
    let (_, raised) = amend_to_revision_2(&p, "PAY-CUT", def).await;
    let raised = raised.len() as i64;
    p.wait_count(
        "the top-ups of tranches 1 and 2 paid",
        "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-CUT' AND part = 1 AND status = 'succeeded'",
        2 * raised,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'PAY-CUT' AND tranche = 3 AND part > 0")
            .await,
        0,
        "no top-up of a tranche the crisis no longer has"
    );
    p.assert_budget_holds("PAY-CUT").await;
    p.stop().await;
}

/// A status report for `instruction`'s first attempt, as its provider
/// would publish it, signed with its key.
fn report(
    p: &Pipeline,
    instruction: &str,
    provider: &str,
    status: PaymentStatus,
) -> Envelope<StatusReport> {
    let mut report = StatusReport {
        reference_id: instruction.to_string(),
        attempt: 1,
        provider: provider.to_string(),
        status,
        reason_code: None,
        provider_ref: Some(format!("ref-{instruction}")),
        timestamp: Utc::now(),
        signature: None,
    };
    report.signature = Some(sumud_shared::jws::sign(&report, &p.provider_keys[provider]).unwrap());
    Envelope::new("urn:provider", PAYMENT_STATUS, None, report)
}

async fn a_reversal_that_overtakes_its_success_still_releases_the_money(backend: Backend) {
    // The simulator serves no provider of this registry: the test itself
    // reports, out of order, as a provider's status feed may.
    let silent = Behaviour {
        providers: vec!["no-such-provider".into()],
        ..Behaviour::honest()
    };
    let p = Pipeline::start_with_payments_on(backend, 300, no_four_eyes(), fast_schedule(), silent)
        .await;
    let areas = ["JO-AM"];
    let n = expected(&p.households, &areas).len() as i64;
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "PAY-REV", Some(one)),
    )
    .await;
    p.wait_count(
        "every instruction created",
        "SELECT count(*) FROM disbursement.instructions",
        n,
    )
    .await;
    let (_, reserved_before) = p.assert_budget_holds("PAY-REV").await;
    let (id, provider, amount): (String, String, i64) = p
        .env
        .rows("SELECT instruction_id, provider, amount_minor FROM disbursement.instructions ORDER BY instruction_id LIMIT 1")
        .await
        .remove(0);

    // Received, then the reversal, then the success it overtook.
    for status in [
        PaymentStatus::Received,
        PaymentStatus::Reversed,
        PaymentStatus::Succeeded,
    ] {
        let e = report(&p, &id, &provider, status);
        p.env
            .publish(&p.env.settings.topics.status, &id, &e.to_bytes())
            .await;
    }
    p.wait_count(
        "the three reports recorded",
        &format!("SELECT count(*) FROM disbursement.status_log WHERE instruction_id = '{id}'"),
        3,
    )
    .await;

    let status: Vec<(String,)> = p
        .env
        .rows(&format!(
            "SELECT status FROM disbursement.instructions WHERE instruction_id = '{id}'"
        ))
        .await;
    assert_eq!(status, vec![("reversed".to_string(),)]);
    assert_eq!(
        p.count(&format!(
            "SELECT count(*) FROM disbursement.status_log \
             WHERE instruction_id = '{id}' AND status = 'succeeded' AND NOT applied"
        ))
        .await,
        1,
        "the overtaken success is recorded and ignored"
    );
    let (_, reserved_after) = p.assert_budget_holds("PAY-REV").await;
    assert_eq!(
        reserved_after,
        reserved_before - amount,
        "the reversed amount went back to the budget"
    );
    p.stop().await;
}

/// A provider that never answers some attempts: once their deadline has
/// passed, exactly those (still `instructed`) are flagged overdue, the paid
/// ones never are, and the reconciliation counts them.
async fn instructions_with_no_final_status_by_their_deadline_are_flagged_overdue(backend: Backend) {
    let provider = Behaviour {
        timeout_rate: 0.3,
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        deadline_secs: 2,
        ..fast_schedule()
    };
    let p =
        Pipeline::start_with_payments_on(backend, 1000, no_four_eyes(), schedule, provider).await;
    let areas = ["JO-AM"];
    let n = expected(&p.households, &areas).len() as i64;
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(&p.alice, &claims(CommandKind::Declare, "PAY-9", Some(one)))
        .await;
    p.wait_count(
        "every instruction paid or flagged",
        "SELECT count(*) FROM disbursement.instructions \
         WHERE status = 'succeeded' OR (status = 'instructed' AND overdue)",
        n,
    )
    .await;

    let unanswered = p
        .count("SELECT count(*) FROM disbursement.instructions WHERE status = 'instructed'")
        .await;
    assert!(
        unanswered > 0 && unanswered < n,
        "{unanswered} of {n} never answered"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE overdue")
            .await,
        unanswered,
        "exactly the unanswered ones are overdue"
    );
    let lines = sumud_disbursement::db::reconcile(&p.env.store, "PAY-9")
        .await
        .unwrap();
    assert_eq!(lines.iter().map(|l| l.overdue).sum::<i64>(), unanswered);
    assert_eq!(lines.iter().map(|l| l.outstanding).sum::<i64>(), unanswered);
    p.stop().await;
}

/// Disbursement is the only reader of the entitlements topic: it records
/// what it cannot read there, while a bad message on the crisis topic is
/// eligibility's to record, once. Payments go on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entitlement_is_dead_lettered_once_and_payments_go_on() {
    let p = start(Backend::Postgres, 300).await;
    let t = &p.env.settings.topics;
    p.env
        .publish(
            &t.entitlements,
            "PAY-DL/HH-1",
            b"{\"not\": \"a cloudevent\"}",
        )
        .await;
    p.env.publish(&t.crisis, "PAY-DL", b"\x00 not json").await;
    let areas = ["JO-MA"];
    let want = expected(&p.households, &areas);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PAY-DL",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    p.wait_count(
        "every tranche paid",
        "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        (want.len() * 3) as i64,
    )
    .await;

    // Once the readers of both topics have committed to their end, every
    // letter there will be is out: a second letter for either would show.
    let stage = |service, topic| Stage {
        service,
        topic,
        outbox: None,
    };
    p.env
        .settle(
            &[
                stage("eligibility", &t.crisis),
                stage("disbursement", &t.crisis),
                stage("disbursement", &t.entitlements),
            ],
            DEADLINE,
        )
        .await;
    let letters = all_dead_letters(&p.env);
    let mut got: Vec<(String, String, Reason)> = letters
        .iter()
        .map(|l| (l.source_topic.clone(), l.service.clone(), l.reason))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want_letters = vec![
        (
            t.entitlements.clone(),
            "disbursement".to_string(),
            Reason::NotCloudevent,
        ),
        (t.crisis.clone(), "eligibility".to_string(), Reason::NotJson),
    ];
    want_letters.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want_letters);
    p.stop().await;
}

on_both_backends!(
    instructions_with_no_final_status_by_their_deadline_are_flagged_overdue,
    a_reversal_that_overtakes_its_success_still_releases_the_money,
    a_crisis_flows_to_succeeded_end_to_end_tranche_by_tranche,
    retryable_rejections_are_retried_and_permanent_or_exhausted_ones_raise_field_verification,
    late_and_duplicate_statuses_change_nothing,
    the_budget_holds_under_concurrent_amendments,
    replaying_the_instruction_and_status_topics_twice_changes_nothing,
    an_amount_raise_pays_the_difference_of_tranches_already_instructed,
    a_raise_that_also_cuts_tranches_tops_up_only_the_tranches_still_due,
);

/// Statistics taken while a crisis's entitlements were still arriving plan
/// the pass's read as nested loops that rescan one side per row of the
/// other (46–103 s for 8,000 tranches in the crash test): a pass first
/// analyses the tables that changed a lot since. PostgreSQL only; SQLite
/// plans without statistics.
#[tokio::test]
async fn a_pass_first_analyses_entitlements_whose_statistics_are_stale() {
    let env = sumud_tests::TestEnv::new().await;
    sumud_shared::db::migrate(&env.pool, &sumud_registry::db::MIGRATOR)
        .await
        .unwrap();
    sumud_shared::db::migrate(&env.pool, &sumud_disbursement::db::MIGRATOR)
        .await
        .unwrap();
    // Statistics of the empty tables, as autovacuum would take them early.
    sqlx::query("ANALYZE disbursement.entitlements, disbursement.instructions")
        .execute(&env.pool)
        .await
        .unwrap();
    let analysed = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<Utc>>>(
            "SELECT last_analyze FROM pg_stat_user_tables \
             WHERE schemaname = 'disbursement' AND relname = 'entitlements'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap()
    };
    let before = analysed().await.expect("analysed while empty");

    // 2,000 households entitled since, the crisis active.
    let mut conn = env.pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO registry.households (household_id, version, area_code, governorate, district, members, \
             welfare_score, payment_channel, payment_provider, account_token, event_id, src_partition, src_offset) \
         SELECT 'HH-' || g, 1, 'JO-AM-01', 'Amman', 'Amman', 4, 20, 'e_wallet', 'zain-cash', 'tok-' || g, \
                'ev-' || g, 0, g FROM generate_series(1, 2000) g; \
         INSERT INTO disbursement.crises (crisis_id, state, revision, currency, budget_minor, activated_at) \
         VALUES ('STALE-1', 'active', 1, 'JOD', 1000000000, now()); \
         INSERT INTO disbursement.entitlements (entitlement_id, crisis_id, household_id, kind, status, \
             amount_minor, currency, tranches, interval_days, crisis_revision, change_seq) \
         SELECT 'STALE-1/HH-' || g || '/vertical', 'STALE-1', 'HH-' || g, 'vertical', 'entitled', 50000, 'JOD', \
                1, 30, 1, g FROM generate_series(1, 2000) g; \
         SELECT pg_stat_force_next_flush();",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);

    // One chunk: the handoff holds it without a relay.
    let (handoff, _handed) = sumud_disbursement::publisher::Handoff::new();
    let created = sumud_disbursement::create::create_due(
        &env.store,
        "STALE-1",
        &DisbursementConfig::default(),
        &handoff,
    )
    .await
    .unwrap();

    assert_eq!(created, 2000);
    let after = analysed().await.expect("still analysed");
    assert!(
        after > before,
        "entitlements analysed again: {after} > {before}"
    );
}
