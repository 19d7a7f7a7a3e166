//! Who may publish an outbox: one relay at a time, the holder of a
//! PostgreSQL advisory lock (on SQLite, of an exclusive lock on a file
//! beside the database), and — the fencing — only while it still holds it.
//!
//! Taking the lock is not enough. A leader can be deposed while it works:
//! the session holding its lock ended (`pg_terminate_backend`, a server
//! restart, the server's TCP keepalive giving up on it across a partition)
//! and another relay took the lock; on SQLite, its lock file was replaced
//! under it and another relay locked the new one. The deposed relay learns
//! this only when it next uses the lock's session, and a relay publishing
//! what it is handed in memory may not use it for a while: the disbursement
//! relay, handed its batches by the passes of its own process, read the
//! table once a second, so a deposed one went on publishing those batches
//! for up to a second beside the new leader, which read the same batches
//! back from the table — every instruction in them published twice.
//!
//! So no batch goes to the producer until [`Leadership::check`] has shown,
//! after everything else the batch waited for, that this relay still holds
//! the lock. The lease is the lock's own session: a PostgreSQL
//! session-level advisory lock belongs to exactly one session until that
//! session lets go or ends, so "the lock's session answers, and `pg_locks`
//! lists the lock as that session's" means no other relay holds it. An
//! epoch row bumped by each new leader (a fencing token) would prove
//! nothing more: read on the lock's session it follows from the lock, read
//! on another it proves less (that nobody took over *yet*), and Kafka
//! cannot check a token of ours at the broker. On SQLite the lease is the
//! locked file still being the one at the lock's path.
//!
//! What is left: the time from the check to librdkafka accepting the batch
//! (the enqueue of one batch, milliseconds). Closing that as well would take
//! Kafka transactions with one `transactional.id` per outbox, whose fencing
//! of a zombie producer is the one fence the broker itself enforces.

use std::time::Duration;

use sqlx::PgConnection;

use crate::db::sqlite::FileLock;
use crate::db::{Conn, Store};
use crate::{Error, Result};

/// How long the check (and the unlock on the way out) may wait for the
/// lock's session. A session that does not answer may be across a
/// partition, where the server will soon let the lock go to another relay:
/// the relay stops leading rather than wait.
pub const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// Whether the session holds the advisory lock `key` (a bigint key is held
/// as (classid, objid) = its high and low 32 bits, with objsubid 1).
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
       AND objsubid = 1 AND (classid::int8 << 32 | objid::int8) = $1)";

/// The right to publish an outbox, held by one relay at a time so that
/// exactly one publishes and per-key order holds: a PostgreSQL advisory
/// lock on the connection it carries, or on SQLite an exclusive lock on a
/// file beside the database. Both die with the process that holds them;
/// [`Leadership::check`] tells whether it is still held.
pub struct Leadership {
    conn: Conn,
    key: i64,
    file: Option<FileLock>,
}

impl Leadership {
    /// Takes the lock `key` if nobody holds it; `None` if another relay does.
    pub async fn try_acquire(store: &Store, key: i64) -> Result<Option<Leadership>> {
        let mut conn = store.acquire().await?;
        let mut lock = None;
        let leader = match (&mut conn, store) {
            (Conn::Postgres(c), _) => {
                let leader = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut **c)
                    .await?;
                if leader {
                    // Dropped while leading (its task aborted, or a check or
                    // an unlock given up on), the connection closes,
                    // releasing the lock, rather than going back to the pool
                    // with it.
                    c.close_on_drop();
                }
                leader
            }
            (Conn::Sqlite(_), Store::Sqlite(pool)) => {
                lock = crate::db::sqlite::try_lock_file(pool, &format!("table-relay-{key:x}"))?;
                lock.is_some()
            }
            (Conn::Sqlite(_), Store::Postgres(_)) => {
                unreachable!("a store's connections share its backend")
            }
        };
        Ok(leader.then_some(Leadership {
            conn,
            key,
            file: lock,
        }))
    }

    /// The connection the lock is held on (on SQLite, any connection).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Succeeds only if this relay still holds the lock; called right
    /// before each batch goes to the producer. An error means the
    /// leadership is over (deposed, or its session lost): the relay stops
    /// leading and drops what it holds, which stays unpublished in the
    /// table for whichever relay leads.
    pub async fn check(&mut self) -> Result<()> {
        match (&mut self.conn, &self.file) {
            (Conn::Postgres(c), _) => check_advisory(c, self.key).await,
            (Conn::Sqlite(_), Some(lock)) => check_file(lock),
            (Conn::Sqlite(_), None) => unreachable!("an SQLite leadership holds its file"),
        }
    }

    /// Lets go of the lock (best effort, and bounded by [`CHECK_WITHIN`]: a
    /// lost connection lets go anyway, closing as it is dropped).
    pub async fn release(mut self) {
        if let Conn::Postgres(c) = &mut self.conn {
            unlock_advisory(c, self.key).await;
        }
    }
}

/// [`Leadership::check`] on the session holding the advisory lock `key`.
pub(crate) async fn check_advisory(conn: &mut PgConnection, key: i64) -> Result<()> {
    let held = tokio::time::timeout(
        CHECK_WITHIN,
        sqlx::query_scalar::<_, bool>(HOLDS)
            .bind(key)
            .fetch_one(conn),
    )
    .await;
    match held {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(deposed("its session no longer holds the lock")),
        Ok(Err(e)) => Err(deposed(&format!("the lock's session failed: {e}"))),
        Err(_) => Err(deposed(&format!(
            "the lock's session did not answer within {} s",
            CHECK_WITHIN.as_secs()
        ))),
    }
}

/// [`Leadership::check`] on SQLite: the locked file is still the lock.
pub(crate) fn check_file(lock: &FileLock) -> Result<()> {
    if lock.is_current() {
        Ok(())
    } else {
        Err(deposed(&format!(
            "its lock file {} was removed or replaced",
            lock.path().display()
        )))
    }
}

/// Lets go of the advisory lock `key`, waiting at most [`CHECK_WITHIN`].
pub(crate) async fn unlock_advisory(conn: &mut PgConnection, key: i64) {
    let _ = tokio::time::timeout(
        CHECK_WITHIN,
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(conn),
    )
    .await;
}

fn deposed(why: &str) -> Error {
    Error::Other(format!(
        "this relay no longer leads its outbox ({why}); it publishes nothing more \
         and tries to lead again"
    ))
}
