//! The cross-service test harness: a fresh database and private topics per
//! test on the real Kafka broker and PostgreSQL started by `scripts/test.sh`,
//! services started in-process with their own shutdown token, and helpers
//! that wait on conditions with deadlines instead of sleeping.

pub mod browser;
pub mod infra;
pub mod pipeline;
pub mod watchdog;

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection, PgPool};
use sumud_shared::config::{Settings, DEFAULT_BOOTSTRAP, DEFAULT_DATABASE_URL};
pub use sumud_shared::db::Backend;
use sumud_shared::db::Store;
use sumud_shared::kafka::producer::EventProducer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use watchdog::bounded;

/// One test's private world on the shared infrastructure.
pub struct TestEnv {
    /// Settings pointing at the private database and topics.
    pub settings: Settings,
    /// A pool on the private PostgreSQL database. On the SQLite backend
    /// (see [`TestEnv::with`]) nothing writes there: read through `store`.
    pub pool: PgPool,
    /// The database the services of the test use, on the test's backend.
    pub store: Store,
    /// The SQLite test's data directory, removed when the test ends.
    sqlite_dir: Option<std::path::PathBuf>,
    /// A producer for publishing test input.
    pub producer: EventProducer,
    /// Ends the process with a report should this test outlive its budget.
    _watchdog: watchdog::Watchdog,
}

/// The admin URL of the PostgreSQL server the tests use (a test that brings
/// its own broker still uses the suite's database server).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

impl TestEnv {
    /// Creates a fresh database and private topics.
    ///
    /// Panics with instructions if Kafka or PostgreSQL is not reachable:
    /// integration tests must run through `scripts/test.sh`, never skip.
    pub async fn new() -> TestEnv {
        let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .unwrap_or_else(|_| DEFAULT_BOOTSTRAP.to_owned());
        Self::on(bootstrap, admin_url()).await
    }

