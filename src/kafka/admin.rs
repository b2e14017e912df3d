//! Topic administration and the reachability probe: what flowctl asks a cluster besides
//! reading and writing records.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{KafkaSettings, client_config, drop_later};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("creating a Kafka client for {bootstrap}")]
    Client {
        bootstrap: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "no Kafka broker answered at {bootstrap} within {secs}s ({detail}): start one with `scripts/broker.sh start` or point FLOWCTL_KAFKA_BOOTSTRAP at a running cluster"
    )]
    Unreachable {
        bootstrap: String,
        secs: u64,
        detail: String,
    },
    #[error(
        "the Kafka cluster at {bootstrap} refused flowctl: {what} ({detail}); check the client settings of FLOWCTL_KAFKA_CONFIG ({config})"
    )]
    Refused {
        bootstrap: String,
        what: &'static str,
        detail: String,
        config: String,
    },
    #[error("describing topic {topic} on {bootstrap}: {detail}")]
    DescribeTopic {
        topic: String,
        bootstrap: String,
        detail: String,
    },
    #[error("creating topic {topic} on {bootstrap}: {detail}")]
    CreateTopic {
        topic: String,
        bootstrap: String,
        detail: String,
    },
}

fn admin_client(kafka: &KafkaSettings) -> Result<AdminClient<DefaultClientContext>, BrokerError> {
    client_config(kafka)
        .create()
        .map_err(|source| BrokerError::Client {
            bootstrap: kafka.bootstrap.clone(),
            source,
        })
}

/// How long to wait for a broker's first answer before telling the user none is running.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// One round of the probe: how often it looks whether the cluster refused the login.
const REACH_ROUND: Duration = Duration::from_millis(500);

/// The topic the reachability probe asks about (never created: auto-creation is off).
const REACH_PROBE_TOPIC: &str = "__flowctl_reachability_probe";

/// Remembers the first authentication or TLS failure librdkafka reports, so the probe can say
/// so at once instead of waiting out its timeout (librdkafka retries a refused login forever).
#[derive(Default)]
struct ProbeContext {
    refused: std::sync::Mutex<Option<(Refusal, String)>>,
    /// Connections the broker closed before answering ApiVersion, the first request.
    hung_up: std::sync::atomic::AtomicU32,
}

/// Connections closed at the first request that mean a protocol mismatch rather than a broker
/// going down (a stopping broker refuses connections instead). librdkafka backs its reconnects
/// off, so the second comes about half a second after the first.
const HANG_UPS_FOR_MISMATCH: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Authentication,
    Tls,
    /// The broker hangs up at the first request: a TLS or SASL listener spoken to in plaintext.
    Protocol,
}

impl ProbeContext {
    fn note(&self, kind: Refusal, reason: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.get_or_insert((kind, reason.to_string()));
    }
}

/// What a librdkafka message says was refused, if anything.
fn refusal_in(text: &str) -> Option<Refusal> {
    if text.contains("SASL authentication error") || text.contains("Authentication failed") {
        Some(Refusal::Authentication)
    } else if text.contains("SSL handshake failed") || text.contains("certificate verify failed") {
        Some(Refusal::Tls)
    } else {
        None
    }
}

