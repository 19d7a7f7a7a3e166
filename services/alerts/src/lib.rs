//! The alerts service: consumes CAP 1.2 hazard alerts and socio-economic
//! indicator readings on `sumud.alerts.v1`, records them, and applies the
//! pre-agreed trigger rules — proposing or declaring a crisis, amending it on
//! a CAP `Update`, closing it on a `Cancel` — by sending signed commands on
//! `sumud.control.v1` through its outbox. Non-`Actual` alerts are recorded
//! with the command they would have caused (a dry run).

pub mod cap;
pub mod command;
pub mod config;
pub mod db;
pub mod footprint;
pub mod handler;
pub mod rules;
pub mod senders;
pub mod untrusted;

use std::sync::Arc;

use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::startup::Service;
use sumud_shared::{outbox, startup, Result};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::AlertsConfig;
use crate::handler::AlertsHandler;

/// The service name (consumer group, dead letters).
pub const SERVICE: &str = "alerts";

/// A built alerts service.
pub struct App {
    settings: Settings,
    config: AlertsConfig,
    store: Store,
    producer: EventProducer,
}

impl App {
    /// Connects, migrates (its own schema and, so that it can start first,
    /// the registry's, whose view it reads), ensures topics.
    pub async fn build(settings: Settings, config: AlertsConfig) -> Result<Self> {
        let (store, producer) = sumud_shared::startup::prepare(
            &settings,
            settings.db_max_connections,
            &[&sumud_registry::db::MIGRATIONS, &db::MIGRATIONS],
        )
        .await?;
        Ok(App {
            settings,
            config,
            store,
            producer,
        })
    }

    /// The store (tests and the CLI read through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// For a broker that forgot what it acknowledged (the embedded
    /// default's, restarted; see `sumud_shared::outbox::republish_rows`):
    /// the commands its trigger rules signed within `max_age` (control's
    /// oldest accepted command) go out again when the service runs, but
    /// for those control judged (`judged`), which control would take at a
    /// new position for replays. Returns how many.
    pub async fn republish_unjudged(
        &self,
        judged: &std::collections::HashSet<String>,
        max_age: std::time::Duration,
    ) -> Result<u64> {
        outbox::republish_rows_except(&self.store, SERVICE, judged, max_age).await
    }

    /// Runs the consumer and the outbox relay until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let wake = Arc::new(Notify::new());
        let relay = tokio::spawn(outbox::relay(
            self.store.clone(),
            SERVICE,
            self.producer.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        let handler = AlertsHandler::new(
            self.store.clone(),
            self.config.rules,
            self.config.senders,
            self.config.key,
            self.settings.topics.control.clone(),
            wake,
        );
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: Some(SERVICE),
        };
        let topics = vec![self.settings.topics.alerts.clone()];
        startup::run(service, topics, Vec::new(), &handler, vec![relay], shutdown).await
    }
}