    /// The same on explicitly named servers (a test's private broker and
    /// database, see `infra.rs`), without touching the process environment
    /// that other tests of the binary read.
    pub async fn on(bootstrap: String, admin: String) -> TestEnv {
        let _ = sumud_shared::telemetry::init("tests");
        let id = short_id();
        let watchdog = watchdog::Watchdog::arm(&format!("test world {id}"));
        watchdog::phase(format!("test world {id}: database and topics"));
        let mut conn = bounded(
            "connect to PostgreSQL",
            SETUP,
            PgConnection::connect(&admin),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); run the tests with scripts/test.sh"
            )
        });
        let db = format!("sumud_t_{id}");
        bounded(
            "create the test database",
            SETUP,
            sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut conn),
        )
        .await
        .expect("create test database");
        let database_url = match admin.rfind('/') {
            Some(i) => format!("{}/{db}", &admin[..i]),
            None => panic!("DATABASE_URL {admin} has no database name"),
        };
        let mut settings = Settings {
            bootstrap_servers: bootstrap,
            database_url,
            group_prefix: format!("t{id}"),
            topic_partitions: 3,
            ..Settings::default()
        };
        settings.topics = settings.topics.with_suffix(&id);
        bounded(
            "create the test's topics",
            SETUP,
            sumud_shared::kafka::admin::ensure_topics(&settings),
        )
        .await
        .expect("Kafka is not reachable; run the tests with scripts/test.sh");
        let pool = bounded(
            "connect to the test database",
            SETUP,
            sumud_shared::db::connect(&settings.database_url, 5, Duration::from_secs(10)),
        )
        .await
        .expect("connect to the test database");
        let producer = EventProducer::new(&settings).expect("producer");
        TestEnv {
            settings,
            store: Store::Postgres(pool.clone()),
            pool,
            producer,
            sqlite_dir: None,
            _watchdog: watchdog,
        }
    }

    /// A fresh world on `backend`: on SQLite, the services get a fresh
    /// database file in a private directory (`DATABASE_URL=sqlite://…`).
    pub async fn with(backend: Backend) -> TestEnv {
        let env = Self::new().await;
        match backend {
            Backend::Postgres => env,
            Backend::Sqlite => env.on_sqlite().await,
        }
    }

    /// This world with the services' database moved to a fresh SQLite file
    /// in a private directory (`DATABASE_URL=sqlite://…`).
    pub async fn on_sqlite(mut self) -> TestEnv {
        let dir = std::env::temp_dir().join(format!("sumud-t-{}", short_id()));
        self.settings.database_url = format!("sqlite://{}/sumud.db", dir.display());
        self.store = Store::connect(&self.settings.database_url, 4, Duration::from_secs(10))
            .await
            .expect("open the test's SQLite file");
        self.sqlite_dir = Some(dir);
        self
    }

    /// A count (or any one `bigint`) read from the test's database; `sql`
    /// must read the same on both backends.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.store {
            Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs one statement on the test's database and returns the
    /// database's refusal, if any; `sql` must read the same on both
    /// backends.
    pub async fn try_execute(&self, sql: &str) -> Result<u64, String> {
        match &self.store {
            Store::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Store::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .map_err(|e| e.to_string())
    }

    /// Whether no relay leads the outbox of `schema` in this test's
    /// database: on PostgreSQL no session holds the relay's advisory lock in
    /// it, on SQLite the relay's lock file can be locked. A crash test
    /// checks that a killed service's relay went with it.
    pub async fn outbox_relay_free(&self, schema: &str) -> bool {
        match &self.store {
            Store::Postgres(pool) => {
                // A bigint advisory key is held as (classid, objid) = its
                // high and low 32 bits, with objsubid 1.
                let held: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                     WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.granted \
                       AND l.objsubid = 1 AND (l.classid::int8 << 32 | l.objid::int8) = $1",
                )
                .bind(sumud_shared::outbox::relay_lock_key(schema))
                .fetch_one(pool)
                .await
                .expect("pg_locks");
                held == 0
            }
            Store::Sqlite(pool) => {
                sumud_shared::db::sqlite::try_lock(pool, &format!("{schema}.relay"))
                    .expect("the relay's lock file")
                    .is_some()
            }
        }
    }

    /// Rows read from the test's database; `sql` must read the same on both
    /// backends (`CAST(… AS bigint)`, not `::bigint`).
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        match &self.store {
            Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Publishes raw bytes with a key and waits for the acknowledgement.
    pub async fn publish(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer
            .send_raw(topic, Some(key.as_bytes()), payload, None)
            .await
            .expect("publish");
    }

    /// How many records `topic` holds: the sum over its partitions of
    /// high minus low watermark (exact for topics without transactions or
    /// compaction, as every topic of the tests is).
    pub fn topic_len(&self, topic: &str) -> usize {
        let consumer = sumud_shared::kafka::Detached::<BaseConsumer>::new(
            sumud_shared::kafka::client_config(&self.settings)
                .set("group.id", format!("reader-{}", short_id()))
                .create()
                .expect("consumer"),
        );
        let meta = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut n = 0;
        for p in meta.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            n += (high - low) as usize;
        }
        drop(consumer);
        n
    }

    /// Waits until the services have nothing left in hand, stage by stage
    /// in the order data flows: for each [`Stage`], its consumer group has
    /// committed to the end of every partition of its topic, and then its
    /// outbox (if it has one) holds nothing unpublished. Dead letters go
    /// out before a batch's offsets are stored, and events are enqueued in
    /// the transaction of their effect, so once every stage holds, checked
    /// in that order, what the topics hold is all the input will ever
    /// produce: a test proves that nothing more comes by settling, not by
    /// waiting a fixed time for a message that should not exist. (An outbox
    /// checked before its consumer's offsets could read empty just before
    /// the handler enqueued.)
    pub async fn settle(&self, stages: &[Stage<'_>], deadline: Duration) {
        wait_for("the services to settle", deadline, || async {
            for stage in stages {
                let settings = self.settings.clone();
                let group = self.settings.group_id(stage.service);
                let topic = stage.topic.to_owned();
                let caught_up = tokio::task::spawn_blocking(move || {
                    committed_to_end(&settings, &group, &topic)
                })
                .await
                .ok()?;
                if !caught_up {
                    return None;
                }
                if let Some(schema) = stage.outbox {
                    let sql =
                        format!("SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL");
                    if self.count(&sql).await > 0 {
                        return None;
                    }
                }
            }
            Some(())
        })
        .await
    }

    /// Every message `topic` holds now, as (key, payload), in partition
    /// order: after [`TestEnv::settle`], everything there will be.
    pub fn read_all(&self, topic: &str) -> Vec<(String, Vec<u8>)> {
        let n = self.topic_len(topic);
        let read = self.read_topic(topic, n, Duration::from_secs(30));
        assert_eq!(
            read.len(),
            n,
            "{topic} holds {n} messages; read {}",
            read.len()
        );
        read
    }

    /// Reads a topic from the beginning until `expected` messages arrived or
    /// the deadline passed; returns what was read as (key, payload).
    pub fn read_topic(
        &self,
        topic: &str,
        expected: usize,
        deadline: Duration,
    ) -> Vec<(String, Vec<u8>)> {
        let consumer = sumud_shared::kafka::Detached::<BaseConsumer>::new(
            sumud_shared::kafka::client_config(&self.settings)
                .set("group.id", format!("reader-{}", short_id()))
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer"),
        );
        let meta = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut tpl = TopicPartitionList::new();
        for p in meta.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let end = Instant::now() + deadline;
        let mut out = Vec::new();
        while out.len() < expected && Instant::now() < end {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                out.push((key, m.payload().unwrap_or_default().to_vec()));
            }
        }
        drop(consumer);
        out
    }
}

