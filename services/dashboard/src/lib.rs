//! The monitoring dashboard: reads what the other services recorded in
//! PostgreSQL (crises, entitlements, instructions, provider status, alerts)
//! and what only Kafka holds (dead letters, consumer lag), and serves it as
//! a JSON API described by an OpenAPI document, a live event stream and a
//! bilingual (Arabic/English) page for monitoring staff.
//!
//! It is last in the data flow and writes nothing: no migrations, no
//! topics, no consumer-group commits.

pub mod assemble;
pub mod config;
pub mod contracts;
pub mod db;
pub mod deadletters;
pub mod error;
pub mod grievances;
pub mod http;
pub mod lag;
pub mod model;
pub mod openapi;
pub mod referrals;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::{Error, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::info;

use crate::config::DashboardConfig;
use crate::deadletters::DeadLetterBoard;
use crate::http::AppState;
use crate::lag::LagBoard;
use crate::snapshot::Monitor;

/// The service name (probe surface, logs).
pub const SERVICE: &str = "dashboard";

/// How long a starting dashboard waits for the database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// A built dashboard: connected and listening, not serving yet.
pub struct App {
    settings: Settings,
    config: DashboardConfig,
    store: Store,
    listener: TcpListener,
}

impl App {
    /// Connects to the database (PostgreSQL, or the embedded SQLite file)
    /// and binds the address (port 0 picks a free one; see
    /// [`App::local_addr`]).
    pub async fn build(settings: Settings, config: DashboardConfig) -> Result<Self> {
        let store = Store::connect_with(
            &settings.database_url,
            settings.db_max_connections,
            CONNECT_PATIENCE,
            settings.db_timeouts,
        )
        .await?;
        let listener = TcpListener::bind(config.addr).await.map_err(|e| {
            Error::Config(format!(
                "cannot listen on SUMUD_DASHBOARD_ADDR={}: {e}",
                config.addr
            ))
        })?;
        Ok(App {
            settings,
            config,
            store,
            listener,
        })
    }

    /// Where the page and the API are served.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The database it reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown`, with the Kafka readers and the snapshot
    /// publisher beside the server; all of them stop together.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        // /healthz, /readyz and /metrics on SUMUD_HTTP_ADDR, as every service.
        let probes = sumud_shared::http::spawn(
            &self.settings,
            SERVICE,
            self.store.clone(),
            None,
            None,
            shutdown.clone(),
        )?
        .map(AbortOnDropHandle::new);
        // Should this future be dropped rather than shut down (its task
        // aborted), its companions go with it: the tasks are aborted, and
        // the reader thread is told to stop.
        let dead_letters = DeadLetterBoard::new(&self.settings.topics.deadletter);
        let lag = LagBoard::new();
        let reader_stop = shutdown.child_token();
        let _stop_reader_on_drop = reader_stop.clone().drop_guard();
        let dead_letter_reader =
            deadletters::spawn(&self.settings, dead_letters.clone(), reader_stop)?;
        let lag_reader = AbortOnDropHandle::new(lag::spawn(
            &self.settings,
            lag.clone(),
            self.config.lag_refresh,
            shutdown.clone(),
        )?);
        let monitor = Arc::new(Monitor::new(self.store.clone(), dead_letters, lag));
        let (frames, _) = watch::channel(None);
        let publisher = AbortOnDropHandle::new(tokio::spawn(snapshot::publish(
            monitor.clone(),
            frames.clone(),
            self.config.refresh,
            shutdown.clone(),
        )));
        let state = Arc::new(AppState {
            monitor,
            frames,
            shutdown: shutdown.clone(),
        });
        let addr = self.local_addr();
        info!(%addr, "Serving the dashboard.");
        let stopped = shutdown.clone();
        let served = axum::serve(self.listener, http::router(state))
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
            .map_err(|e| Error::Other(format!("dashboard server failed: {e}")));
        // The server is gone (shutdown or failure): its companions go too.
        shutdown.cancel();
        for task in [lag_reader, publisher] {
            let _ = task.await;
        }
        // The reader notices the cancellation within one poll (200 ms).
        let _ = tokio::task::spawn_blocking(move || dead_letter_reader.join()).await;
        if let Some(p) = probes {
            let _ = p.await;
        }
        served
    }
}
