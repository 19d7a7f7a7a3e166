//! Registry ingest: N household upserts already on the registry topic,
//! consumed by the real `sumud-registry` binary into PostgreSQL, against the
//! raw baseline of PostgreSQL `COPY` of the same rows into an identical empty
//! table.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sumud_shared::areas::AreaCatalog;
use sumud_shared::synthetic;
use sumud_tests::TestEnv;

use crate::rss;

/// Runs the benchmark and prints its figures.
pub async fn run(n: u64) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    sumud_shared::db::migrate(&env.pool, &sumud_registry::db::MIGRATOR).await?;
    println!("registry ingest benchmark: {n} households");

    let t = Instant::now();
    let seed = 2026;
    let published = sumud::registry_cmd::publish_synthetic(&env.settings, n, seed, true).await?;
    anyhow::ensure!(published == n, "published {published} of {n}");
    println!(
        "  produced to Kafka in {:.1} s (not part of either figure)",
        t.elapsed().as_secs_f64()
    );

    let copy_rate = copy_baseline(&env, n, seed).await?;

    let binary = rss::sibling_binary("sumud-registry")?;
    let s = &env.settings;
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .env("KAFKA_BOOTSTRAP_SERVERS", &s.bootstrap_servers)
        .env("DATABASE_URL", &s.database_url)
        .env("SUMUD_TOPIC_REGISTRY", &s.topics.registry)
        .env("SUMUD_TOPIC_DEADLETTER", &s.topics.deadletter)
        .env("SUMUD_GROUP_PREFIX", &s.group_prefix)
        .env("RUST_LOG", "warn")
        .spawn()?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        peak = peak.max(rss::peak_rss(pid).unwrap_or(0));
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM registry.households")
            .fetch_one(&env.pool)
            .await?;
        if stored as u64 >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "ingest did not finish in 30 minutes"
        );
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("sumud-registry exited early: {status}");
        }
        tokio::time::sleep(poll_interval(started.elapsed(), stored as u64, n)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    peak = peak.max(rss::peak_rss(pid).unwrap_or(0));
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();

    let rate = n as f64 / elapsed;
    println!("  sumud-registry: {n} households in {elapsed:.2} s = {rate:.0} households/s (includes process start and group join)");
    println!("  ratio to COPY:  {:.2} (target >= 0.5)", rate / copy_rate);
    println!(
        "  peak RSS of sumud-registry: {:.0} MB (target < 300 MB)",
        peak as f64 / 1e6
    );
    Ok(())
}

/// How long to wait before counting the stored rows again. Counting a table
/// of up to a million rows is work for the very database being measured, so
/// while the end is far off the count runs less often (at most every 2 s);
/// from half a second before the projected end on it runs every 250 ms, as
/// fine-grained as ever.
fn poll_interval(elapsed: Duration, stored: u64, n: u64) -> Duration {
    let fine = Duration::from_millis(250);
    if stored == 0 {
        return fine;
    }
    let remaining = elapsed.mul_f64((n.saturating_sub(stored)) as f64 / stored as f64);
    (remaining / 2).clamp(fine, Duration::from_secs(2))
}

/// COPYs the same rows into an identical empty table; returns rows/second.
async fn copy_baseline(env: &TestEnv, n: u64, seed: u64) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE registry.households_copy (LIKE registry.households INCLUDING ALL)")
        .execute(&env.pool)
        .await?;
    let catalog = AreaCatalog::default_catalog();
    let mut text = String::with_capacity(n as usize * 300);
    for i in 0..n {
        let h = synthetic::household(catalog, seed, i);
        let path = catalog
            .resolve(&h.area_code)
            .expect("generated areas resolve");
        let flags: Vec<&str> = h.flags.iter().map(|f| f.as_str()).collect();
        let personal = serde_json::to_string(&h.personal).expect("serialises");
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
    }
    let mut conn = env.pool.acquire().await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY registry.households_copy (household_id, version, removed, area_code, governorate, \
             district, members, welfare_score, flags, programmes, payment_channel, payment_provider, \
             account_token, personal, event_id, src_partition, src_offset, updated_at) FROM STDIN",
        )
        .await?;
    for chunk in text.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let rows = copy.finish().await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(rows == n, "COPY stored {rows} of {n}");
    let rate = n as f64 / elapsed;
    println!("  baseline COPY:  {n} rows in {elapsed:.2} s = {rate:.0} rows/s");
    Ok(rate)
}
