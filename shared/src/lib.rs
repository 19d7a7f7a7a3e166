//! Everything the Sumud services share: the event contracts, the CloudEvents
//! envelope, the Kafka consumer loop and producer, configuration, the area
//! hierarchy, money, database plumbing, telemetry and shutdown.
//!
//! A service crate should only hold its domain logic, its SQL and its wiring;
//! anything two services would otherwise write twice lives here.

pub mod areas;
pub mod backoff;
pub mod config;
pub mod db;
pub mod deadletter;
pub mod envelope;
pub mod error;
pub mod events;
pub mod http;
pub mod jws;
pub mod kafka;
pub mod match_key;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod playbook;
pub mod schema;
pub mod shutdown;
pub mod signed;
pub mod startup;
pub mod synthetic;
pub mod telemetry;
pub mod topics;

pub use error::{Error, Result};
