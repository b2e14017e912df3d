//! `flowctl produce`: generated events → validated Avro → Confluent wire format → Kafka.
//!
//! Every event is encoded by the validating encoder first; one that does not fit its schema is
//! rejected here and counted, never sent. Byte-level faults (undecodable body, wrong magic byte,
//! unknown schema id) are applied to the frame after validation, because they are faults of the
//! wire, not of the event. The producer is idempotent with `acks=all` and compressed batches;
//! delivery reports are counted, so "sent" means acknowledged by the broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Serialize;

use super::domain::{EventKind, Fault};
use super::encode::encode;
use super::generate::{GenConfig, Generator, SchemaVersion};
use super::registry::{Registry, RegistryError};
use super::schema::{ParsedSchema, SchemaError, builtin};
use super::wire::{self, SchemaId};
use crate::kafka::{BrokerError, KafkaSettings, ensure_topic, producer_config};

/// The schema id written by the unknown-schema-id fault: far above any id a registry hands out.
pub const UNKNOWN_SCHEMA_ID: SchemaId = 2_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(
        "topic `{0}` has no event schema: expected a name containing orders, clickstream/click or payments"
    )]
    UnknownTopic(String),
    #[error("--schema-version v2 exists for orders only, not for topic `{0}`")]
    NoV2(String),
    #[error("built-in schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("registering the schema for subject {subject}")]
    Registry {
        subject: String,
        #[source]
        source: RegistryError,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("creating the Kafka producer for {bootstrap}")]
    Producer {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("registry returned schema id {0}, which does not fit the 4-byte wire format")]
    BadId(i64),
}

/// How many events, how fast.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// As fast as possible.
    Count(u64),
    /// `per_sec` events per second for `duration`.
    Rate { per_sec: u64, duration: Duration },
}

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    pub version: SchemaVersion,
    pub seed: u64,
    pub bad_ratio: f64,
    /// Share of clean events made late (event_time 1–48 h in the past).
    pub late_ratio: f64,
    /// Share of events that re-send the previous clean event.
    pub duplicate_ratio: f64,
    pub pacing: Pacing,
    pub partitions: i32,
    /// Event-time "now", epoch ms.
    pub base_time_ms: i64,
    pub progress: bool,
    /// librdkafka `compression.type`.
    pub compression: String,
    pub linger_ms: u32,
    /// Stop early (Ctrl-C): whatever was generated is still flushed and counted.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a run did. `injected` counts every fault generated, including schema violations, which
/// are also counted in `rejected` (they never reach Kafka).
#[derive(Debug, Clone, Serialize)]
pub struct ProduceSummary {
    pub topic: String,
    pub subject: String,
    pub schema_id: SchemaId,
    pub seed: u64,
    pub generated: u64,
    pub sent: u64,
    pub failed: u64,
    pub rejected: u64,
    pub injected: BTreeMap<String, u64>,
    pub late: u64,
    pub duplicates: u64,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub events_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_delivery_error: Option<String>,
}

/// Counts delivery reports from librdkafka's callback thread.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct Ctx(Arc<Deliveries>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The built-in schema text for a topic and version.
pub fn schema_for(
    topic: &str,
    version: SchemaVersion,
) -> Result<(EventKind, &'static str), ProduceError> {
    let kind =
        EventKind::for_topic(topic).ok_or_else(|| ProduceError::UnknownTopic(topic.into()))?;
    let text = match (kind, version) {
        (EventKind::Orders, SchemaVersion::V1) => builtin::ORDERS_V1,
        (EventKind::Orders, SchemaVersion::V2) => builtin::ORDERS_V2,
        (_, SchemaVersion::V2) => return Err(ProduceError::NoV2(topic.into())),
        (EventKind::Clickstream, _) => builtin::CLICKSTREAM,
        (EventKind::Payments, _) => builtin::PAYMENTS,
    };
    Ok((kind, text))
}