/// One stage of [`TestEnv::settle`]: a service's consumer group on one of
/// its input topics, and the schema of the outbox it writes, if any.
pub struct Stage<'a> {
    /// The service (its group is `<prefix>-<service>`).
    pub service: &'a str,
    /// One topic it consumes.
    pub topic: &'a str,
    /// The schema whose `outbox` table it publishes from.
    pub outbox: Option<&'a str>,
}

/// Whether `group` has committed to the end of every partition of
/// `topic` (a partition it has no offset for must be empty). Blocking.
fn committed_to_end(settings: &Settings, group: &str, topic: &str) -> bool {
    let Ok(c) = sumud_shared::kafka::client_config(settings)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    let ask = Duration::from_secs(10);
    let done = (|| {
        let meta = c.fetch_metadata(Some(topic), ask).ok()?;
        let t = meta.topics().first()?;
        if t.error().is_some() || t.partitions().is_empty() {
            return None; // an unknown topic is not a settled one
        }
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
        let committed = c.committed_offsets(tpl, ask).ok()?;
        for e in committed.elements() {
            let (low, high) = c.fetch_watermarks(topic, e.partition(), ask).ok()?;
            let at = match e.offset() {
                Offset::Offset(at) => at,
                _ => low,
            };
            if at < high {
                return Some(false);
            }
        }
        Some(true)
    })()
    .unwrap_or(false);
    sumud_shared::kafka::drop_detached(c);
    done
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs scenarios written once on both backends: for each
/// `async fn name(backend: Backend)` of the test file,
/// `on_both_backends!(name)` makes the tests `postgres::name` and
/// `sqlite::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )+
        }
    };
}

/// A service running in this process.
pub struct Running {
    token: CancellationToken,
    task: JoinHandle<sumud_shared::Result<()>>,
}

impl Running {
    /// Starts a service future with its own shutdown token.
    pub fn spawn<F, Fut>(f: F) -> Running
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = sumud_shared::Result<()>> + Send + 'static,
    {
        let token = CancellationToken::new();
        let task = tokio::spawn(f(token.clone()));
        Running { token, task }
    }

    /// Tells the service to stop, without waiting: [`Running::stop`]
    /// then waits for it.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Graceful stop: finish the batch, commit offsets; a service that
    /// has not stopped after [`STOP_WITHIN`] fails the test.
    pub async fn stop(self) {
        self.token.cancel();
        bounded("a service to stop", STOP_WITHIN, self.task)
            .await
            .expect("service task")
            .expect("service result");
    }

    /// Whether the service is still running (it has not returned or
    /// panicked): fault tests check that services ride out outages.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Hard stop, like a crash: the task is dropped wherever it is, nothing
    /// is committed on the way out.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// How long a test's setup step (a connection, a database, its topics)
/// may take.
pub const SETUP: Duration = Duration::from_secs(120);

/// How long a service may take to stop gracefully (its consumer closes
/// within 30 s even when the broker does not answer).
pub const STOP_WITHIN: Duration = Duration::from_secs(90);

/// Polls `check` until it returns `Some`, or panics with `what` at the
/// deadline. Each attempt is itself cut off at the deadline, so a check
/// that never resolves fails the test instead of hanging it.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_explained(what, deadline, || {
        let attempt = check();
        async move { attempt.await.ok_or_else(String::new) }
    })
    .await
}

/// [`wait_for`] whose check says why it is not yet satisfied: at the
/// deadline the panic carries the last answer, so a failure seen once in CI
/// names what was missing instead of only how long was waited.
pub async fn wait_explained<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        // The last attempt gets a moment even when the deadline has passed.
        let attempt = left.max(Duration::from_secs(1));
        let last = match tokio::time::timeout(attempt, check()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(why)) => why,
            Err(_) => panic!(
                "timed out after {deadline:?} waiting for {what}: the last check did not return"
            ),
        };
        if Instant::now() > end {
            if last.is_empty() {
                panic!("timed out after {deadline:?} waiting for {what}");
            }
            panic!("timed out after {deadline:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
