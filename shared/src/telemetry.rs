//! Logging setup: human-readable on a terminal, JSON lines otherwise, with the
//! level from `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// Keeps telemetry alive; flushes on drop.
pub struct TelemetryGuard;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are no-ops), which keeps tests that start several services simple.
pub fn init(service: &str) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = if std::io::stderr().is_terminal() {
        fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "Telemetry initialised.");
    }
    TelemetryGuard
}