/// Frames an encoded body into `out`, applying a byte-level fault if there is one.
pub fn frame(fault: Option<Fault>, schema_id: SchemaId, body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match fault {
        Some(Fault::WrongMagic) => {
            out.push(1);
            out.extend_from_slice(&schema_id.to_be_bytes());
            out.extend_from_slice(body);
        }
        Some(Fault::UnknownSchemaId) => {
            wire::write_header(out, UNKNOWN_SCHEMA_ID);
            out.extend_from_slice(body);
        }
        Some(Fault::Undecodable) => {
            // A body cut short: every schema here has required fields after the first, so a
            // third of the bytes never decodes.
            wire::write_header(out, schema_id);
            out.extend_from_slice(&body[..body.len() / 3]);
        }
        _ => {
            wire::write_header(out, schema_id);
            out.extend_from_slice(body);
        }
    }
}

fn producer(
    kafka: &KafkaSettings,
    opts: &ProduceOptions,
    deliveries: Arc<Deliveries>,
) -> Result<ThreadedProducer<Ctx>, ProduceError> {
    producer_config(kafka)
        .set("compression.type", &opts.compression)
        .set("linger.ms", opts.linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        .create_with_context(Ctx(deliveries))
        .map_err(|source| ProduceError::Producer {
            bootstrap: kafka.bootstrap.clone(),
            source,
        })
}

/// Registers the schema, makes sure the topic exists, and produces.
pub async fn produce(
    opts: ProduceOptions,
    registry: &Registry,
    kafka: &KafkaSettings,
) -> Result<ProduceSummary, ProduceError> {
    let (kind, text) = schema_for(&opts.topic, opts.version)?;
    let schema = ParsedSchema::parse(text)?;
    let subject = format!("{}-value", opts.topic);
    let (id, _) =
        registry
            .register(&subject, text)
            .await
            .map_err(|source| ProduceError::Registry {
                subject: subject.clone(),
                source,
            })?;
    let schema_id = SchemaId::try_from(id).map_err(|_| ProduceError::BadId(id))?;
    ensure_topic(kafka, &opts.topic, opts.partitions).await?;
    let deliveries = Arc::new(Deliveries::default());
    let producer = producer(kafka, &opts, deliveries.clone())?;
    let run = tokio::task::spawn_blocking(move || {
        run_loop(
            &opts,
            kind,
            schema,
            schema_id,
            subject,
            &producer,
            &deliveries,
        )
    });
    Ok(run.await.expect("produce loop panicked"))
}

fn run_loop(
    opts: &ProduceOptions,
    kind: EventKind,
    schema: ParsedSchema,
    schema_id: SchemaId,
    subject: String,
    producer: &ThreadedProducer<Ctx>,
    deliveries: &Deliveries,
) -> ProduceSummary {
    let mut cfg = GenConfig::new(kind, opts.seed, opts.base_time_ms);
    cfg.version = opts.version;
    cfg.bad_ratio = opts.bad_ratio;
    cfg.late_ratio = opts.late_ratio;
    cfg.duplicate_ratio = opts.duplicate_ratio;
    if let Pacing::Rate { per_sec, .. } = opts.pacing {
        cfg.spacing_ms = 1000.0 / per_sec.max(1) as f64;
    }
    let events = Generator::new(cfg);
    let (total, rate, duration) = match opts.pacing {
        Pacing::Count(n) => (n, None, None),
        Pacing::Rate { per_sec, duration } => (
            (per_sec as f64 * duration.as_secs_f64()).round() as u64,
            Some(per_sec),
            Some(duration),
        ),
    };
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {human_pos}/{human_len} {msg} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(opts.topic.clone());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut generated, mut rejected, mut late, mut duplicates, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut body = Vec::with_capacity(512);
    let mut framed = Vec::with_capacity(512);
    let start = Instant::now();
    for ev in events {
        if generated >= total
            || opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break;
        }
        if let Some(rate) = rate {
            // Pace: never ahead of rate × elapsed.
            loop {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if generated < due || duration.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        generated += 1;
        if generated % 4096 == 0 {
            bar.set_position(generated);
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.0} events/s", generated as f64 / secs));
        }
        if let Some(f) = ev.fault {
            *injected.entry(f.name().to_string()).or_default() += 1;
        }
        late += ev.late as u64;
        duplicates += ev.duplicate as u64;
        body.clear();
        if encode(&schema.model, &ev.value, &mut body).is_err() {
            rejected += 1;
            continue;
        }
        frame(ev.fault, schema_id, &body, &mut framed);
        bytes += framed.len() as u64;
        let mut record: BaseRecord<'_, str, [u8], ()> =
            BaseRecord::to(&opts.topic).payload(&framed[..]);
        if let Some(k) = ev.key.as_deref() {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    deliveries.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = deliveries
                        .first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert_with(|| e.to_string());
                    break;
                }
            }
        }
    }
    bar.set_position(generated);
    bar.set_message("waiting for delivery reports");
    let _ = producer.flush(Duration::from_secs(120));
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let sent = deliveries.ok.load(Ordering::Relaxed);
    let first_delivery_error = deliveries
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    ProduceSummary {
        topic: opts.topic.clone(),
        subject,
        schema_id,
        seed: opts.seed,
        generated,
        sent,
        failed: (generated - rejected).saturating_sub(sent),
        rejected,
        injected,
        late,
        duplicates,
        bytes,
        elapsed_secs: elapsed,
        events_per_sec: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        first_delivery_error,
    }
}

