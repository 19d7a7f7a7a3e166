//! Settings shared by every service, read from the environment.
//!
//! Every variable is documented in the README's configuration reference.
//! Anything librdkafka understands can be passed through as
//! `SUMUD_RDKAFKA_<PROPERTY>` (dots written as underscores), which is how TLS and
//! SASL are configured without code changes (docs/security.md). Secrets among
//! them (passwords, private keys, JAAS strings) never appear in `Debug` output.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::envelope::DecodeLimits;
use crate::topics::Topics;
use crate::{Error, Result};

/// Default Kafka address: the broker started by `scripts/kafka.sh`.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:19092";
/// Default database: the cluster started by `scripts/postgres.sh`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://sumud:sumud@127.0.0.1:15432/sumud";

/// Every variable `Settings::from_env` reads by name (plus the
/// `SUMUD_RDKAFKA_*` passthrough family). Deployment files are checked against it.
pub const ENV_VARS: &[&str] = &[
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "SUMUD_DB_MAX_CONNECTIONS",
    "SUMUD_DB_STATEMENT_TIMEOUT_MS",
    "SUMUD_DB_LOCK_TIMEOUT_MS",
    "SUMUD_DB_IDLE_TX_TIMEOUT_MS",
    "SUMUD_TOPIC_PARTITIONS",
    "SUMUD_GROUP_PREFIX",
    "SUMUD_INSTANCE_ID",
    "SUMUD_BATCH_MAX",
    "SUMUD_BATCH_LINGER_MS",
    "SUMUD_MAX_MESSAGE_BYTES",
    "SUMUD_HTTP_ADDR",
    "SUMUD_CONSUMER_JOIN_SECS",
    "SUMUD_CONSUMER_STALL_SECS",
    "SUMUD_TOPIC_CONTROL",
    "SUMUD_TOPIC_ALERTS",
    "SUMUD_TOPIC_REGISTRY",
    "SUMUD_TOPIC_CRISIS",
    "SUMUD_TOPIC_ENTITLEMENTS",
    "SUMUD_TOPIC_INSTRUCTIONS",
    "SUMUD_TOPIC_STATUS",
    "SUMUD_TOPIC_TASKS",
    "SUMUD_TOPIC_TASK_COMMANDS",
    "SUMUD_TOPIC_ASSISTANCE",
    "SUMUD_TOPIC_ASSISTANCE_SHARED",
    "SUMUD_TOPIC_REFERRALS",
    "SUMUD_TOPIC_REFERRAL_ANSWERS",
    "SUMUD_TOPIC_DEADLETTER",
    "RUST_LOG",
    // Trace export (read by `telemetry.rs`; the OpenTelemetry SDK also reads
    // its other standard `OTEL_*` variables itself).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    // Service-specific settings, read by the services' own config modules.
    "SUMUD_ALERTS_KEY_FILE",
    "SUMUD_ALERTS_RULES_FILE",
    "SUMUD_FOUR_EYES_THRESHOLD_MINOR",
    "SUMUD_FOUR_EYES_APPROVALS",
    "SUMUD_CURRENCY",
    "SUMUD_OTHER_CURRENCIES",
    "SUMUD_COMMAND_MAX_AGE_SECS",
    "SUMUD_TRANCHE_DAY_SECONDS",
    "SUMUD_PAYMENT_MAX_ATTEMPTS",
    "SUMUD_PAYMENT_RETRY_SECS",
    "SUMUD_PAYMENT_INQUIRY_SECS",
    "SUMUD_PAYMENT_DEADLINE_SECS",
    "SUMUD_PSEUDONYM_SECRET",
    "SUMUD_SIM_PROVIDERS",
    "SUMUD_SIM_LATENCY_MS",
    "SUMUD_SIM_RETRYABLE_REJECT_RATE",
    "SUMUD_SIM_PERMANENT_REJECT_RATE",
    "SUMUD_SIM_TIMEOUT_RATE",
    "SUMUD_SIM_DUPLICATE_RATE",
    "SUMUD_SIM_LATE_PENDING_RATE",
    "SUMUD_SIM_SEED",
    "SUMUD_SIM_KEYS_DIR",
    "SUMUD_DASHBOARD_ADDR",
    "SUMUD_DASHBOARD_REFRESH_MS",
    // Read by mimalloc, the allocator of the registry and disbursement
    // binaries: 0 turns transparent huge pages off for the process, which
    // its `no_thp` build feature alone cannot do on hosts whose THP mode is
    // `always` (docs/operations.md, "Huge pages").
    "MIMALLOC_ALLOW_THP",
];

