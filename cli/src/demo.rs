//! `sumud demo`: the live end-to-end run a newcomer starts first. It runs the
//! pipeline's services in this process against the configured Kafka and
//! PostgreSQL, feeds them a synthetic registry and shows what happened.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use sumud_shared::config::Settings;
use tokio_util::sync::CancellationToken;

use crate::registry_cmd;

/// Runs the demo with `households` synthetic households.
pub async fn run(settings: Settings, households: u64, keep_running: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "Sumud demo — Kafka at {}, database at {}",
        settings.bootstrap_servers,
        redact(&settings.database_url)
    );
    let shutdown = CancellationToken::new();
    let registry = sumud_registry::App::build(settings.clone()).await.context(
        "starting the registry service (is Kafka/PostgreSQL up? try scripts/services.sh start)",
    )?;
    let pool = registry.pool().clone();
    let before = live_households(&pool).await?;
    let service = tokio::spawn(registry.run(shutdown.clone()));

    let seed = rand::random::<u32>() as u64;
    let published = registry_cmd::publish_synthetic(&settings, households, seed, false).await?;
    let bar = registry_cmd::progress(published, "registering");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = live_households(&pool).await? - before;
        bar.set_position(now.min(published as i64) as u64);
        if now >= published as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
    print_summary(&pool).await?;
    println!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    if keep_running {
        println!("Services keep running; press Ctrl-C to stop.");
        sumud_shared::shutdown::on_signals().cancelled().await;
    }
    shutdown.cancel();
    service.await??;
    Ok(())
}

async fn live_households(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM registry.households_v")
            .fetch_one(pool)
            .await?,
    )
}

async fn print_summary(pool: &PgPool) -> anyhow::Result<()> {
    let rows: Vec<(String, i64, f64, i64)> = sqlx::query_as(
        "SELECT governorate, count(*), avg(welfare_score)::float8, \
                count(*) FILTER (WHERE 'NAF-CASH' = ANY(programmes)) \
         FROM registry.households_v GROUP BY governorate ORDER BY count(*) DESC",
    )
    .fetch_all(pool)
    .await?;
    let catalog = sumud_shared::areas::AreaCatalog::default_catalog();
    println!(
        "\n{:<8} {:<14} {:>10} {:>10} {:>10}",
        "area", "governorate", "households", "avg score", "NAF-CASH"
    );
    for (code, n, avg, naf) in rows {
        let name = catalog
            .get(&code)
            .map(|a| a.name.en.as_str())
            .unwrap_or("?");
        println!("{code:<8} {name:<14} {n:>10} {avg:>10.1} {naf:>10}");
    }
    Ok(())
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
