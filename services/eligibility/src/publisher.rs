//! Publishes decisions to `sumud.entitlements.v1`. The entitlements table is
//! its own outbox: every change bumps `change_seq`, and this relay publishes
//! rows whose published mark lags their change, in change order, marking them
//! only after the broker acknowledged. One relay at a time (advisory lock).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::entitlement::{
    EntitlementDecision, EntitlementStatus, ExpansionKind, ENTITLEMENT_DECIDED,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::money::Money;
use sumud_shared::Result;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::db::{self, EntitlementRow};

const LOCK_KEY: i64 = 0x5355_4d55_4445_4c31; // "SUMUDEL1"

/// Converts a stored row into its event.
pub fn decision(row: &EntitlementRow) -> Envelope<EntitlementDecision> {
    let data = EntitlementDecision {
        entitlement_id: row.entitlement_id.clone(),
        crisis_id: row.crisis_id.clone(),
        crisis_revision: row.crisis_revision,
        household_id: row.household_id.clone(),
        kind: if row.kind == "vertical" {
            ExpansionKind::Vertical
        } else {
            ExpansionKind::Horizontal
        },
        status: match row.status.as_str() {
            "entitled" => EntitlementStatus::Entitled,
            "waitlisted" => EntitlementStatus::Waitlisted,
            _ => EntitlementStatus::Cancelled,
        },
        amount_per_tranche: Money {
            minor: row.amount_minor,
            currency: row.currency.clone(),
        },
        tranches: row.tranches as u32,
        interval_days: row.interval_days as u32,
        reason: row.reason.clone(),
        playbook: row.playbook.clone(),
        registry_version: row.registry_version,
    };
    let mut e = Envelope::new(
        "urn:sumud:eligibility",
        ENTITLEMENT_DECIDED,
        Some(row.household_id.clone()),
        data,
    );
    e.id = format!("{}@{}", row.entitlement_id, row.change_seq);
    e
}

/// Runs until `shutdown`.
pub async fn run(
    pool: PgPool,
    topic: String,
    producer: EventProducer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = lead(&pool, &topic, &producer, &wake, &shutdown).await {
            warn!(error = %e, "Decision publisher failed; retrying.");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    Ok(())
}

async fn lead(
    pool: &PgPool,
    topic: &str,
    producer: &EventProducer,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !leader {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    }
    let result = async {
        while !shutdown.is_cancelled() {
            let rows = db::unpublished(&mut conn, 5000).await?;
            if rows.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            let mut acks = Vec::with_capacity(rows.len());
            for row in &rows {
                let e = decision(row);
                acks.push(
                    producer
                        .enqueue(topic, row.household_id.as_bytes(), &e.to_bytes())
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            let ids: Vec<String> = rows.iter().map(|r| r.entitlement_id.clone()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.change_seq).collect();
            db::mark_published(&mut conn, &ids, &seqs).await?;
            debug!(published = rows.len(), "Decisions published.");
        }
        Ok(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    result
}