/// Everything a service needs to connect and behave.
///
/// `Debug` redacts secrets (see [`is_secret_property`] and the password in
/// `database_url`), so settings may appear in logs and panics.
#[derive(Clone)]
pub struct Settings {
    /// Kafka bootstrap servers (`KAFKA_BOOTSTRAP_SERVERS`).
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (`SUMUD_RDKAFKA_*`), e.g. `security.protocol`.
    pub kafka_properties: BTreeMap<String, String>,
    /// Database URL (`DATABASE_URL`).
    pub database_url: String,
    /// Largest pool a service opens (`SUMUD_DB_MAX_CONNECTIONS`).
    pub db_max_connections: u32,
    /// Limits on every PostgreSQL session of the service, in milliseconds,
    /// 0 for none (`SUMUD_DB_STATEMENT_TIMEOUT_MS`, default 60000;
    /// `SUMUD_DB_LOCK_TIMEOUT_MS`, default 10000;
    /// `SUMUD_DB_IDLE_TX_TIMEOUT_MS`, default 60000).
    pub db_timeouts: crate::db::Timeouts,
    /// Topic names (`SUMUD_TOPIC_<NAME>`).
    pub topics: Topics,
    /// Partitions for topics the project creates (`SUMUD_TOPIC_PARTITIONS`).
    pub topic_partitions: i32,
    /// Consumer group prefix (`SUMUD_GROUP_PREFIX`); a service appends its name.
    pub group_prefix: String,
    /// This instance's stable name among its service's instances
    /// (`SUMUD_INSTANCE_ID`): with one, the service is a static member of
    /// its consumer group (`group.instance.id`), so a restart after a crash
    /// gets its partitions back at once instead of after the session
    /// timeout. Two running instances must never share one.
    pub instance_id: Option<String>,
    /// Most messages handled in one batch (`SUMUD_BATCH_MAX`).
    pub batch_max: usize,
    /// How long to wait to fill a batch (`SUMUD_BATCH_LINGER_MS`).
    pub batch_linger: Duration,
    /// Limits applied to incoming messages (`SUMUD_MAX_MESSAGE_BYTES`).
    pub limits: DecodeLimits,
    /// Where to serve `/healthz`, `/readyz` and `/metrics`
    /// (`SUMUD_HTTP_ADDR`, e.g. `0.0.0.0:9100`); unset serves nothing.
    pub http_addr: Option<std::net::SocketAddr>,
    /// How long a consumer may stay outside its group before it is made
    /// anew (`SUMUD_CONSUMER_JOIN_SECS`, default 120), and how long it may
    /// stand still on a backlog before the service is not ready
    /// (`SUMUD_CONSUMER_STALL_SECS`, default 120).
    pub consumer_bounds: crate::kafka::health::Bounds,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bootstrap_servers: DEFAULT_BOOTSTRAP.into(),
            kafka_properties: BTreeMap::new(),
            database_url: DEFAULT_DATABASE_URL.into(),
            db_max_connections: 8,
            db_timeouts: crate::db::Timeouts::default(),
            topics: Topics::default(),
            topic_partitions: 3,
            group_prefix: "sumud".into(),
            instance_id: None,
            batch_max: 2000,
            batch_linger: Duration::from_millis(20),
            limits: DecodeLimits::default(),
            http_addr: None,
            consumer_bounds: crate::kafka::health::Bounds::default(),
        }
    }
}

