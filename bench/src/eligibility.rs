//! Eligibility expansion (issue 3): a registry of N households (1,000,000 by
//! default), a crisis covering about 40% of them, and the time from the
//! signed `crisis.declare` being acknowledged by Kafka to the last
//! entitlement committed by the real `sumud-control` and `sumud-eligibility`
//! binaries — against the raw baseline of one hand-written
//! `INSERT … SELECT` of the same entitlement rows into an identical table,
//! measured in the same run.
//!
//! The registry is written straight into `registry.households` with COPY
//! (not timed), vacuumed and analysed, so that both timed parts read the same
//! warm, hint-bitted table.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool};
use sumud_control::signing::{self, Jwk};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{CommandClaims, CommandKind, SignedCommand, CONTROL_COMMAND};
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::money::Money;
use sumud_shared::playbook::{PlaybookBook, Resolved};
use sumud_tests::TestEnv;

use crate::harness::*;

const CRISIS: &str = "BENCH-FL-1";
const WARMUP: &str = "BENCH-WARMUP";
const CURRENCY: &str = "JOD";

/// Columns of an entitlement compared between the service and the baseline
/// (everything but timestamps and the outbox counters).
const COMPARED: &str = "entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, \
    tranches, interval_days, committed_minor, priority, members, welfare_score, area_code, governorate, \
    district, crisis_revision, registry_version, playbook, reason";

/// Options of the benchmark.
pub struct Options {
    /// Households in the registry.
    pub households: u64,
    /// Crisis areas; `None` picks the largest governorates until ~40% of the
    /// population is covered.
    pub areas: Option<Vec<String>>,
    /// Keep the benchmark database afterwards (it is dropped by default).
    pub keep: bool,
    /// Times the baseline statement is run (the ratio uses the median).
    pub baseline_runs: usize,
}

