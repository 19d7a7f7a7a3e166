//! Personal-data canaries: households whose names, national ids and phone
//! numbers are unique canary strings are registered, a crisis runs to
//! payment with every service as its own process (logging at `debug`,
//! exporting spans over OTLP), and then every place data can leak to is
//! scanned: every message of every topic (payload, key and headers), every
//! table outside the registry's own, every service's log and every exported
//! span. The only place a canary may be is `registry.households` (and the
//! registry's input topic, which is where the social registry puts them).
//!
//! The events that leave the system (crisis events, decisions, instructions,
//! status) are also checked against an allow-list of fields: the properties
//! their contracts in `schemas/` declare, nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use sumud_control::signing::{self, Jwk};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{CommandKind, SignedCommand, CONTROL_COMMAND};
use sumud_shared::synthetic;
use sumud_tests::pipeline::{claims, definition, DEADLINE, SEED};
use sumud_tests::{wait_for, TestEnv};

/// Households in the scenario: all of them carry canaries.
const HOUSEHOLDS: u64 = 400;
/// The crisis covers the whole synthetic country, so canary households are
/// entitled and paid.
const AREAS: [&str; 1] = ["JO-AM"];
/// Starts every canary string (followed by the run's tag), so one search
/// finds them all.
const MARK: &str = "PIICANARY";

/// The raw bodies of the OTLP/HTTP requests the services sent.
type Bodies = Arc<Mutex<Vec<Bytes>>>;

async fn collect(State(bodies): State<Bodies>, body: Bytes) -> &'static str {
    bodies.lock().unwrap().push(body);
    ""
}

/// An OTLP/HTTP receiver that keeps request bodies as they came: protobuf
/// carries strings as UTF-8 bytes, so a canary in a span shows in the bytes.
async fn otlp_receiver() -> (String, Bodies) {
    let bodies = Bodies::default();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), bodies)
}

