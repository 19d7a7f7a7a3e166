//! Retries and isolation: a transient failure retries the same batch with
//! jittered backoff, forever, storing nothing; a permanent one re-runs the
//! batch message by message so that only the culprit is dead-lettered.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{Handler, Incoming, Verdict};
use crate::deadletter::Reason;
use crate::envelope::Rejection;
use crate::Result;

/// Runs the handler, retrying transient failures and isolating poison.
/// Returns `None` only when shutdown interrupts a retry.
pub(super) async fn handle_with_retries<H: Handler>(
    handler: &H,
    batch: &[Incoming],
    shutdown: &CancellationToken,
) -> Option<Vec<Verdict>> {
    if batch.is_empty() {
        return Some(Vec::new());
    }
    match retry_transient(|| handler.handle(batch), shutdown).await? {
        Ok(v) if v.len() == batch.len() => Some(v),
        Ok(v) => {
            error!(
                expected = batch.len(),
                got = v.len(),
                "Handler returned the wrong number of verdicts; isolating."
            );
            isolate(handler, batch, shutdown).await
        }
        Err(e) => {
            warn!(error = %e, size = batch.len(), "Batch failed permanently; retrying message by message to isolate it.");
            isolate(handler, batch, shutdown).await
        }
    }
}

/// Runs each message of a failed batch alone: the ones that fail alone
/// are `handler_failed`, the others are judged as usual.
async fn isolate<H: Handler>(
    handler: &H,
    batch: &[Incoming],
    shutdown: &CancellationToken,
) -> Option<Vec<Verdict>> {
    let mut verdicts = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        let v = match retry_transient(|| handler.handle(one), shutdown).await? {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(_) => Verdict::Reject(Rejection::new(
                Reason::HandlerFailed,
                "handler returned no verdict",
            )),
            Err(e) => {
                error!(topic = %one[0].topic, partition = one[0].partition, offset = one[0].offset, error = %e, "Message failed permanently.");
                Verdict::Reject(Rejection::new(Reason::HandlerFailed, e.to_string()))
            }
        };
        verdicts.push(v);
    }
    Some(verdicts)
}

/// How long an ordering wait (`NotReady`) stays at debug level before each
/// further retry is logged as a warning.
const NOT_READY_QUIET: Duration = Duration::from_secs(30);

/// Calls `f` until it succeeds or fails permanently, sleeping with jittered
/// exponential backoff (100 ms doubling to 10 s) between transient failures.
/// `None` means shutdown was requested while waiting.
pub async fn retry_transient<T, F, Fut>(mut f: F, shutdown: &CancellationToken) -> Option<Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let started = std::time::Instant::now();
    loop {
        match f().await {
            Err(e) if e.is_retryable() => {
                let wait = backoff.next_wait();
                let waited = started.elapsed();
                if matches!(e, crate::Error::NotReady(_)) && waited < NOT_READY_QUIET {
                    // Expected ordering waits (another service not caught up yet).
                    debug!(error = %e, wait_ms = wait.as_millis() as u64, "Not ready; will retry.");
                } else if matches!(e, crate::Error::NotReady(_)) {
                    // Past the quiet spell the wait is news: the other service
                    // may be down or stuck, and this partition waits on it.
                    warn!(error = %e, waited_s = waited.as_secs(), wait_ms = wait.as_millis() as u64, "Still not ready; the partition waits on another service.");
                } else {
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "Transient failure; will retry.");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            other => return Some(other),
        }
    }
}
