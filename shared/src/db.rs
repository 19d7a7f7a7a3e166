//! Database pool and migrations. Each service owns a schema and its own
//! migrations; they share one `_sqlx_migrations` table, so each migrator
//! ignores the versions that belong to other services. [`Store`] is the pool
//! on either backend (PostgreSQL, or the embedded default's SQLite file).

pub mod copy;
pub mod sqlite;
mod store;

pub use store::{Backend, Conn, Migrations, Store, Tx};

use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::Result;

/// Opens a pool, retrying until `patience` runs out so that a service started
/// before its database simply waits instead of crash-looping.
pub async fn connect(url: &str, max_connections: u32, patience: Duration) -> Result<PgPool> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if started.elapsed() < patience => {
                tracing::warn!(error = %e, "Database not reachable yet; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Applies a service's migrations.
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> Result<()> {
    lenient(migrator).run(pool).await?;
    Ok(())
}

/// `migrator` ignoring the applied versions it does not know: the other
/// services' migrations, recorded in the same `_sqlx_migrations` table.
fn lenient(migrator: &Migrator) -> Migrator {
    let mut m = Migrator {
        migrations: migrator.migrations.clone(),
        ..Migrator::DEFAULT
    };
    m.set_ignore_missing(true);
    m
}