/// A service process whose stderr (its logs) goes to a file.
struct Node {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Node {
    fn spawn(name: &'static str, settings: &Settings, otlp: &str, dir: &Path) -> Node {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sumud-node"))
            .arg(name)
            .envs(settings.env_vars())
            .env("RUST_LOG", "debug")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("SUMUD_FOUR_EYES_THRESHOLD_MINOR", i64::MAX.to_string())
            .env("SUMUD_TRANCHE_DAY_SECONDS", "0.05")
            .env("SUMUD_PAYMENT_RETRY_SECS", "0")
            .env(
                "SUMUD_PSEUDONYM_SECRET",
                "canary-test-secret-of-at-least-32-bytes",
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("sumud-node starts");
        Node { name, child, log }
    }

    /// SIGTERM, so the service flushes its spans on the way out.
    fn stop(mut self) -> (&'static str, PathBuf) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return (self.name, self.log);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.name, self.log)
    }
}

/// One message as read back: where it was and every byte it carried.
struct Read {
    topic: String,
    key: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Vec<u8>,
}

/// Every message of `topic` up to its high watermarks.
fn read_all(settings: &Settings, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
        .set(
            "group.id",
            format!("canary-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in meta.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        assert!(
            std::time::Instant::now() < deadline,
            "read only {} of {remaining} messages of {topic}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                topic: topic.to_owned(),
                key: m.key().unwrap_or_default().to_vec(),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The field paths a contract allows: the envelope's properties, and under
/// `data` the properties of the event's schema (following local `$ref`s).
fn allowed_paths(schema_file: &str) -> BTreeSet<String> {
    fn walk(node: &Value, root: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let target = r
                .strip_prefix("#/")
                .map(|p| p.split('/').fold(root, |v, k| &v[k]))
                .unwrap_or(&Value::Null);
            walk(target, root, prefix, out);
        }
        for combinator in ["allOf", "anyOf", "oneOf"] {
            for sub in node
                .get(combinator)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(sub, root, prefix, out);
            }
        }
        for branch in ["then", "else", "items"] {
            if let Some(sub) = node.get(branch) {
                walk(sub, root, prefix, out);
            }
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                out.insert(path.clone());
                walk(sub, root, &path, out);
            }
        }
    }
    let load = |f: &str| -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schemas")
            .join(f);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let mut out = BTreeSet::new();
    let envelope = load("cloudevent.schema.json");
    walk(&envelope, &envelope, "", &mut out);
    let data = load(schema_file);
    walk(&data, &data, "data", &mut out);
    out
}

/// Every field path of a JSON value (array elements share their parent's).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, sub) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                paths(sub, &path, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| paths(i, prefix, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_leaves_the_registry_table() {
    // Arrange: the registry's input, every household with canaries.
    let env = TestEnv::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let needle = format!("{MARK}{tag}");
    let mut canaries = Vec::new();
    let mut upserts = Vec::new();
    for i in 0..HOUSEHOLDS {
        let mut h = synthetic::household(AreaCatalog::default_catalog(), SEED, i);
        let personal: BTreeMap<String, String> = [
            ("name", format!("{needle} Name {i}")),
            ("national_id", format!("{needle}-NID-{i:010}")),
            ("phone", format!("+962-{needle}-{i:07}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        canaries.extend(personal.values().cloned());
        h.personal = Some(personal);
        upserts.push((h.household_id.clone(), h));
    }
    for (id, h) in upserts {
        let e = sumud::registry_cmd::upsert_event(h);
        env.publish(&env.settings.topics.registry, &id, &e.to_bytes())
            .await;
    }

    // Every service as its own process, logging everything it logs.
    let (otlp, spans) = otlp_receiver().await;
    let logs = tempdir();
    let names = [
        "registry",
        "control",
        "eligibility",
        "disbursement",
        "provider-sim",
    ];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::spawn(n, &env.settings, &otlp, &logs))
        .collect();
    wait_for("the registry", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM registry.households")
            .fetch_one(&env.pool)
            .await
            .ok()?;
        (n == HOUSEHOLDS as i64).then_some(())
    })
    .await;
    // The simulator process signs nothing: its providers are registered
    // without keys (bound to the instructions they hold only).
    for provider in sumud_shared::synthetic::PROVIDERS {
        wait_for("disbursement's provider table", DEADLINE, || async {
            sumud_disbursement::db::add_provider(&env.store, provider, None)
                .await
                .ok()
        })
        .await;
    }
    let alice = Jwk::generate("alice-1");
    wait_for("control's operator table", DEADLINE, || async {
        sumud_control::db::add_operator(
            &env.store,
            "alice-1",
            "alice",
            &alice.x,
            &["declare".into(), "close".into()],
        )
        .await
        .ok()
    })
    .await;

    // Act: a crisis over the canary households, run to payment.
    let c = claims(
        CommandKind::Declare,
        "FLOOD-C1",
        Some(definition(&AREAS, "500000")),
    );
    let jws = signing::sign(&c, &alice).unwrap();
    let cmd = Envelope::new(
        "urn:test",
        CONTROL_COMMAND,
        Some("FLOOD-C1".into()),
        SignedCommand { jws },
    );
    env.publish(&env.settings.topics.control, "FLOOD-C1", &cmd.to_bytes())
        .await;
    let instructed = wait_for("every instruction settled", DEADLINE * 2, || async {
        let (total, open): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed')) \
             FROM disbursement.instructions WHERE crisis_id = 'FLOOD-C1'",
        )
        .fetch_one(&env.pool)
        .await
        .ok()?;
        (total > 0 && open == 0).then_some(total)
    })
    .await;
    let paid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = 'FLOOD-C1' AND status = 'succeeded'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(paid > 0, "no instruction was paid");

    // Registry records the registry rejects still carry canaries: a stale
    // version, a truncated record and a schema-invalid one.
    let canary_record = |i: u64, version: i64| {
        let mut h = synthetic::household(AreaCatalog::default_catalog(), SEED, i);
        h.version = version;
        h.personal = Some(
            [("name".to_owned(), format!("{needle} Rejected {i}"))]
                .into_iter()
                .collect(),
        );
        sumud::registry_cmd::upsert_event(h).to_bytes()
    };
    let stale = canary_record(0, -1);
    let truncated = canary_record(1, 99);
    let mut invalid: Value = serde_json::from_slice(&canary_record(2, 99)).unwrap();
    invalid["data"]["members"] = Value::from(-3);
    for (key, bytes) in [
        ("HH-stale", stale),
        ("HH-truncated", truncated[..truncated.len() - 40].to_vec()),
        ("HH-invalid", serde_json::to_vec(&invalid).unwrap()),
    ] {
        env.publish(&env.settings.topics.registry, key, &bytes)
            .await;
    }
    wait_for("three dead letters", DEADLINE, || async {
        let n = read_all(&env.settings, &env.settings.topics.deadletter).len();
        (n >= 3).then_some(())
    })
    .await;
    let logs_by_service: Vec<(&str, PathBuf)> = nodes.into_iter().map(Node::stop).collect();
    // The exporters flushed on SIGTERM; give the receiver a moment to
    // have every request in.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert 1: the canaries are where they belong, so the scan can see them.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM registry.households WHERE personal::text LIKE '%' || $1 || '%'",
    )
    .bind(&needle)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(stored, HOUSEHOLDS as i64, "the registry kept the canaries");

