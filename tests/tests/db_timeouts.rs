//! The database's own limits on a service's sessions, on the real
//! PostgreSQL server, seen from the side of the fault: another session
//! holding a lock, a statement that runs on and on, a client stalled inside
//! a transaction. Each must end in an error the consumer loop retries, not
//! in a wait without end. The limits come from the service's settings
//! (`SUMUD_DB_LOCK_TIMEOUT_MS`, `SUMUD_DB_STATEMENT_TIMEOUT_MS`,
//! `SUMUD_DB_IDLE_TX_TIMEOUT_MS`), here set short, and reach the pool
//! through `startup::prepare`, as every service opens its database.
//!
//! PostgreSQL only: the SQLite backend's lock wait is its busy timeout,
//! whose retryable `SQLITE_BUSY` is tested in `shared/src/error.rs`, and an
//! in-process SQLite file has no session for a stalled client to hold.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use sumud_shared::config::Settings;
use sumud_shared::db::{Migrations, Store};
use sumud_shared::kafka::consumer::retry_transient;
use sumud_tests::{wait_for, TestEnv};
use tokio_util::sync::CancellationToken;

/// Longer than any limit the tests set, far shorter than a wait without end.
const DEADLINE: Duration = Duration::from_secs(20);

/// The test world's settings with `limits` (`SUMUD_DB_*` variables) added,
/// and the PostgreSQL pool a service opens with them.
async fn pool_with(env: &TestEnv, limits: &[(&str, &str)]) -> PgPool {
    migrated_pool_with(env, limits, &[]).await
}

