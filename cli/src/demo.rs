//! `sumud demo`: the live end-to-end run a newcomer starts first. Every
//! service of the pipeline runs in this process against the configured
//! Kafka and PostgreSQL: a synthetic registry is registered; a scenario is
//! simulated; the crisis centre's CAP flood alert makes a trigger rule
//! declare a crisis within its pre-approved budget; two operators scale it
//! up under the four-eyes rule; eligibility expands, instructions flow to the
//! built-in provider simulator (some payments fail and are retried), and a
//! reconciliation table closes the flood; then a price shock over the same
//! areas pays flood households only what the overlap rule leaves.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sumud_alerts::config::AlertsConfig;
use sumud_control::signing::Jwk;
use sumud_dashboard::config::DashboardConfig;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::config::Settings;
use sumud_shared::db::{Backend, Store};
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::money::Money;
use sumud_shared::on_store;

use crate::up::{self, Pipeline, Tuning};

mod audit;
mod overlap;
mod referrals;
use crate::{crisis_cmd, payments_cmd, registry_cmd};
pub use audit::Audit;

/// Runs the demo with `households` synthetic households, a new registry
/// each run.
/// The demo's admin key is kept in `data_dir` (mode 0600), so that a later
/// run on the same data signs with the admin it bootstrapped.
pub async fn run(
    settings: Settings,
    households: u64,
    keep_running: bool,
    data_dir: &Path,
    broker_started_empty: bool,
) -> anyhow::Result<()> {
    let admin = data_dir.join("demo-admin.jwk");
    let seed = rand::random::<u32>() as u64;
    let run = Run {
        admin_key: Some(&admin),
        broker_started_empty,
    };
    run_with(settings, households, seed, keep_running, run)
        .await
        .map(drop)
}

/// [`run`] on the synthetic registry of `seed`, for tests that must not
/// depend on luck: on a small registry the south holds a few dozen
/// households, and an unlucky draw leaves no area poor enough for the flood
/// rule. A seed can register its households only once per database.
pub async fn run_seeded(
    settings: Settings,
    households: u64,
    seed: u64,
    keep_running: bool,
) -> anyhow::Result<Audit> {
    let run = Run {
        admin_key: None,
        broker_started_empty: false,
    };
    run_with(settings, households, seed, keep_running, run).await
}

/// Where a demo run stands: its admin key's file, and whether the broker
/// started empty on a database that may have history.
struct Run<'a> {
    admin_key: Option<&'a Path>,
    broker_started_empty: bool,
}

/// The demo's admin: the key in `path` (made there on first use), or a
/// fresh one without a path; bootstrapped as the first admin unless it is
/// already an active admin of this database.
async fn demo_admin(store: &Store, path: Option<&Path>) -> anyhow::Result<Jwk> {
    let kid = format!("demo-admin-{:x}", rand::random::<u32>());
    let key = match path {
        Some(p) if p.exists() => crisis_cmd::read_key(p)?,
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crisis_cmd::generate_key(&kid, p)?;
            crisis_cmd::read_key(p)?
        }
        None => Jwk::generate(&kid),
    };
    let known = sumud_control::db::operator_key(store, &key.kid).await?;
    if known.is_some_and(|k| k.revoked_at.is_none() && k.role_names.iter().any(|r| r == "admin")) {
        return Ok(key);
    }
    let admin = ["admin".to_owned()];
    let new = sumud_control::db::NewOperator {
        key_id: &key.kid,
        principal: "demo-admin",
        public_key: &key.x,
        roles: &admin,
    };
    if !sumud_control::db::bootstrap_admin(store, new, "demo-admin").await? {
        anyhow::bail!(
            "this database already has an admin other than the demo's; run the demo on a fresh \
             data directory (--data-dir) or database"
        );
    }
    Ok(key)
}

