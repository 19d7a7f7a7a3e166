//! Every service's small HTTP surface, when `SUMUD_HTTP_ADDR` is set:
//! `/healthz` (the process answers), `/readyz` (Kafka and the database answer
//! now, and the service's consumer is a member of its group that keeps up;
//! 503 with the reason otherwise) and `/metrics` (Prometheus text).
//!
//! Several services in one process (`sumud demo`, tests) share one metrics
//! registry; the first to bind the address serves it and the others say so
//! and go on without.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::db::Store;
use crate::kafka::health::ConsumerHealth;
use crate::metrics::{Metrics, PoolLabels, ServiceLabels};

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

struct Probe {
    service: &'static str,
    store: Store,
    kafka: Arc<BaseConsumer>,
    outbox: Option<&'static str>,
    consumer: Option<Arc<ConsumerHealth>>,
}

/// Serves the endpoints until `shutdown`, if `settings.http_addr` is set.
/// `outbox` names the service's `<schema>.outbox` table, if it has one, for
/// the backlog gauge; `consumer` is the health of the service's consumer,
/// if it consumes, which readiness then requires.
pub fn spawn(
    settings: &Settings,
    service: &'static str,
    store: Store,
    outbox: Option<&'static str>,
    consumer: Option<Arc<ConsumerHealth>>,
    shutdown: CancellationToken,
) -> crate::Result<Option<JoinHandle<()>>> {
    let Some(addr) = settings.http_addr else {
        return Ok(None);
    };
    // A metadata client only: no `group.id`, so it has no group coordinator
    // to wait for when dropped (librdkafka closes a consumer with a group by
    // waiting on its coordinator, which after a broker restart may never
    // answer, on whatever thread drops it).
    let kafka: BaseConsumer = crate::kafka::client_config(settings).create()?;
    let probe = Arc::new(Probe {
        service,
        store,
        kafka: Arc::new(kafka),
        outbox,
        consumer,
    });
    Ok(Some(tokio::spawn(serve(addr, probe, shutdown))))
}

async fn serve(addr: SocketAddr, probe: Arc<Probe>, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            info!(service = probe.service, %addr, "HTTP address already served in this process or by another; not serving.");
            return;
        }
        Err(e) => {
            warn!(service = probe.service, %addr, error = %e, "Cannot serve HTTP; running without /metrics and probes.");
            return;
        }
    };
    info!(service = probe.service, %addr, "Serving /healthz, /readyz and /metrics.");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probe);
    let stopped = shutdown.clone();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .await
    {
        warn!(error = %e, "HTTP server stopped.");
    }
}

async fn ready(State(p): State<Arc<Probe>>) -> Response {
    let db = tokio::time::timeout(PROBE_TIMEOUT, p.store.ping()).await;
    let db = match db {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let kafka = p.kafka.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        kafka
            .fetch_metadata(None, PROBE_TIMEOUT)
            .map(|m| m.brokers().len())
    })
    .await;
    let kafka = match kafka {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(Ok(_)) => Err("no broker in the metadata".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let consumer = p
        .consumer
        .as_ref()
        .map(|h| h.report(std::time::Instant::now()));
    let consuming = consumer.as_ref().is_none_or(|(ok, _)| *ok);
    let status = if db.is_ok() && kafka.is_ok() && consuming {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // The database answers under its backend's name ("postgresql" or "sqlite").
    let backend = match p.store.backend() {
        crate::db::Backend::Postgres => "postgresql",
        crate::db::Backend::Sqlite => "sqlite",
    };
    let mut body = json!({
        "service": p.service,
        "ready": status == StatusCode::OK,
        backend: db.err().unwrap_or_else(|| "ok".into()),
        "kafka": kafka.err().unwrap_or_else(|| "ok".into()),
    });
    if let Some((_, report)) = consumer {
        body["consumer"] = report;
    }
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(p): State<Arc<Probe>>) -> Response {
    crate::metrics::refresh().await;
    let m = Metrics::global();
    let (size, idle) = p.store.connections();
    let (size, idle) = (i64::from(size), idle as i64);
    for (state, n) in [("idle", idle), ("in_use", size - idle)] {
        m.db_connections
            .get_or_create(&PoolLabels {
                service: p.service.to_owned(),
                state: state.to_owned(),
            })
            .set(n);
    }
    if let Some(schema) = p.outbox {
        if let Ok(n) = crate::outbox::backlog(&p.store, schema).await {
            m.outbox_backlog
                .get_or_create(&ServiceLabels {
                    service: p.service.to_owned(),
                })
                .set(n);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