/// librdkafka reports a refused login as a log line and an error event, both delivered when
/// the client's queue is served; both are watched.
impl rdkafka::ClientContext for ProbeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        if let Some(kind) = refusal_in(message) {
            self.note(kind, message);
        }
        let mismatch = message.contains("incorrect security.protocol")
            || (message.contains("Disconnected") && message.contains("APIVERSION_QUERY"));
        if mismatch
            && self
                .hung_up
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1
                >= HANG_UPS_FOR_MISMATCH
        {
            self.note(Refusal::Protocol, message);
        }
        tracing::debug!(
            ?level,
            fac,
            message,
            "librdkafka, during the reachability probe"
        );
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error during the reachability probe");
        let kind = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => Some(Refusal::Authentication),
            Some(RDKafkaErrorCode::SSL) => Some(Refusal::Tls),
            _ => refusal_in(reason),
        };
        if let Some(kind) = kind {
            self.note(kind, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ProbeContext {}

/// How the reachability probe ended.
enum Probe {
    Answered,
    Refused(Refusal, String),
    /// Nothing answered within [`REACH_TIMEOUT`].
    Silent(rdkafka::error::KafkaError),
}

/// Fails fast with an actionable message when nothing answers at `bootstrap`, or when the
/// cluster refuses the login or the TLS handshake, instead of librdkafka's retries ending in a
/// bare timeout a minute later.
pub async fn check_reachable(kafka: &KafkaSettings) -> Result<(), BrokerError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let bootstrap = kafka.bootstrap.as_str();
    let consumer: BaseConsumer<ProbeContext> = client_config(kafka)
        .set("allow.auto.create.topics", "false")
        // The broker hanging up at the first request is logged at info level only.
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Info)
        .create_with_context(ProbeContext::default())
        .map_err(|source| BrokerError::Client {
            bootstrap: bootstrap.to_string(),
            source,
        })?;
    let res = tokio::task::spawn_blocking(move || {
        // Any answer proves the broker is there: ask about one (absent) topic rather than all
        // of them, whose metadata grows with the cluster (tens of milliseconds on a development
        // broker that collected a few hundred bench topics). Asked in short rounds so that a
        // refused login ends the wait at once.
        let deadline = std::time::Instant::now() + REACH_TIMEOUT;
        let res = loop {
            let round = consumer.fetch_metadata(Some(REACH_PROBE_TOPIC), REACH_ROUND);
            if round.is_err() {
                // Serves the client's queue, where librdkafka put its log and error events
                // (a consumer that is not subscribed gets no records from it).
                while consumer.poll(Duration::ZERO).is_some() {}
            }
            let refused = consumer
                .context()
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            match (round, refused) {
                (Ok(_), _) => break Probe::Answered,
                (Err(_), Some((kind, reason))) => break Probe::Refused(kind, reason),
                (Err(e), None) if std::time::Instant::now() >= deadline => break Probe::Silent(e),
                (Err(_), None) => {}
            }
        };
        drop_later(consumer);
        res
    })
    .await
    .expect("metadata probe panicked");
    match res {
        Probe::Answered => Ok(()),
        Probe::Refused(kind, reason) => Err(BrokerError::Refused {
            bootstrap: bootstrap.to_string(),
            what: match kind {
                Refusal::Authentication => "authentication failed",
                Refusal::Tls => "the TLS handshake failed",
                Refusal::Protocol => {
                    "it closed every connection at the first request, as a TLS or SASL listener \
                     does to a client of another security.protocol"
                }
            },
            detail: kafka.scrub(&reason),
            config: kafka
                .properties
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "not set".into()),
        }),
        Probe::Silent(e) => Err(BrokerError::Unreachable {
            bootstrap: bootstrap.to_string(),
            secs: REACH_TIMEOUT.as_secs(),
            detail: kafka.scrub(&e.to_string()),
        }),
    }
}

/// Creates `topic` with `partitions` partitions if it does not exist. An existing topic is
/// fine whatever its partition count (the broker cannot add partitions anyway). Returns whether
/// this call created it (a topic just created holds no record yet).
pub async fn ensure_topic(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
) -> Result<bool, BrokerError> {
    let bootstrap = kafka.bootstrap.as_str();
    let admin = admin_client(kafka)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    check_reachable(kafka).await?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(15)))
        .request_timeout(Some(Duration::from_secs(20)));
    let err = |detail: String| BrokerError::CreateTopic {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
        detail,
    };
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| err(e.to_string()))?;
    drop_later(admin);
    let mut created = false;
    for r in results {
        match r {
            Ok(_) => created = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    Ok(created)
}

/// The `max.message.bytes` of `topic` as the broker reports it (the largest record batch it
/// accepts there), or `None` when it reports none: the topic does not exist yet, or the broker
/// reports only configs set on the topic (nisshi) and the topic has none.
pub async fn topic_max_message_bytes(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<Option<usize>, BrokerError> {
    use rdkafka::admin::ResourceSpecifier;
    let bootstrap = kafka.bootstrap.as_str();
    let admin = admin_client(kafka)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(20)));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await;
    drop_later(admin);
    let results = described.map_err(|e| BrokerError::DescribeTopic {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
        detail: e.to_string(),
    })?;
    Ok(results.into_iter().find_map(|r| {
        r.ok()?
            .get("max.message.bytes")?
            .value
            .as_deref()?
            .parse()
            .ok()
    }))
}
