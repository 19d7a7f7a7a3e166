//! The eligibility service: when a crisis is declared, tops up current
//! beneficiaries in the affected areas (vertical expansion) and enrols newly
//! eligible households (horizontal expansion), inside the crisis budget, with
//! every decision explained. Consumes `sumud.crisis.v1` and
//! `sumud.registry.v1`; reads households through `registry.households_v`;
//! publishes decisions on `sumud.entitlements.v1`. Weighs partner agencies'
//! assistance (`sumud.assistance.v1`) and shares Sumud's own with them
//! (`sumud.assistance.shared.v1`); refers households to social services
//! beside cash (`sumud.referrals.v1`), hearing the providers' answers
//! (`sumud.referrals.answers.v1`).

pub mod db;
pub mod explain;
pub mod handler;
pub mod metrics;
pub mod own_assistance;
pub mod partner;
pub mod policy;
pub mod publisher;
pub mod referral;
pub mod signed;
pub mod simulate;

use std::sync::Arc;

use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::playbook::PlaybookBook;
use sumud_shared::startup;
use sumud_shared::startup::Service;
use sumud_shared::Result;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handler::EligibilityHandler;

/// The service name (consumer group, dead letters).
pub const SERVICE: &str = "eligibility";

/// A built eligibility service.
pub struct App {
    settings: Settings,
    store: Store,
    producer: EventProducer,
}

impl App {
    /// Connects, migrates (its own schema and, so that it can start first,
    /// the registry's), ensures topics.
    pub async fn build(settings: Settings) -> Result<Self> {
        let (store, producer) = sumud_shared::startup::prepare(
            &settings,
            settings.db_max_connections,
            &[&sumud_registry::db::MIGRATIONS, &db::MIGRATIONS],
        )
        .await?;
        // Partner records matched before matching followed the registry
        // are put right before any message is handled.
        partner::rematch(&store, db::Scope::Stale).await?;
        Ok(App {
            settings,
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
    /// every decision and referral as it stands and every assistance
    /// record go out again when the service runs; their consumers are
    /// idempotent on the event id. Returns how many.
    pub async fn republish_all(&self) -> Result<u64> {
        let decisions =
            sumud_shared::outbox::republish_table(&self.store, "eligibility.entitlements").await?;
        let referrals =
            sumud_shared::outbox::republish_table(&self.store, "eligibility.referrals").await?;
        let records = sumud_shared::outbox::republish_rows(&self.store, "eligibility").await?;
        Ok(decisions + referrals + records)
    }

    /// Consumes and publishes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let store = self.store.clone();
        sumud_shared::metrics::on_scrape(shutdown.clone(), move || {
            let store = store.clone();
            async move { metrics::refresh(&store).await }
        });
        let wake = Arc::new(Notify::new());
        let publisher = tokio::spawn(sumud_shared::outbox::relay_table(
            self.store.clone(),
            publisher::Decisions {
                topic: self.settings.topics.entitlements.clone(),
            },
            self.producer.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        // Referrals are published from their own table, as decisions are.
        let referrals_relay = tokio::spawn(sumud_shared::outbox::relay_table(
            self.store.clone(),
            publisher::Referrals {
                topic: self.settings.topics.referrals.clone(),
            },
            self.producer.clone(),
            Arc::new(Notify::new()),
            shutdown.clone(),
        ));
        // Sumud's assistance for partners goes out through the shared
        // outbox relay of the `eligibility` schema.
        let shared_relay = tokio::spawn(sumud_shared::outbox::relay(
            self.store.clone(),
            SERVICE,
            self.producer.clone(),
            Arc::new(Notify::new()),
            shutdown.clone(),
        ));
        let t = &self.settings.topics;
        let sharing = tokio::spawn(own_assistance::run(
            self.store.clone(),
            t.assistance_shared.clone(),
            shutdown.clone(),
        ));
        let handler =
            EligibilityHandler::new(self.store.clone(), PlaybookBook::default_book(), wake);
        let (topics, foreign) = (
            vec![
                t.crisis.clone(),
                t.registry.clone(),
                t.assistance.clone(),
                t.referral_answers.clone(),
            ],
            vec![t.registry.clone()],
        );
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: Some(SERVICE),
        };
        startup::run(
            service,
            topics,
            foreign,
            &handler,
            vec![publisher, referrals_relay, shared_relay, sharing],
            shutdown,
        )
        .await
    }
}
