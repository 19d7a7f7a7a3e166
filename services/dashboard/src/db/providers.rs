//! Payment providers over the last [`super::PROVIDER_WINDOW_SECS`]: counts by
//! status, report latency (percentiles, computed here on SQLite), and the
//! signed reports they sent.

use sqlx::FromRow;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use super::fetch_window;
use crate::error::Result;

/// Instruction counts of one provider.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderCounts {
    /// Provider.
    pub provider: String,
    /// Instructions ever sent.
    pub instructions: i64,
    /// Awaiting a final status.
    pub open_instructions: i64,
    /// Open and past the deadline.
    pub overdue: i64,
}

/// Instruction counts per provider.
pub async fn provider_counts(store: &Store) -> Result<Vec<ProviderCounts>> {
    const SQL: &str = "SELECT provider, count(*) AS instructions, \
                count(*) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS open_instructions, \
                count(*) FILTER (WHERE overdue AND status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS overdue \
         FROM disbursement.instructions GROUP BY provider ORDER BY provider";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// Acknowledgement latency of one provider.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderLatency {
    /// Provider.
    pub provider: String,
    /// First attempts whose first status arrived in the window.
    pub acknowledged: i64,
    /// Median seconds.
    pub p50: Option<f64>,
    /// 95th percentile seconds.
    pub p95: Option<f64>,
}

/// Time from an instruction's creation to the first status report of its
/// first attempt, for first reports within the window. Retries are left
/// out: their dispatch time is not recorded, and the first attempt is what
/// tells whether a provider answers promptly. The figure includes the
/// outbox relay, which is what a household waits for too.
pub async fn provider_latency(store: &Store) -> Result<Vec<ProviderLatency>> {
    const FIRST: &str = "WITH first AS ( \
             SELECT s.instruction_id, min(s.at) AS at \
             FROM disbursement.status_log s \
             WHERE s.attempt = 1 AND s.at > {since} \
             GROUP BY s.instruction_id \
             HAVING NOT EXISTS ( \
                 SELECT 1 FROM disbursement.status_log e \
                 WHERE e.instruction_id = s.instruction_id AND e.attempt = 1 AND e.at <= {since}) \
         )";
    if let Store::Postgres(_) = store {
        return fetch_window(
            store,
            &format!(
                "{FIRST} \
                 SELECT i.provider, count(*) AS acknowledged, \
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM f.at - i.created_at), 0)::float8) AS p50, \
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM f.at - i.created_at), 0)::float8) AS p95 \
                 FROM first f JOIN disbursement.instructions i USING (instruction_id) \
                 GROUP BY i.provider"
            ),
        )
        .await;
    }
    // SQLite: each latency, in order per provider; the percentiles here.
    let latencies: Vec<(String, f64)> = fetch_window(
        store,
        &format!(
            "{FIRST} \
             SELECT i.provider, max((julianday(f.at) - julianday(i.created_at)) * 86400.0, 0.0) AS s \
             FROM first f JOIN disbursement.instructions i USING (instruction_id) \
             ORDER BY i.provider, s"
        ),
    )
    .await?;
    let mut out: Vec<ProviderLatency> = Vec::new();
    for chunk in latencies.chunk_by(|a, b| a.0 == b.0) {
        let sorted: Vec<f64> = chunk.iter().map(|(_, s)| *s).collect();
        out.push(ProviderLatency {
            provider: chunk[0].0.clone(),
            acknowledged: sorted.len() as i64,
            p50: percentile_cont(&sorted, 0.5),
            p95: percentile_cont(&sorted, 0.95),
        });
    }
    Ok(out)
}

/// PostgreSQL's `percentile_cont` of sorted values: linear interpolation
/// between the two values around position `q × (n − 1)`.
fn percentile_cont(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let at = q * last as f64;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    let frac = at - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * frac)
}

/// Final status reports of one provider, by status and reason.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderReports {
    /// Provider.
    pub provider: String,
    /// `succeeded` or `rejected`.
    pub status: String,
    /// Provider reason code of a rejection.
    pub reason_code: Option<String>,
    /// Reports.
    pub count: i64,
}

/// Applied final reports in the window (duplicates and late reports the
/// disbursement service ignored are left out).
pub async fn provider_reports(store: &Store) -> Result<Vec<ProviderReports>> {
    fetch_window(
        store,
        "SELECT provider, status, reason_code, count(*) AS count \
         FROM disbursement.status_log \
         WHERE applied AND status IN ('succeeded', 'rejected') AND at > {since} \
         GROUP BY provider, status, reason_code",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::percentile_cont;

    #[test]
    fn percentiles_interpolate_as_postgresql_does() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_cont(&sorted, 0.5), Some(2.5));
        assert!((percentile_cont(&sorted, 0.95).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(percentile_cont(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile_cont(&[], 0.5), None);
    }
}
