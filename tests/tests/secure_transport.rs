//! Secure transport and least privilege, end to end: a private Kafka broker
//! (started here with `scripts/kafka.sh`, beside the shared one) that speaks
//! only SASL/SCRAM-SHA-512 and whose StandardAuthorizer allows nothing but the
//! ACLs listed in docs/security.md, read from that page. Every client is
//! configured by `SUMUD_RDKAFKA_*` settings alone, one SCRAM user per service,
//! and a crisis must still flow from the registry to paid instructions. Also:
//! a wrong password is refused, a service cannot touch a topic it has no ACL
//! for, and PostgreSQL TLS support is compiled in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::{Connection, PgConnection};
use sumud_control::signing::{self, Jwk};
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::{Settings, DEFAULT_DATABASE_URL};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{CommandKind, SignedCommand, CONTROL_COMMAND};
use sumud_shared::events::household::Household;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::synthetic;
use sumud_tests::pipeline::{claims, definition, expected, DEADLINE, SEED};
use sumud_tests::{wait_for, Running};

/// Ports of the private broker (the shared one is on 19092/19093).
const PORT: u16 = 19292;
const CONTROLLER_PORT: u16 = 19293;
/// The principals the scenario runs as; each gets its own SCRAM user.
const USERS: &[&str] = &[
    "sumud-registry",
    "sumud-control",
    "sumud-eligibility",
    "sumud-disbursement",
    "sumud-provider-sim",
    "sumud-operator",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The private SASL broker; stopped and its state deleted on drop, even when
/// the test fails.
struct SaslBroker(SaslHandle);

/// What the scenario needs to know about the broker: where its state lives
/// and the credentials of its users.
#[derive(Clone)]
struct SaslHandle {
    state_dir: PathBuf,
    admin_password: String,
    passwords: BTreeMap<&'static str, String>,
}

impl SaslBroker {
    /// Starts a fresh broker (a leftover of an interrupted run in the same
    /// state directory is stopped and wiped first) with `USERS` created.
    fn start() -> SaslBroker {
        let broker = SaslHandle {
            state_dir: repo_root().join(".local/secure-transport"),
            admin_password: secret(),
            passwords: USERS.iter().map(|u| (*u, secret())).collect(),
        };
        let _ = broker.script(&["stop"]).output();
        let _ = std::fs::remove_dir_all(&broker.state_dir);
        let out = broker.script(&["start"]).output().expect("run kafka.sh");
        assert!(
            out.status.success(),
            "the SASL broker did not start:\n{}",
            show(&out)
        );
        SaslBroker(broker)
    }

    /// The broker's address and credentials, for the scenario task.
    fn clone_handle(&self) -> SaslHandle {
        self.0.clone()
    }
}

impl SaslHandle {
    /// `scripts/kafka.sh ARGS` against this broker.
    fn script(&self, args: &[&str]) -> Command {
        let users: Vec<String> = self
            .passwords
            .iter()
            .map(|(u, p)| format!("{u}={p}"))
            .collect();
        let mut c = Command::new(repo_root().join("scripts/kafka.sh"));
        c.args(args)
            .env("SUMUD_STATE_DIR", &self.state_dir)
            .env("SUMUD_KAFKA_PORT", PORT.to_string())
            .env("SUMUD_KAFKA_CONTROLLER_PORT", CONTROLLER_PORT.to_string())
            .env("SUMUD_KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .env("SUMUD_KAFKA_SASL", "1")
            .env("SUMUD_KAFKA_AUTHORIZER", "1")
            .env("SUMUD_KAFKA_SASL_ADMIN_USER", "admin")
            .env("SUMUD_KAFKA_SASL_ADMIN_PASSWORD", &self.admin_password)
            .env("SUMUD_KAFKA_SASL_USERS", users.join(" "));
        c
    }

    /// Settings for `user`, built the way a deployment builds them: from
    /// environment variables only.
    fn settings(&self, user: &str, password: &str, database_url: &str) -> Settings {
        let vars = [
            ("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{PORT}")),
            ("DATABASE_URL", database_url.to_owned()),
            ("SUMUD_RDKAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
            ("SUMUD_RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("SUMUD_RDKAFKA_SASL_USERNAME", user.to_owned()),
            ("SUMUD_RDKAFKA_SASL_PASSWORD", password.to_owned()),
        ];
        Settings::from_vars(vars.into_iter().map(|(k, v)| (k.to_owned(), v))).expect("settings")
    }

    /// Settings of one of `USERS`.
    fn user(&self, user: &str, database_url: &str) -> Settings {
        self.settings(user, &self.passwords[user], database_url)
    }

    /// Applies every `acl …` line of docs/security.md's ACL block, as the
    /// super user, a few AclCommand JVMs at a time.
    fn apply_documented_acls(&self) -> usize {
        let acls = documented_acls();
        assert!(acls.len() >= 12, "docs/security.md lists too few ACLs");
        for chunk in acls.chunks(3) {
            let children: Vec<_> = chunk
                .iter()
                .map(|args| {
                    let mut full = vec!["acls", "--add"];
                    full.extend(args.iter().map(String::as_str));
                    let child = self
                        .script(&full)
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("run kafka.sh acls");
                    (args, child)
                })
                .collect();
            for (args, child) in children {
                let out = child.wait_with_output().expect("kafka.sh acls");
                assert!(
                    out.status.success(),
                    "ACL from docs/security.md refused: {args:?}\n{}",
                    show(&out)
                );
            }
        }
        acls.len()
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        match self.0.script(&["stop"]).output() {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.0.state_dir);
            }
            Ok(out) => eprintln!("stopping the SASL broker failed:\n{}", show(&out)),
            Err(e) => eprintln!("stopping the SASL broker failed: {e}"),
        }
    }
}

/// The arguments of each `acl …` line in the block after the
/// `<!-- acl-commands` marker of docs/security.md.
fn documented_acls() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(repo_root().join("docs/security.md"))
        .expect("read docs/security.md");
    let block = doc
        .split_once("<!-- acl-commands")
        .expect("docs/security.md has an acl-commands block")
        .1;
    let block = block.split("```").nth(1).expect("a fenced block follows");
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("acl "))
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Records the errors librdkafka reports on a client.
#[derive(Default)]
struct ErrorLog(Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>);

