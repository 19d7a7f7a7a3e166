//! The record of truth, on either backend: PostgreSQL for deployments, or
//! the SQLite file of the embedded default (`sumud up`). `DATABASE_URL`'s
//! scheme chooses. A service writes its SQL for each backend it supports in
//! its own `db.rs`; what every service needs of the store (connect, migrate,
//! readiness, pool figures) is here.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use super::Timeouts;
use crate::{Error, Result};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: deployments, and every fast path (COPY, UNNEST).
    Postgres,
    /// An SQLite file under the data directory: the embedded default.
    Sqlite,
}

/// A connection pool on either backend; cloning shares the pool.
#[derive(Debug, Clone)]
pub enum Store {
    /// A PostgreSQL pool.
    Postgres(PgPool),
    /// An SQLite pool with every schema's file attached.
    Sqlite(SqlitePool),
}

/// A service's migrations for each backend it supports. A service without
/// SQLite migrations refuses to start on SQLite, saying so, instead of
/// failing later on its first query.
pub struct Migrations {
    /// The service's name, for that refusal.
    pub service: &'static str,
    /// PostgreSQL migrations (`migrations/`).
    pub postgres: &'static Migrator,
    /// SQLite migrations (`migrations-sqlite/`), if the service runs there.
    pub sqlite: Option<&'static Migrator>,
}

impl From<PgPool> for Store {
    fn from(pool: PgPool) -> Self {
        Store::Postgres(pool)
    }
}

impl From<SqlitePool> for Store {
    fn from(pool: SqlitePool) -> Self {
        Store::Sqlite(pool)
    }
}

