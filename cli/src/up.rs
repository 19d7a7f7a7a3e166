//! `sumud up`: every service of the pipeline in this one process — alerts,
//! control, registry, eligibility, disbursement, the provider simulator and
//! the dashboard — on the embedded default broker unless
//! `KAFKA_BOOTSTRAP_SERVERS` names a cluster. The separate service binaries
//! stay the way to scale out; this is the way to see the whole thing run.
//! `sumud demo` starts the same pipeline and plays a scenario on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sumud_alerts::config::AlertsConfig;
use sumud_control::config::ControlConfig;
use sumud_control::signing::Jwk;
use sumud_dashboard::config::DashboardConfig;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "embedded-broker")]
use crate::embedded::EmbeddedBroker;

type Service = JoinHandle<sumud_shared::Result<()>>;

/// Where `up` and `demo` keep their events and records: the embedded
/// default (the built-in broker, an SQLite file under the data directory),
/// or the Kafka cluster and PostgreSQL database that
/// `KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` name.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedArgs {
    /// Where the embedded broker listens and advertises itself (used only
    /// when KAFKA_BOOTSTRAP_SERVERS is not set). Outside clients such as
    /// Kafka's console tools connect here.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub broker_listen: SocketAddr,
    /// Where the embedded default keeps its files: the SQLite database
    /// (`sumud.db` and a file per service beside it) and the alerts
    /// service's generated key.
    #[arg(long, default_value = ".sumud")]
    pub data_dir: PathBuf,
    /// The database to use instead of the embedded default's SQLite file
    /// (`postgres://…` or `sqlite://…`); `DATABASE_URL` does the same.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The Kafka cluster to use instead of the embedded broker;
    /// `KAFKA_BOOTSTRAP_SERVERS` does the same.
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
}

/// Points `settings` at `--database-url`, else at `DATABASE_URL` if set,
/// else at the embedded default: `sqlite://<data dir>/sumud.db`.
pub fn database(settings: &mut Settings, args: &EmbeddedArgs) {
    if let Some(url) = &args.database_url {
        settings.database_url = url.clone();
    } else if std::env::var_os("DATABASE_URL").is_none() {
        settings.database_url = format!("sqlite://{}/sumud.db", args.data_dir.display());
    }
}

/// The broker in use; an embedded one stops when this is dropped.
pub struct BrokerInUse {
    #[cfg(feature = "embedded-broker")]
    _embedded: Option<EmbeddedBroker>,
}

impl BrokerInUse {
    /// Whether the broker started empty just now, whatever the database
    /// says was published: the embedded one keeps its topics in memory.
    pub fn started_empty(&self) -> bool {
        #[cfg(feature = "embedded-broker")]
        return self._embedded.is_some();
        #[cfg(not(feature = "embedded-broker"))]
        false
    }
}

/// Points `settings` at the configured cluster (`--bootstrap-servers`, else
/// `KAFKA_BOOTSTRAP_SERVERS`), or starts the embedded broker when neither
/// is given and points it there.
pub async fn broker(settings: &mut Settings, args: &EmbeddedArgs) -> anyhow::Result<BrokerInUse> {
    if let Some(servers) = &args.bootstrap_servers {
        settings.bootstrap_servers = servers.clone();
    }
    if args.bootstrap_servers.is_some() || std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_some() {
        return Ok(BrokerInUse {
            #[cfg(feature = "embedded-broker")]
            _embedded: None,
        });
    }
    #[cfg(feature = "embedded-broker")]
    {
        let embedded = EmbeddedBroker::start(args.broker_listen).await?;
        settings.bootstrap_servers = embedded.bootstrap_servers();
        println!(
            "Embedded Kafka-protocol broker on {} (Kafka clients connect as to a cluster)",
            settings.bootstrap_servers
        );
        Ok(BrokerInUse {
            _embedded: Some(embedded),
        })
    }
    #[cfg(not(feature = "embedded-broker"))]
    {
        let _ = (settings, args);
        anyhow::bail!(
            "KAFKA_BOOTSTRAP_SERVERS is not set and this sumud was built without the embedded \
             broker (cargo feature `embedded-broker`): set KAFKA_BOOTSTRAP_SERVERS, or rebuild \
             with the default features"
        )
    }
}

/// Points `settings` at the broker ([`broker`], kept in `held` so that it
/// outlives the runtime) and the database ([`database`]) of `up` and
/// `demo`; returns whether the broker started empty.
pub async fn point_at_the_default(
    settings: &mut Settings,
    args: &EmbeddedArgs,
    held: &mut Option<BrokerInUse>,
) -> anyhow::Result<bool> {
    let in_use = held.insert(broker(settings, args).await?);
    let empty = in_use.started_empty();
    database(settings, args);
    Ok(empty)
}

