//! The disbursement service's own statements and outbox relay on the real
//! database and broker, driven directly (no consumer, no scheduler): the
//! budget after a cut, what a new relay leadership publishes, and that a
//! deposed one publishes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sumud_disbursement::config::DisbursementConfig;
use sumud_disbursement::publisher::{self, Handed, Handoff};
use sumud_shared::db::Store;
use sumud_shared::events::crisis::{CrisisEvent, CrisisState};
use sumud_shared::kafka::producer::EventProducer;
use sumud_tests::pipeline::definition;
use sumud_tests::{on_both_backends, wait_for, Backend, Running, TestEnv};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CRISIS: &str = "DISB-1";
const DEADLINE: Duration = Duration::from_secs(60);

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
    entitle_in(env, CRISIS, first, last, 100).await;
}

/// Registers households `HH-<first>` to `HH-<last>`, each entitled in
/// `crisis` to one tranche of `amount` (minor units).
async fn entitle_in(env: &TestEnv, crisis: &str, first: u32, last: u32, amount: i64) {
    let (households, entitlements): (Vec<String>, Vec<String>) = (first..=last)
        .map(|i| {
            (
                format!(
                    "('HH-{i}', 1, 'JO-AM-01', 'Amman', 'Amman', 4, 20, 'e_wallet', 'zain-cash', \
                      'tok-{i}', 'ev-{i}', 0, {i})"
                ),
                format!(
                    "('{crisis}/HH-{i}/vertical', '{crisis}', 'HH-{i}', 'vertical', 'entitled', {amount}, \
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
    save_crisis_as(env, CRISIS, revision, budget, activated).await
}

/// [`save_crisis`] for any crisis id.
async fn save_crisis_as(
    env: &TestEnv,
    crisis: &str,
    revision: i32,
    budget: &str,
    activated: DateTime<Utc>,
) -> Option<i64> {
    let event = CrisisEvent {
        crisis_id: crisis.into(),
        state: CrisisState::Active,
        revision,
        definition: definition(&["JO-AM"], budget),
        pending: None,
        proposal: None,
        superseded: None,
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
fn drain(handed: &mut mpsc::Receiver<Handed>) {
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

/// A batch handed over before a relay leadership began may have been read
/// back, published and marked by an earlier leadership (its attempts may
/// have moved on since): the new leadership leaves it to the table, which
/// says it is done, and publishes only what is still unpublished.
async fn a_new_leadership_does_not_republish_a_batch_handed_over_before_it(backend: Backend) {
    let env = world(backend).await;
    entitle(&env, 1, 3).await;
    save_crisis(&env, 1, "1.000", Utc::now() - chrono::Duration::minutes(1)).await;
    let (handoff, handed) = Handoff::new();
    // Committed and handed over while no relay leads ...
    assert_eq!(pass(&env, &handoff).await, 3);
    // ... and published and marked meanwhile, as an earlier leadership that
    // read it back would have.
    sumud_shared::on_store!(&env.store, pool => sqlx::query(
        "UPDATE disbursement.instruction_batches SET published_at = CURRENT_TIMESTAMP"
    )
    .execute(pool)
    .await
    .map(drop))
    .unwrap();

    // A relay starts leading; then one more household is entitled and
    // instructed, its batch handed over behind the first.
    let topic = env.settings.topics.instructions.clone();
    let shutdown = CancellationToken::new();
    let relay = {
        let (store, topic, handoff, shutdown) = (
            env.store.clone(),
            topic.clone(),
            handoff.clone(),
            shutdown.clone(),
        );
        let producer = EventProducer::new(&env.settings).unwrap();
        tokio::spawn(async move {
            publisher::relay(store, topic, producer, &handoff, handed, shutdown).await
        })
    };
    entitle(&env, 4, 4).await;
    assert_eq!(pass(&env, &handoff).await, 1);
    wait_for("the second batch marked", DEADLINE, || async {
        (env.count(
            "SELECT count(*) FROM disbursement.instruction_batches WHERE published_at IS NULL",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    // The relay awaits acknowledgements in order, so a republished first
    // batch would be on the topic by now: only the fourth household is.
    let on_topic = env.read_topic(&topic, 4, Duration::from_secs(3));
    let keys: Vec<&str> = on_topic.iter().map(|(k, _)| k.as_str()).collect();
    let fourth: Vec<(String,)> = env
        .rows("SELECT beneficiary_ref FROM disbursement.instructions WHERE household_id = 'HH-4'")
        .await;
    assert_eq!(keys, vec![fourth[0].0.as_str()]);
}

/// A relay whose leadership is taken from it (on PostgreSQL its lock's
/// session is terminated, as a network partition or an operator would end
/// it, and another session takes the lock; on SQLite its lock file is
/// replaced, as a clean-up or a restore of the data directory would, and
/// another holder locks the new one) publishes nothing from then on, not
/// even the batches its own process's passes hand it in memory: only the
/// leader publishes, so nothing goes out twice. Each relay here publishes
/// to a topic of its own, so that the topics tell who published what.
async fn a_deposed_relay_publishes_nothing_once_another_leads(backend: Backend) {
    // Arrange: relay A leads and publishes a first batch.
    let env = world(backend).await;
    save_crisis(&env, 1, "1.000", Utc::now() - chrono::Duration::minutes(1)).await;
    let topic_a = env.settings.topics.instructions.clone();
    let topic_b = format!("{topic_a}.b");
    sumud_shared::kafka::admin::ensure(&env.settings, &[&topic_b], 3)
        .await
        .unwrap();
    let (handoff_a, handed_a) = Handoff::new();
    let relay_a = start_relay(&env, &topic_a, handoff_a.clone(), handed_a);
    entitle(&env, 1, 3).await;
    assert_eq!(pass(&env, &handoff_a).await, 3);
    wait_all_marked(&env).await;
    assert_eq!(published(&env, &topic_a).await.len(), 3);

    // Act: A is deposed and another holds the lock; A's own process then
    // commits two batches and hands them to A (the second is handed only
    // once A has taken the first: the handoff holds one).
    let new_leader = depose(&env).await;
    entitle(&env, 4, 6).await;
    assert_eq!(pass(&env, &handoff_a).await, 3);
    entitle(&env, 7, 9).await;
    assert_eq!(pass(&env, &handoff_a).await, 3);
    // Stopped, A has had every acknowledgement of whatever it enqueued.
    relay_a.stop().await;

    // Assert: A published nothing after it was deposed ...
    let on_a = published(&env, &topic_a).await;
    assert_eq!(
        on_a.len(),
        3,
        "the deposed relay published {} instructions beside the new leader: {on_a:?}",
        on_a.len() - 3
    );
    // ... and the leader after it publishes the rest, once.
    drop(new_leader);
    let (handoff_b, handed_b) = Handoff::new();
    let relay_b = start_relay(&env, &topic_b, handoff_b, handed_b);
    wait_all_marked(&env).await;
    relay_b.stop().await;
    let on_b = published(&env, &topic_b).await;
    let mut ids: Vec<String> = on_a.iter().chain(&on_b).map(|(_, id)| id.clone()).collect();
    ids.sort();
    let expected: Vec<String> = env
        .rows::<(String,)>(
            "SELECT instruction_id FROM disbursement.instructions ORDER BY instruction_id",
        )
        .await
        .into_iter()
        .map(|(id,)| format!("{id}#1"))
        .collect();
    assert_eq!(expected.len(), 9);
    assert_eq!(ids, expected, "each instruction published once in all");
}

/// Runs a disbursement relay publishing to `topic`, fed by `handoff`.
fn start_relay(
    env: &TestEnv,
    topic: &str,
    handoff: Handoff,
    handed: mpsc::Receiver<Handed>,
) -> Running {
    let (store, topic) = (env.store.clone(), topic.to_owned());
    let producer = EventProducer::new(&env.settings).unwrap();
    Running::spawn(|shutdown| async move {
        publisher::relay(store, topic, producer, &handoff, handed, shutdown).await
    })
}

/// Waits until every instruction batch is marked published.
async fn wait_all_marked(env: &TestEnv) {
    wait_for("every batch marked published", DEADLINE, || async {
        (env.count(
            "SELECT count(*) FROM disbursement.instruction_batches WHERE published_at IS NULL",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
}

/// Every record on `topic`: (key, event id). The count comes from the
/// partitions' watermarks, so none is missed and none waited for.
async fn published(env: &TestEnv, topic: &str) -> Vec<(String, String)> {
    let n = env.topic_len(topic);
    let records = env.read_topic(topic, n, DEADLINE);
    assert_eq!(records.len(), n, "every record of {topic} read");
    records
        .into_iter()
        .map(|(key, payload)| {
            let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            (key, event["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// What holds the disbursement relay's lock in place of the deposed
/// leader: dropping it lets go.
enum NewLeader {
    /// A session holding the advisory lock.
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
    /// The lock on the replaced lock file.
    Sqlite(#[allow(dead_code)] std::fs::File),
}

/// Takes the leading relay's leadership from it, from outside: on
/// PostgreSQL its lock's session is terminated and a session of the test
/// takes the lock; on SQLite the lock file is replaced under it and the
/// test locks the new one.
async fn depose(env: &TestEnv) -> NewLeader {
    let key = publisher::LOCK_KEY;
    match &env.store {
        Store::Postgres(pool) => {
            let pid: i32 = sqlx::query_scalar(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.granted \
                   AND l.objsubid = 1 AND (l.classid::int8 << 32 | l.objid::int8) = $1",
            )
            .bind(key)
            .fetch_one(pool)
            .await
            .expect("a relay holds the lock");
            let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(pool)
                .await
                .unwrap();
            assert!(ended);
            let mut session =
                <sqlx::PgConnection as sqlx::Connection>::connect(&env.settings.database_url)
                    .await
                    .unwrap();
            tokio::time::timeout(
                DEADLINE,
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(key)
                    .execute(&mut session),
            )
            .await
            .expect("the terminated session's lock to be free")
            .unwrap();
            NewLeader::Postgres(session)
        }
        Store::Sqlite(pool) => {
            let name = format!("table-relay-{key:x}");
            let main = sumud_shared::db::sqlite::main_path(&env.settings.database_url).unwrap();
            let path = sumud_shared::db::sqlite::schema_path(&main, &name).with_extension("lock");
            assert!(
                sumud_shared::db::sqlite::try_lock(pool, &name)
                    .unwrap()
                    .is_none(),
                "a relay holds the lock"
            );
            std::fs::remove_file(&path).unwrap();
            let file = sumud_shared::db::sqlite::try_lock(pool, &name)
                .unwrap()
                .expect("the new lock file is free");
            NewLeader::Sqlite(file)
        }
    }
}

/// A crisis whose pass fails for a reason of its own (here entitlements
/// of 0, which the instructions' CHECK refuses: what a zero-amount
/// response once produced) is set aside by the running scheduler, counted,
/// and tried again later, while a crisis sorted after it is paid.
async fn one_broken_crisis_does_not_stop_the_others(backend: Backend) {
    // Arrange: "AAA-BROKEN" sorts first and cannot be instructed; "ZZZ-OK"
    // has three households of 100 each.
    let env = world(backend).await;
    let now = Utc::now();
    save_crisis_as(&env, "AAA-BROKEN", 1, "1000", now).await;
    save_crisis_as(&env, "ZZZ-OK", 1, "1000", now).await;
    entitle_in(&env, "AAA-BROKEN", 1, 2, 0).await;
    entitle_in(&env, "ZZZ-OK", 3, 5, 100).await;
    let (handoff, mut handed) = Handoff::new();
    let drainer = tokio::spawn(async move { while handed.recv().await.is_some() {} });
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(sumud_disbursement::scheduler::run(
        env.store.clone(),
        DisbursementConfig {
            tick_ms: 100,
            ..DisbursementConfig::default()
        },
        std::sync::Arc::new(sumud_disbursement::scheduler::Due::default()),
        handoff,
        shutdown.clone(),
    ));

    // Assert: the sound crisis is instructed in full, the broken one not
    // at all, and its failure is counted.
    wait_for("the sound crisis instructed", DEADLINE, || async {
        (env.count("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'ZZZ-OK'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'AAA-BROKEN'")
            .await,
        0
    );
    let failures = sumud_shared::metrics::Metrics::global()
        .crisis_pass_failures
        .get_or_create(&sumud_shared::metrics::CrisisLabels {
            crisis: "AAA-BROKEN".into(),
        })
        .get();
    assert!(failures >= 1, "{failures}");
    // Recorded on the crisis for the dashboard, with its error; the sound
    // crisis shows none.
    let recorded: Vec<(String, i32, Option<String>)> = env
        .rows("SELECT crisis_id, pass_failures, last_pass_error FROM disbursement.crises ORDER BY crisis_id")
        .await;
    assert_eq!(recorded[0].0, "AAA-BROKEN");
    assert!(recorded[0].1 >= 1, "{recorded:?}");
    assert!(
        recorded[0].2.as_deref().is_some_and(|e| !e.is_empty()),
        "{recorded:?}"
    );
    assert_eq!(recorded[1], ("ZZZ-OK".into(), 0, None));
    shutdown.cancel();
    scheduler.await.unwrap().unwrap();
    drainer.abort();
}

on_both_backends!(
    money_released_after_a_budget_cut_is_instructed_again_only_within_the_cut,
    a_new_leadership_does_not_republish_a_batch_handed_over_before_it,
    a_deposed_relay_publishes_nothing_once_another_leads,
    one_broken_crisis_does_not_stop_the_others,
);
