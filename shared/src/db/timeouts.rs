//! The limits PostgreSQL puts on each session of a service, so that no
//! statement, lock wait or abandoned transaction holds a connection (and
//! the locks and snapshot it carries) without end, and so that the server
//! notices a client that vanished (a partition, a host gone) and lets its
//! locks go — an outbox relay's leadership among them.
//!
//! Each limit is a session setting sent as the connection starts (the
//! `options` startup parameter), so it holds from the first statement on
//! every connection of the pool, without a round trip. A limit that fires
//! ends in an error the consumer loop retries (see `error.rs`): the
//! statement's transaction is rolled back, and redoing it is the right
//! response, not a dead letter.
//!
//! Migrations run on a connection of their own with the limits off
//! (`super::migrate`): a migration may build an index over a large table,
//! and waits its turn behind another service's migrator on an advisory
//! lock, which a lock timeout would fail.
//!
//! SQLite has none of these: it runs in the process, with no session for a
//! vanished client to leave behind; a statement waits for another
//! connection's write lock up to its busy timeout (`sqlite.rs`).

use std::time::Duration;

/// How long the server waits on a silent client before probing it, between
/// probes, and how many unanswered probes end the session: a client gone
/// without a word (a partition, a host powered off) is noticed within about
/// a minute instead of the operating system's two hours, and its locks —
/// an outbox relay's leadership — go to others.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// See [`KEEPALIVE_IDLE`].
const KEEPALIVE_COUNT: u32 = 3;

/// The server-side limits on a service's PostgreSQL sessions. Zero turns a
/// limit off, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest a statement may run (`statement_timeout`;
    /// `SUMUD_DB_STATEMENT_TIMEOUT_MS`, default 60 s). The longest
    /// statements are set-based ones that grow with a crisis: the
    /// eligibility expansion and a disbursement pass's first cursor read
    /// took 2–7 s for a million households on the benchmarks' two-core
    /// machine (docs/benchmarks.md); raise it for much larger crises.
    pub statement: Duration,
    /// Longest a statement waits for a lock another session holds
    /// (`lock_timeout`; `SUMUD_DB_LOCK_TIMEOUT_MS`, default 10 s).
    pub lock: Duration,
    /// Longest a session may sit idle inside a transaction before the
    /// server ends it, rolling the transaction back and freeing its locks
    /// (`idle_in_transaction_session_timeout`; `SUMUD_DB_IDLE_TX_TIMEOUT_MS`,
    /// default 60 s).
    pub idle_in_transaction: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            statement: Duration::from_secs(60),
            lock: Duration::from_secs(10),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// No limits (migrations).
    pub const OFF: Timeouts = Timeouts {
        statement: Duration::ZERO,
        lock: Duration::ZERO,
        idle_in_transaction: Duration::ZERO,
    };

    /// The session settings that apply these limits, and TCP keepalives,
    /// as (name, value) pairs for `PgConnectOptions::options`.
    pub fn session_settings(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        vec![
            ("statement_timeout", ms(self.statement)),
            ("lock_timeout", ms(self.lock)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction),
            ),
            ("tcp_keepalives_idle", KEEPALIVE_IDLE.as_secs().to_string()),
            (
                "tcp_keepalives_interval",
                KEEPALIVE_INTERVAL.as_secs().to_string(),
            ),
            ("tcp_keepalives_count", KEEPALIVE_COUNT.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_sent_in_milliseconds_and_zero_is_off() {
        let settings = Timeouts {
            statement: Duration::from_secs(60),
            lock: Duration::from_millis(250),
            idle_in_transaction: Duration::ZERO,
        }
        .session_settings();
        let get = |name: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("statement_timeout"), Some("60000"));
        assert_eq!(get("lock_timeout"), Some("250"));
        assert_eq!(get("idle_in_transaction_session_timeout"), Some("0"));
        assert_eq!(get("tcp_keepalives_idle"), Some("30"));
    }
}