/// What differs between the services of `up` (the environment's settings)
/// and those of `demo` (a compressed calendar, a fast simulator).
pub struct Tuning {
    /// The disbursement schedule and retry policy.
    pub disbursement: DisbursementConfig,
    /// The built-in provider simulator's behaviour; `None` runs none (real
    /// providers consume the instructions topic).
    pub provider: Option<Behaviour>,
    /// Where the dashboard listens.
    pub dashboard: DashboardConfig,
    /// The agencies' match-key secret the registry computes match keys
    /// under; `None` takes `SUMUD_MATCH_KEY` from the environment.
    pub match_key: Option<sumud_shared::match_key::MatchKeySecret>,
    /// The broker started empty ([`BrokerInUse::started_empty`]): every
    /// outbox hands over again what its consumers may not have read before
    /// the broker that held it went (a restart of `sumud up` on the
    /// embedded default would otherwise lose instructions nobody read and
    /// providers' answers nobody took).
    pub broker_started_empty: bool,
}

/// Every service, running in this process until [`Pipeline::stop`].
pub struct Pipeline {
    /// The pipeline's database on its backend (the demo's reports read it
    /// directly).
    pub store: Store,
    /// Where the dashboard serves its page.
    pub dashboard: SocketAddr,
    shutdown: CancellationToken,
    services: Vec<Service>,
}

impl Pipeline {
    /// Builds (connects, migrates, creates topics) and starts every service.
    pub async fn start(
        settings: &Settings,
        alerts: AlertsConfig,
        tuning: Tuning,
    ) -> anyhow::Result<Self> {
        let mut registry = sumud_registry::App::build(settings.clone()).await?;
        if tuning.match_key.is_some() {
            registry = registry.with_match_key(tuning.match_key.clone());
        }
        let control_config = ControlConfig::from_env()?;
        let command_max_age =
            std::time::Duration::from_secs(control_config.max_command_age_secs.max(0) as u64);
        let control = sumud_control::App::build(settings.clone(), control_config).await?;
        let alerts = sumud_alerts::App::build(settings.clone(), alerts).await?;
        let eligibility = sumud_eligibility::App::build(settings.clone()).await?;
        let store = control.store().clone();
        let disbursement =
            sumud_disbursement::App::build(settings.clone(), tuning.disbursement).await?;
        let dashboard = match sumud_dashboard::App::build(settings.clone(), tuning.dashboard).await
        {
            Ok(d) => d,
            // A busy port must not stop the pipeline: any free port will do.
            Err(e) => {
                tracing::warn!(error = %e, "Dashboard address busy; using a free port.");
                let config = DashboardConfig {
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..tuning.dashboard
                };
                sumud_dashboard::App::build(settings.clone(), config).await?
            }
        };
        let dashboard_addr = dashboard.local_addr();
        if tuning.broker_started_empty {
            // Before any relay runs, so that each reads its rows afresh.
            let judged = control.judged_command_ids().await?;
            let again = control.republish_all().await?
                + alerts.republish_unjudged(&judged, command_max_age).await?
                + eligibility.republish_all().await?
                + disbursement.republish_all().await?;
            if again > 0 {
                tracing::info!(
                    again,
                    "The broker started empty: the outboxes publish again what it may have lost."
                );
            }
        }
        let provider = match tuning.provider {
            Some(behaviour) => simulator(settings, &store, behaviour).await?,
            None => None,
        };
        let shutdown = CancellationToken::new();
        let s = || shutdown.clone();
        let mut services = vec![
            tokio::spawn(registry.run(s())),
            tokio::spawn(alerts.run(s())),
            tokio::spawn(control.run(s())),
            tokio::spawn(eligibility.run(s())),
            tokio::spawn(disbursement.run(s())),
            tokio::spawn(dashboard.run(s())),
        ];
        if let Some(provider) = provider {
            services.push(tokio::spawn(provider.run(s())));
        }
        Ok(Pipeline {
            store,
            dashboard: dashboard_addr,
            shutdown,
            services,
        })
    }

    /// Stops every service and waits for each to finish its current batch.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for s in self.services {
            s.await??;
        }
        Ok(())
    }
}

