//! Kafka clients: the one place a librdkafka configuration is built. Every consumer, producer
//! and admin client flowctl makes starts from [`KafkaSettings`] through the builders here, so
//! connection settings, TLS and SASL from the client properties file (`FLOWCTL_KAFKA_CONFIG`,
//! [`properties`]) apply to all of them alike.
//!
//! The default bootstrap, `127.0.0.1:19092`, is where `scripts/broker.sh` starts nisshi, so the
//! quick start needs no configuration. We connect to `127.0.0.1`, never `localhost`, which may
//! resolve to `::1` first.

pub mod admin;
pub mod properties;

use std::sync::Arc;

use rdkafka::ClientConfig;

pub use admin::{BrokerError, check_reachable, ensure_topic, topic_max_message_bytes};
pub use properties::{ClientProperties, PropertiesError};

/// The address `scripts/broker.sh` starts the development broker on.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:19092";

/// How flowctl reaches Kafka (read once at the edge: `FLOWCTL_KAFKA_BOOTSTRAP`,
/// `FLOWCTL_KAFKA_CONFIG`). `Debug` never shows a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` of the brokers.
    pub bootstrap: String,
    /// The checked settings of the client properties file (empty without one).
    pub properties: Arc<ClientProperties>,
}

impl KafkaSettings {
    /// An open cluster at `bootstrap`, no client properties.
    pub fn new(bootstrap: impl Into<String>) -> KafkaSettings {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            properties: Arc::default(),
        }
    }

    /// With the settings of a client properties file.
    pub fn with_properties(mut self, properties: ClientProperties) -> KafkaSettings {
        self.properties = Arc::new(properties);
        self
    }

    /// `text` with every secret of the client properties replaced, for messages that might
    /// echo one (librdkafka's own errors).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.properties.secrets() {
            out = out.replace(s, "***");
        }
        out
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings::new(DEFAULT_BOOTSTRAP)
    }
}

/// The settings every client shares: the bootstrap, flowctl's defaults, then the client
/// properties file (which may change a default, e.g. `broker.address.family` for an IPv6-only
/// cluster, but never a setting flowctl owns: those are refused when the file is read).
pub fn client_config(kafka: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap)
        // Fail fast with a clear error when nothing listens, instead of retrying for minutes.
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("broker.address.family", "v4");
    kafka.properties.apply(&mut c);
    c
}

/// A consumer of group `group` that reads as fast as the broker serves: positions are
/// assigned and committed by the caller, never automatically.
pub fn consumer_config(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    let mut c = client_config(kafka);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("queued.min.messages", "200000")
        .set("fetch.wait.max.ms", "100")
        // The prefetch queue fills up whenever the code behind a consumer is busy; by default
        // librdkafka then stops fetching for a whole second (fetch.queue.backoff.ms = 1000), so
        // the queue runs dry and the consumer sits idle once it catches up.
        .set("fetch.queue.backoff.ms", "10");
    c
}

/// An idempotent producer whose every record is acknowledged by all in-sync replicas.
pub fn producer_config(kafka: &KafkaSettings) -> ClientConfig {
    let mut c = client_config(kafka);
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

/// Drops a librdkafka client on a thread of its own: destroying one waits for its internal
/// threads (around 100 ms), which nobody needs to wait for.
pub fn drop_later<T: Send + 'static>(client: T) {
    let spawned = std::thread::Builder::new()
        .name("kafka-client-drop".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread to drop a client on; it is leaked");
    }
}
