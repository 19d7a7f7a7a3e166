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
    // If the thread cannot start, std drops the closure here, on the
    // caller's thread: the client inside must then be leaked, not dropped.
    let client = std::mem::ManuallyDrop::new(client);
    let spawned = std::thread::Builder::new()
        .name("sumud-kafka-drop".into())
        .spawn(move || drop(std::mem::ManuallyDrop::into_inner(client)));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Could not start a thread to close a Kafka client; it is leaked.");
    }
}

/// A Kafka client that, whoever lets go of it last (a runtime thread, a
/// blocking-pool thread, a task aborted mid-flight, a panicking test), is
/// destroyed by [`drop_detached`], never on that thread: destroying a client
/// with a `group.id` waits on librdkafka's main thread without a limit (the
/// group leave, or a rebalance finished by an assign whose timeout is
/// infinite), and that wait has been seen never to end for a consumer
/// dropped mid-rebalance, hanging a runtime's shutdown behind it.
pub struct Detached<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Detached<T> {
    /// Wraps `client`.
    pub fn new(client: T) -> Self {
        Detached(Some(client))
    }

    /// The client itself, for a caller that destroys it where it chooses
    /// (and may wait for it within a bound).
    pub fn into_inner(mut self) -> T {
        self.0
            .take()
            .expect("the client is only taken here, which consumes the wrapper")
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0
            .as_ref()
            .expect("the client is only taken by into_inner, which consumes the wrapper")
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop_detached(client);
        }
    }
}