    // Assert 2: no table outside registry.households holds a canary.
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND NOT (table_schema = 'registry' AND table_name = 'households')",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(tables.len() > 10, "only {} tables found", tables.len());
    for (schema, table) in &tables {
        let hits: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" t WHERE t::text LIKE '%{needle}%'"
        ))
        .fetch_one(&env.pool)
        .await
        .unwrap();
        assert_eq!(hits, 0, "canaries in {schema}.{table}");
    }

    // Assert 3: no message on any topic but the registry's input carries one.
    let t = &env.settings.topics;
    let outside = [
        &t.control,
        &t.alerts,
        &t.crisis,
        &t.entitlements,
        &t.instructions,
        &t.status,
        &t.deadletter,
    ];
    let mut scanned = 0;
    for topic in outside {
        for m in read_all(&env.settings, topic) {
            scanned += 1;
            let mut blobs = vec![&m.key, &m.payload];
            blobs.extend(m.headers.iter().map(|(_, v)| v));
            for blob in blobs {
                assert!(
                    !contains(blob, needle.as_bytes()),
                    "a canary on {}: {}",
                    m.topic,
                    String::from_utf8_lossy(blob)
                );
            }
        }
    }
    assert!(
        scanned as i64 > instructed,
        "only {scanned} messages scanned"
    );

    // Dead letters keep the original bytes (base64) for replay: decoded,
    // they hold no canary either, and say what was withheld.
    let letters = read_all(&env.settings, &t.deadletter);
    let mut redacted = 0;
    for m in &letters {
        let e: Envelope<sumud_shared::deadletter::DeadLetter> =
            serde_json::from_slice(&m.payload).unwrap();
        let original = base64::engine::general_purpose::STANDARD
            .decode(&e.data.original_base64)
            .unwrap();
        assert!(
            !contains(&original, needle.as_bytes()),
            "a canary in a dead letter's original ({})",
            e.data.reason
        );
        redacted += usize::from(e.data.personal_redacted);
    }
    assert_eq!(redacted, 3, "every rejected registry record was redacted");

    // Assert 4: no service logged one, and no exported span carries one.
    for (service, log) in &logs_by_service {
        let text = std::fs::read(log).unwrap();
        assert!(!text.is_empty(), "{service} logged nothing at debug");
        assert!(
            !contains(&text, needle.as_bytes()),
            "{service} logged a canary (see {})",
            log.display()
        );
    }
    let bodies = spans.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "no spans were exported");
    for body in &bodies {
        assert!(!contains(body, needle.as_bytes()), "a canary in a span");
    }
    // The check itself can see a canary: each is in the registry topic.
    let registry = read_all(&env.settings, &t.registry);
    assert!(registry
        .iter()
        .any(|m| contains(&m.payload, canaries[0].as_bytes())));

    // Assert 5: events that leave the system carry only contract fields.
    for (topic, schema) in [
        (&t.crisis, "crisis.event.schema.json"),
        (&t.entitlements, "entitlement.decided.schema.json"),
        (&t.instructions, "payment.instruction.schema.json"),
        (&t.status, "payment.status.schema.json"),
    ] {
        let allowed = allowed_paths(schema);
        let mut seen = BTreeSet::new();
        for m in read_all(&env.settings, topic) {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            paths(&v, "", &mut seen);
        }
        assert!(!seen.is_empty(), "nothing read from {topic}");
        let extra: Vec<&String> = seen.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{topic} carries fields outside its contract: {extra:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&logs);
}

/// A fresh directory for the services' logs.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sumud-canaries-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
