//! What the service benchmarks share: release binaries run as child
//! processes, topic watermarks, a registry loaded with COPY, and clean-up.

use std::fmt::Write as _;
use std::process::{Child, Command};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::synthetic;
use sumud_tests::TestEnv;

use crate::rss;

/// Seed of every benchmark's synthetic registry.
pub const SEED: u64 = 2026;
/// The longest any benchmark step may take.
pub const DEADLINE: Duration = Duration::from_secs(1800);

pub async fn wait_until<T, F, Fut>(services: &[&Service], what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    wait_until_every(services, Duration::from_millis(50), what, check).await
}

/// Polls `check` every `every` until it returns `Some`; fails if a service
/// exits or the deadline passes.
pub async fn wait_until_every<T, F, Fut>(
    services: &[&Service],
    every: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        for s in services {
            s.alive()?;
        }
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// A service binary running as a child process; stopped (SIGTERM, then
/// SIGKILL after 10 s) when dropped.
pub struct Service {
    /// The binary's name.
    pub name: &'static str,
    child: std::sync::Mutex<Child>,
}

impl Service {
    pub fn spawn(name: &'static str, s: &Settings, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(rss::sibling_binary(name)?);
        cmd.envs(s.env_vars()).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        // Disbursement refuses to start without a deployment's secret; a
        // benchmark run is its own deployment.
        cmd.env(
            "SUMUD_PSEUDONYM_SECRET",
            "benchmark-run-pseudonym-secret-32-bytes+",
        );
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Ok(Service {
            name,
            child: std::sync::Mutex::new(cmd.spawn()?),
        })
    }

    pub fn alive(&self) -> anyhow::Result<()> {
        if let Some(status) = self.child.lock().expect("not poisoned").try_wait()? {
            anyhow::bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("not poisoned").id()
    }

    pub fn peak_rss(&self) -> u64 {
        rss::peak_rss(self.pid()).unwrap_or(0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let Ok(child) = self.child.get_mut() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The high watermarks of a topic: how many messages it holds.
pub struct Watermarks {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
}

impl Watermarks {
    pub fn new(settings: &Settings, topic: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
            .set(
                "group.id",
                format!("{}-bench-watermarks", settings.group_prefix),
            )
            .create()?;
        let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = meta
            .topics()
            .first()
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions");
        Ok(Watermarks {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    pub fn total(&self) -> anyhow::Result<i64> {
        let mut sum = 0;
        for p in &self.partitions {
            let (low, high) =
                self.consumer
                    .fetch_watermarks(&self.topic, *p, Duration::from_secs(10))?;
            sum += high - low;
        }
        Ok(sum)
    }
}

/// COPYs `n` synthetic households straight into `registry.households`,
/// generating them on a blocking thread while the previous chunk is sent
/// (as the eligibility benchmark does).
pub async fn load_registry(pool: &PgPool, n: u64) -> anyhow::Result<()> {
    const CHUNK: u64 = 4096;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(8);
    let generator = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let catalog = AreaCatalog::default_catalog();
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let mut text = String::with_capacity((end - start) as usize * 320);
            for i in start..end {
                row(&mut text, catalog, i)?;
            }
            if tx.blocking_send(text).is_err() {
                break;
            }
            start = end;
        }
        Ok(())
    });
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY registry.households (household_id, version, removed, area_code, governorate, \
             district, members, welfare_score, flags, programmes, payment_channel, payment_provider, \
             account_token, personal, event_id, src_partition, src_offset, updated_at) FROM STDIN",
        )
        .await?;
    while let Some(chunk) = rx.recv().await {
        copy.send(chunk.into_bytes()).await?;
    }
    generator.await??;
    let rows = copy.finish().await?;
    anyhow::ensure!(rows == n, "COPY stored {rows} of {n}");
    Ok(())
}

/// One COPY text line of household `i`.
pub fn row(text: &mut String, catalog: &AreaCatalog, i: u64) -> anyhow::Result<()> {
    let h = synthetic::household(catalog, SEED, i);
    let path = catalog
        .resolve(&h.area_code)
        .expect("generated areas resolve");
    let flags: Vec<&str> = h.flags.iter().map(|f| f.as_str()).collect();
    let personal = serde_json::to_string(&h.personal)?;
    writeln!(
        text,
        "{}\t{}\tf\t{}\t{}\t{}\t{}\t{}\t{{{}}}\t{{{}}}\t{}\t{}\t{}\t{}\tev-{i}\t0\t{i}\t2026-11-29 00:00:00+00",
        h.household_id,
        h.version,
        h.area_code,
        path.governorate,
        path.district.unwrap_or_default(),
        h.members,
        h.welfare_score,
        flags.join(","),
        h.programmes.join(","),
        h.payment.channel.as_str(),
        h.payment.provider,
        h.payment.account_token,
        personal.replace('\\', "\\\\"),
    )?;
    Ok(())
}

/// Deletes the benchmark's topics (hundreds of megabytes each).
pub async fn delete_topics(settings: &Settings, topics: &[String]) {
    let Ok(admin) =
        sumud_shared::kafka::client_config(settings).create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = admin.delete_topics(&names, &opts).await;
}

/// Drops the benchmark's database.
pub async fn drop_database(env: TestEnv) -> anyhow::Result<()> {
    let url = env.settings.database_url.clone();
    env.pool.close().await;
    drop(env);
    let (admin, db) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("database URL {url} has no name"))?;
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| sumud_shared::config::DEFAULT_DATABASE_URL.to_owned());
    anyhow::ensure!(
        admin_url.starts_with(admin),
        "the benchmark database {url} is not on the server of {admin_url}"
    );
    let mut conn = PgConnectOptions::from_str(&admin_url)?
        .disable_statement_logging()
        .connect()
        .await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The median of some measurements (the upper one of an even count), as
/// every benchmark's ratio uses against its baseline runs.
pub fn median(xs: &[f64]) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