impl Settings {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from any list of variables (testable without touching
    /// the process environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut s = Settings::default();
        for (key, value) in vars {
            match key.as_str() {
                "KAFKA_BOOTSTRAP_SERVERS" => s.bootstrap_servers = value,
                "DATABASE_URL" => s.database_url = value,
                "SUMUD_DB_MAX_CONNECTIONS" => s.db_max_connections = parse(&key, &value)?,
                "SUMUD_DB_STATEMENT_TIMEOUT_MS" => {
                    s.db_timeouts.statement = Duration::from_millis(parse(&key, &value)?)
                }
                "SUMUD_DB_LOCK_TIMEOUT_MS" => {
                    s.db_timeouts.lock = Duration::from_millis(parse(&key, &value)?)
                }
                "SUMUD_DB_IDLE_TX_TIMEOUT_MS" => {
                    s.db_timeouts.idle_in_transaction = Duration::from_millis(parse(&key, &value)?)
                }
                "SUMUD_TOPIC_PARTITIONS" => s.topic_partitions = parse(&key, &value)?,
                "SUMUD_GROUP_PREFIX" => s.group_prefix = value,
                "SUMUD_INSTANCE_ID" => s.instance_id = Some(value).filter(|v| !v.is_empty()),
                "SUMUD_BATCH_MAX" => s.batch_max = parse(&key, &value)?,
                "SUMUD_BATCH_LINGER_MS" => {
                    s.batch_linger = Duration::from_millis(parse(&key, &value)?)
                }
                "SUMUD_MAX_MESSAGE_BYTES" => s.limits.max_bytes = parse(&key, &value)?,
                "SUMUD_HTTP_ADDR" => s.http_addr = Some(parse(&key, &value)?),
                "SUMUD_CONSUMER_JOIN_SECS" => {
                    s.consumer_bounds.join_within = Duration::from_secs(parse(&key, &value)?)
                }
                "SUMUD_CONSUMER_STALL_SECS" => {
                    s.consumer_bounds.stall_after = Duration::from_secs(parse(&key, &value)?)
                }
                "SUMUD_TOPIC_CONTROL" => s.topics.control = value,
                "SUMUD_TOPIC_ALERTS" => s.topics.alerts = value,
                "SUMUD_TOPIC_REGISTRY" => s.topics.registry = value,
                "SUMUD_TOPIC_CRISIS" => s.topics.crisis = value,
                "SUMUD_TOPIC_ENTITLEMENTS" => s.topics.entitlements = value,
                "SUMUD_TOPIC_INSTRUCTIONS" => s.topics.instructions = value,
                "SUMUD_TOPIC_STATUS" => s.topics.status = value,
                "SUMUD_TOPIC_TASKS" => s.topics.tasks = value,
                "SUMUD_TOPIC_TASK_COMMANDS" => s.topics.task_commands = value,
                "SUMUD_TOPIC_ASSISTANCE" => s.topics.assistance = value,
                "SUMUD_TOPIC_ASSISTANCE_SHARED" => s.topics.assistance_shared = value,
                "SUMUD_TOPIC_REFERRALS" => s.topics.referrals = value,
                "SUMUD_TOPIC_REFERRAL_ANSWERS" => s.topics.referral_answers = value,
                "SUMUD_TOPIC_DEADLETTER" => s.topics.deadletter = value,
                _ => {
                    if let Some(prop) = key.strip_prefix("SUMUD_RDKAFKA_") {
                        let prop = prop.to_ascii_lowercase().replace('_', ".");
                        s.kafka_properties.insert(prop, value);
                    }
                }
            }
        }
        if s.batch_max == 0 || s.topic_partitions < 1 {
            return Err(Error::Config(
                "SUMUD_BATCH_MAX and SUMUD_TOPIC_PARTITIONS must be at least 1".into(),
            ));
        }
        if s.consumer_bounds.join_within.is_zero() || s.consumer_bounds.stall_after.is_zero() {
            return Err(Error::Config(
                "SUMUD_CONSUMER_JOIN_SECS and SUMUD_CONSUMER_STALL_SECS must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    /// The environment that reproduces these settings in a child process.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let t = &self.topics;
        let mut v: Vec<(String, String)> = vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".into(),
                self.bootstrap_servers.clone(),
            ),
            ("DATABASE_URL".into(), self.database_url.clone()),
            (
                "SUMUD_DB_MAX_CONNECTIONS".into(),
                self.db_max_connections.to_string(),
            ),
            (
                "SUMUD_DB_STATEMENT_TIMEOUT_MS".into(),
                self.db_timeouts.statement.as_millis().to_string(),
            ),
            (
                "SUMUD_DB_LOCK_TIMEOUT_MS".into(),
                self.db_timeouts.lock.as_millis().to_string(),
            ),
            (
                "SUMUD_DB_IDLE_TX_TIMEOUT_MS".into(),
                self.db_timeouts.idle_in_transaction.as_millis().to_string(),
            ),
            (
                "SUMUD_TOPIC_PARTITIONS".into(),
                self.topic_partitions.to_string(),
            ),
            ("SUMUD_GROUP_PREFIX".into(), self.group_prefix.clone()),
            ("SUMUD_BATCH_MAX".into(), self.batch_max.to_string()),
            (
                "SUMUD_BATCH_LINGER_MS".into(),
                self.batch_linger.as_millis().to_string(),
            ),
            (
                "SUMUD_MAX_MESSAGE_BYTES".into(),
                self.limits.max_bytes.to_string(),
            ),
            ("SUMUD_TOPIC_CONTROL".into(), t.control.clone()),
            ("SUMUD_TOPIC_ALERTS".into(), t.alerts.clone()),
            ("SUMUD_TOPIC_REGISTRY".into(), t.registry.clone()),
            ("SUMUD_TOPIC_CRISIS".into(), t.crisis.clone()),
            ("SUMUD_TOPIC_ENTITLEMENTS".into(), t.entitlements.clone()),
            ("SUMUD_TOPIC_INSTRUCTIONS".into(), t.instructions.clone()),
            ("SUMUD_TOPIC_STATUS".into(), t.status.clone()),
            ("SUMUD_TOPIC_TASKS".into(), t.tasks.clone()),
            ("SUMUD_TOPIC_TASK_COMMANDS".into(), t.task_commands.clone()),
            ("SUMUD_TOPIC_ASSISTANCE".into(), t.assistance.clone()),
            (
                "SUMUD_TOPIC_ASSISTANCE_SHARED".into(),
                t.assistance_shared.clone(),
            ),
            ("SUMUD_TOPIC_REFERRALS".into(), t.referrals.clone()),
            (
                "SUMUD_TOPIC_REFERRAL_ANSWERS".into(),
                t.referral_answers.clone(),
            ),
            ("SUMUD_TOPIC_DEADLETTER".into(), t.deadletter.clone()),
        ];
        if let Some(addr) = self.http_addr {
            v.push(("SUMUD_HTTP_ADDR".into(), addr.to_string()));
        }
        v.push((
            "SUMUD_CONSUMER_JOIN_SECS".into(),
            self.consumer_bounds.join_within.as_secs().to_string(),
        ));
        v.push((
            "SUMUD_CONSUMER_STALL_SECS".into(),
            self.consumer_bounds.stall_after.as_secs().to_string(),
        ));
        if let Some(id) = &self.instance_id {
            v.push(("SUMUD_INSTANCE_ID".into(), id.clone()));
        }
        for (k, val) in &self.kafka_properties {
            v.push((
                format!("SUMUD_RDKAFKA_{}", k.replace('.', "_").to_ascii_uppercase()),
                val.clone(),
            ));
        }
        v
    }

    /// The consumer group of a service: `<prefix>-<service>`.
    pub fn group_id(&self, service: &str) -> String {
        format!("{}-{}", self.group_prefix, service)
    }
}

/// True for librdkafka properties whose values are secrets (`sasl.password`,
/// `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …),
/// so that nothing prints them.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".jaas.config")
        || key == "ssl.key.pem"
        || key == "ssl.keystore.location"
        || key.starts_with("sasl.oauthbearer.config")
}