impl ProducerContext for ErrorLog {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl ClientContext for ErrorLog {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push((error.rdkafka_error_code(), reason.to_owned()));
    }
}

/// A fresh database on the shared PostgreSQL (as `TestEnv` makes one).
async fn fresh_database() -> String {
    let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable ({e}); run the tests with scripts/test.sh")
    });
    let db = format!("sumud_t_{}", &secret()[..10]);
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let i = admin.rfind('/').expect("DATABASE_URL names a database");
    format!("{}/{db}", &admin[..i])
}

/// How long the whole scenario may take before it is reported as stuck.
const SCENARIO_LIMIT: Duration = Duration::from_secs(420);

/// Runs the scenario on a runtime of its own, so that whatever happens the
/// test ends with a report: the scenario is bounded by `SCENARIO_LIMIT`, its
/// tasks get a bounded shutdown (a client stuck closing against a broker
/// cannot hold the test), and only then is the broker stopped, after every
/// client is gone.
#[test]
fn the_pipeline_runs_on_sasl_scram_with_only_the_documented_acls() {
    let _ = sumud_shared::telemetry::init("tests");
    let broker = SaslBroker::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(async {
        let scenario = tokio::spawn(sasl_scenario(broker.clone_handle()));
        tokio::time::timeout(SCENARIO_LIMIT, scenario).await
    });
    runtime.shutdown_timeout(Duration::from_secs(15));
    drop(broker);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the scenario task failed: {e}"),
        Err(_) => panic!(
            "the SASL scenario was still running after {SCENARIO_LIMIT:?}; the last phase printed above is where it stopped"
        ),
    }
}

