//! The registry service: consumes `sumud.registry.v1` and keeps the versioned
//! copy of the social registry in `registry.households`.
//!
//! Other services read households through the `registry.households_v` view,
//! which leaves out personal identifiers.

pub mod changes;
pub mod db;
pub mod handler;

use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::match_key::MatchKeySecret;
use sumud_shared::startup;
use sumud_shared::startup::Service;
use sumud_shared::Result;
use tokio_util::sync::CancellationToken;

use crate::handler::RegistryHandler;

/// The service name, used for its consumer group and in dead letters.
pub const SERVICE: &str = "registry";

/// The registry's batch size when `SUMUD_BATCH_MAX` is not set. Registry
/// traffic comes in bulk (a whole registry, then its updates), and every
/// batch is one `COPY`, so batches larger than the services' common default
/// pay off; this one keeps two batches in flight well within memory.
pub const DEFAULT_BATCH_MAX: usize = 5000;

/// Settings from the environment, with the registry's own defaults for what
/// is not set there.
pub fn settings_from_env() -> Result<Settings> {
    settings_from_vars(std::env::vars())
}

/// [`settings_from_env`] over any list of variables.
pub fn settings_from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let batch_max_set = vars.iter().any(|(k, _)| k == "SUMUD_BATCH_MAX");
    let mut settings = Settings::from_vars(vars)?;
    if !batch_max_set {
        settings.batch_max = DEFAULT_BATCH_MAX;
    }
    Ok(settings)
}

/// A built registry service, connected and migrated, ready to run.
pub struct App {
    settings: Settings,
    store: Store,
    producer: EventProducer,
    match_key: Option<MatchKeySecret>,
}

impl App {
    /// Connects to the database (waiting for it), applies migrations, makes
    /// sure the topics exist and creates the producer for dead letters.
    pub async fn build(settings: Settings) -> Result<Self> {
        let (store, producer) = sumud_shared::startup::prepare(
            &settings,
            settings.db_max_connections,
            &[&db::MIGRATIONS],
        )
        .await?;
        // The agencies' match-key secret (SUMUD_MATCH_KEY), if shared.
        let match_key = MatchKeySecret::from_env().map_err(sumud_shared::Error::Other)?;
        Ok(App {
            settings,
            store,
            producer,
            match_key,
        })
    }

    /// Stores match keys under `secret` instead of the environment's.
    pub fn with_match_key(mut self, secret: Option<MatchKeySecret>) -> Self {
        self.match_key = secret;
        self
    }

    /// The store (tests and the CLI read through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Consumes until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let handler = RegistryHandler::new(self.store.clone(), AreaCatalog::default_catalog())
            .with_match_key(self.match_key.clone());
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: None,
        };
        let topics = vec![self.settings.topics.registry.clone()];
        startup::run(service, topics, Vec::new(), &handler, Vec::new(), shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_registry_batches_larger_unless_told_otherwise() {
        assert_eq!(
            settings_from_vars(vars(&[])).unwrap().batch_max,
            DEFAULT_BATCH_MAX
        );
        let s = settings_from_vars(vars(&[("SUMUD_BATCH_MAX", "300")])).unwrap();
        assert_eq!(s.batch_max, 300);
        assert!(settings_from_vars(vars(&[("SUMUD_BATCH_MAX", "0")])).is_err());
    }
}
