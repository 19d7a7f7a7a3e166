//! Kafka plumbing: client configuration, topic creation, THE producer wrapper
//! and THE consumer loop. No service builds a `FutureRecord` or polls a
//! consumer itself.

pub mod admin;
pub mod consumer;
pub mod health;
pub mod producer;
pub mod spans;
pub mod upkeep;

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

/// Drops a Kafka client on a thread of its own, never joined: librdkafka
/// closes a consumer that has a `group.id` when it is dropped, waiting on
/// its group coordinator without a limit, and a runtime or test thread
/// blocked there stalls everything behind it (docs/reliability.md, "A
/// consumer that never joins"). For clients nobody waits on; the consumer
/// loop's own close is bounded and logged instead.
pub fn drop_detached<T: Send + 'static>(client: T) {
    let spawned = std::thread::Builder::new()
        .name("sumud-kafka-drop".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Could not start a thread to close a Kafka client; it is leaked.");
    }
}