/// [`pool_with`], the service's `migrations` applied as it starts.
async fn migrated_pool_with(
    env: &TestEnv,
    limits: &[(&str, &str)],
    migrations: &[&Migrations],
) -> PgPool {
    let vars = env
        .settings
        .env_vars()
        .into_iter()
        .chain(limits.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_vars(vars).expect("settings");
    let (store, _producer) = sumud_shared::startup::prepare(&settings, 2, migrations)
        .await
        .expect("the service's database");
    match store {
        Store::Postgres(pool) => pool,
        Store::Sqlite(_) => unreachable!("the test world is on PostgreSQL"),
    }
}

/// A table of one row, `(id 1, n 0)`.
async fn one_row(env: &TestEnv) {
    sqlx::raw_sql(
        "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); \
         INSERT INTO counter VALUES (1, 0);",
    )
    .execute(&env.pool)
    .await
    .unwrap();
}

/// A session of the test's own, with none of the service's limits.
async fn bare_session(env: &TestEnv) -> PgConnection {
    PgConnection::connect(&env.settings.database_url)
        .await
        .expect("a session")
}

/// Another session holds a row lock for longer than the lock timeout: the
/// service's statement on that row gives up with `lock_not_available`,
/// which the consumer loop's retry treats as transient, and the retry
/// succeeds once the lock is gone. (Without a lock timeout the statement
/// waits for as long as the other session pleases, and the partition with
/// it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_blocked_past_the_lock_timeout_is_retried_not_left_waiting() {
    // Arrange
    let env = TestEnv::new().await;
    one_row(&env).await;
    let pool = pool_with(&env, &[("SUMUD_DB_LOCK_TIMEOUT_MS", "300")]).await;
    let mut holder = bare_session(&env).await;
    sqlx::raw_sql("BEGIN; UPDATE counter SET n = n + 1 WHERE id = 1;")
        .execute(&mut holder)
        .await
        .unwrap();

    // Act: the consumer loop's retry runs the service's statement.
    let attempts = Arc::new(AtomicU32::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let shutdown = CancellationToken::new();
    let retrying = {
        let (attempts, errors, shutdown) = (attempts.clone(), errors.clone(), shutdown.clone());
        tokio::spawn(async move {
            retry_transient(
                || {
                    let (pool, attempts, errors) = (pool.clone(), &attempts, &errors);
                    async move {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        let done = sqlx::query("UPDATE counter SET n = n + 10 WHERE id = 1")
                            .execute(&pool)
                            .await
                            .map(drop)
                            .map_err(sumud_shared::Error::from);
                        if let Err(e) = &done {
                            errors.lock().unwrap().push(e.to_string());
                        }
                        done
                    }
                },
                &shutdown,
            )
            .await
        })
    };

    // Assert: while the lock is held the statement fails and is tried
    // again, rather than waiting on the lock.
    wait_for(
        "a second attempt of the blocked statement",
        DEADLINE,
        || async { (attempts.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    let first = errors.lock().unwrap()[0].clone();
    assert!(first.contains("lock timeout"), "{first}");
    // The lock goes: the next attempt succeeds.
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let done = tokio::time::timeout(DEADLINE, retrying)
        .await
        .expect("the retry to succeed once the lock is gone")
        .unwrap();
    assert!(matches!(done, Some(Ok(()))), "{done:?}");
    let n: i32 = sqlx::query_scalar("SELECT n FROM counter")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(n, 11, "both updates, each once");
}

/// A statement that runs past the statement timeout is cancelled by the
/// server, with an error the consumer loop retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_running_past_the_statement_timeout_is_cancelled_retryably() {
    let env = TestEnv::new().await;
    let pool = pool_with(&env, &[("SUMUD_DB_STATEMENT_TIMEOUT_MS", "300")]).await;

    let ran = tokio::time::timeout(DEADLINE, sqlx::query("SELECT pg_sleep(60)").execute(&pool))
        .await
        .expect("the statement to end at the statement timeout, not run on");

    let e = sumud_shared::Error::from(ran.expect_err("cancelled"));
    assert!(e.to_string().contains("statement timeout"), "{e}");
    assert!(e.is_retryable(), "{e}");
    // The pool's connection is still good for the next statement.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

/// A client that stalls inside a transaction, holding a row lock, is cut
/// off by the server after the idle-in-transaction timeout: the lock goes
/// to the next writer, the stalled transaction is rolled back, and the
/// stalled client's next statement fails with an error the consumer loop
/// retries (redoing the whole transaction is the right response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stalled_inside_a_transaction_is_ended_and_its_locks_freed() {
    // Arrange: the service's session takes a row lock and stalls.
    let env = TestEnv::new().await;
    one_row(&env).await;
    let pool = pool_with(&env, &[("SUMUD_DB_IDLE_TX_TIMEOUT_MS", "300")]).await;
    let mut stalled = pool.begin().await.unwrap();
    sqlx::query("UPDATE counter SET n = n + 1 WHERE id = 1")
        .execute(&mut *stalled)
        .await
        .unwrap();

    // Act: another writer wants the row.
    let mut other = bare_session(&env).await;
    let wrote = tokio::time::timeout(
        DEADLINE,
        sqlx::query("UPDATE counter SET n = n + 10 WHERE id = 1").execute(&mut other),
    )
    .await;

    // Assert: it got the row once the server ended the stalled session ...
    wrote
        .expect("the other writer to get the lock when the stalled session is ended")
        .unwrap();
    let n: i32 = sqlx::query_scalar("SELECT n FROM counter")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(n, 10, "the stalled transaction's update was rolled back");
    // ... and the stalled client learns it on its next statement, with an
    // error the consumer loop retries.
    let e = sumud_shared::Error::from(stalled.commit().await.expect_err("the session is gone"));
    assert!(e.to_string().contains("idle-in-transaction timeout"), "{e}");
    assert!(e.is_retryable(), "{e}");
}

/// Migrations are not held to the limits: one that runs longer than the
/// statement timeout (an index built over a large table) completes, and
/// the pool the service then uses still has the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_longer_than_the_statement_timeout_completes() {
    let env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("sumud-slow-migration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20990101000000_slow.sql"),
        "SELECT pg_sleep(1); CREATE TABLE slow_done (x int);",
    )
    .unwrap();
    let migrator: &'static sqlx::migrate::Migrator = Box::leak(Box::new(
        sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap(),
    ));
    let slow = Migrations {
        service: "slow",
        postgres: migrator,
        sqlite: None,
    };

    let pool =
        migrated_pool_with(&env, &[("SUMUD_DB_STATEMENT_TIMEOUT_MS", "300")], &[&slow]).await;

    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM slow_done")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(done, 0, "the table the migration made is there");
    let limit: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(limit, "300ms");
    std::fs::remove_dir_all(&dir).unwrap();
}
