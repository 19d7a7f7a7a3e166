//! `sumud-disbursement`: settings → telemetry → build → run until SIGINT/SIGTERM.

use sumud_disbursement::{config::DisbursementConfig, App, SERVICE};
use sumud_shared::{config::Settings, shutdown, telemetry};

/// A pass allocates every row, id, `COPY` field and message it writes, on
/// several threads at once; under the system allocator that cost about a
/// fifth of the service's CPU (perf, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let config = DisbursementConfig::from_env()?;
    let _telemetry = telemetry::init(SERVICE);
    let app = App::build(settings, config).await?;
    app.run(shutdown::on_signals()).await?;
    Ok(())
}
