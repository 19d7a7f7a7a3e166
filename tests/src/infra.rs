//! Private infrastructure for fault tests: a Kafka broker and a PostgreSQL
//! server of the test's own (started with `scripts/kafka.sh` and
//! `scripts/postgres.sh` under a private `SUMUD_STATE_DIR` and free ports),
//! which the test may stop and restart without disturbing the shared
//! instances other tests use; a TCP proxy that can stall a connection; a
//! payments pipeline whose services each serve their HTTP surface on an
//! address of their own; and readers that see a whole topic.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sumud_control::config::ControlConfig;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::events::household::Household;
use sumud_shared::synthetic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Pipeline, DEADLINE, SEED};
use crate::watchdog::{bounded, phase};
use crate::{wait_explained, Running, TestEnv, SETUP};

/// A loopback address nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address")
}

/// Which of the two private servers a script call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The private Kafka broker (`scripts/kafka.sh`).
    Kafka,
    /// The private PostgreSQL server (`scripts/postgres.sh`).
    Postgres,
}

impl Server {
    fn script(self) -> &'static str {
        match self {
            Server::Kafka => "kafka.sh",
            Server::Postgres => "postgres.sh",
        }
    }
}

/// How long a start or stop script may run (the broker's own start timeout
/// is 90 s and its stop timeout 45 s).
pub const SCRIPT_WITHIN: Duration = Duration::from_secs(180);

/// A Kafka broker and a PostgreSQL server owned by one test: stopped and
/// their state deleted when dropped, also when the test panics.
pub struct PrivateInfra {
    state_dir: PathBuf,
    kafka_port: u16,
    controller_port: u16,
    pg_port: u16,
}

/// The repository root (scripts, `.local/`), for tests that run a script.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

impl PrivateInfra {
    /// Starts both servers (in parallel; Kafka takes the longer) on free
    /// ports, with state under `.local/faults/<id>` (git-ignored).
    pub async fn start() -> PrivateInfra {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let state_dir = repo_root().join(".local").join("faults").join(id);
        let pg_home = state_dir.join("postgres");
        std::fs::create_dir_all(&pg_home).expect("create the private state directory");
        // Pin the cluster's location inside the private state directory, so
        // that postgres.sh can never fall back to a directory it shares with
        // the shared instance (its /var/tmp fallback is keyed by checkout).
        std::fs::write(
            pg_home.join("location"),
            format!("{}\n", pg_home.join("cluster").display()),
        )
        .expect("write the cluster location");
        let infra = PrivateInfra {
            state_dir,
            kafka_port: free_addr().port(),
            controller_port: free_addr().port(),
            pg_port: free_addr().port(),
        };
        let (pg, kafka) = tokio::join!(
            infra.script(Server::Postgres, "start"),
            infra.script(Server::Kafka, "start")
        );
        pg.expect("private PostgreSQL starts");
        kafka.expect("private Kafka starts");
        infra
    }

    /// Copies the servers' logs to `target/faults-logs/` (for a failed run:
    /// the state directory goes when the servers stop); returns where.
    pub fn save_logs(&self) -> PathBuf {
        let dir = repo_root().join("target").join("faults-logs");
        let _ = std::fs::create_dir_all(&dir);
        let cluster = self.state_dir.join("postgres").join("cluster");
        for (from, to) in [
            (
                self.state_dir.join("kafka").join("broker.log"),
                "broker.log",
            ),
            (
                self.state_dir.join("kafka").join("broker.log.1"),
                "broker.log.1",
            ),
            (cluster.join("postgres.log"), "postgres.log"),
        ] {
            let _ = std::fs::copy(from, dir.join(to));
        }
        dir
    }

    /// Kafka bootstrap servers of the private broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Admin database URL of the private PostgreSQL (user and password as
    /// `scripts/postgres.sh` creates them).
    pub fn database_url(&self) -> String {
        format!("postgres://sumud:sumud@127.0.0.1:{}/sumud", self.pg_port)
    }

