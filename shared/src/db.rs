//! Database pool and migrations. Each service owns a schema and its own
//! migrations; they share one `_sqlx_migrations` table, so each migrator
//! ignores the versions that belong to other services. [`Store`] is the pool
//! on either backend (PostgreSQL, or the embedded default's SQLite file).
//! Every PostgreSQL session carries the limits of [`Timeouts`].

pub mod copy;
pub mod sqlite;
mod store;
mod timeouts;

pub use store::{Backend, Conn, Migrations, Store, Tx};
pub use timeouts::Timeouts;

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{Error, Result};

/// [`connect_with`] the default [`Timeouts`].
pub async fn connect(url: &str, max_connections: u32, patience: Duration) -> Result<PgPool> {
    connect_with(url, max_connections, patience, Timeouts::default()).await
}

/// Opens a pool whose every session carries `timeouts`, retrying until
/// `patience` runs out so that a service started before its database simply
/// waits instead of crash-looping.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    patience: Duration,
    timeouts: Timeouts,
) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("DATABASE_URL is not a PostgreSQL URL: {e}")))?
        .options(timeouts.session_settings());
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
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

/// Applies a service's migrations, on a connection of its own with the
/// session limits off: a migration may build an index over a large table,
/// and waits for another service's migrator on an advisory lock. (Its own
/// one-connection pool rather than a connection of `pool`: `Migrator::run`
/// on a borrowed connection makes callers' futures fail to prove `Send`.)
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> Result<()> {
    let options = (*pool.connect_options())
        .clone()
        .options(Timeouts::OFF.session_settings());
    let unlimited = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    let result = lenient(migrator).run(&unlimited).await;
    unlimited.close().await;
    result?;
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