/// Runs the benchmark and prints its figures.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let n = o.households;
    let env = TestEnv::new().await;
    sumud_shared::db::migrate(&env.pool, &sumud_registry::db::MIGRATOR).await?;
    sumud_shared::db::migrate(&env.pool, &sumud_eligibility::db::MIGRATOR).await?;
    sumud_shared::db::migrate(&env.pool, &sumud_control::db::MIGRATOR).await?;
    println!("eligibility expansion benchmark: {n} households");
    // The benchmark's own statements are long by design; keep sqlx's
    // slow-statement warnings for the services' logs.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(
            PgConnectOptions::from_str(&env.settings.database_url)?.disable_statement_logging(),
        )
        .await?;

    let t = Instant::now();
    load_registry(&pool, n).await?;
    sqlx::query("VACUUM (FREEZE, ANALYZE) registry.households")
        .execute(&pool)
        .await?;
    println!(
        "  registry loaded with COPY, vacuumed and analysed in {:.1} s (not part of either figure)",
        t.elapsed().as_secs_f64()
    );

    let catalog = AreaCatalog::default_catalog();
    let areas = o.areas.unwrap_or_else(|| default_areas(catalog, 0.40));
    let mut def = definition(&areas, 1);
    let resolved = PlaybookBook::default_book()
        .resolve(&def)
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        resolved.vertical.is_some() && resolved.horizontal.is_some(),
        "the benchmark expects a playbook with vertical and horizontal expansion"
    );

    let (total, covered): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) a \
             WHERE hh.area_code = a OR hh.area_code LIKE a || '-%')) \
         FROM registry.households_v hh",
    )
    .bind(&areas)
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(total as u64 == n, "registry holds {total} of {n}");
    let want = expected(&pool, &areas, &resolved).await?;
    anyhow::ensure!(want.count > 0, "the crisis has no eligible household");
    // Everyone eligible fits in the budget (10% to spare); four eyes only
    // above it, so the declaration activates at once.
    let budget = want.committed_minor + want.committed_minor / 10 + 1;
    def.budget = Money::new(budget, CURRENCY).map_err(anyhow::Error::msg)?;
    println!(
        "  crisis areas {}: {covered} households = {:.1}% of the registry",
        areas.join(","),
        100.0 * covered as f64 / total as f64
    );
    println!(
        "  expected (independent SQL): {} entitlements ({} vertical, {} horizontal), {} of a {} budget",
        want.count,
        want.vertical,
        want.count - want.vertical,
        Money::new(want.committed_minor, CURRENCY)
            .map_err(anyhow::Error::msg)?
            .display(),
        def.budget.display()
    );

    // The services, as the release binaries, with an operator key.
    let alice = Jwk::generate("bench-alice-1");
    sumud_control::db::add_operator(
        &pool.clone().into(),
        "bench-alice-1",
        "bench-alice",
        &alice.x,
        &["declare".into(), "close".into()],
    )
    .await?;
    let threshold = (budget + 1).to_string();
    let control = Service::spawn(
        "sumud-control",
        &env.settings,
        &[("SUMUD_FOUR_EYES_THRESHOLD_MINOR", threshold.as_str())],
    )?;
    let eligibility = Service::spawn("sumud-eligibility", &env.settings, &[])?;
    let services = [&control, &eligibility];

    // Warm-up: a one-locality crisis through the whole path, so that both
    // consumer groups have joined before the clock starts.
    let warm_area = format!(
        "{}-001",
        catalog
            .districts_of("JO-MN")
            .next()
            .expect("Ma'an has districts")
            .code
    );
    let t = Instant::now();
    declare(
        &env,
        &alice,
        WARMUP,
        definition(std::slice::from_ref(&warm_area), budget),
    )
    .await?;
    wait_until(&services, "the warm-up crisis", || async {
        Ok(active(&pool, WARMUP).await?.then_some(()))
    })
    .await?;
    let warm_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM eligibility.entitlements")
        .fetch_one(&pool)
        .await?;
    let topic = &env.settings.topics.entitlements;
    let watermarks = Watermarks::new(&env.settings, topic)?;
    wait_until(&services, "the warm-up decisions on the topic", || async {
        Ok((watermarks.total()? >= warm_rows).then_some(()))
    })
    .await?;
    let on_topic_before = watermarks.total()?;
    println!(
        "  services started and warmed up in {:.1} s ({warm_rows} warm-up decisions in {warm_area})",
        t.elapsed().as_secs_f64(),
    );
    sqlx::query("CHECKPOINT").execute(&pool).await?;

    // Timed: declare → last entitlement committed.
    declare(&env, &alice, CRISIS, def).await?;
    let acked = Instant::now();
    let db_acked: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await?;
    // The crisis row and the expansion commit together; its appearance is a
    // cheap signal (a primary-key lookup) that does not load the database
    // while the expansion runs. Then count until the count is complete.
    wait_until_every(
        &services,
        Duration::from_millis(20),
        "the crisis",
        || async { Ok(active(&pool, CRISIS).await?.then_some(())) },
    )
    .await?;
    let count_sql = "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = $1";
    wait_until_every(
        &services,
        Duration::from_millis(20),
        "the entitlements",
        || async {
            let c: i64 = sqlx::query_scalar(count_sql)
                .bind(CRISIS)
                .fetch_one(&pool)
                .await?;
            anyhow::ensure!(
                c <= want.count,
                "{c} entitlements, more than {}",
                want.count
            );
            Ok((c == want.count).then_some(()))
        },
    )
    .await?;
    let service_s = acked.elapsed().as_secs_f64();
    wait_until(&services, "the decisions on the topic", || async {
        Ok((watermarks.total()? >= on_topic_before + want.count).then_some(()))
    })
    .await?;
    let published_s = acked.elapsed().as_secs_f64();
    // Referrals beside cash follow the decisions in a transaction of their
    // own: counted against an independent count of the households each
    // rule names.
    let mut want_referrals = 0i64;
    for rule in &resolved.referrals {
        let flags: Vec<&str> = rule.flags.iter().map(|f| f.as_str()).collect();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM registry.households_v hh \
             WHERE (hh.governorate = ANY($1) OR hh.district = ANY($1) OR hh.area_code = ANY($1)) \
               AND hh.flags @> $2::text[]",
        )
        .bind(&areas)
        .bind(&flags)
        .fetch_one(&pool)
        .await?;
        want_referrals += n;
    }
    wait_until(&services, "the referrals", || async {
        let c: i64 =
            sqlx::query_scalar("SELECT count(*) FROM eligibility.referrals WHERE crisis_id = $1")
                .bind(CRISIS)
                .fetch_one(&pool)
                .await?;
        anyhow::ensure!(
            c <= want_referrals,
            "{c} referrals, more than {want_referrals}"
        );
        Ok((c == want_referrals).then_some(()))
    })
    .await?;
    let referred_s = acked.elapsed().as_secs_f64();
    let peaks: Vec<u64> = services.iter().map(|s| s.peak_rss()).collect();

    // The count stays put, and every decision is as expected.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled: i64 = sqlx::query_scalar(count_sql)
        .bind(CRISIS)
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        settled == want.count,
        "the count moved on to {settled} after reaching {}",
        want.count
    );
    let (entitled, committed, vertical): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'entitled'), coalesce(sum(committed_minor), 0)::bigint, \
                count(*) FILTER (WHERE kind = 'vertical') \
         FROM eligibility.entitlements WHERE crisis_id = $1",
    )
    .bind(CRISIS)
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(
        entitled == want.count && committed == want.committed_minor && vertical == want.vertical,
        "service decided {entitled} entitled / {vertical} vertical / {committed} committed; \
         expected {} / {} / {}",
        want.count,
        want.vertical,
        want.committed_minor
    );
    let phases = phases(&pool, db_acked).await?;
    drop(eligibility);
    drop(control);

    // Baseline: one hand-written INSERT … SELECT of the same rows into an
    // identical table, after the service's table was vacuumed (so that
    // autovacuum does not run during it) and a checkpoint.
    sqlx::query("VACUUM (ANALYZE) eligibility.entitlements")
        .execute(&pool)
        .await?;
    sqlx::query(
        "CREATE TABLE eligibility.entitlements_baseline (LIKE eligibility.entitlements INCLUDING ALL, \
         FOREIGN KEY (crisis_id) REFERENCES eligibility.crises (crisis_id))",
    )
    .execute(&pool)
    .await?;
    let revision: i32 =
        sqlx::query_scalar("SELECT revision FROM eligibility.crises WHERE crisis_id = $1")
            .bind(CRISIS)
            .fetch_one(&pool)
            .await?;
    // Repeated on an emptied table (the machine is noisy); the ratio uses
    // the median.
    let mut baseline_runs = Vec::new();
    for i in 0..o.baseline_runs.max(1) {
        if i > 0 {
            sqlx::query("TRUNCATE eligibility.entitlements_baseline")
                .execute(&pool)
                .await?;
        }
        sqlx::query("CHECKPOINT").execute(&pool).await?;
        let mut conn = pool.acquire().await?;
        let started = Instant::now();
        let rows = baseline(&mut conn, &areas, &resolved, revision).await?;
        baseline_runs.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(
            rows as i64 == want.count,
            "baseline inserted {rows} of {}",
            want.count
        );
    }
    let baseline_s = median(&baseline_runs);
    let (only_service, only_baseline): (i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM (SELECT {COMPARED} FROM eligibility.entitlements WHERE crisis_id = $1 \
                   EXCEPT ALL SELECT {COMPARED} FROM eligibility.entitlements_baseline) a), \
                (SELECT count(*) FROM (SELECT {COMPARED} FROM eligibility.entitlements_baseline \
                   EXCEPT ALL SELECT {COMPARED} FROM eligibility.entitlements WHERE crisis_id = $1) b)"
    ))
    .bind(CRISIS)
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(
        only_service == 0 && only_baseline == 0,
        "the baseline's rows differ from the service's: {only_service} only in the service's, \
         {only_baseline} only in the baseline's"
    );

    println!("  households in registry:     {total}");
    println!(
        "  referrals beside cash:      {want_referrals} (independent count), all committed by +{referred_s:.2} s, \
         after the decisions (a transaction of their own)"
    );
    println!(
        "  covered by the crisis:      {covered} ({:.1}%)",
        100.0 * covered as f64 / total as f64
    );
    println!(
        "  entitlements:               {} (identical rows in service and baseline)",
        want.count
    );
    println!("  service: declare acked → last entitlement committed: {service_s:.2} s");
    println!(
        "    of which control + crisis topic + eligibility pick-up: {:.2} s, eligibility transaction: {:.2} s",
        phases.picked_up_s,
        service_s - phases.picked_up_s
    );
    println!(
        "    (control applied the command at +{:.2} s, its outbox published the crisis event at +{:.2} s)",
        phases.control_s, phases.outboxed_s
    );
    println!(
        "  service: declare acked → last decision on the entitlements topic: {published_s:.2} s"
    );
    let runs: Vec<String> = baseline_runs.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "  baseline INSERT … SELECT:   {baseline_s:.2} s (median of {} runs: {} s)",
        runs.len(),
        runs.join(", ")
    );
    println!(
        "  ratio service / baseline:   {:.2} (target <= 2)",
        service_s / baseline_s
    );
    println!(
        "  peak RSS: sumud-control {:.0} MB, sumud-eligibility {:.0} MB",
        peaks[0] as f64 / 1e6,
        peaks[1] as f64 / 1e6
    );

    if o.keep {
        println!("  kept database: {}", env.settings.database_url);
    } else {
        pool.close().await;
        drop_database(env).await?;
    }
    Ok(())
}

