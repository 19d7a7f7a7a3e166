//! The disbursement service: turns entitlements into payment instructions,
//! tranche by tranche, with each amount reserved against the crisis budget
//! in the transaction that creates the instruction and records it in the
//! outbox of instruction batches; publishes them; applies provider status, retries
//! retryable rejections, raises field-verification tasks for permanent ones
//! and exhausted retries (and re-issues what a field team corrected),
//! flags overdue instructions and reconciles.

pub mod config;
pub mod create;
pub mod db;
pub mod field_command;
pub mod field_task;
pub mod grievance;
pub mod handler;
pub mod instruction;
pub mod instruction_event;
pub mod metrics;
pub mod pain001;
pub mod payment_state;
pub mod publisher;
pub mod scheduler;
pub mod sender;
pub mod statement;

use std::sync::Arc;

use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::startup::Service;
use sumud_shared::{startup, Result};
use tokio_util::sync::CancellationToken;

use crate::config::DisbursementConfig;
use crate::handler::DisbursementHandler;

/// The service name (consumer group, dead letters).
pub const SERVICE: &str = "disbursement";

/// A built disbursement service.
pub struct App {
    settings: Settings,
    config: DisbursementConfig,
    store: Store,
    producer: EventProducer,
}

impl App {
    /// Connects, migrates (the registry's schema too, whose view it reads),
    /// ensures topics.
    pub async fn build(settings: Settings, config: DisbursementConfig) -> Result<Self> {
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

    /// The record of truth (PostgreSQL or the embedded SQLite file).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// For a broker that forgot what it acknowledged (the embedded
    /// default's, restarted; see `sumud_shared::outbox::republish_rows`):
    /// every instruction batch with an attempt still open and every task
    /// event go out again when the service runs (a provider answers a
    /// repeated instruction with what it did; a reference is paid once).
    /// Returns how many batches and events.
    pub async fn republish_all(&self) -> Result<u64> {
        let batches = db::republish_open_batches(&self.store).await?;
        let tasks = sumud_shared::outbox::republish_rows(&self.store, "disbursement").await?;
        Ok(batches + tasks)
    }

    /// Consumes, schedules and publishes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let store = self.store.clone();
        sumud_shared::metrics::on_scrape(shutdown.clone(), move || {
            let store = store.clone();
            async move { metrics::refresh(&store).await }
        });
        let due = Arc::new(scheduler::Due::default());
        let (handoff, handed) = publisher::Handoff::new();
        let relay_handoff = handoff.clone();
        let (store, topic, producer, relay_shutdown) = (
            self.store.clone(),
            self.settings.topics.instructions.clone(),
            self.producer.clone(),
            shutdown.clone(),
        );
        let publisher = tokio::spawn(async move {
            publisher::relay(
                store,
                topic,
                producer,
                &relay_handoff,
                handed,
                relay_shutdown,
            )
            .await
        });
        let scheduler = tokio::spawn(scheduler::run(
            self.store.clone(),
            self.config.clone(),
            due.clone(),
            handoff,
            shutdown.clone(),
        ));
        // Task events go out through the shared outbox relay of the
        // `disbursement` schema (instructions have a relay of their own).
        let tasks_relay = tokio::spawn(sumud_shared::outbox::relay(
            self.store.clone(),
            SERVICE,
            self.producer.clone(),
            Arc::new(tokio::sync::Notify::new()),
            shutdown.clone(),
        ));
        let t = &self.settings.topics;
        let handler = DisbursementHandler::new(
            self.store.clone(),
            self.config.clone(),
            due,
            t.tasks.clone(),
        );
        let topics = vec![
            t.crisis.clone(),
            t.entitlements.clone(),
            t.status.clone(),
            t.tasks.clone(),
            t.task_commands.clone(),
        ];
        // Eligibility reads (and dead-letters) the crisis topic too; the
        // entitlements topic has no other consumer, so its rejects are ours
        // to record.
        let foreign = vec![t.crisis.clone()];
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: Some(SERVICE),
        };
        let background = vec![publisher, scheduler, tasks_relay];
        startup::run(service, topics, foreign, &handler, background, shutdown).await
    }
}