/// The built-in provider simulator, built before anything runs so that a
/// failure leaves nothing running. It pays as the synthetic registry's
/// providers and signs as each of them, with keys made for this run and
/// registered here, as a real provider registers its own. A provider an
/// operator revoked stays revoked, and the simulator does not answer for
/// it; `None` when it would answer for nobody.
async fn simulator(
    settings: &Settings,
    store: &Store,
    mut behaviour: Behaviour,
) -> anyhow::Result<Option<sumud_provider_sim::App>> {
    let revoked: Vec<String> = sumud_disbursement::db::providers(store)
        .await?
        .into_iter()
        .filter(|p| p.revoked)
        .map(|p| p.provider_id)
        .collect();
    let mut serves = Vec::new();
    for provider in sumud_shared::synthetic::PROVIDERS {
        if revoked.iter().any(|r| r == provider) || !behaviour.serves(provider) {
            continue;
        }
        let key = Jwk::generate(&format!("{provider}-sim"));
        sumud_disbursement::db::add_provider(store, provider, Some((&key.kid, &key.x))).await?;
        behaviour.keys.insert(provider.to_owned(), key);
        serves.push(provider.to_owned());
    }
    if !revoked.is_empty() {
        tracing::warn!(
            revoked = ?revoked,
            "The simulator does not pay as revoked providers; their instructions wait."
        );
    }
    // An empty list would mean "every provider".
    if serves.is_empty() {
        return Ok(None);
    }
    behaviour.providers = serves;
    Ok(Some(
        sumud_provider_sim::App::build(settings.clone(), behaviour).await?,
    ))
}

/// Registers `key` as an operator with `roles` (idempotent).
pub async fn register(
    store: &Store,
    key: &Jwk,
    principal: &str,
    roles: &[&str],
) -> anyhow::Result<()> {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    sumud_control::db::add_operator(store, &key.kid, principal, &key.x, &roles).await?;
    Ok(())
}

/// Runs `sumud up` until SIGINT/SIGTERM, on the broker `settings` point at
/// (see [`broker`]).
pub async fn run(
    settings: Settings,
    args: EmbeddedArgs,
    with_provider: bool,
    broker_started_empty: bool,
) -> anyhow::Result<()> {
    // The alerts service signs the commands its trigger rules send: with
    // SUMUD_ALERTS_KEY_FILE that key (registered by the operators), otherwise
    // a key of the embedded default's own, kept in the data directory and
    // registered here so the rules can act.
    let (alerts, own_key) = match std::env::var_os("SUMUD_ALERTS_KEY_FILE") {
        Some(_) => (AlertsConfig::from_env()?, None),
        None => {
            let key = data_dir_key(&args.data_dir)?;
            let config = AlertsConfig::shipped(key.clone());
            (config, Some(key))
        }
    };
    let tuning = Tuning {
        disbursement: DisbursementConfig::from_env_or_secret(Some(data_dir_secret(
            &args.data_dir,
        )?))?,
        provider: with_provider.then(Behaviour::default),
        dashboard: DashboardConfig::from_env()?,
        match_key: None,
        broker_started_empty,
    };
    let pipeline = Pipeline::start(&settings, alerts, tuning)
        .await
        .context(starting_hint(&settings))?;
    if let Some(key) = own_key {
        register(
            &pipeline.store,
            &key,
            "early-warning",
            &["declare", "close"],
        )
        .await?;
    }
    println!(
        "Sumud is up: Kafka at {}, database at {}, dashboard at http://{}/ — press Ctrl-C to stop.",
        settings.bootstrap_servers,
        sumud_shared::config::redact_url(&settings.database_url),
        pipeline.dashboard
    );
    // The other commands (crisis, reconcile, explain, …) read the same
    // variables; the embedded default's values are not their defaults.
    println!(
        "Other sumud commands reach this pipeline with:\n  export KAFKA_BOOTSTRAP_SERVERS={} DATABASE_URL={}",
        settings.bootstrap_servers,
        sumud_shared::config::redact_url(&settings.database_url),
    );
    sumud_shared::shutdown::on_signals().cancelled().await;
    pipeline.stop().await
}

/// The embedded default's alerts key: read from the data directory, or
/// generated there on first start.
fn data_dir_key(dir: &Path) -> anyhow::Result<Jwk> {
    let path = dir.join("alerts-key.jwk");
    if path.exists() {
        return Ok(sumud_alerts::config::read_key(&path)?);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    crate::crisis_cmd::generate_key(&format!("alerts-{:x}", rand::random::<u32>()), &path)?;
    Ok(sumud_alerts::config::read_key(&path)?)
}

/// The embedded default's pseudonym secret, when `SUMUD_PSEUDONYM_SECRET`
/// is unset: read from the data directory, or generated there (32 random
/// bytes, mode 0600) on first start, so pseudonyms stay stable across
/// restarts of the same data.
fn data_dir_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("pseudonym-secret");
    if path.exists() {
        return Ok(std::fs::read_to_string(&path)?.trim().to_owned());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let secret = random_secret();
    write_private(&path, &secret)?;
    Ok(secret)
}

/// 32 random bytes as base64url: a pseudonym secret.
pub fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// What to check when the services do not start, by database.
pub fn starting_hint(settings: &Settings) -> String {
    if sumud_shared::db::sqlite::is_sqlite_url(&settings.database_url) {
        "starting the services (is the data directory writable?)".into()
    } else {
        "starting the services (is PostgreSQL up? try scripts/postgres.sh start)".into()
    }
}