/// Tries of a service's SQLite migrations while the file is locked.
pub const MIGRATE_ATTEMPTS: u32 = 20;

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), waiting up to
    /// `patience` for a PostgreSQL server that is still starting; its
    /// sessions carry the default [`Timeouts`] (a service passes its own
    /// settings' to [`Store::connect_with`]).
    pub async fn connect(url: &str, max_connections: u32, patience: Duration) -> Result<Store> {
        Self::connect_with(url, max_connections, patience, Timeouts::default()).await
    }

    /// [`Store::connect`] with PostgreSQL sessions limited by `timeouts`
    /// (`Settings::db_timeouts`); SQLite has no such limits.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        patience: Duration,
        timeouts: Timeouts,
    ) -> Result<Store> {
        if super::sqlite::is_sqlite_url(url) {
            Ok(Store::Sqlite(
                super::sqlite::connect(url, max_connections).await?,
            ))
        } else {
            Ok(Store::Postgres(
                super::connect_with(url, max_connections, patience, timeouts).await?,
            ))
        }
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies a service's migrations for this backend; on SQLite a locked
    /// file is waited out (up to [`MIGRATE_ATTEMPTS`] tries, about 15 s).
    pub async fn migrate(&self, m: &Migrations) -> Result<()> {
        match self {
            Store::Postgres(pool) => super::migrate(pool, m.postgres).await,
            Store::Sqlite(pool) => {
                let Some(migrator) = m.sqlite else {
                    return Err(unsupported(m.service));
                };
                // Services sharing the file may hold its write lock, or
                // leave this migration's snapshot stale (BUSY at once, past
                // any busy timeout). Each migration is its own transaction,
                // so running them again goes on from the last one applied.
                let mut wait = Duration::from_millis(50);
                for attempt in 1.. {
                    match super::lenient(migrator).run(pool).await {
                        Err(sqlx::migrate::MigrateError::Execute(e))
                            if attempt < MIGRATE_ATTEMPTS
                                && crate::error::is_retryable_sqlx(&e) =>
                        {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(1));
                        }
                        result => return Ok(result?),
                    }
                }
                unreachable!("the attempts end in a return")
            }
        }
    }

    /// The PostgreSQL pool of a service that has no SQLite path yet.
    pub fn postgres(&self, service: &str) -> Result<&PgPool> {
        match self {
            Store::Postgres(pool) => Ok(pool),
            Store::Sqlite(_) => Err(unsupported(service)),
        }
    }

    /// Whether `schema.table` exists: a reader that spans services (such as
    /// `sumud explain`) says "not recorded here" instead of failing when a
    /// service never ran on this database.
    pub async fn has_table(&self, schema: &str, table: &str) -> Result<bool> {
        Ok(match self {
            Store::Postgres(pool) => {
                sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                    .bind(format!("{schema}.{table}"))
                    .fetch_one(pool)
                    .await?
            }
            Store::Sqlite(pool) => {
                let attached: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pragma_database_list WHERE name = $1")
                        .bind(schema)
                        .fetch_one(pool)
                        .await?;
                attached > 0
                    && sqlx::query_scalar::<_, i64>(&format!(
                        "SELECT count(*) FROM \"{}\".sqlite_master WHERE type = 'table' AND name = $1",
                        schema.replace('"', "")
                    ))
                    .bind(table)
                    .fetch_one(pool)
                    .await?
                        > 0
            }
        })
    }

    /// One round trip, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Store::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    /// Connections open and idle, for the pool gauges.
    pub fn connections(&self) -> (u32, usize) {
        match self {
            Store::Postgres(pool) => (pool.size(), pool.num_idle()),
            Store::Sqlite(pool) => (pool.size(), pool.num_idle()),
        }
    }

    /// Begins a transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a transaction that reads and then writes never
    /// fails halfway on a snapshot another writer made stale, and it stands
    /// in for PostgreSQL's `SELECT … FOR UPDATE` (one writer per file).
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Store::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Store::Sqlite(pool) => Tx::Sqlite(super::sqlite::begin(pool).await?),
        })
    }

    /// A connection of the pool, outside any transaction: for reads, and
    /// for loops (outbox relays) that keep one connection.
    pub async fn acquire(&self) -> Result<Conn> {
        Ok(match self {
            Store::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
            Store::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }
}

fn unsupported(service: &str) -> Error {
    Error::Config(format!(
        "the {service} service keeps its records only in PostgreSQL so far; \
         set DATABASE_URL to a postgres:// URL"
    ))
}

/// A transaction on either backend; dropped without [`Tx::commit`], it
/// rolls back.
#[derive(Debug)]
pub enum Tx {
    /// A PostgreSQL transaction.
    Postgres(Transaction<'static, Postgres>),
    /// An SQLite transaction (holding the file's write lock).
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Rolls back now (a dropped transaction rolls back later, when its
    /// connection is next used).
    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await?,
            Tx::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// A pooled connection on either backend, outside any transaction.
#[derive(Debug)]
pub enum Conn {
    /// A PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
    /// An SQLite connection (every schema's file attached).
    Sqlite(PoolConnection<Sqlite>),
}

/// Runs the same code on whichever backend a [`Store`] holds, with `$pool`
/// bound to its pool: for statements that read the same on both (`$1`
/// placeholders, no arrays, no `now()`), written once.
///
/// `on_store!(store, pool => sqlx::query("…").bind(id).execute(pool).await)`
#[macro_export]
macro_rules! on_store {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::db::Store::Postgres($pool) => $body,
            $crate::db::Store::Sqlite($pool) => $body,
        }
    };
}

/// [`on_store!`] for a [`Conn`], with `$conn` bound to the connection.
///
/// `on_conn!(conn, c => sqlx::query("…").fetch_all(c).await)`
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::Conn::Postgres(conn) => {
                let $c = &mut **conn;
                $body
            }
            $crate::db::Conn::Sqlite(conn) => {
                let $c = &mut **conn;
                $body
            }
        }
    };
}

/// [`on_store!`] for a [`Tx`], with `$conn` bound to its connection.
///
/// `on_tx!(tx, conn => sqlx::query("…").execute(conn).await)`
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    static NONE: Migrator = Migrator::DEFAULT;

    #[tokio::test]
    async fn a_service_without_sqlite_migrations_refuses_an_sqlite_url_by_name() {
        let dir = std::env::temp_dir().join(format!("sumud-store-{}", std::process::id()));
        let url = format!("sqlite://{}/sumud.db", dir.display());
        let store = Store::connect(&url, 1, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let postgres_only = Migrations {
            service: "ledger",
            postgres: &NONE,
            sqlite: None,
        };
        let refused = store.migrate(&postgres_only).await.unwrap_err().to_string();
        assert!(
            refused.contains("the ledger service keeps its records only in PostgreSQL")
                && refused.contains("postgres://"),
            "{refused}"
        );
        assert!(store.postgres("ledger").is_err());
        // Every schema's file is attached under the schema's name.
        store.ping().await.unwrap();
        assert!(
            dir.join("sumud.registry.db").exists() && dir.join("sumud.provider_sim.db").exists()
        );
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
