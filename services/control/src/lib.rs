//! The control service: consumes signed operator commands on
//! `sumud.control.v1`, runs the crisis lifecycle (with four-eyes approval),
//! keeps crisis state and an append-only audit trail in PostgreSQL, and
//! publishes every transition on `sumud.crisis.v1` through its outbox.

pub mod config;
pub mod db;
pub mod decided;
pub mod handler;
pub mod lifecycle;
pub mod operators;
pub mod signing;

use std::sync::Arc;

use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::startup::Service;
use sumud_shared::{outbox, startup, Result};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ControlConfig;
use crate::handler::ControlHandler;

/// The service name (consumer group, dead letters).
pub const SERVICE: &str = "control";

/// A built control service.
pub struct App {
    settings: Settings,
    config: ControlConfig,
    store: Store,
    producer: EventProducer,
}

impl App {
    /// Connects, migrates, ensures topics.
    pub async fn build(settings: Settings, config: ControlConfig) -> Result<Self> {
        let (store, producer) = sumud_shared::startup::prepare(
            &settings,
            settings.db_max_connections,
            &[&db::MIGRATIONS],
        )
        .await?;
        Ok(App {
            settings,
            config,
            store,
            producer,
        })
    }

    /// The store (tests and the CLI register operators through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// For a broker that forgot what it acknowledged (the embedded
    /// default's, restarted; see `sumud_shared::outbox::republish_rows`):
    /// every crisis transition goes out again when the service runs;
    /// eligibility and disbursement take one already applied (at or below
    /// their stored revision) as done. Returns how many.
    pub async fn republish_all(&self) -> Result<u64> {
        outbox::republish_rows(&self.store, "control").await
    }

    /// The ids of every command control judged (applied or refused): a
    /// signer's outbox need not send those again to a forgetful broker.
    pub async fn judged_command_ids(&self) -> Result<std::collections::HashSet<String>> {
        db::judged_command_ids(&self.store).await
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
        let handler = ControlHandler::new(
            self.store.clone(),
            self.config,
            self.settings.topics.crisis.clone(),
            wake,
        );
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: Some(SERVICE),
        };
        let topics = vec![self.settings.topics.control.clone()];
        startup::run(service, topics, Vec::new(), &handler, vec![relay], shutdown).await
    }
}
