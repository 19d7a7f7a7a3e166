//! The shared error type, and the single decision every consumer loop needs:
//! retry this, or give up on the message.

use crate::deadletter::Reason;

/// Shorthand used across the shared crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in shared plumbing. Domain errors of a service live in
/// that service's own `error.rs` and convert into this at the loop boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or dropped a statement.
    #[error("database error: {0} ({hint})", hint = database_hint(.0))]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Kafka refused or failed an operation.
    #[error("kafka error: {0} (check that the broker is reachable at KAFKA_BOOTSTRAP_SERVERS)")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A setting is missing or malformed; the message says which.
    #[error("configuration error: {0}")]
    Config(String),
    /// The message can never be processed; it belongs on the dead-letter topic.
    #[error("rejected ({reason}): {detail}")]
    Rejected {
        /// Machine-readable reason code.
        reason: Reason,
        /// Human-readable detail, free of personal data.
        detail: String,
    },
    /// Something this work depends on has not happened yet (another
    /// service has not caught up); trying again later will succeed.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A row this service stored cannot be read back (a JSON column that no
    /// longer parses, a state no version wrote): written by another version,
    /// or changed by hand. Never retried; the message names the row.
    #[error("stored {what} is unreadable: {detail} (was it written by another version of Sumud, or edited by hand? restore the row from a backup or the audit trail)")]
    Unreadable {
        /// What was read, with its key ("crisis FL-1's definition").
        what: String,
        /// Why it could not be read.
        detail: String,
    },
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether trying the same work again later can succeed. The consumer loop
    /// retries retryable errors with backoff (never committing the offset) and
    /// dead-letters the rest, so this decides between "wait" and "give up".
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(e) => is_retryable_sqlx(e),
            Error::Kafka(_) | Error::NotReady(_) => true,
            Error::Migration(_)
            | Error::Config(_)
            | Error::Rejected { .. }
            | Error::Unreadable { .. }
            | Error::Other(_) => false,
        }
    }

    /// A stored row that cannot be read back: `what` names it, `detail`
    /// says why.
    pub fn unreadable(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Unreadable {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Builds a rejection with a reason code.
    pub fn rejected(reason: Reason, detail: impl Into<String>) -> Self {
        Error::Rejected {
            reason,
            detail: detail.into(),
        }
    }
}

/// What to check, by backend: a PostgreSQL server may be down, or one of
/// the session limits (`db::Timeouts`) fired; an SQLite file may be locked
/// by another writer or not writable.
fn database_hint(e: &sqlx::Error) -> &'static str {
    let code = match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        Some("55P03") => {
            return "another session held a lock past SUMUD_DB_LOCK_TIMEOUT_MS; the work is \
                    retried; pg_stat_activity shows who holds it"
        }
        Some("57014") => {
            return "the statement ran past SUMUD_DB_STATEMENT_TIMEOUT_MS or was cancelled; the \
                    work is retried: raise the limit if this statement always needs longer"
        }
        Some("25P03") => {
            return "the session sat idle inside a transaction past \
                    SUMUD_DB_IDLE_TX_TIMEOUT_MS and the server ended it; the work is retried"
        }
        _ => {}
    }
    match e {
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            "check that the SQLite files under DATABASE_URL are writable and that no other \
             process holds their write lock"
        }
        _ => "check that the database at DATABASE_URL is reachable",
    }
}

/// Connection trouble, timeouts, serialization failures and deadlocks are
/// transient; constraint violations and bad SQL are not. The session limits
/// (`db::Timeouts`) end in transient errors too: the statement's transaction
/// was rolled back, and redoing it later is the right response.
pub(crate) fn is_retryable_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            // SQLite's extended codes carry the primary code in the low
            // byte: SQLITE_BUSY (5: another connection holds the lock past
            // the busy timeout, or a stale snapshot) and SQLITE_LOCKED (6).
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(5 | 6))
        }
        sqlx::Error::Database(db) => {
            // 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available
            // (also lock_timeout), 57014 query_canceled (statement_timeout, or a cancel
            // request), 25P03 idle_in_transaction_session_timeout, 57P01 admin_shutdown,
            // 57P03 cannot_connect_now, 08xxx connection exceptions, 53300
            // too_many_connections.
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            matches!(
                code.as_str(),
                "40001"
                    | "40P01"
                    | "55P03"
                    | "57014"
                    | "25P03"
                    | "57P01"
                    | "57P02"
                    | "57P03"
                    | "53300"
            ) || code.starts_with("08")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_retryable_but_rejections_are_not() {
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!Error::rejected(Reason::SchemaInvalid, "x").is_retryable());
        assert!(!Error::Config("x".into()).is_retryable());
    }

    #[test]
    fn an_unreadable_row_is_never_retried_and_names_the_row_and_what_to_do() {
        let bad = serde_json::from_str::<Vec<String>>("{").unwrap_err();
        let why = bad.to_string();
        let e = Error::unreadable("crisis FL-1's definition", bad);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "stored crisis FL-1's definition is unreadable: {why} ("
            )),
            "{text}"
        );
        assert!(text.contains("restore the row"), "{text}");
    }

    #[tokio::test]
    async fn a_busy_sqlite_file_is_retryable_but_a_constraint_is_not() {
        use sqlx::sqlite::SqliteConnectOptions;
        use sqlx::ConnectOptions;
        let dir = std::env::temp_dir().join(format!("sumud-busy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a = options.connect().await.unwrap();
        let mut b = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS t (x integer CHECK (x > 0))")
            .execute(&mut a)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut a)
            .await
            .unwrap();
        // b has no busy timeout: the lock a holds fails it at once.
        let busy = Error::Database(
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut b)
                .await
                .unwrap_err(),
        );
        assert!(busy.is_retryable());
        assert!(busy.to_string().contains("write lock"), "{busy}");
        sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
        let check = sqlx::query("INSERT INTO t VALUES (0)")
            .execute(&mut b)
            .await
            .unwrap_err();
        assert!(!Error::Database(check).is_retryable());
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
