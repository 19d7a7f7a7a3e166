//! The embedded backend: an SQLite file under the data directory, with one
//! attached database file per service schema, so that `registry.households`
//! names the same table here as on PostgreSQL and each service's writes
//! lock only its own file.
//!
//! `DATABASE_URL=sqlite://.sumud/sumud.db` keeps sqlx's migration table in
//! `.sumud/sumud.db` and the registry in `.sumud/sumud.registry.db`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Executor};

use crate::{Error, Result};

/// Every service schema; each is attached on every connection, so that a
/// service reading another's view (eligibility reads `registry.households_v`)
/// finds it under the same name as on PostgreSQL.
pub const SCHEMAS: &[&str] = &[
    "alerts",
    "control",
    "registry",
    "eligibility",
    "disbursement",
    "provider_sim",
];

/// How long a statement waits for another connection's write lock before it
/// fails with `SQLITE_BUSY` (which the consumer loop retries).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `url` selects the embedded backend.
pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The main database file of a `sqlite://path` or `sqlite:path` URL (query
/// parameters are not supported: the backend sets its own pragmas).
pub fn main_path(url: &str) -> Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| Error::Config(format!("{url} is not an sqlite: URL")))?;
    if rest.is_empty() || rest.contains('?') || rest.starts_with(":memory:") {
        return Err(Error::Config(format!(
            "DATABASE_URL {url} must name a file, as in sqlite://.sumud/sumud.db \
             (no :memory:, no query parameters)"
        )));
    }
    Ok(PathBuf::from(rest))
}

/// The file holding `schema`, beside the main file: `<stem>.<schema>.db`.
pub fn schema_path(main: &Path, schema: &str) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sumud".into());
    main.with_file_name(format!("{stem}.{schema}.db"))
}

/// Opens a pool on the main file (created if missing, with its directory)
/// and attaches every schema's file to each connection. Every file runs in
/// WAL mode with `synchronous = FULL`: a committed transaction survives a
/// crash of the process and of the machine, as on PostgreSQL.
pub async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool> {
    let main = main_path(url)?;
    if let Some(dir) = main.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let attach: Vec<String> = SCHEMAS
        .iter()
        .map(|schema| {
            let path = schema_path(&main, schema)
                .to_string_lossy()
                .replace('\'', "''");
            format!(
                "ATTACH DATABASE '{path}' AS {schema}; \
                 PRAGMA {schema}.journal_mode = WAL; \
                 PRAGMA {schema}.synchronous = FULL;"
            )
        })
        .collect();
    let attach = attach.concat();
    let options = SqliteConnectOptions::new()
        .filename(&main)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A connection that comes back still inside a transaction is closed
        // (which rolls it back) instead of pooled: sqlx cannot roll back a
        // `BEGIN IMMEDIATE` whose task was cancelled after the database
        // began it but before the `Transaction` existed, and that
        // connection would hold the file's write lock for good.
        .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .after_connect(move |conn, _meta| {
            let attach = attach.clone();
            Box::pin(async move {
                conn.execute(attach.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Begins a write transaction, taking the file's write lock at once
/// (`BEGIN IMMEDIATE`): see [`super::Store::begin`].
pub async fn begin(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// A time as the SQLite tables store it: RFC 3339 in UTC with milliseconds,
/// exactly as `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` writes it, so that
/// stored times and bound ones compare as text. (sqlx's own encoding of a
/// `DateTime` writes `+00:00` and a varying number of digits.)
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A list bound as one SQLite parameter: a JSON array, read with
/// `json_each` where PostgreSQL reads an array with `ANY`.
pub fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    // Strings and numbers always serialise.
    serde_json::to_string(items).expect("a list of plain values serialises")
}

/// Reads back a list [`json_list`] stored; `what` names it in the error.
pub fn parse_json_list(text: &str, what: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| crate::Error::unreadable(what, e))
}

/// An exclusive lock named `name`, on the file `<stem>.<name>.lock` beside
/// the database, held until the returned file is dropped; `None` if
/// another holder has it. The operating system releases it if the process
/// dies, as PostgreSQL releases a session's advisory lock.
pub fn try_lock(pool: &SqlitePool, name: &str) -> Result<Option<std::fs::File>> {
    Ok(try_lock_file(pool, name)?.map(|lock| lock.file))
}

/// [`try_lock`], keeping the lock's path so that [`FileLock::is_current`]
/// can tell whether it is still the lock.
pub fn try_lock_file(pool: &SqlitePool, name: &str) -> Result<Option<FileLock>> {
    let main = pool.connect_options().get_filename().to_path_buf();
    let path = schema_path(&main, name).with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Other(format!("cannot open the lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock { file, path })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::Other(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

/// An exclusive lock held on a lock file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// Whether the locked file is still the one at the lock's path. A lock
    /// file removed or replaced under its holder (a clean-up, a restore of
    /// the data directory) lets another process lock a new file there,
    /// while the holder's lock goes on holding the old one: the holder is
    /// no longer the only one.
    pub fn is_current(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
            _ => false,
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_times_read_as_sqlite_writes_them() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-29T21:00:05.5+02:00")
            .unwrap()
            .to_utc();
        assert_eq!(timestamp(t), "2026-11-29T19:00:05.500Z");
    }

    #[test]
    fn urls_name_a_main_file_and_schema_files_beside_it() {
        let main = main_path("sqlite://.sumud/sumud.db").unwrap();
        assert_eq!(main, PathBuf::from(".sumud/sumud.db"));
        assert_eq!(
            main_path("sqlite:/tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(
            schema_path(&main, "registry"),
            PathBuf::from(".sumud/sumud.registry.db")
        );
        assert!(main_path("sqlite::memory:").is_err());
        assert!(main_path("sqlite://x.db?mode=rwc").is_err());
        assert!(main_path("postgres://h/db").is_err());
        assert!(is_sqlite_url("sqlite://a.db") && !is_sqlite_url("postgres://h/db"));
    }

    #[tokio::test]
    async fn a_lock_file_replaced_under_its_holder_is_no_longer_current() {
        let dir = std::env::temp_dir().join(format!("sumud-lockfile-{}", std::process::id()));
        let pool = connect(&format!("sqlite://{}/sumud.db", dir.display()), 1)
            .await
            .unwrap();
        let held = try_lock_file(&pool, "x.relay").unwrap().unwrap();
        assert!(held.is_current());
        assert!(try_lock_file(&pool, "x.relay").unwrap().is_none());
        std::fs::remove_file(held.path()).unwrap();
        assert!(!held.is_current(), "removed");
        let other = try_lock_file(&pool, "x.relay").unwrap().unwrap();
        assert!(!held.is_current(), "replaced by another holder's");
        assert!(other.is_current());
        pool.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
