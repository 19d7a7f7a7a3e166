//! `sumud-node <service>`: runs one service as its own process, configured
//! from the environment like the service binaries. Tests that kill -9 a
//! service use it, because cargo guarantees a test crate's own binaries are
//! built for its tests, not other crates' binaries. `sumud-node up` runs
//! what `sumud up` runs on the embedded default — the embedded broker on
//! `KAFKA_BOOTSTRAP_SERVERS`'s address, every service, an honest provider
//! simulator — for the test that kills all of it at once.

use sumud_shared::config::Settings;
use sumud_shared::shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let service = std::env::args().nth(1).unwrap_or_default();
    let settings = Settings::from_env()?;
    let _t = sumud_shared::telemetry::init(&service);
    let stop = shutdown::on_signals();
    match service.as_str() {
        "registry" => {
            sumud_registry::App::build(settings)
                .await?
                .run(stop)
                .await?
        }
        "eligibility" => {
            sumud_eligibility::App::build(settings)
                .await?
                .run(stop)
                .await?
        }
        "disbursement" => {
            let config = sumud_disbursement::config::DisbursementConfig::from_env()?;
            sumud_disbursement::App::build(settings, config)
                .await?
                .run(stop)
                .await?
        }
        "control" => {
            let config = sumud_control::config::ControlConfig::from_env()?;
            sumud_control::App::build(settings, config)
                .await?
                .run(stop)
                .await?
        }
        "alerts" => {
            let config = sumud_alerts::config::AlertsConfig::from_env()?;
            sumud_alerts::App::build(settings, config)
                .await?
                .run(stop)
                .await?
        }
        "provider-sim" => {
            // The simulator's defaults: some rejections, duplicates and late
            // statuses, no timeouts.
            let behaviour = sumud_provider_sim::behaviour::Behaviour::default();
            sumud_provider_sim::App::build(settings, behaviour)
                .await?
                .run(stop)
                .await?
        }
        "up" => {
            let addr = settings.bootstrap_servers.parse()?;
            let broker = sumud::embedded::EmbeddedBroker::start(addr).await?;
            let alerts = sumud_alerts::config::AlertsConfig::shipped(sumud_shared::jws::Jwk::generate("alerts-node"));
            let tuning = sumud::up::Tuning {
                disbursement: sumud_disbursement::config::DisbursementConfig::from_env()?,
                provider: Some(sumud_provider_sim::behaviour::Behaviour {
                    latency_ms: 20,
                    ..sumud_provider_sim::behaviour::Behaviour::honest()
                }),
                dashboard: sumud_dashboard::config::DashboardConfig {
                    addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..Default::default()
                },
                match_key: None,
                broker_started_empty: true,
            };
            let pipeline = sumud::up::Pipeline::start(&settings, alerts, tuning).await?;
            stop.cancelled().await;
            pipeline.stop().await?;
            drop(broker);
        }
        other => anyhow::bail!(
            "unknown service {other:?}: registry, alerts, control, eligibility, disbursement, provider-sim or up"
        ),
    }
    Ok(())
}