impl ProduceSummary {
    /// The human summary printed at the end of `flowctl produce`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "topic {} (subject {}, schema id {}, seed {})\n  generated {:>10}\n  sent      {:>10}  (acknowledged by the broker)\n  rejected  {:>10}  (did not fit the schema; never sent)\n  failed    {:>10}  (not acknowledged)\n  late      {:>10}\n  duplicates{:>10}\n",
            self.topic,
            self.subject,
            self.schema_id,
            self.seed,
            self.generated,
            self.sent,
            self.rejected,
            self.failed,
            self.late,
            self.duplicates
        );
        if !self.injected.is_empty() {
            s.push_str("  injected faults:\n");
            for (k, v) in &self.injected {
                s.push_str(&format!("    {k:<22}{v:>8}\n"));
            }
        }
        s.push_str(&format!(
            "  {:.0} events/s, {:.1} MB in {:.2}s\n",
            self.events_per_sec,
            self.bytes as f64 / 1e6,
            self.elapsed_secs
        ));
        if let Some(e) = &self.first_delivery_error {
            s.push_str(&format!("  first delivery error: {e}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::inspect::inspect;
    use std::collections::HashMap;

    #[test]
    fn every_wire_fault_is_caught_by_inspect() {
        let schema = ParsedSchema::parse(builtin::ORDERS_V1).unwrap();
        let known: HashMap<SchemaId, ParsedSchema> = [(7, schema.clone())].into();
        let mut cfg = GenConfig::new(EventKind::Orders, 9, 1_763_900_000_000);
        cfg.bad_ratio = 0.5;
        let mut seen = BTreeMap::new();
        let (mut body, mut out) = (Vec::new(), Vec::new());
        for ev in Generator::new(cfg).take(5_000) {
            body.clear();
            if encode(&schema.model, &ev.value, &mut body).is_err() {
                assert_eq!(ev.fault, Some(Fault::SchemaViolation));
                continue;
            }
            frame(ev.fault, 7, &body, &mut out);
            let got = inspect(
                EventKind::Orders,
                ev.key.as_deref().map(str::as_bytes),
                &out,
                &known,
                1_763_900_000_000,
            )
            .err()
            .map(|r| r.fault);
            assert_eq!(got, ev.fault, "{ev:?}");
            *seen.entry(got).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 10, "{seen:?}");
    }
}
