//! The crash test: during a 100,000-household crisis, the disbursement
//! service is killed with SIGKILL at random moments (10 times by default,
//! `SUMUD_CRASH_KILLS` for the release soak) and restarted each time. At the
//! end the provider's ledger and the database agree: every entitled household
//! has exactly one instruction per tranche, no instruction id reached the
//! provider twice with different content, nothing was paid twice, and the
//! budget holds. The same scenario runs on the embedded default's SQLite
//! file, on a 20,000-household registry (`SUMUD_CRASH_HOUSEHOLDS` sets
//! either), the killed process and the rest of the pipeline sharing the file.
//! `SUMUD_CRASH_CHILD_LOG` sets the killed process's `RUST_LOG` (default
//! `error`) when a run needs to see what it did between kills.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rand::Rng;
use sumud_control::config::ControlConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

fn spawn_disbursement(p: &Pipeline) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sumud-node"))
        .arg("disbursement")
        .envs(p.env.settings.env_vars())
        .env("SUMUD_TRANCHE_DAY_SECONDS", "0.05")
        .env("SUMUD_PAYMENT_RETRY_SECS", "0")
        .env("SUMUD_PAYMENT_MAX_ATTEMPTS", "5")
        // Each restart rejoins as the same static group member, as a
        // deployment with stable instance names does: the new process gets
        // the killed one's partitions without waiting out its session.
        .env("SUMUD_INSTANCE_ID", "disbursement-crash")
        .env(
            "RUST_LOG",
            std::env::var("SUMUD_CRASH_CHILD_LOG").unwrap_or("error".into()),
        )
        .spawn()
        .expect("sumud-node starts")
}

async fn killing_disbursement_repeatedly_never_duplicates_loses_or_overspends(backend: Backend) {
    let kills: usize = std::env::var("SUMUD_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let households: u64 = std::env::var("SUMUD_CRASH_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match backend {
            Backend::Postgres => 100_000,
            Backend::Sqlite => 20_000,
        });
    let provider = Behaviour {
        latency_ms: 5,
        retryable_reject_rate: 0.05,
        permanent_reject_rate: 0.0,
        duplicate_rate: 0.05,
        late_pending_rate: 0.05,
        ..Behaviour::default()
    };
    let config = ControlConfig {
        four_eyes_threshold_minor: i64::MAX / 4,
        ..ControlConfig::default()
    };
    // Registry, control, eligibility and the provider in-process; disbursement as a killable process.
    let p =
        Pipeline::start_with_payments_on(backend, households, config, Default::default(), provider)
            .await;
    let mut services = p.services;
    let in_process_disbursement = services.remove(3);
    in_process_disbursement.stop().await;
    let p = Pipeline { services, ..p };

    let areas = ["JO-AM"];
    let mut def = definition(&areas, "100000000");
    def.response.overrides.tranches = Some(2);
    let mut child = spawn_disbursement(&p);
    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "CRASH-1", Some(def)),
    )
    .await;
    let entitled = wait_for("the expansion", DEADLINE * 2, || async {
        let n = p
            .count("SELECT count(*) FROM eligibility.entitlements WHERE status = 'entitled'")
            .await;
        (n > 0).then_some(n)
    })
    .await;

    let started = Instant::now();
    for k in 0..kills {
        // Up to 6 s apart: a restarted process first re-handles what it
        // had not committed (about 4 s here) before status reports flow,
        // and kills that came faster never landed while they were applied.
        let wait = rand::rng().random_range(300..6000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let made = p
            .count("SELECT count(*) FROM disbursement.instructions")
            .await;
        let settled = p
            .count("SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')")
            .await;
        eprintln!(
            "kill {}/{kills} at {:.1}s: {made} instructions so far, {settled} settled",
            k + 1,
            started.elapsed().as_secs_f64()
        );
        child = spawn_disbursement(&p);
    }

    let total = entitled * 2;
    wait_for("every instruction final", Duration::from_secs(600), || async {
        (p.count("SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')").await == total).then_some(())
    })
    .await;
    child.kill().ok();
    child.wait().ok();

    // Exactly one instruction per entitled household per tranche.
    let pairs = p
        .count(
            "SELECT count(*) FROM eligibility.entitlements e JOIN disbursement.instructions i \
         ON i.crisis_id = e.crisis_id AND i.household_id = e.household_id AND i.kind = e.kind \
         WHERE e.status = 'entitled'",
        )
        .await;
    assert_eq!(pairs, total);
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions")
            .await,
        total
    );
    // The provider's ledger agrees: nothing paid twice, no id with two contents.
    let (_, paid_twice, conflicts) = sumud_provider_sim::ledger_audit(&p.env.store)
        .await
        .unwrap();
    assert_eq!((paid_twice, conflicts), (0, 0));
    let paid_by_provider = p
        .count("SELECT count(DISTINCT reference_id) FROM provider_sim.ledger WHERE paid")
        .await;
    let paid_by_us = p
        .count("SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'")
        .await;
    assert_eq!(paid_by_provider, paid_by_us);
    // The budget holds and reservations match the instructions.
    p.assert_budget_holds("CRASH-1").await;
    p.stop().await;
}

on_both_backends!(killing_disbursement_repeatedly_never_duplicates_loses_or_overspends);
