//! `sumud-node <service>`: runs one service as its own process, configured
//! from the environment like the service binaries. Tests that kill -9 a
//! service use it, because cargo guarantees a test crate's own binaries are
//! built for its tests, not other crates' binaries.

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
        other => anyhow::bail!(
            "unknown service {other:?}: registry, alerts, control, eligibility, disbursement or provider-sim"
        ),
    }
    Ok(())
}
