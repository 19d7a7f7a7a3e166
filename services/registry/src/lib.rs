//! The registry service: consumes `sumud.registry.v1` and keeps the versioned
//! copy of the social registry in `registry.households`.
//!
//! Other services read households through the `registry.households_v` view,
//! which leaves out personal identifiers.

pub mod changes;
pub mod db;
pub mod handler;

use std::time::Duration;

use sqlx::PgPool;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::kafka::consumer::{self, LoopConfig};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::{kafka, Result};
use tokio_util::sync::CancellationToken;

use crate::handler::RegistryHandler;

/// The service name, used for its consumer group and in dead letters.
pub const SERVICE: &str = "registry";

/// A built registry service, connected and migrated, ready to run.
pub struct App {
    settings: Settings,
    pool: PgPool,
    producer: EventProducer,
}

impl App {
    /// Connects to the database (waiting for it), applies migrations, makes
    /// sure the topics exist and creates the producer for dead letters.
    pub async fn build(settings: Settings) -> Result<Self> {
        let pool = sumud_shared::db::connect(
            &settings.database_url,
            settings.db_max_connections,
            Duration::from_secs(60),
        )
        .await?;
        sumud_shared::db::migrate(&pool, &db::MIGRATOR).await?;
        kafka::admin::ensure_topics(&settings).await?;
        let producer = EventProducer::new(&settings)?;
        Ok(App {
            settings,
            pool,
            producer,
        })
    }

    /// The database pool (tests and the CLI read through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Consumes until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let handler = RegistryHandler::new(self.pool.clone(), AreaCatalog::default_catalog());
        let config = LoopConfig {
            service: SERVICE.into(),
            group_id: self.settings.group_id(SERVICE),
            topics: vec![self.settings.topics.registry.clone()],
            foreign_topics: Vec::new(),
        };
        consumer::run(&self.settings, config, &handler, &self.producer, shutdown).await
    }
}