/// What the independent SQL expects the service to decide.
struct Expected {
    count: i64,
    vertical: i64,
    committed_minor: i64,
}

/// The caseload computed from the rule, not from the service's SQL: live
/// households whose area code is, or lies under, a crisis area; vertical when
/// enrolled in the programme, otherwise horizontal when the welfare score is
/// under the threshold; priced min(flat + per member × members, cap) per
/// tranche.
async fn expected(pool: &PgPool, areas: &[String], r: &Resolved) -> anyhow::Result<Expected> {
    let v = r.vertical.clone().expect("checked");
    let h = r.horizontal.clone().expect("checked");
    let (count, vertical, committed): (i64, i64, i64) = sqlx::query_as(
        "WITH inside AS ( \
            SELECT members, welfare_score, $2 = ANY(programmes) AS vertical \
            FROM registry.households_v hh \
            WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) a \
                          WHERE hh.area_code = a OR hh.area_code LIKE a || '-%')) \
         SELECT count(*), count(*) FILTER (WHERE vertical), \
                coalesce(sum(CASE WHEN vertical THEN least($3 + $4 * members, $5) \
                                  ELSE least($6 + $7 * members, $8) END * $9), 0)::bigint \
         FROM inside WHERE vertical OR welfare_score < $10",
    )
    .bind(areas)
    .bind(r.programme.as_deref())
    .bind(v.flat_minor)
    .bind(v.per_member_minor)
    .bind(v.cap_minor)
    .bind(h.flat_minor)
    .bind(h.per_member_minor)
    .bind(h.cap_minor)
    .bind(i64::from(r.tranches))
    .bind(r.max_welfare_score.expect("horizontal has a threshold"))
    .fetch_one(pool)
    .await?;
    Ok(Expected {
        count,
        vertical,
        committed_minor: committed,
    })
}

