//! `sumud-dashboard`: settings → telemetry → build → serve until SIGINT/SIGTERM.

use sumud_dashboard::{config::DashboardConfig, App, SERVICE};
use sumud_shared::{config::Settings, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let config = DashboardConfig::from_env()?;
    let _telemetry = telemetry::init(SERVICE);
    let app = App::build(settings, config).await?;
    app.run(shutdown::on_signals()).await?;
    Ok(())
}
