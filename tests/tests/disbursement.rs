//! The disbursement service's own statements and outbox relay on the real
//! database and broker, driven directly (no consumer, no scheduler): the
//! budget after a cut.

use chrono::{DateTime, Utc};
use sumud_disbursement::config::DisbursementConfig;
use sumud_disbursement::publisher::{Committed, Handoff};
use sumud_shared::events::crisis::{CrisisEvent, CrisisState};
use sumud_tests::pipeline::definition;
use sumud_tests::{on_both_backends, Backend, TestEnv};
use tokio::sync::mpsc;

const CRISIS: &str = "DISB-1";

/// A fresh world on `backend` with the registry's and the service's tables.
async fn world(backend: Backend) -> TestEnv {
    let env = TestEnv::with(backend).await;
    env.store
        .migrate(&sumud_registry::db::MIGRATIONS)
        .await
        .unwrap();
    env.store
        .migrate(&sumud_disbursement::db::MIGRATIONS)
        .await
        .unwrap();
    env
}

/// Registers households `HH-<first>` to `HH-<last>`, each entitled in
/// [`CRISIS`] to one tranche of 100 (minor units).
async fn entitle(env: &TestEnv, first: u32, last: u32) {
    let (households, entitlements): (Vec<String>, Vec<String>) = (first..=last)
        .map(|i| {
            (
                format!(
                    "('HH-{i}', 1, 'JO-AM-01', 'Amman', 'Amman', 4, 20, 'e_wallet', 'zain-cash', \
                      'tok-{i}', 'ev-{i}', 0, {i})"
                ),
                format!(
                    "('{CRISIS}/HH-{i}/vertical', '{CRISIS}', 'HH-{i}', 'vertical', 'entitled', 100, \
                      'JOD', 1, 30, 1, {i})"
                ),
            )
        })
        .unzip();
    let sql = format!(
        "INSERT INTO registry.households (household_id, version, area_code, governorate, district, \
             members, welfare_score, payment_channel, payment_provider, account_token, event_id, \
             src_partition, src_offset) VALUES {}; \
         INSERT INTO disbursement.entitlements (entitlement_id, crisis_id, household_id, kind, status, \
             amount_minor, currency, tranches, interval_days, crisis_revision, change_seq) VALUES {};",
        households.join(", "),
        entitlements.join(", ")
    );
    sumud_shared::on_store!(&env.store, pool => sqlx::raw_sql(&sql).execute(pool).await.map(drop))
        .unwrap();
}

/// Stores [`CRISIS`] as active at `revision` with `budget` (JOD, major
/// units) through the service's own statement; returns the cap it kept.
async fn save_crisis(
    env: &TestEnv,
    revision: i32,
    budget: &str,
    activated: DateTime<Utc>,
) -> Option<i64> {
    let event = CrisisEvent {
        crisis_id: CRISIS.into(),
        state: CrisisState::Active,
        revision,
        definition: definition(&["JO-AM"], budget),
        pending: None,
        command_id: format!("cmd-{revision}"),
        signed_by: "alice".into(),
        trigger: None,
    };
    let mut tx = env.store.begin().await.unwrap();
    let kept = sumud_disbursement::db::save_crisis(&mut tx, &event, activated)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    kept
}

/// Returns `amount` to the budget, as a failed or reversed payment does.
async fn release(env: &TestEnv, amount: i64) {
    let mut tx = env.store.begin().await.unwrap();
    sumud_disbursement::db::release(&mut tx, CRISIS, amount)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// One scheduler pass over [`CRISIS`]: how many instructions it created.
async fn pass(env: &TestEnv, handoff: &Handoff) -> u64 {
    sumud_disbursement::create::create_due(
        &env.store,
        CRISIS,
        &DisbursementConfig::default(),
        handoff,
    )
    .await
    .unwrap()
}

/// (cap, reserved) of [`CRISIS`].
async fn cap(env: &TestEnv) -> (i64, i64) {
    let (budget, reserved, _) = sumud_disbursement::db::budget(&env.store, CRISIS)
        .await
        .unwrap()
        .expect("the crisis is projected");
    (budget, reserved)
}

/// Empties the handoff, as a relay would take what passes hand it.
fn drain(handed: &mut mpsc::Receiver<Committed>) {
    while handed.try_recv().is_ok() {}
}

/// A cut below what is already reserved keeps what was instructed; money
/// that failed or reversed payments release afterwards is instructed again
/// only within the budget the operator cut to, not up to the cap the cut
/// left standing.
async fn money_released_after_a_budget_cut_is_instructed_again_only_within_the_cut(
    backend: Backend,
) {
    let env = world(backend).await;
    entitle(&env, 1, 4).await;
    let activated = Utc::now() - chrono::Duration::minutes(1);
    let (handoff, mut handed) = Handoff::new();

    // A budget of 300 instructs three of the four.
    assert_eq!(save_crisis(&env, 1, "0.300", activated).await, Some(300));
    assert_eq!(pass(&env, &handoff).await, 3);
    drain(&mut handed);
    assert_eq!(cap(&env).await, (300, 300));

    // Cut to 150: the 300 instructed stay reserved, and are the cap.
    assert_eq!(save_crisis(&env, 2, "0.150", activated).await, Some(300));
    assert_eq!(cap(&env).await, (300, 300));

    // One payment fails: its 100 comes back, and the cap comes down with it.
    release(&env, 100).await;
    assert_eq!(cap(&env).await, (200, 200));
    assert_eq!(
        pass(&env, &handoff).await,
        0,
        "nothing instructed above the cut"
    );

    // A second fails: the cap is back at the cut budget, 50 of it free.
    release(&env, 100).await;
    assert_eq!(cap(&env).await, (150, 100));
    assert_eq!(pass(&env, &handoff).await, 0, "100 does not fit in 50");

    // A third: now the fourth household fits inside the cut budget.
    release(&env, 100).await;
    assert_eq!(cap(&env).await, (150, 0));
    assert_eq!(pass(&env, &handoff).await, 1);
    assert_eq!(cap(&env).await, (150, 100));
    assert_eq!(
        env.count("SELECT count(*) FROM disbursement.instructions")
            .await,
        4
    );
}

on_both_backends!(money_released_after_a_budget_cut_is_instructed_again_only_within_the_cut,);
