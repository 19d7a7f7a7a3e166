//! The sequence that once hung the suite (issue 25), in a loop: a payments
//! pipeline on a broker of the test's own, the broker restarted under it,
//! the pipeline stopped, and a new pipeline started on the same broker.
//! Every round the new pipeline's five services must join their groups
//! (readiness now requires it), and a crisis declared on it must reach
//! its first instructions; the last round's pipeline is stopped cleanly.
//!
//! `SUMUD_REJOIN_ROUNDS` sets the rounds (2 in the suite; `scripts/soak.sh
//! rejoin` runs 20). librdkafka's `cgrp,broker,protocol` debug contexts
//! are on when `SUMUD_REJOIN_DEBUG=1`, for the next time it does not pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::events::control::CommandKind;
use sumud_tests::infra::{on_private_infra, start_payments, PrivateInfra, Server, SERVICES};
use sumud_tests::pipeline::{claims, definition, no_four_eyes};
use sumud_tests::watchdog::{phase, Watchdog};
use sumud_tests::{wait_for, TestEnv};

/// Households of each round's registry: enough for a few dozen payments.
const HOUSEHOLDS: u64 = 400;

/// How long every service may take to be ready again once the broker is
/// back: the join bound (`infra::RECREATE_AFTER`; with the default 120 s a
/// wedged service is ready again about 2 min after the broker), a new
/// consumer's join, and room for a slow machine.
const REJOIN_WITHIN: Duration = Duration::from_secs(150);

/// One round: a pipeline comes up and pays on the private broker, the
/// broker restarts under it, it becomes ready again, and it stops.
async fn round(infra: &PrivateInfra, n: u32) {
    let t = Instant::now();
    phase(format!(
        "rejoin round {n}: a new pipeline on the restarted broker"
    ));
    let mut env = TestEnv::on(infra.bootstrap(), infra.database_url()).await;
    if std::env::var("SUMUD_REJOIN_DEBUG").as_deref() == Ok("1") {
        env.settings
            .kafka_properties
            .insert("debug".into(), "cgrp,broker,protocol".into());
    }
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let (p, probes) = start_payments(
        env,
        HOUSEHOLDS,
        no_four_eyes(),
        schedule,
        Behaviour::honest(),
        &BTreeMap::new(),
    )
    .await;
    let joined = t.elapsed();
    let crisis = format!("REJOIN-{n}");
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            &crisis,
            Some(definition(&["JO-AM", "JO-IR", "JO-MN"], "10000000")),
        ),
    )
    .await;
    phase(format!("rejoin round {n}: waiting for the first payments"));
    wait_for(
        "the round's first payments",
        Duration::from_secs(120),
        || async {
            let paid: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
            )
            .fetch_one(&p.env.pool)
            .await
            .ok()?;
            (paid > 0).then_some(())
        },
    )
    .await;

    infra.script(Server::Kafka, "stop").await.unwrap();
    phase(format!("rejoin round {n}: broker stopped; waiting for 503"));
    probes
        .wait_all(&SERVICES, 503, Duration::from_secs(60))
        .await;
    infra.script(Server::Kafka, "start").await.unwrap();
    phase(format!(
        "rejoin round {n}: broker back; waiting for every service to rejoin"
    ));
    let rejoined = probes.wait_all(&SERVICES, 200, REJOIN_WITHIN).await;
    phase(format!("rejoin round {n}: stopping the pipeline"));
    for (name, s) in SERVICES.iter().zip(&p.services) {
        assert!(s.is_running(), "round {n}: {name} stopped by itself");
    }
    p.stop().await;
    eprintln!(
        "[rejoin {n}] joined {:.1} s after the round began; rejoined {:.1} s after the broker was back; round {:.1} s",
        joined.as_secs_f64(),
        rejoined.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// A plain test owning its runtime (see `infra::on_private_infra`).
#[test]
fn pipelines_started_after_a_broker_restart_join_their_groups_every_round() {
    let rounds: u32 = std::env::var("SUMUD_REJOIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // Three minutes a round is about three times what one takes here.
    let _watchdog = Watchdog::arm_for(
        "the rejoin rounds",
        Duration::from_secs(120 + 180 * u64::from(rounds)),
    );
    let started = Instant::now();
    on_private_infra(|infra| {
        Box::pin(async move {
            for n in 1..=rounds {
                round(infra, n).await;
            }
        })
    });
    eprintln!(
        "{rounds} rejoin rounds took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