/// The raw baseline: the same entitlement rows, in one plain statement.
/// The budget reaches everyone, so every row is entitled.
async fn baseline(
    conn: &mut PgConnection,
    areas: &[String],
    r: &Resolved,
    revision: i32,
) -> anyhow::Result<u64> {
    let v = r.vertical.clone().expect("checked");
    let h = r.horizontal.clone().expect("checked");
    let priority = if r.priority_flags.is_empty() {
        "0".to_owned()
    } else {
        r.priority_flags
            .iter()
            .map(|f| format!("('{}' = ANY(flags))::int", f.as_str()))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let done = sqlx::query(&format!(
        "INSERT INTO eligibility.entitlements_baseline \
            (entitlement_id, crisis_id, household_id, kind, status, amount_minor, currency, tranches, \
             interval_days, committed_minor, priority, members, welfare_score, area_code, governorate, \
             district, crisis_revision, registry_version, playbook, reason) \
         SELECT $1 || '/' || household_id || '/' || kind, $1, household_id, kind, 'entitled', amount, $2, $3, \
                $4, amount * $3, priority, members, welfare_score, area_code, governorate, \
                district, $5, version, $6, \
                CASE WHEN kind = 'vertical' THEN 'vertical top-up: enrolled in ' || $7::text \
                     ELSE 'horizontal enrolment: welfare score ' || welfare_score || ' under ' || $8::float8 END \
                || '; area ' || area_code || ' is in the crisis areas; ' || amount || ' per tranche for ' \
                || members || ' members x ' || $3 || ' tranches' \
         FROM (SELECT hh.*, \
                      CASE WHEN $7::text = ANY(programmes) THEN 'vertical' ELSE 'horizontal' END AS kind, \
                      CASE WHEN $7 = ANY(programmes) THEN least($9 + $10 * members, $11) \
                           ELSE least($12 + $13 * members, $14) END AS amount, \
                      {priority} AS priority \
               FROM registry.households_v hh \
               WHERE (governorate = ANY($15) OR district = ANY($15) OR area_code = ANY($15)) \
                 AND ($7 = ANY(programmes) OR welfare_score < $8::float8)) s"
    ))
    .bind(CRISIS)
    .bind(CURRENCY)
    .bind(r.tranches as i32)
    .bind(r.interval_days as i32)
    .bind(revision)
    .bind(&r.playbook)
    .bind(r.programme.as_deref())
    .bind(r.max_welfare_score.expect("horizontal has a threshold"))
    .bind(v.flat_minor)
    .bind(v.per_member_minor)
    .bind(v.cap_minor)
    .bind(h.flat_minor)
    .bind(h.per_member_minor)
    .bind(h.cap_minor)
    .bind(areas)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// When the steps of the path happened, in seconds after the acknowledgement
/// (database clock).
struct Phases {
    control_s: f64,
    outboxed_s: f64,
    picked_up_s: f64,
}

async fn phases(pool: &PgPool, acked: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Phases> {
    let (control, outboxed, picked_up): (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT extract(epoch FROM (SELECT applied_at FROM control.commands WHERE crisis_id = $1) - $2)::float8, \
                extract(epoch FROM (SELECT max(published_at) FROM control.outbox WHERE key = $1) - $2)::float8, \
                extract(epoch FROM (SELECT min(decided_at) FROM eligibility.entitlements WHERE crisis_id = $1) - $2)::float8",
    )
    .bind(CRISIS)
    .bind(acked)
    .fetch_one(pool)
    .await?;
    Ok(Phases {
        control_s: control.unwrap_or(f64::NAN),
        outboxed_s: outboxed.unwrap_or(f64::NAN),
        picked_up_s: picked_up.unwrap_or(f64::NAN),
    })
}

/// Governorates, largest first, until `share` of the population is covered.
fn default_areas(catalog: &AreaCatalog, share: f64) -> Vec<String> {
    let mut govs: Vec<_> = catalog.governorates().collect();
    govs.sort_by(|a, b| b.population_share.total_cmp(&a.population_share));
    let mut picked = Vec::new();
    let mut covered = 0.0;
    for g in govs {
        if covered >= share {
            break;
        }
        covered += g.population_share;
        picked.push(g.code.clone());
    }
    picked
}

fn definition(areas: &[String], budget_minor: i64) -> CrisisDefinition {
    CrisisDefinition {
        title: "Benchmark: flash floods".into(),
        hazard: Hazard::Flood,
        severity: Severity::Severe,
        areas: areas.to_vec(),
        response: Response {
            playbook: "flood-standard".into(),
            overrides: ResponseOverrides::default(),
        },
        budget: Money::new(budget_minor, CURRENCY).expect("valid currency"),
        starts_on: "2026-12-01".parse().expect("date"),
        ends_on: "2027-03-01".parse().expect("date"),
    }
}

fn declare_jws(key: &Jwk, crisis: &str, def: CrisisDefinition) -> anyhow::Result<String> {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let claims = CommandClaims {
        approves: None,
        operator: None,
        scope: None,
        propose: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        cmd: CommandKind::Declare,
        crisis_id: crisis.into(),
        body: Some(def),
        note: Some("sumud-bench eligibility".into()),
        trigger: None,
    };
    signing::sign(&claims, key).map_err(anyhow::Error::msg)
}

async fn declare(
    env: &TestEnv,
    key: &Jwk,
    crisis: &str,
    def: CrisisDefinition,
) -> anyhow::Result<()> {
    let jws = declare_jws(key, crisis, def)?;
    let e = Envelope::new(
        "urn:sumud:bench",
        CONTROL_COMMAND,
        Some(crisis.into()),
        SignedCommand { jws },
    );
    env.publish(&env.settings.topics.control, crisis, &e.to_bytes())
        .await;
    Ok(())
}

/// Whether eligibility has committed the crisis as active (its expansion
/// commits in the same transaction).
async fn active(pool: &PgPool, crisis: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM eligibility.crises WHERE crisis_id = $1 AND state = 'active'",
    )
    .bind(crisis)
    .fetch_one(pool)
    .await?
        > 0)
}