/// A database URL with its password (user-info or `password=` parameter)
/// replaced by `***`, for display.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://").map(|i| i + 3) {
        let authority_end = out[scheme_end..]
            .find(['/', '?'])
            .map_or(out.len(), |i| scheme_end + i);
        if let Some(at) = out[scheme_end..authority_end].rfind('@') {
            let userinfo = &out[scheme_end..scheme_end + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(scheme_end + colon + 1..scheme_end + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kafka_properties: BTreeMap<&str, &str> = self
            .kafka_properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Settings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("kafka_properties", &kafka_properties)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("db_timeouts", &self.db_timeouts)
            .field("topics", &self.topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("group_prefix", &self.group_prefix)
            .field("instance_id", &self.instance_id)
            .field("batch_max", &self.batch_max)
            .field("batch_linger", &self.batch_linger)
            .field("limits", &self.limits)
            .field("http_addr", &self.http_addr)
            .field("consumer_bounds", &self.consumer_bounds)
            .finish()
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Config(format!("{key}={value:?} is not a valid number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_passthrough_turns_underscores_into_dots() {
        let s = Settings::from_vars(vars(&[
            ("SUMUD_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("SUMUD_RDKAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"),
        ]))
        .unwrap();
        assert_eq!(s.kafka_properties["security.protocol"], "SASL_SSL");
        assert_eq!(s.kafka_properties["sasl.mechanisms"], "SCRAM-SHA-512");
    }

    #[test]
    fn every_security_property_passes_through() {
        let s = Settings::from_vars(vars(&[
            ("SUMUD_RDKAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("SUMUD_RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("SUMUD_RDKAFKA_SASL_USERNAME", "sumud-registry"),
            ("SUMUD_RDKAFKA_SASL_PASSWORD", "pw"),
            ("SUMUD_RDKAFKA_SSL_CA_LOCATION", "/etc/sumud/ca.pem"),
            (
                "SUMUD_RDKAFKA_SSL_CERTIFICATE_LOCATION",
                "/etc/sumud/client.pem",
            ),
            ("SUMUD_RDKAFKA_SSL_KEY_LOCATION", "/etc/sumud/client.key"),
            ("SUMUD_RDKAFKA_SSL_KEY_PASSWORD", "kpw"),
        ]))
        .unwrap();
        let keys: Vec<&str> = s.kafka_properties.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "sasl.mechanism",
                "sasl.password",
                "sasl.username",
                "security.protocol",
                "ssl.ca.location",
                "ssl.certificate.location",
                "ssl.key.location",
                "ssl.key.password",
            ]
        );
        // librdkafka accepts every one of them as spelled.
        for (k, v) in &s.kafka_properties {
            rdkafka::ClientConfig::new()
                .set(k, v)
                .create_native_config()
                .unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    #[test]
    fn debug_output_hides_passwords_and_keys() {
        let s = Settings::from_vars(vars(&[
            ("SUMUD_RDKAFKA_SASL_USERNAME", "sumud-registry"),
            ("SUMUD_RDKAFKA_SASL_PASSWORD", "kafka-hunter2"),
            ("SUMUD_RDKAFKA_SSL_KEY_PASSWORD", "key-hunter2"),
            ("SUMUD_RDKAFKA_SSL_KEY_PEM", "-----BEGIN PRIVATE KEY-----"),
            (
                "DATABASE_URL",
                "postgres://sumud:pg-hunter2@db:5432/sumud?sslmode=verify-full&password=q-hunter2",
            ),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("sumud-registry"), "{shown}");
        assert!(
            shown.contains("postgres://sumud:***@db:5432/sumud?sslmode=verify-full&password=***"),
            "{shown}"
        );
    }

    #[test]
    fn urls_without_a_password_are_shown_as_they_are() {
        for url in [
            "postgres://db/sumud",
            "postgres://sumud@db/sumud?sslmode=require",
            "postgres:///sumud?host=/run/postgresql",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn topic_names_can_be_overridden_one_by_one() {
        let s = Settings::from_vars(vars(&[("SUMUD_TOPIC_REGISTRY", "reg")])).unwrap();
        assert_eq!(s.topics.registry, "reg");
        assert_eq!(s.topics.crisis, "sumud.crisis.v1");
    }

    #[test]
    fn env_vars_reproduce_the_settings() {
        let mut s = Settings::default();
        s.topics = s.topics.with_suffix("x");
        s.kafka_properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        s.instance_id = Some("disbursement-1".into());
        s.db_timeouts.lock = Duration::from_millis(2500);
        let back = Settings::from_vars(s.env_vars()).unwrap();
        assert_eq!(back.db_timeouts, s.db_timeouts);
        assert_eq!(back.topics, s.topics);
        assert_eq!(back.kafka_properties, s.kafka_properties);
        assert_eq!(back.database_url, s.database_url);
        assert_eq!(back.instance_id, s.instance_id);
    }

    #[test]
    fn an_empty_instance_id_means_dynamic_membership() {
        let s = Settings::from_vars(vars(&[("SUMUD_INSTANCE_ID", "")])).unwrap();
        assert_eq!(s.instance_id, None);
        let s = Settings::from_vars(vars(&[("SUMUD_INSTANCE_ID", "node-a")])).unwrap();
        assert_eq!(s.instance_id.as_deref(), Some("node-a"));
    }

    #[test]
    fn database_limits_default_to_a_minute_ten_seconds_and_a_minute_and_zero_turns_one_off() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.db_timeouts.statement, Duration::from_secs(60));
        assert_eq!(s.db_timeouts.lock, Duration::from_secs(10));
        assert_eq!(s.db_timeouts.idle_in_transaction, Duration::from_secs(60));
        let s = Settings::from_vars(vars(&[
            ("SUMUD_DB_STATEMENT_TIMEOUT_MS", "0"),
            ("SUMUD_DB_LOCK_TIMEOUT_MS", "500"),
            ("SUMUD_DB_IDLE_TX_TIMEOUT_MS", "120000"),
        ]))
        .unwrap();
        assert_eq!(s.db_timeouts.statement, Duration::ZERO);
        assert_eq!(s.db_timeouts.lock, Duration::from_millis(500));
        assert_eq!(s.db_timeouts.idle_in_transaction, Duration::from_secs(120));
        let e = Settings::from_vars(vars(&[("SUMUD_DB_LOCK_TIMEOUT_MS", "10s")])).unwrap_err();
        assert!(e.to_string().contains("SUMUD_DB_LOCK_TIMEOUT_MS"), "{e}");
    }

    #[test]
    fn a_malformed_number_names_the_variable() {
        let e = Settings::from_vars(vars(&[("SUMUD_BATCH_MAX", "lots")])).unwrap_err();
        assert!(e.to_string().contains("SUMUD_BATCH_MAX"));
    }
}