    /// The private PostgreSQL's TCP address (for a proxy in front of it).
    pub fn postgres_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.pg_port))
    }

    /// Runs `scripts/<server>.sh <action>` against the private instance;
    /// `Err` carries the script's output, or says it did not finish within
    /// [`SCRIPT_WITHIN`] (the script is then killed).
    pub async fn script(&self, server: Server, action: &str) -> Result<(), String> {
        crate::watchdog::phase(format!("{} {action}", server.script()));
        let run = tokio::process::Command::new("bash")
            .args(script_args(server, action))
            .envs(self.script_env())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(SCRIPT_WITHIN, run)
            .await
            .map_err(|_| {
                format!(
                    "{} {action} did not finish within {SCRIPT_WITHIN:?}",
                    server.script()
                )
            })?
            .map_err(|e| format!("cannot run {}: {e}", server.script()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {action} failed ({}): {}",
                server.script(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The variables that point the scripts at this instance and nothing else.
    fn script_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SUMUD_STATE_DIR", self.state_dir.display().to_string()),
            ("SUMUD_KAFKA_PORT", self.kafka_port.to_string()),
            (
                "SUMUD_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            ),
            ("SUMUD_PG_PORT", self.pg_port.to_string()),
            // Beside the shared broker on a 2-core machine: a smaller heap.
            ("SUMUD_KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m".to_owned()),
            // A plain listener, whatever the calling shell says.
            ("SUMUD_KAFKA_SASL", "0".to_owned()),
            ("SUMUD_KAFKA_AUTHORIZER", "0".to_owned()),
        ]
    }
}

/// `bash` arguments that run `scripts/<server>.sh <action>` from a copy read
/// whole before it starts (`source` reads the file at once; `bash FILE`
/// reads as it goes, and the scripts may be edited while a test runs).
fn script_args(server: Server, action: &str) -> Vec<String> {
    vec![
        "-c".to_owned(),
        r#"source "$0" "$@""#.to_owned(),
        repo_root()
            .join("scripts")
            .join(server.script())
            .display()
            .to_string(),
        action.to_owned(),
    ]
}

impl Drop for PrivateInfra {
    /// Stops both servers and deletes their state: blocking, since it may
    /// run while a panicking test unwinds.
    fn drop(&mut self) {
        let mut all_stopped = true;
        for server in [Server::Kafka, Server::Postgres] {
            let stopped = std::process::Command::new("bash")
                .args(script_args(server, "stop"))
                .envs(self.script_env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !stopped.is_ok_and(|s| s.success()) {
                all_stopped = false;
                eprintln!(
                    "could not stop the private {server:?}; stop it with SUMUD_STATE_DIR={} scripts/{} stop",
                    self.state_dir.display(),
                    server.script()
                );
            }
        }
        // Keep the state of a server that may still run on it.
        if all_stopped {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

/// Runs `scenarios` on a private broker and database in a runtime of its
/// own (two workers, as the suite's), so that on failure the services
/// still running are dropped — their consumers leave their groups — while
/// the private broker is up, before the servers are stopped; the servers'
/// logs are kept when a scenario fails, and the panic goes on.
pub fn on_private_infra<F>(scenarios: F)
where
    F: for<'a> FnOnce(&'a PrivateInfra) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>,
{
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    crate::watchdog::phase("starting a private broker and database");
    let infra = rt.block_on(PrivateInfra::start());
    eprintln!(
        "private Kafka {} and PostgreSQL {} started in {:.1} s",
        infra.bootstrap(),
        infra.postgres_addr(),
        started.elapsed().as_secs_f64()
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(scenarios(&infra))
    }));
    rt.shutdown_timeout(Duration::from_secs(30));
    if outcome.is_err() {
        eprintln!("server logs kept in {}", infra.save_logs().display());
    }
    drop(infra);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eprintln!("whole test took {:.1} s", started.elapsed().as_secs_f64());
}

/// A TCP proxy that can be told to stop forwarding: connections stay open
/// but no byte moves either way (and new ones are accepted but not
/// forwarded) until it resumes — a stalled network path, not a refused one.
pub struct TcpProxy {
    addr: SocketAddr,
    stalled: watch::Sender<bool>,
    stop: CancellationToken,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (stalled, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let (tx, token) = (stalled.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let (rx, token) = (tx.subscribe(), token.clone());
                tokio::spawn(async move {
                    let mut gate = rx.clone();
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = gate.wait_for(|s| !*s) => {}
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = async {
                            tokio::join!(pump(cr, sw, rx.clone()), pump(sr, cw, rx))
                        } => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            stalled,
            stop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding (bytes in flight are held, not dropped).
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Copies one direction, waiting before each read and each write while
/// stalled; closes the write side at end of stream.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The services of a payments pipeline, in start order.
pub const SERVICES: [&str; 5] = [
    "registry",
    "control",
    "eligibility",
    "disbursement",
    "provider-sim",
];

/// The HTTP surface of each service of a pipeline, by service name.
pub struct Probes {
    /// (service, address) in [`SERVICES`] order.
    pub addrs: Vec<(&'static str, SocketAddr)>,
}

impl Probes {
    /// Asks every service's `/readyz` at once: (service, HTTP status, or
    /// `None` if the service did not answer within 5 s).
    pub async fn readiness(&self) -> Vec<(&'static str, Option<u16>)> {
        self.readiness_reports()
            .await
            .into_iter()
            .map(|(n, s)| (n, s.map(|(status, _)| status)))
            .collect()
    }

    /// Every service's `/readyz` answer, status and body (which says what
    /// is not ready), in [`SERVICES`] order; `None` if it did not answer
    /// within 5 s.
    pub async fn readiness_reports(&self) -> Vec<(&'static str, Option<(u16, String)>)> {
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, addr)) in self.addrs.iter().copied().enumerate() {
            set.spawn(async move {
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), http_get(addr, "/readyz"))
                        .await
                        .ok()
                        .flatten();
                (i, name, answer)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.expect("probe task"));
        }
        out.sort();
        out.into_iter().map(|(_, n, s)| (n, s)).collect()
    }

    /// Waits until every service in `which` answers `/readyz` with
    /// `status`; returns how long that took. At the deadline the panic
    /// quotes what each service still missing last answered.
    pub async fn wait_all(&self, which: &[&str], status: u16, deadline: Duration) -> Duration {
        let started = Instant::now();
        let what = format!("{which:?} to answer /readyz with {status}");
        wait_explained(&what, deadline, || async {
            let missing: Vec<String> = self
                .readiness_reports()
                .await
                .into_iter()
                .filter(|(n, _)| which.contains(n))
                .filter(|(_, a)| a.as_ref().map(|(s, _)| *s) != Some(status))
                .map(|(n, a)| match a {
                    Some((s, body)) => format!("{n} answered {s}: {body}"),
                    None => format!("{n} did not answer"),
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join("; "))
            }
        })
        .await;
        started.elapsed()
    }
}

/// A plain HTTP/1.1 GET: (status, body); `None` if nothing answered in
/// full within 10 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(10), http_get_unbounded(addr, path))
        .await
        .ok()
        .flatten()
}

async fn http_get_unbounded(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// How long a consumer of [`start_payments`]' services may stay outside its
/// group before it is made anew (`SUMUD_CONSUMER_JOIN_SECS`).
pub const RECREATE_AFTER: Duration = Duration::from_secs(30);

/// Registry, control, eligibility, disbursement and the provider simulator
/// on `env` (which may name private servers), each serving its HTTP surface
/// on an address of its own; `database_url` overrides the database URL of
/// the services named in it (e.g. disbursement through a [`TcpProxy`]),
/// while the test's own pool keeps the direct path. The registry of `n`
/// synthetic households is published and consumed before this returns.
///
/// These pipelines live through broker and database restarts, after which
/// librdkafka's coordinator connection can wedge so that a consumer never
/// joins again; the remedy (a new consumer) fires after
/// [`RECREATE_AFTER`] here instead of the default 120 s, which left it no
/// room inside the tests' readiness waits (90 s and 150 s): the tests
/// check that the remedy heals, at a bound they can wait for.
pub async fn start_payments(
    env: TestEnv,
    n: u64,
    control: ControlConfig,
    disbursement: DisbursementConfig,
    behaviour: Behaviour,
    database_url: &BTreeMap<&str, String>,
) -> (Pipeline, Probes) {
    let households: Vec<Household> = (0..n)
        .map(|i| synthetic::household(AreaCatalog::default_catalog(), SEED, i))
        .collect();
    phase(format!("payments pipeline: publishing a registry of {n}"));
    bounded(
        "publish the registry",
        SETUP,
        sumud::registry_cmd::publish_synthetic(&env.settings, n, SEED, true),
    )
    .await
    .expect("publish the registry");
    let mut addrs = Vec::new();
    let mut settings_of = |name: &'static str| -> Settings {
        let mut s = env.settings.clone();
        s.consumer_bounds.join_within = RECREATE_AFTER;
        let addr = free_addr();
        s.http_addr = Some(addr);
        if let Some(url) = database_url.get(name) {
            s.database_url = url.clone();
        }
        addrs.push((name, addr));
        s
    };
    phase("payments pipeline: building the services");
    let registry = bounded(
        "build registry",
        SETUP,
        sumud_registry::App::build(settings_of("registry")),
    )
    .await
    .expect("registry builds");
    let control_app = bounded(
        "build control",
        SETUP,
        sumud_control::App::build(settings_of("control"), control),
    )
    .await
    .expect("control builds");
    let eligibility = bounded(
        "build eligibility",
        SETUP,
        sumud_eligibility::App::build(settings_of("eligibility")),
    )
    .await
    .expect("eligibility builds");
    let disbursement_app = bounded(
        "build disbursement",
        SETUP,
        sumud_disbursement::App::build(settings_of("disbursement"), disbursement),
    )
    .await
    .expect("disbursement builds");
    let provider_keys = crate::pipeline::register_providers(disbursement_app.store()).await;
    let behaviour = Behaviour {
        keys: provider_keys.clone(),
        ..behaviour
    };
    let sim = bounded(
        "build the provider simulator",
        SETUP,
        sumud_provider_sim::App::build(settings_of("provider-sim"), behaviour),
    )
    .await
    .expect("provider simulator builds");
    let (alice, bob) = crate::pipeline::register_operators(&env.store).await;
    let services = vec![
        Running::spawn(|t| registry.run(t)),
        Running::spawn(|t| control_app.run(t)),
        Running::spawn(|t| eligibility.run(t)),
        Running::spawn(|t| disbursement_app.run(t)),
        Running::spawn(|t| sim.run(t)),
    ];
    let p = Pipeline {
        env,
        services,
        alice,
        bob,
        households,
        provider_keys,
    };
    phase("payments pipeline: registry stored, services joining their groups");
    p.wait_count(
        "the registry",
        "SELECT count(*) FROM registry.households",
        n as i64,
    )
    .await;
    let probes = Probes { addrs };
    probes.wait_all(&SERVICES, 200, DEADLINE).await;
    phase("payments pipeline: every service ready");
    (p, probes)
}

/// Every message of `topic` up to its current end, as (key, payload): reads
/// each partition from the beginning to its high watermark, so republished
/// duplicates are all seen.
pub fn read_all(settings: &Settings, topic: &str) -> Vec<(String, Vec<u8>)> {
    let consumer = sumud_shared::kafka::Detached::<BaseConsumer>::new(
        sumud_shared::kafka::client_config(settings)
            .set(
                "group.id",
                format!("reader-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer"),
    );
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in meta.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        drop(consumer);
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = BTreeMap::new();
    while done.len() < ends.len() {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            out.push((key, m.payload().unwrap_or_default().to_vec()));
            if m.offset() + 1 >= ends[&m.partition()] {
                done.insert(m.partition(), ());
            }
        }
    }
    drop(consumer);
    out
}
