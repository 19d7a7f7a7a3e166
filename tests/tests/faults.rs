//! Infrastructure faults in the middle of a crisis with payments, on a Kafka
//! broker and a PostgreSQL server of this test's own (the shared ones are
//! never touched): the broker is restarted, the database is restarted, and
//! disbursement's database connection is stalled past its timeouts. Nobody
//! intervenes and no service is restarted; afterwards every entitled
//! household has exactly one instruction per tranche, in the database, on
//! the instructions topic and in the provider's ledger, no instruction id
//! carries two contents, nothing was paid twice, nothing was dead-lettered
//! and the budget holds. While a dependency is down the services say so on
//! `/readyz`, and say they are ready again once it is back.
//!
//! The three scenarios share one private broker and server (Kafka takes
//! about half a minute to start here), so they run one after another in a
//! single test; each has its own database and topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::payment::{Instruction, INSTRUCTION_ISSUED};
use sumud_tests::infra::{
    on_private_infra, read_all, start_payments, PrivateInfra, Probes, Server, TcpProxy, SERVICES,
};
use sumud_tests::pipeline::{claims, definition, expected, no_four_eyes, Pipeline};
use sumud_tests::watchdog::phase;
use sumud_tests::{wait_for, TestEnv};

/// Households in the synthetic registry of each scenario.
const HOUSEHOLDS: u64 = 3000;
/// Areas of each scenario's crisis: half the country, so that about a
/// tenth of the registry is entitled (the provider simulator answers a few
/// dozen instructions a second on this machine, which bounds the size).
const AREAS: [&str; 6] = ["JO-AM", "JO-IR", "JO-MN", "JO-KA", "JO-AQ", "JO-BA"];
/// Tranches of the flood playbook.
const TRANCHES: i64 = 3;
/// Longest a scenario may take to settle after its fault: librdkafka's
/// idempotent producer may hold messages it had in flight when the broker
/// went away until `message.timeout.ms` (120 s, `shared/src/kafka/producer.rs`)
/// expires, after which the caller sends them again.
const SETTLE: Duration = Duration::from_secs(240);

/// Tranches 30 schedule days apart at 0.5 s a day: 15 s apart, so the
/// second (and, for the broker, the third) falls due during the fault.
fn schedule() -> DisbursementConfig {
    DisbursementConfig {
        day_seconds: 0.5,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    }
}

/// A count that may fail while the database is away.
async fn try_count(pool: &PgPool, sql: &str) -> Option<i64> {
    sqlx::query_scalar(sql).fetch_one(pool).await.ok()
}

/// Waits until `sql` counts more than zero (tolerating errors).
async fn wait_positive(p: &Pipeline, what: &str, sql: &str) -> i64 {
    wait_for(what, Duration::from_secs(120), || async {
        try_count(&p.env.pool, sql).await.filter(|n| *n > 0)
    })
    .await
}

/// Where the payments stood when a fault began: (instructions, paid).
async fn progress(p: &Pipeline) -> (i64, i64) {
    (
        try_count(
            &p.env.pool,
            "SELECT count(*) FROM disbursement.instructions",
        )
        .await
        .unwrap_or(-1),
        try_count(
            &p.env.pool,
            "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        )
        .await
        .unwrap_or(-1),
    )
}

/// Declares the scenario's crisis; returns the number of entitled households
/// computed independently of the services.
async fn declare(p: &Pipeline, crisis: &str) -> i64 {
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            crisis,
            Some(definition(&AREAS, "10000000")),
        ),
    )
    .await;
    expected(&p.households, &AREAS).len() as i64
}