async fn run_with(
    settings: Settings,
    households: u64,
    seed: u64,
    keep_running: bool,
    run: Run<'_>,
) -> anyhow::Result<Audit> {
    let started = Instant::now();
    let started_at = Utc::now();
    println!(
        "Sumud demo — Kafka at {}, database at {}",
        settings.bootstrap_servers,
        sumud_shared::config::redact_url(&settings.database_url)
    );
    let alerts_key = Jwk::generate(&format!("alerts-demo-{:x}", rand::random::<u32>()));
    let alerts = AlertsConfig::shipped(alerts_key.clone());
    // A compressed calendar: a 30-day tranche interval passes in 6 seconds.
    let tuning = Tuning {
        disbursement: DisbursementConfig {
            day_seconds: 0.2,
            retry_base_secs: 2,
            inquiry_secs: 6,
            // A demo run makes a new registry: a secret of its own for the
            // run, unless the environment names one.
            ..DisbursementConfig::from_env_or_secret(Some(up::random_secret()))?
        },
        provider: Some(Behaviour {
            latency_ms: 20,
            ..Behaviour::default()
        }),
        dashboard: DashboardConfig::from_env()?,
        // The agencies' match-key secret of this run, unless the
        // environment shares one.
        match_key: Some(
            match sumud_shared::match_key::MatchKeySecret::from_env().map_err(anyhow::Error::msg)? {
                Some(s) => s,
                None => sumud_shared::match_key::MatchKeySecret::parse(&up::random_secret())
                    .map_err(anyhow::Error::msg)?,
            },
        ),
        broker_started_empty: run.broker_started_empty,
    };
    let match_secret = tuning.match_key.clone().expect("set just above");
    let pipeline = Pipeline::start(&settings, alerts, tuning)
        .await
        .context(up::starting_hint(&settings))?;
    let store = pipeline.store.clone();
    println!(
        "Dashboard (live, Arabic and English): http://{}/",
        pipeline.dashboard
    );

    // Operators: the first admin is bootstrapped once; it registers the
    // alerts service's own key, a proposer and an approver by signed
    // operator.add commands, which the control service applies and audits.
    let admin = demo_admin(&store, run.admin_key).await?;
    let proposer = Jwk::generate(&format!("proposer-{:x}", rand::random::<u32>()));
    let approver = Jwk::generate(&format!("approver-{:x}", rand::random::<u32>()));
    for (key, principal, roles) in [
        (&alerts_key, "early-warning", &["declare", "close"][..]),
        (&proposer, "demo-proposer", &["declare", "close"][..]),
        (&approver, "demo-approver", &["approve"][..]),
    ] {
        let grant = sumud_shared::events::control::OperatorGrant {
            kid: key.kid.clone(),
            principal: principal.to_owned(),
            x: key.x.clone(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        crate::operators_cmd::publish_operator(
            &settings,
            &admin,
            CommandKind::OperatorAdd,
            grant,
            Some("demo operators".into()),
        )
        .await?;
    }
    for key in [&alerts_key, &proposer, &approver] {
        wait_for::<(i64,)>(
            &store,
            "the operators",
            &format!(
                "SELECT CAST(1 AS bigint) FROM control.operator_keys WHERE key_id = '{}'",
                key.kid
            ),
        )
        .await?;
    }
    println!(
        "Operators: admin {} (bootstrapped once) signed operator.add for the alerts service, \
         a proposer and an approver.",
        admin.kid
    );

    // 1. The social registry.
    let before = count(&store, "SELECT count(*) FROM registry.households_v").await?;
    let published = registry_cmd::publish_synthetic(&settings, households, seed, false).await?;
    let target = before + published as i64;
    wait_with_bar(
        &store,
        "registering",
        "SELECT count(*) FROM registry.households_v",
        target,
        before,
    )
    .await?;

    // 2. What if? The same eligibility code, in a rolled-back transaction.
    let today = Utc::now().date_naive();
    let scale_to = Money::parse_major("2500000", "JOD").map_err(anyhow::Error::msg)?;
    let scenario = CrisisDefinition {
        title: "What if the south floods?".into(),
        hazard: Hazard::Flood,
        severity: Severity::Severe,
        areas: vec!["JO-MN".into(), "JO-AT".into(), "JO-AQ".into()],
        response: Response {
            playbook: "flood-standard".into(),
            overrides: ResponseOverrides::default(),
        },
        budget: scale_to.clone(),
        starts_on: today,
        ends_on: today + chrono::Days::new(90),
    };
    let sim = sumud_eligibility::simulate::simulate(&pipeline.store, &scenario).await?;
    println!(
        "\nScenario (sumud simulate, nothing published): a severe flood over JO-MN, JO-AT, JO-AQ would cover {} households \
         for {} per tranche, {} over {} tranches; {} waitlisted.",
        sim.entitled,
        money(sim.per_tranche_minor),
        money(sim.committed_minor),
        sim.tranches,
        sim.waitlisted
    );

    // 3. Early warning: the crisis centre issues a CAP alert; the trigger
    //    rule declares a crisis by itself, signed with the alerts service's key.
    let alert_id = format!("NCSC-DEMO-{:x}", rand::random::<u32>());
    let sent = Utc::now();
    let cap = DEMO_ALERT
        .replace("{{ID}}", &alert_id)
        .replace(
            "{{SENT}}",
            &sent.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        )
        .replace(
            "{{EXPIRES}}",
            &(sent + chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        );
    let file = std::env::temp_dir().join(format!("{alert_id}.xml"));
    std::fs::write(&file, cap)?;
    crate::alerts_cmd::send(&settings, &file, None).await?;
    let _ = std::fs::remove_file(&file);
    // The alert's areas, listed: a text[] on PostgreSQL, a JSON array on SQLite.
    let areas = match store.backend() {
        Backend::Postgres => "array_to_string(areas, ', ')",
        Backend::Sqlite => "(SELECT group_concat(value, ', ') FROM json_each(areas))",
    };
    let (outcome, crisis, areas): (String, Option<String>, String) = wait_for(
        &store,
        "the alert",
        &format!(
            "SELECT outcome, crisis_id, {areas} FROM alerts.alerts WHERE identifier = '{alert_id}'"
        ),
    )
    .await?;
    let crisis_id = crisis.with_context(|| {
        format!(
            "the alert was recorded as {outcome}, not acted on: the flood rule declares only \
                 over areas where more than 20% of registered households are poor, and a small \
                 registry can leave the south with none; run the demo with more households \
                 (--households, 100000 by default)"
        )
    })?;
    let (state, definition): (String, String) = wait_for(
        &store,
        "the crisis",
        &format!("SELECT state, CAST(definition AS text) FROM control.crises WHERE crisis_id = '{crisis_id}'"),
    )
    .await?;
    let definition: serde_json::Value = serde_json::from_str(&definition)?;
    println!(
        "Early warning: CAP alert {alert_id} from ncsc.gov.jo, a sender on the trusted-sender list {} \
         (Severe, Likely; Arabic and English) over {}.\n  \
         Rule flood-severe-poor-areas {outcome} {crisis_id} ({state}) over {} with a pre-approved budget of {};\n  \
         areas where fewer than 20% of households are poor were left out.",
        sumud_alerts::senders::SenderBook::default_book().version,
        areas,
        definition["areas"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        definition["budget"]["minor"].as_i64().map(money).unwrap_or_default(),
    );
    let first = wait_stable(
        &store,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{crisis_id}' AND status = 'entitled'"),
        1,
    )
    .await?;
    println!("Eligibility: {first} households entitled within the pre-approved budget; the rest waitlisted.");

    // 4. Operators scale the response up; above the four-eyes threshold an
    //    amendment waits for a second principal's approval.
    let mut amended: CrisisDefinition = serde_json::from_value(definition)?;
    let flood_areas = amended.areas.clone();
    amended.budget = scale_to.clone();
    // What the approver reviews: the approval is signed over its digest.
    let reviewed = sumud_shared::events::crisis::definition_digest(&amended);
    crisis_cmd::publish(
        &settings,
        &proposer,
        CommandKind::Amend,
        &crisis_id,
        Some(amended),
        Some("scale up after the alert".into()),
    )
    .await?;
    wait_for::<(i64,)>(
        &store,
        "the pending amendment",
        &format!("SELECT CAST(1 AS bigint) FROM control.crises WHERE crisis_id = '{crisis_id}' AND pending IS NOT NULL"),
    )
    .await?;
    println!(
        "Amendment by demo-proposer: budget {} — above the four-eyes threshold, so it waits.",
        money(scale_to.minor)
    );
    crisis_cmd::approve(
        &settings,
        &approver,
        &crisis_id,
        &reviewed,
        Some("reviewed the scale-up".into()),
    )
    .await?;
    wait_for::<(i64,)>(
        &store,
        "the approved amendment",
        &format!("SELECT CAST(1 AS bigint) FROM control.crises WHERE crisis_id = '{crisis_id}' AND revision = 2 AND pending IS NULL"),
    )
    .await?;
    println!(
        "Approved by demo-approver, signed over what it reviewed ({}…): revision 2 in force; \
         waitlisted households are promoted.",
        &reviewed[..19]
    );
    if let Some(line) = crisis_cmd::authority(&store, &crisis_id).await? {
        println!("  {line}");
    }

    // 5. Eligibility applies revision 2; instructions flow and are paid.
    wait_for::<(i64,)>(
        &store,
        "eligibility at revision 2",
        &format!("SELECT CAST(1 AS bigint) FROM eligibility.crises WHERE crisis_id = '{crisis_id}' AND revision = 2"),
    )
    .await?;
    let decided = wait_stable(
        &store,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{crisis_id}'"),
        1,
    )
    .await?;
    let entitled = count(&store, &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{crisis_id}' AND status = 'entitled'")).await?;
    println!("Eligibility: {decided} decisions, {entitled} entitled (vertical top-ups and horizontal enrolments).");
    let tranches = 3;
    wait_with_bar(
        &store,
        "paying",
        &format!("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = '{crisis_id}' AND status IN ('succeeded', 'failed')"),
        entitled * tranches,
        0,
    )
    .await?;

    println!("\nReconciliation of {crisis_id}:");
    let problems = payments_cmd::print_table(&pipeline.store, &crisis_id).await?;
    let retried = count(&store, &format!("SELECT count(*) FROM disbursement.instructions WHERE crisis_id = '{crisis_id}' AND attempt > 1")).await?;
    let tasks = count(
        &store,
        &format!("SELECT count(*) FROM disbursement.verification_tasks t JOIN disbursement.instructions i USING (instruction_id) WHERE i.crisis_id = '{crisis_id}'"),
    )
    .await?;
    println!("{retried} payments needed a retry; {tasks} field-verification tasks raised for payments that failed for good.");
    let (first,): (DateTime<Utc>,) = wait_for(
        &store,
        "the first instruction",
        &format!(
            "SELECT min(created_at) FROM disbursement.instructions WHERE crisis_id = '{crisis_id}'"
        ),
    )
    .await?;
    let seconds = |since: DateTime<Utc>| (first - since).num_milliseconds() as f64 / 1000.0;
    let (from_start, from_alert) = (seconds(started_at), seconds(sent));
    println!(
        "First disbursement instruction {from_start:.1} s after the demo started, {from_alert:.1} s after the alert was published."
    );
    referrals::referrals(&settings, &store, &crisis_id).await?;
    let partner =
        overlap::partner_assistance(&settings, &store, &crisis_id, seed, &match_secret).await?;
    overlap::overlapping_price_shock(&settings, &store, &proposer, &crisis_id, flood_areas).await?;
    if let Some(household) = partner {
        // The price shock's decisions are all in (its step waited for them).
        let reason: Option<String> = on_store!(&store, pool => sqlx::query_scalar(&format!(
            "SELECT reason FROM eligibility.entitlements WHERE household_id = '{household}' \
             AND crisis_id LIKE 'PS-DEMO-%' ORDER BY decided_at DESC LIMIT 1"))
            .fetch_optional(pool)
            .await)?;
        let reason = reason.unwrap_or_else(|| {
            "no price-shock payment: the flood and WFP already give it the household cap".into()
        });
        println!("  {household}, whom WFP also assists: {reason}.");
    }
    let audit = audit::close_the_loop(&store, &settings.topics.tasks, &crisis_id).await?;
    println!(
        "Explain any decision or payment: sumud explain --crisis {crisis_id} --household <id>, \
         or sumud explain --instruction <reference> (--json for one document)"
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
    pipeline.stop().await?;
    Ok(audit)
}

/// The demo's CAP alert (placeholders for id and times).
const DEMO_ALERT: &str = include_str!("../data/demo-flood-alert.xml");

fn money(minor: i64) -> String {
    Money {
        minor,
        currency: "JOD".into(),
    }
    .display()
}

/// Polls `sql` until it returns a row (2 minutes at most).
async fn wait_for<T>(store: &Store, what: &str, sql: &str) -> anyhow::Result<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = on_store!(store, pool => sqlx::query_as::<_, T>(sql).fetch_optional(pool).await)?;
        if let Some(row) = row {
            return Ok(row);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not appear in 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(store: &Store, sql: &str) -> anyhow::Result<i64> {
    Ok(on_store!(store, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
}

/// Shows a bar until `sql` reaches `target` (10 minutes at most).
async fn wait_with_bar(
    store: &Store,
    what: &str,
    sql: &str,
    target: i64,
    base: i64,
) -> anyhow::Result<()> {
    let bar = registry_cmd::progress((target - base).max(0) as u64, what);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = count(store, sql).await? - base;
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

/// Waits until a count is at least `at_least` and has not changed for a
/// second.
async fn wait_stable(store: &Store, sql: &str, at_least: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = count(store, sql).await?;
        if now >= at_least && now == last {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "eligibility did not settle in 5 minutes"
        );
        last = now;
    }
}