/// Marks a phase of the scenario, so a failure or a stall says where it was.
fn phase(started: std::time::Instant, what: &str) {
    eprintln!("[sasl {:>5.1} s] {what}", started.elapsed().as_secs_f64());
}

async fn sasl_scenario(broker: SaslHandle) {
    let started = std::time::Instant::now();
    phase(started, "applying the documented ACLs");
    let applied = broker.apply_documented_acls();
    let database_url = fresh_database().await;
    let admin = broker.settings("admin", &broker.admin_password, &database_url);
    phase(started, "creating topics as the admin");
    sumud_shared::kafka::admin::ensure_topics(&admin)
        .await
        .expect("the admin creates the topics");
    let topics = admin.topics.clone();

    // A wrong password is refused, and says so without echoing it.
    phase(started, "checking that a wrong password is refused");
    let wrong = broker.settings("sumud-registry", "not-the-password", &database_url);
    let refused: BaseProducer<ErrorLog> = sumud_shared::kafka::client_config(&wrong)
        .create_with_context(ErrorLog::default())
        .expect("client");
    assert!(
        refused
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .is_err(),
        "metadata with a wrong password"
    );
    let auth_error = wait_for("an authentication error", DEADLINE, || {
        refused.poll(Duration::from_millis(100));
        let errors = refused.context().0.lock().unwrap().clone();
        let found = errors
            .into_iter()
            .find(|(code, _)| *code == Some(RDKafkaErrorCode::Authentication));
        async move { found }
    })
    .await;
    assert!(auth_error.1.contains("SCRAM-SHA-512"), "{auth_error:?}");
    assert!(!auth_error.1.contains("not-the-password"), "{auth_error:?}");
    drop(refused);

    // Least privilege: the registry may not even see the payment instructions.
    phase(started, "checking out-of-role access");
    let registry_settings = broker.user("sumud-registry", &database_url);
    let nosy: BaseConsumer = sumud_shared::kafka::client_config(&registry_settings)
        .set("group.id", "sumud-registry")
        .create()
        .expect("client");
    let meta = nosy
        .fetch_metadata(Some(&topics.instructions), Duration::from_secs(10))
        .expect("metadata as sumud-registry");
    assert_eq!(
        meta.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    drop(nosy);
    // Nor may the payment provider forge a crisis event.
    let provider =
        EventProducer::new(&broker.user("sumud-provider-sim", &database_url)).expect("producer");
    let forged = tokio::time::timeout(
        Duration::from_secs(60),
        provider.send_raw(&topics.crisis, Some(b"X"), b"{}", None),
    )
    .await
    .expect("a refused write fails fast");
    assert!(
        forged.is_err(),
        "sumud-provider-sim wrote to {}",
        topics.crisis
    );

    // Act: a registry published and a crisis declared by the operator, each
    // service running as its own principal.
    phase(started, "publishing the registry and starting the services");
    let n = 400;
    let households: Vec<Household> = (0..n)
        .map(|i| synthetic::household(AreaCatalog::default_catalog(), SEED, i))
        .collect();
    let operator = broker.user("sumud-operator", &database_url);
    sumud::registry_cmd::publish_synthetic(&operator, n, SEED, true)
        .await
        .expect("the operator publishes the registry");
    let registry = sumud_registry::App::build(registry_settings)
        .await
        .expect("registry starts without Create permission");
    let control = sumud_control::App::build(
        broker.user("sumud-control", &database_url),
        sumud_tests::pipeline::no_four_eyes(),
    )
    .await
    .unwrap();
    let eligibility =
        sumud_eligibility::App::build(broker.user("sumud-eligibility", &database_url))
            .await
            .unwrap();
    let schedule = DisbursementConfig {
        day_seconds: 0.05,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let disbursement =
        sumud_disbursement::App::build(broker.user("sumud-disbursement", &database_url), schedule)
            .await
            .unwrap();
    let keys = sumud_tests::pipeline::register_providers(disbursement.store()).await;
    let sim = sumud_provider_sim::App::build(
        broker.user("sumud-provider-sim", &database_url),
        Behaviour {
            keys,
            ..Behaviour::honest()
        },
    )
    .await
    .unwrap();
    let store = control.store().clone();
    let pool = store.postgres("the secured pipeline").unwrap().clone();
    let alice = Jwk::generate("alice-1");
    sumud_control::db::add_operator(&store, "alice-1", "alice", &alice.x, &["declare".into()])
        .await
        .unwrap();
    let mut services = vec![
        Running::spawn(|t| registry.run(t)),
        Running::spawn(|t| control.run(t)),
        Running::spawn(|t| eligibility.run(t)),
        Running::spawn(|t| disbursement.run(t)),
        Running::spawn(|t| sim.run(t)),
    ];
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    phase(started, "waiting for the registry");
    wait_for("the registry", DEADLINE, || async {
        (count("SELECT count(*) FROM registry.households").await == n as i64).then_some(())
    })
    .await;
    let areas = ["JO-MN", "JO-KA", "JO-AQ"];
    let want = expected(&households, &areas);
    assert!(!want.is_empty());
    let jws = signing::sign(
        &claims(
            CommandKind::Declare,
            "SEC-1",
            Some(definition(&areas, "10000000")),
        ),
        &alice,
    )
    .unwrap();
    let command = Envelope::new(
        "urn:test",
        CONTROL_COMMAND,
        Some("SEC-1".into()),
        SignedCommand { jws },
    );
    EventProducer::new(&operator)
        .unwrap()
        .send(&topics.control, "SEC-1", &command)
        .await
        .expect("the operator sends a signed command");

    // Assert: every entitled household paid, tranche by tranche.
    phase(started, "declared; waiting for every tranche to be paid");
    let paid = (want.len() * 3) as i64;
    wait_for("every tranche paid", DEADLINE * 2, || async {
        (count("SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'").await
            == paid)
            .then_some(())
    })
    .await;
    let entitled: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT household_id, kind, amount_minor FROM eligibility.entitlements WHERE crisis_id = 'SEC-1' ORDER BY household_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let entitled: BTreeMap<String, (String, i64)> =
        entitled.into_iter().map(|(h, k, a)| (h, (k, a))).collect();
    assert_eq!(entitled, want);
    // Nothing was dead-lettered on the way (no refusal turned into a rejection).
    let reader: BaseConsumer = sumud_shared::kafka::client_config(&admin)
        .set("group.id", "admin-reader")
        .create()
        .unwrap();
    for p in 0..admin.topic_partitions {
        let (_, high) = reader
            .fetch_watermarks(&topics.deadletter, p, Duration::from_secs(10))
            .unwrap();
        assert_eq!(high, 0, "dead letters on partition {p}");
    }
    eprintln!(
        "secure transport: {applied} documented ACL commands, {} households paid {paid} times",
        want.len()
    );
    // Every client goes before the broker does, so none logs its departure.
    phase(started, "stopping the services");
    while let Some(s) = services.pop() {
        s.stop().await;
    }
    drop((reader, provider));
    phase(started, "done");
}

/// sqlx was built with TLS: asking for `sslmode=require` reaches the TLS
/// negotiation (which the local, TLS-less development cluster declines)
/// instead of failing for want of TLS support.
#[tokio::test]
async fn postgres_tls_is_built_in() {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let sep = if url.contains('?') { '&' } else { '?' };
    match PgConnection::connect(&format!("{url}{sep}sslmode=require")).await {
        Ok(conn) => conn.close().await.unwrap(), // a cluster with TLS on
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("server does not support TLS"), "{e}");
        }
    }
}
