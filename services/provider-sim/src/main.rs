//! `sumud-provider-sim`: a simulated payment provider.

use sumud_provider_sim::{behaviour::Behaviour, App, SERVICE};
use sumud_shared::{config::Settings, shutdown, telemetry};

fn rate(key: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{key} must be a number between 0 and 1")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let d = Behaviour::default();
    let behaviour = Behaviour {
        providers: std::env::var("SUMUD_SIM_PROVIDERS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        latency_ms: rate("SUMUD_SIM_LATENCY_MS", d.latency_ms as f64)? as u64,
        retryable_reject_rate: rate("SUMUD_SIM_RETRYABLE_REJECT_RATE", d.retryable_reject_rate)?,
        permanent_reject_rate: rate("SUMUD_SIM_PERMANENT_REJECT_RATE", d.permanent_reject_rate)?,
        timeout_rate: rate("SUMUD_SIM_TIMEOUT_RATE", d.timeout_rate)?,
        duplicate_rate: rate("SUMUD_SIM_DUPLICATE_RATE", d.duplicate_rate)?,
        late_pending_rate: rate("SUMUD_SIM_LATE_PENDING_RATE", d.late_pending_rate)?,
        seed: rate("SUMUD_SIM_SEED", d.seed as f64)? as u64,
        keys: match std::env::var("SUMUD_SIM_KEYS_DIR") {
            Ok(dir) => sumud_provider_sim::load_keys(std::path::Path::new(&dir))?,
            Err(_) => Default::default(),
        },
    };
    let _telemetry = telemetry::init(SERVICE);
    let app = App::build(settings, behaviour).await?;
    app.run(shutdown::on_signals()).await?;
    Ok(())
}