/// The scenario is over: all services still run, are ready, and every
/// invariant holds between the database, the topic and the ledger.
async fn assert_healed(p: Pipeline, probes: &Probes, crisis: &str, entitled: i64, label: &str) {
    let total = entitled * TRANCHES;
    phase(format!(
        "[{label}] waiting for every instruction to be paid"
    ));
    let settled = Instant::now();
    loop {
        let paid = try_count(
            &p.env.pool,
            "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        )
        .await;
        if paid == Some(total) {
            break;
        }
        if settled.elapsed() > SETTLE {
            let statuses: Vec<(i32, String, i64)> = sqlx::query_as(
                "SELECT tranche, status, count(*) FROM disbursement.instructions \
                 GROUP BY tranche, status ORDER BY tranche, status",
            )
            .fetch_all(&p.env.pool)
            .await
            .unwrap_or_default();
            let ledger = sumud_provider_sim::ledger_audit(&p.env.store).await.ok();
            panic!(
                "[{label}] not every instruction paid after {SETTLE:?}: {paid:?} of {total}; \
                 (tranche, status, count) {statuses:?}; ledger {ledger:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "[{label}] all {total} instructions paid {:.1} s after the dependency came back",
        settled.elapsed().as_secs_f64()
    );

    phase(format!(
        "[{label}] auditing the database, the topic and the ledger"
    ));
    // No service returned, panicked or needed a restart; all are ready.
    for (name, s) in SERVICES.iter().zip(&p.services) {
        assert!(s.is_running(), "{name} stopped during {label}");
    }
    probes
        .wait_all(&SERVICES, 200, Duration::from_secs(30))
        .await;

    // The database: exactly one instruction per entitled household per
    // tranche, with the decided amount, and nothing else.
    let want = expected(&p.households, &AREAS);
    let amount: i64 = want.values().map(|(_, a)| a).sum();
    let per_tranche: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT tranche, count(*), sum(amount_minor)::bigint FROM disbursement.instructions \
         WHERE crisis_id = $1 GROUP BY tranche ORDER BY tranche",
    )
    .bind(crisis)
    .fetch_all(&p.env.pool)
    .await
    .unwrap();
    let n = want.len() as i64;
    assert_eq!(
        per_tranche,
        vec![(1, n, amount), (2, n, amount), (3, n, amount)],
        "[{label}] instructions per tranche"
    );
    let pairs = p
        .count(
            "SELECT count(*) FROM eligibility.entitlements e JOIN disbursement.instructions i \
             ON i.crisis_id = e.crisis_id AND i.household_id = e.household_id AND i.kind = e.kind \
             WHERE e.status = 'entitled'",
        )
        .await;
    assert_eq!(
        pairs, total,
        "[{label}] instructions of entitled households"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions")
            .await,
        total,
        "[{label}] no instruction beyond the entitlements"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE attempt <> 1")
            .await,
        0,
        "[{label}] an honest provider needs one attempt"
    );

    // The instructions topic: every instruction was published, and an
    // instruction id republished (at-least-once) always says the same.
    let published = read_all(&p.env.settings, &p.env.settings.topics.instructions);
    let mut contents: BTreeMap<(String, u32), BTreeSet<String>> = BTreeMap::new();
    for (_, payload) in &published {
        let e: Envelope<serde_json::Value> = serde_json::from_slice(payload).unwrap();
        if e.event_type != INSTRUCTION_ISSUED {
            continue;
        }
        let i: Instruction = serde_json::from_value(e.data.clone()).unwrap();
        contents
            .entry((i.reference_id, i.attempt))
            .or_default()
            .insert(e.data.to_string());
    }
    let conflicting: Vec<_> = contents.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(
        conflicting.is_empty(),
        "[{label}] instruction ids published with different content: {conflicting:?}"
    );
    let ids: BTreeSet<String> =
        sqlx::query_scalar("SELECT instruction_id FROM disbursement.instructions")
            .fetch_all(&p.env.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let on_topic: BTreeSet<String> = contents.keys().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        on_topic, ids,
        "[{label}] the topic carries exactly the database's instructions"
    );
    eprintln!(
        "[{label}] instructions topic: {} messages for {} instructions ({} republished)",
        published.len(),
        ids.len(),
        published.len() - ids.len()
    );

    // The provider's ledger: asked once per instruction, paid each once,
    // never the same id with two contents.
    let (attempts, paid_twice, conflicts) = sumud_provider_sim::ledger_audit(&p.env.store)
        .await
        .unwrap();
    assert_eq!(
        (attempts, paid_twice, conflicts),
        (total, 0, 0),
        "[{label}] ledger: (attempts, paid twice, content conflicts)"
    );
    let redelivered = p
        .count("SELECT coalesce(sum(times_seen - 1), 0)::bigint FROM provider_sim.ledger")
        .await;
    eprintln!(
        "[{label}] provider ledger: {attempts} attempts, {redelivered} redeliveries recognised"
    );

    // The budget holds and reservations match the instructions.
    let (budget, reserved, live) = sumud_disbursement::db::budget(&p.env.store, crisis)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reserved, live, "[{label}] reservations match instructions");
    assert!(reserved <= budget, "[{label}] {reserved} <= {budget}");
    assert_eq!(reserved, amount * TRANCHES);

    // No message was given up on.
    let dead = read_all(&p.env.settings, &p.env.settings.topics.deadletter);
    assert!(
        dead.is_empty(),
        "[{label}] dead letters: {:?}",
        dead.iter()
            .map(|(_, b)| String::from_utf8_lossy(b)
                .chars()
                .take(400)
                .collect::<String>())
            .collect::<Vec<_>>()
    );
    p.stop().await;
}

/// (a) The broker is stopped once the first instructions exist and started
/// again (which takes about half a minute, while tranches fall due).
async fn broker_restart(infra: &PrivateInfra) {
    let label = "kafka restart";
    let env = TestEnv::on(infra.bootstrap(), infra.database_url()).await;
    let (p, probes) = start_payments(
        env,
        HOUSEHOLDS,
        no_four_eyes(),
        schedule(),
        Behaviour::honest(),
        &BTreeMap::new(),
    )
    .await;
    let entitled = declare(&p, "FAULT-KAFKA").await;
    wait_positive(
        &p,
        "the first instructions",
        "SELECT count(*) FROM disbursement.instructions",
    )
    .await;

    let down = Instant::now();
    let at = progress(&p).await;
    infra.script(Server::Kafka, "stop").await.unwrap();
    let stopped = down.elapsed();
    let noticed = probes
        .wait_all(&SERVICES, 503, Duration::from_secs(60))
        .await;
    // The broker takes about half a minute to start: tranches 2 and 3 fall
    // due meanwhile, and the database is up, so they are created.
    infra.script(Server::Kafka, "start").await.unwrap();
    let (created, _) = progress(&p).await;
    let outage = down.elapsed();
    let ready = probes
        .wait_all(&SERVICES, 200, Duration::from_secs(90))
        .await;
    eprintln!(
        "[{label}] fault at {at:?} (instructions, paid) of {}; broker stopped in {:.1} s; \
         all 5 services not ready after {:.1} s; {created} instructions existed when the \
         broker was back after {:.1} s; all ready {:.1} s later",
        entitled * TRANCHES,
        stopped.as_secs_f64(),
        noticed.as_secs_f64(),
        outage.as_secs_f64(),
        ready.as_secs_f64()
    );
    assert_healed(p, &probes, "FAULT-KAFKA", entitled, label).await;
}

/// (b) The database goes away while payments flow, long enough for the
/// pools' acquire timeout (10 s) to pass, and comes back.
async fn database_restart(infra: &PrivateInfra) {
    let label = "postgres restart";
    let env = TestEnv::on(infra.bootstrap(), infra.database_url()).await;
    let (p, probes) = start_payments(
        env,
        HOUSEHOLDS,
        no_four_eyes(),
        schedule(),
        Behaviour::honest(),
        &BTreeMap::new(),
    )
    .await;
    let entitled = declare(&p, "FAULT-PG").await;
    wait_positive(
        &p,
        "the first payments",
        "SELECT count(*) FROM provider_sim.ledger",
    )
    .await;

    let down = Instant::now();
    let at = progress(&p).await;
    infra.script(Server::Postgres, "stop").await.unwrap();
    let stopped = down.elapsed();
    let noticed = probes
        .wait_all(&SERVICES, 503, Duration::from_secs(60))
        .await;
    // Down past the pools' acquire timeout and past tranche 2's due time.
    let hold = Duration::from_secs(16);
    if let Some(rest) = hold.checked_sub(down.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    infra.script(Server::Postgres, "start").await.unwrap();
    let outage = down.elapsed();
    let ready = probes
        .wait_all(&SERVICES, 200, Duration::from_secs(90))
        .await;
    eprintln!(
        "[{label}] fault at {at:?} (instructions, paid) of {}; server stopped in {:.1} s; \
         all 5 services not ready after {:.1} s; server back after {:.1} s; all ready {:.1} s later",
        entitled * TRANCHES,
        stopped.as_secs_f64(),
        noticed.as_secs_f64(),
        outage.as_secs_f64(),
        ready.as_secs_f64()
    );
    assert_healed(p, &probes, "FAULT-PG", entitled, label).await;
}

/// (c) Disbursement's path to the database stops moving bytes (a proxy
/// holds them) for 20 s — past the pool's 10 s acquire timeout and the
/// readiness probe's 2 s — with statements in flight, then moves again.
async fn database_stall(infra: &PrivateInfra) {
    let label = "database stall";
    let proxy = TcpProxy::start(infra.postgres_addr()).await;
    let env = TestEnv::on(infra.bootstrap(), infra.database_url()).await;
    let direct = env.settings.database_url.clone();
    let via_proxy = direct.replacen(
        &infra.postgres_addr().to_string(),
        &proxy.addr().to_string(),
        1,
    );
    assert_ne!(via_proxy, direct);
    let (p, probes) = start_payments(
        env,
        HOUSEHOLDS,
        no_four_eyes(),
        schedule(),
        Behaviour::honest(),
        &BTreeMap::from([("disbursement", via_proxy)]),
    )
    .await;
    let entitled = declare(&p, "FAULT-STALL").await;
    wait_positive(
        &p,
        "the first instructions",
        "SELECT count(*) FROM disbursement.instructions",
    )
    .await;

    let stalled = Instant::now();
    let at = progress(&p).await;
    proxy.stall();
    let noticed = probes
        .wait_all(&["disbursement"], 503, Duration::from_secs(30))
        .await;
    let others: Vec<&str> = SERVICES
        .iter()
        .copied()
        .filter(|s| *s != "disbursement")
        .collect();
    // The others keep their own, direct path: they stay ready.
    probes.wait_all(&others, 200, Duration::from_secs(10)).await;
    let hold = Duration::from_secs(20);
    if let Some(rest) = hold.checked_sub(stalled.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert_eq!(
        probes.readiness().await[3],
        ("disbursement", Some(503)),
        "still not ready at the end of the stall"
    );
    let (made, _) = progress(&p).await;
    proxy.resume();
    let outage = stalled.elapsed();
    let ready = probes
        .wait_all(&SERVICES, 200, Duration::from_secs(60))
        .await;
    eprintln!(
        "[{label}] fault at {at:?} (instructions, paid) of {}; disbursement not ready after \
         {:.1} s, the others ready throughout; {made} instructions when the stall ended after \
         {:.1} s; ready {:.1} s later",
        entitled * TRANCHES,
        noticed.as_secs_f64(),
        outage.as_secs_f64(),
        ready.as_secs_f64()
    );
    assert_healed(p, &probes, "FAULT-STALL", entitled, label).await;
    drop(proxy);
}

/// The scenarios, one after another, on one private broker and server
/// (`SUMUD_FAULTS=kafka,postgres,stall` picks some, to debug one).
async fn scenarios(infra: &PrivateInfra) {
    let only = std::env::var("SUMUD_FAULTS").unwrap_or_default();
    for (name, scenario) in [
        ("kafka restart", 0),
        ("postgres restart", 1),
        ("database stall", 2),
    ] {
        let key = ["kafka", "postgres", "stall"][scenario];
        if !only.is_empty() && !only.split(',').any(|s| s.trim() == key) {
            continue;
        }
        let t = Instant::now();
        phase(format!("faults: scenario {name}"));
        match scenario {
            0 => broker_restart(infra).await,
            1 => database_restart(infra).await,
            _ => database_stall(infra).await,
        }
        eprintln!("[{name}] scenario took {:.1} s", t.elapsed().as_secs_f64());
    }
}

/// A plain test owning its runtime (see `infra::on_private_infra`).
#[test]
fn payments_heal_without_operators_after_broker_and_database_restarts_and_a_stall() {
    on_private_infra(|infra| Box::pin(scenarios(infra)));
}
