//! What every service does around its own logic: before consuming, connect
//! to PostgreSQL (with the patience a container start-up needs), apply its
//! migrations (and those of the schemas it reads, so that it can start
//! first), create the topics and open the producer; then serve the HTTP
//! surface, run the consumer loop beside its background tasks, and stop
//! them together.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::Settings;
use crate::db::{Migrations, Store};
use crate::kafka::consumer::{self, Handler, LoopConfig};
use crate::kafka::health::ConsumerHealth;
use crate::kafka::producer::EventProducer;
use crate::{Error, Result};

/// How long a starting service waits for the database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Connects with a pool of `max_connections` on the backend `DATABASE_URL`
/// names (its sessions limited by `settings.db_timeouts`), runs `migrations` in order, ensures the topics and opens the
/// producer.
pub async fn prepare(
    settings: &Settings,
    max_connections: u32,
    migrations: &[&Migrations],
) -> Result<(Store, EventProducer)> {
    let store = Store::connect_with(
        &settings.database_url,
        max_connections,
        CONNECT_PATIENCE,
        settings.db_timeouts,
    )
    .await?;
    for m in migrations {
        store.migrate(m).await?;
    }
    crate::kafka::admin::ensure_topics(settings).await?;
    let producer = EventProducer::new(settings)?;
    Ok((store, producer))
}

/// A built service's shared parts, for [`run`].
pub struct Service<'a> {
    /// The service name (consumer group, dead letters, metrics).
    pub name: &'static str,
    /// Its settings.
    pub settings: &'a Settings,
    /// Its database (readiness, metrics).
    pub store: &'a Store,
    /// Its producer (dead letters).
    pub producer: &'a EventProducer,
    /// Its `<schema>.outbox` table, if it has one (backlog gauge).
    pub outbox: Option<&'static str>,
}

/// Serves the HTTP surface (when configured) and runs the consumer loop on
/// `topics` — of which `foreign` are dead-lettered by their owners — until
/// `shutdown`. The service's `background` tasks (relays, schedulers) were
/// started on the same token: when the loop ends they are stopped and
/// joined, and the first error of any of them is the result. If this
/// future is dropped instead (the task aborted, as a crash test does in
/// process), they are aborted with it rather than left running detached.
pub async fn run<H: Handler>(
    s: Service<'_>,
    topics: Vec<String>,
    foreign: Vec<String>,
    handler: &H,
    background: Vec<JoinHandle<Result<()>>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let background: Vec<_> = background.into_iter().map(AbortOnDropHandle::new).collect();
    let group_id = s.settings.group_id(s.name);
    let health = ConsumerHealth::new(&group_id, s.settings.consumer_bounds);
    let _http = crate::http::spawn(
        s.settings,
        s.name,
        s.store.clone(),
        s.outbox,
        Some(health.clone()),
        shutdown.clone(),
    )?
    .map(AbortOnDropHandle::new);
    let config = LoopConfig {
        service: s.name.into(),
        group_id,
        topics,
        foreign_topics: foreign,
        health,
    };
    let mut result = consumer::run(s.settings, config, handler, s.producer, shutdown.clone()).await;
    if !background.is_empty() {
        // The loop is over (shutdown or a fatal error): its companions go too.
        shutdown.cancel();
    }
    for task in background {
        let joined = task.await.map_err(|e| Error::Other(e.to_string()));
        result = result.and(joined.and_then(|r| r));
    }
    result
}
