//! `sumud-alerts`: settings → telemetry → build → run until SIGINT/SIGTERM.

use sumud_alerts::{config::AlertsConfig, App, SERVICE};
use sumud_shared::{config::Settings, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let config = AlertsConfig::from_env()?;
    let _telemetry = telemetry::init(SERVICE);
    let app = App::build(settings, config).await?;
    app.run(shutdown::on_signals()).await?;
    Ok(())
}
