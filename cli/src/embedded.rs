//! The embedded default broker: a Kafka-protocol broker (tansu) running
//! inside the `sumud` process on loopback, so a newcomer sees the pipeline
//! work without installing Kafka or Java — and so that outside Kafka clients
//! (a payment provider, Kafka's console tools, an operator's tooling) connect to it exactly as
//! to a real cluster. With `KAFKA_BOOTSTRAP_SERVERS` set, none of this runs.
//!
//! Its topics live in memory (tansu's `dynostore` engine). Its SQLite-file
//! engine links a second SQLite (libsql) that collides with sqlx's at link
//! time, so a restart of `sumud up` starts from empty topics: the database
//! keeps the record, and the outboxes publish again what the lost topics
//! may have held unread (`up::Tuning::broker_started_empty`); what outside
//! systems wrote and nobody read is gone. Production runs on real Kafka.
//!
//! The pipeline never relies on Kafka transactions (tansu has no `EndTxn`):
//! exactly-once in effect comes from PostgreSQL, the outboxes and idempotent
//! consumers, which only need what tansu serves — idempotent produce,
//! consumer groups and committed offsets.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::sync::oneshot;
use url::Url;

/// How long the broker may take to accept connections after it was built.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long a stopping broker's connections get to finish.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// A running embedded broker; stopped when dropped.
///
/// It runs on a runtime and threads of its own. The pipeline's Kafka clients
/// make blocking librdkafka calls (flush, close) on their runtime's workers;
/// on a two-core machine two such calls would otherwise occupy every worker
/// the broker needs to answer them, and the process would hang at shutdown.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a single-node broker listening (and advertising itself) on
    /// `addr`, and returns once it accepts connections.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!(
                "{addr} is already in use: another broker (or `sumud up`) is running there. \
                 Stop it, pick another address with --broker-listen, or point \
                 KAFKA_BOOTSTRAP_SERVERS at it to use it instead"
            );
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let (built_tx, built) = oneshot::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || serve(addr, built_tx, stopped))
            .context("starting the embedded broker's thread")?;
        let mut broker = EmbeddedBroker {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        };
        built
            .await
            .map_err(|_| anyhow::anyhow!("the embedded broker's thread ended while starting"))?
            .map_err(|e| anyhow::anyhow!("building the embedded broker: {e}"))?;
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let ended = broker.thread.as_ref().is_none_or(|t| t.is_finished());
            if ended || started.elapsed() > READY_WITHIN {
                broker.shut();
                bail!("the embedded broker did not start listening on {addr}; see the log above");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(%addr, "Embedded broker listening.");
        Ok(broker)
    }

    /// The bootstrap servers string for clients of this broker.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The broker thread: its own runtime, the broker on it until `stopped`.
fn serve(
    addr: SocketAddr,
    built: oneshot::Sender<Result<(), String>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("embedded-broker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = built.send(Err(format!("no runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let mut broker = match build(addr).await {
            Ok(b) => b,
            Err(e) => {
                let _ = built.send(Err(e));
                return;
            }
        };
        let _ = built.send(Ok(()));
        // `serve` rather than `main`: `main` installs its own SIGINT and
        // SIGTERM handlers, and shutdown belongs to the pipeline here.
        tokio::select! {
            result = broker.serve(tokio::time::Instant::now()) => {
                if let Err(e) = result {
                    tracing::error!(error = ?e, "The embedded broker stopped.");
                }
            }
            _ = stopped => {}
        }
    });
    runtime.shutdown_timeout(STOP_WITHIN);
}

async fn build(
    addr: SocketAddr,
) -> Result<Broker<Controller<StorageContainer>, StorageContainer>, String> {
    let listener = Url::parse(&format!("tcp://{addr}")).map_err(|e| e.to_string())?;
    Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(tansu_broker::NODE_ID)
        .cluster_id("sumud-embedded")
        .incarnation_id(uuid::Uuid::new_v4())
        .advertised_listener(listener.clone())
        .storage(Url::parse("memory://sumud/").map_err(|e| e.to_string())?)
        .listener(listener)
        .silent(true)
        .build()
        .await
        .map_err(|e| format!("{e:?}"))
}
