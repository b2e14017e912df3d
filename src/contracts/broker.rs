//! Kafka connection settings and topic administration.
//!
//! `FLOWCTL_KAFKA_BOOTSTRAP` names the brokers; its default, `127.0.0.1:19092`, is the address
//! `scripts/broker.sh` starts nisshi on, so the quick start needs no configuration. We advertise
//! and connect to `127.0.0.1`, never `localhost`, which may resolve to `::1` first.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

pub const BOOTSTRAP_ENV: &str = "FLOWCTL_KAFKA_BOOTSTRAP";
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:19092";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("creating a Kafka client for {bootstrap}")]
    Client {
        bootstrap: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("creating topic {topic} on {bootstrap}: {detail}")]
    CreateTopic {
        topic: String,
        bootstrap: String,
        detail: String,
    },
}

/// The bootstrap servers flowctl talks to.
pub fn bootstrap() -> String {
    std::env::var(BOOTSTRAP_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string())
}

/// Base client config for `bootstrap`.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        // Fail fast with a clear error when nothing listens, instead of retrying for minutes.
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("broker.address.family", "v4");
    c
}

/// Creates `topic` with `partitions` partitions if it does not exist. An existing topic is
/// fine whatever its partition count (the broker cannot add partitions anyway).
pub async fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), BrokerError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap)
            .create()
            .map_err(|source| BrokerError::Client {
                bootstrap: bootstrap.to_string(),
                source,
            })?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let err = |detail: String| BrokerError::CreateTopic {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
        detail,
    };
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| err(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    Ok(())
}
