//! Early warning to money (issue 5): the latency from an `Actual` CAP alert
//! being produced to the first disbursement instruction of the crisis it
//! auto-declares being on the instructions topic, through the real release
//! binaries (alerts → control → eligibility → disbursement), alert after
//! alert; p50 and p99 against the raw baseline of one produce → consume hop
//! on the same broker, measured in the same run.
//!
//! "On the topic" is observed by a consumer (`fetch.wait.max.ms` = 5): a
//! record is visible to consumers only once the broker has acknowledged it,
//! so the figure is an upper bound on the acknowledgement time.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::ConnectOptions;
use sumud_alerts::rules::{Condition, RuleBook};
use sumud_control::signing::Jwk;
use sumud_shared::areas::{AreaCatalog, Level};
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{ALERT_CAP, CAP_XML};
use sumud_shared::kafka::producer::EventProducer;
use sumud_tests::TestEnv;

use crate::harness::*;

/// Options of the benchmark.
pub struct Options {
    /// Households in the registry.
    pub households: u64,
    /// Alerts to time.
    pub alerts: usize,
    /// Keep the benchmark database instead of dropping it.
    pub keep: bool,
}

/// Runs the benchmark and prints its figures.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let s = env.settings.clone();
    for m in [
        &sumud_registry::db::MIGRATOR,
        &sumud_control::db::MIGRATOR,
        &sumud_alerts::db::MIGRATOR,
    ] {
        sumud_shared::db::migrate(&env.pool, m).await?;
    }
    println!(
        "alerts benchmark: {} alerts, {} households, alert → first instruction on the topic",
        o.alerts, o.households
    );
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(PgConnectOptions::from_str(&s.database_url)?.disable_statement_logging())
        .await?;
    load_registry(&pool, o.households).await?;
    sqlx::query("VACUUM (FREEZE, ANALYZE) registry.households")
        .execute(&pool)
        .await?;

    // The alerts service's key, registered like an operator's; rules that
    // declare for any district with households, so every alert acts.
    let dir = std::env::temp_dir().join(format!("sumud-bench-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = Jwk::generate("alerts-bench");
    let key_file = dir.join("alerts.jwk");
    std::fs::write(&key_file, serde_json::to_vec(&key)?)?;
    sumud_control::db::add_operator(
        &env.store,
        &key.kid,
        "early-warning",
        &key.x,
        &["declare".into(), "close".into()],
    )
    .await?;
    let mut rules = RuleBook::default_book();
    for r in &mut rules.rules {
        if let Condition::Cap(c) = &mut r.when {
            c.min_poor_share = 0.0;
        }
    }
    let rules_file = dir.join("rules.json");
    std::fs::write(&rules_file, serde_json::to_vec(&rules)?)?;

    let watcher = FirstInstructions::start(&s)?;
    let services = [
        Service::spawn(
            "sumud-alerts",
            &s,
            &[
                (
                    "SUMUD_ALERTS_KEY_FILE",
                    key_file.to_str().unwrap_or_default(),
                ),
                (
                    "SUMUD_ALERTS_RULES_FILE",
                    rules_file.to_str().unwrap_or_default(),
                ),
            ],
        )?,
        Service::spawn("sumud-control", &s, &[])?,
        Service::spawn("sumud-eligibility", &s, &[])?,
        Service::spawn("sumud-disbursement", &s, &[])?,
    ];
    let refs: Vec<&Service> = services.iter().collect();
    let producer = EventProducer::new(&s)?;
    let districts: Vec<[f64; 2]> = AreaCatalog::default_catalog()
        .file()
        .areas
        .iter()
        .filter(|a| a.level == Level::District)
        .map(|a| a.centroid)
        .collect();

    // Warm-up: three alerts through the whole path (consumer groups joined,
    // producers connected, statements prepared), not timed.
    let t = Instant::now();
    for (i, centre) in districts.iter().take(3).enumerate() {
        let id = format!("WARM-{i}");
        one_alert(&producer, &s, &watcher, &refs, &id, *centre).await?;
    }
    println!(
        "  services started and warmed up in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut pipeline = Vec::with_capacity(o.alerts);
    let mut ends = Vec::with_capacity(o.alerts);
    for i in 0..o.alerts {
        let centre = districts[(i + 3) % districts.len()];
        let id = format!("BENCH-{i}");
        let produced = chrono::Utc::now();
        let latency = one_alert(&producer, &s, &watcher, &refs, &id, centre).await?;
        pipeline.push(latency);
        let seen = produced + chrono::Duration::microseconds((latency * 1e6) as i64);
        ends.push((id, produced, seen));
    }
    let stages = stages(&pool, &ends).await?;
    let hop = raw_hops(&s, &producer, o.alerts).await?;

    let (p50, p99) = (percentile(&pipeline, 50.0), percentile(&pipeline, 99.0));
    let (h50, h99) = (percentile(&hop, 50.0), percentile(&hop, 99.0));
    println!(
        "  alert → first instruction: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} alerts",
        p50 * 1e3,
        p99 * 1e3,
        percentile(&pipeline, 100.0) * 1e3,
        pipeline.len()
    );
    println!(
        "  raw baseline, one produce → consume hop: p50 {:.1} ms, p99 {:.1} ms",
        h50 * 1e3,
        h99 * 1e3
    );
    println!(
        "  ratio (pipeline / one raw hop): p50 {:.1}x, p99 {:.1}x",
        p50 / h50,
        p99 / h99
    );
    println!("  where the time goes (p50 / p99 per stage, ms; from row timestamps):");
    for (name, xs) in &stages {
        println!(
            "    {name:<44} {:>6.0} / {:>6.0}",
            percentile(xs, 50.0) * 1e3,
            percentile(xs, 99.0) * 1e3
        );
    }
    println!(
        "  target p99 < 1 s: {}",
        if p99 < 1.0 { "met" } else { "NOT met" }
    );
    for svc in &services {
        println!(
            "  {} peak RSS {:.0} MB",
            svc.name,
            svc.peak_rss() as f64 / 1e6
        );
    }
    drop(services);
    let _ = std::fs::remove_dir_all(&dir);
    if !o.keep {
        drop(pool);
        drop_database(env).await?;
    }
    Ok(())
}

/// Produces one flood alert around `centre` and waits for the first
/// instruction of the crisis it causes; returns the latency in seconds.
async fn one_alert(
    producer: &EventProducer,
    s: &Settings,
    watcher: &FirstInstructions,
    services: &[&Service],
    id: &str,
    centre: [f64; 2],
) -> anyhow::Result<f64> {
    let crisis = sumud_alerts::command::crisis_id(&["bench.ncsc.gov.jo", id]);
    let mut e = Envelope::new("urn:bench", ALERT_CAP, None, flood_alert(id, centre));
    e.datacontenttype = CAP_XML.into();
    let started = Instant::now();
    producer
        .send(&s.topics.alerts, "bench.ncsc.gov.jo", &e)
        .await?;
    let seen = wait_until_every(
        services,
        Duration::from_millis(2),
        "the first instruction",
        || async { Ok(watcher.first(&crisis)) },
    )
    .await?;
    Ok(seen.saturating_duration_since(started).as_secs_f64())
}

/// Per-stage durations of each timed alert, from the rows each service wrote.
async fn stages(
    pool: &sqlx::PgPool,
    ends: &[(
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )],
) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
    type T = chrono::DateTime<chrono::Utc>;
    let names = [
        "produced → recorded by alerts (+ command queued)",
        "→ crisis active in control",
        "→ first decision committed by eligibility",
        "→ first instruction created by disbursement",
        "→ first instruction seen on the topic",
    ];
    let mut out: Vec<(&'static str, Vec<f64>)> = names.iter().map(|n| (*n, Vec::new())).collect();
    for (id, produced, seen) in ends {
        let row: Option<(T, T, Option<T>, Option<T>)> = sqlx::query_as(
            "SELECT a.received_at, c.created_at,                     (SELECT min(decided_at) FROM eligibility.entitlements e WHERE e.crisis_id = a.crisis_id),                     (SELECT min(created_at) FROM disbursement.instructions i WHERE i.crisis_id = a.crisis_id)              FROM alerts.alerts a JOIN control.crises c USING (crisis_id) WHERE a.identifier = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        let Some((recorded, crisis, Some(decided), Some(created))) = row else {
            continue;
        };
        let marks = [*produced, recorded, crisis, decided, created, *seen];
        for (k, w) in marks.windows(2).enumerate() {
            out[k]
                .1
                .push((w[1] - w[0]).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }
    Ok(out)
}

/// A CAP 1.2 flood alert with a small polygon around a district's centre.
fn flood_alert(id: &str, [lon, lat]: [f64; 2]) -> String {
    let now = chrono::Utc::now();
    let d = 0.005;
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{id}</identifier><sender>bench.ncsc.gov.jo</sender>
<sent>{sent}</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
<info><category>Met</category><event>Flash flood</event><urgency>Immediate</urgency><severity>Severe</severity>
<certainty>Observed</certainty><expires>{expires}</expires><area><areaDesc>bench</areaDesc>
<polygon>{a},{b} {a},{c} {e},{c} {e},{b} {a},{b}</polygon></area></info></alert>"#,
        sent = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        expires =
            (now + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        a = lat - d,
        e = lat + d,
        b = lon - d,
        c = lon + d,
    )
}

/// Watches the instructions topic and remembers when each crisis's first
/// instruction arrived.
struct FirstInstructions {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl FirstInstructions {
    fn start(s: &Settings) -> anyhow::Result<Self> {
        let consumer = tail(s, &s.topics.instructions)?;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let out = seen.clone();
        std::thread::spawn(move || loop {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let at = Instant::now();
                let crisis = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                    .and_then(|v| v["data"]["crisis_id"].as_str().map(str::to_owned));
                if let Some(c) = crisis {
                    out.lock().expect("not poisoned").entry(c).or_insert(at);
                }
            }
        });
        Ok(FirstInstructions { seen })
    }

    fn first(&self, crisis: &str) -> Option<Instant> {
        self.seen.lock().expect("not poisoned").get(crisis).copied()
    }
}

/// A consumer at the end of every partition of `topic`, fetching eagerly.
fn tail(s: &Settings, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = sumud_shared::kafka::client_config(s)
        .set(
            "group.id",
            format!("{}-bench-tail-{}", s.group_prefix, uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for p in meta
        .topics()
        .first()
        .map(|t| t.partitions())
        .unwrap_or_default()
    {
        tpl.add_partition_offset(topic, p.id(), Offset::End)?;
    }
    anyhow::ensure!(tpl.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// The raw baseline: one message produced (acknowledged) and consumed,
/// `n` times in a row, on a topic of the same deployment.
async fn raw_hops(s: &Settings, producer: &EventProducer, n: usize) -> anyhow::Result<Vec<f64>> {
    let topic = &s.topics.deadletter;
    let consumer = tail(s, topic)?;
    // Let the assignment settle before the clock starts.
    for _ in 0..10 {
        consumer.poll(Duration::from_millis(50));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let marker = format!("hop-{i}-{}", uuid::Uuid::new_v4());
        let started = Instant::now();
        producer
            .send_raw(topic, Some(marker.as_bytes()), marker.as_bytes(), None)
            .await?;
        loop {
            match consumer.poll(Duration::from_millis(1000)) {
                Some(Ok(m)) if m.key() == Some(marker.as_bytes()) => break,
                Some(_) => {}
                None => {
                    anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "hop {i} lost")
                }
            }
        }
        out.push(started.elapsed().as_secs_f64());
    }
    Ok(out)
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}
