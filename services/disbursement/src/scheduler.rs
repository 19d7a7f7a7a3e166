//! The tranche scheduler: creates instructions as tranches fall due (the
//! first immediately on activation), re-issues scheduled retries, and flags
//! instructions with no final status past their deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sumud_shared::Result;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::DisbursementConfig;
use crate::db;

/// One pass over all due work; returns instructions created or re-issued.
/// `publish` is nudged after each commit that created instructions.
pub async fn tick(pool: &PgPool, config: &DisbursementConfig, publish: &Notify) -> Result<u64> {
    let mut changed = 0;
    for crisis in db::active_crises(pool).await? {
        let started = Instant::now();
        let n = db::create_due(
            pool,
            &crisis,
            &config.pseudonym_secret,
            config.day_seconds,
            config.deadline_secs,
            publish,
        )
        .await?;
        if n > 0 {
            info!(
                crisis = %crisis,
                instructions = n,
                seconds = started.elapsed().as_secs_f64(),
                "Instructions created."
            );
        }
        changed += n;
    }
    changed += db::reissue_due(pool, config.deadline_secs).await?;
    let overdue = db::flag_overdue(pool).await?;
    if overdue > 0 {
        warn!(
            instructions = overdue,
            "Instructions overdue: no final status before their deadline."
        );
    }
    Ok(changed)
}

/// Runs ticks until `shutdown`; `wake` triggers an immediate tick, `publish`
/// is nudged when new attempts await publication.
pub async fn run(
    pool: PgPool,
    config: DisbursementConfig,
    wake: Arc<Notify>,
    publish: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        match tick(&pool, &config, &publish).await {
            Ok(n) if n > 0 => publish.notify_one(),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Scheduler pass failed; will retry."),
        }
        // A pass reads every entitlement of every active crisis: over a large
        // crisis that takes a while, even with nothing due. Leave the
        // database twice as long to other work (publishing what the pass
        // created, above all) before the next pass, however often woken.
        let rest = started.elapsed() * 2;
        if rest > Duration::from_millis(10) {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(rest) => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(config.tick_ms)) => {}
        }
    }
    Ok(())
}
