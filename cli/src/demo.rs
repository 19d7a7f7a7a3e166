//! `sumud demo`: the live end-to-end run a newcomer starts first. Every
//! service of the pipeline runs in this process against the configured
//! Kafka and PostgreSQL: a synthetic registry is registered, a demo operator
//! declares a flood in the southern governorates with a signed command,
//! eligibility expands, instructions flow to the built-in provider simulator
//! (some payments fail and are retried), and a reconciliation table closes
//! the run.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use sqlx::PgPool;
use sumud_control::config::ControlConfig;
use sumud_control::signing::Jwk;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::config::Settings;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::money::Money;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{crisis_cmd, payments_cmd, registry_cmd};

type Service = JoinHandle<sumud_shared::Result<()>>;

/// Runs the demo with `households` synthetic households.
pub async fn run(settings: Settings, households: u64, keep_running: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "Sumud demo — Kafka at {}, database at {}",
        settings.bootstrap_servers,
        redact(&settings.database_url)
    );
    let shutdown = CancellationToken::new();
    let (pool, services) = start_services(&settings, &shutdown)
        .await
        .context("starting the services (is Kafka/PostgreSQL up? try scripts/services.sh start)")?;

    // 1. The social registry.
    let before = count(&pool, "SELECT count(*) FROM registry.households_v").await?;
    let seed = rand::random::<u32>() as u64;
    let published = registry_cmd::publish_synthetic(&settings, households, seed, false).await?;
    let target = before + published as i64;
    wait_with_bar(
        &pool,
        "registering",
        "SELECT count(*) FROM registry.households_v",
        target,
        before,
    )
    .await?;

    // 2. A demo operator declares a flood in the south with a signed command.
    let operator = Jwk::generate(&format!("demo-{seed:x}"));
    sumud_control::db::add_operator(
        &pool,
        &operator.kid,
        "demo-operator",
        &operator.x,
        &["admin".into()],
    )
    .await?;
    let crisis_id = format!("FLOOD-SOUTH-{}", Utc::now().format("%Y%m%d-%H%M%S"));
    let today = Utc::now().date_naive();
    let definition = CrisisDefinition {
        title: "Flash floods in Ma'an and Aqaba".into(),
        hazard: Hazard::Flood,
        severity: Severity::Severe,
        areas: vec!["JO-MN".into(), "JO-AQ".into(), "JO-AT".into()],
        response: Response {
            playbook: "flood-standard".into(),
            overrides: ResponseOverrides::default(),
        },
        budget: Money::parse_major("2500000", "JOD").map_err(anyhow::Error::msg)?,
        starts_on: today,
        ends_on: today + chrono::Days::new(90),
    };
    crisis_cmd::publish(
        &settings,
        &operator,
        CommandKind::Declare,
        &crisis_id,
        Some(definition),
        Some("demo".into()),
    )
    .await?;
    println!("\nDeclared {crisis_id}: severe flood over JO-MN, JO-AQ, JO-AT (playbook flood-standard, budget 2,500,000.000 JOD).");

    // 3. Eligibility expands; 4. instructions flow and are paid.
    let decided = wait_stable(
        &pool,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{crisis_id}'"),
    )
    .await?;
    let entitled = count(&pool, &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{crisis_id}' AND status = 'entitled'")).await?;
    println!("Eligibility: {decided} decisions, {entitled} entitled (vertical top-ups and horizontal enrolments).");
    let tranches = 3;
    wait_with_bar(
        &pool,
        "paying",
        &format!("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = '{crisis_id}' AND status IN ('succeeded', 'failed')"),
        entitled * tranches,
        0,
    )
    .await?;

    println!("\nReconciliation of {crisis_id}:");
    let problems = payments_cmd::print_table(&pool, &crisis_id).await?;
    let retried = count(&pool, &format!("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = '{crisis_id}' AND attempt > 1")).await?;
    let tasks = count(
        &pool,
        &format!("SELECT count(*) FROM disbursement.verification_tasks t JOIN disbursement.instructions i USING (instruction_id) WHERE i.crisis_id = '{crisis_id}'"),
    )
    .await?;
    println!("{retried} payments needed a retry; {tasks} field-verification tasks raised for permanent failures.");
    println!(
        "Explain any decision: cargo run -p sumud -- explain --crisis {crisis_id} --household <id>"
    );
    println!(
        "Done in {:.1} s{}.",
        started.elapsed().as_secs_f64(),
        if problems.is_empty() {
            ""
        } else {
            " (with unexplained items above)"
        }
    );

    if keep_running {
        println!("Services keep running; press Ctrl-C to stop.");
        sumud_shared::shutdown::on_signals().cancelled().await;
    }
    shutdown.cancel();
    for s in services {
        s.await??;
    }
    Ok(())
}

async fn start_services(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<(PgPool, Vec<Service>)> {
    let registry = sumud_registry::App::build(settings.clone()).await?;
    let pool = registry.pool().clone();
    let control = sumud_control::App::build(
        settings.clone(),
        ControlConfig {
            four_eyes_threshold_minor: i64::MAX / 4,
            ..ControlConfig::default()
        },
    )
    .await?;
    let eligibility = sumud_eligibility::App::build(settings.clone()).await?;
    // A compressed calendar: a 30-day tranche interval passes in 6 seconds.
    let schedule = DisbursementConfig {
        day_seconds: 0.2,
        retry_base_secs: 2,
        ..DisbursementConfig::from_env()?
    };
    let disbursement = sumud_disbursement::App::build(settings.clone(), schedule).await?;
    let provider = sumud_provider_sim::App::build(
        settings.clone(),
        Behaviour {
            latency_ms: 20,
            ..Behaviour::default()
        },
    )
    .await?;
    let s = || shutdown.clone();
    Ok((
        pool,
        vec![
            tokio::spawn(registry.run(s())),
            tokio::spawn(control.run(s())),
            tokio::spawn(eligibility.run(s())),
            tokio::spawn(disbursement.run(s())),
            tokio::spawn(provider.run(s())),
        ],
    ))
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Shows a bar until `sql` reaches `target` (10 minutes at most).
async fn wait_with_bar(
    pool: &PgPool,
    what: &str,
    sql: &str,
    target: i64,
    base: i64,
) -> anyhow::Result<()> {
    let bar = registry_cmd::progress((target - base).max(0) as u64, what);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = count(pool, sql).await? - base;
        bar.set_position(now.max(0) as u64);
        if now + base >= target {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
    Ok(())
}

/// Waits until a count is positive and has not changed for a second.
async fn wait_stable(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = count(pool, sql).await?;
        if now > 0 && now == last {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "eligibility did not settle in 5 minutes"
        );
        last = now;
    }
}

/// Hides the password in a database URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
