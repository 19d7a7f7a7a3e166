//! What every service does before it consumes: connect to PostgreSQL (with
//! the patience a container start-up needs), apply its migrations (and those
//! of the schemas it reads, so that it can start first), create the topics
//! and open the producer.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::config::Settings;
use crate::kafka::producer::EventProducer;
use crate::Result;

/// How long a starting service waits for the database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Connects with a pool of `max_connections`, runs `migrators` in order,
/// ensures the topics and opens the producer.
pub async fn prepare(
    settings: &Settings,
    max_connections: u32,
    migrators: &[&Migrator],
) -> Result<(PgPool, EventProducer)> {
    let pool =
        crate::db::connect(&settings.database_url, max_connections, CONNECT_PATIENCE).await?;
    for m in migrators {
        crate::db::migrate(&pool, m).await?;
    }
    crate::kafka::admin::ensure_topics(settings).await?;
    let producer = EventProducer::new(settings)?;
    Ok((pool, producer))
}
