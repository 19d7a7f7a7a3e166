//! Kafka plumbing: client configuration, topic creation, THE producer wrapper
//! and THE consumer loop. No service builds a `FutureRecord` or polls a
//! consumer itself.

pub mod admin;
pub mod consumer;
pub mod health;
pub mod producer;
pub mod spans;

use rdkafka::ClientConfig;

use crate::config::Settings;

/// A client configuration with the bootstrap servers and every passthrough
/// property (TLS, SASL, …) from the settings.
pub fn client_config(settings: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers);
    c.set("client.id", "sumud");
    for (k, v) in &settings.kafka_properties {
        c.set(k, v);
    }
    c
}
