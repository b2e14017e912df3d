//! Prometheus metrics: one registry, stable names (the Grafana dashboard and the alerting rules in
//! `docker/` refer to them; a test checks they exist).
//!
//! Run counts come from the state DB at scrape time, so runs executed by any process are counted;
//! durations, rows and events are observed in-process by whoever does the work.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::{Store, StoreError};

pub struct Metrics {
    pub registry: Registry,
    pub flow_runs: IntGaugeVec,
    pub task_runs: IntCounterVec,
    pub task_duration: HistogramVec,
    pub rows_written: IntCounterVec,
    pub dlq_events: IntCounterVec,
    pub quality_checks: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub events_ingested: IntCounterVec,
    pub ingest_batch_duration: HistogramVec,
    pub end_to_end_latency: HistogramVec,
    pub scheduler_heartbeat: Gauge,
    pub schedule_fires: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub next_fire: GaugeVec,
    pub sla_missed: IntGaugeVec,
}

/// Every metric name flowctl exposes; `docker/` may only refer to these.
pub const NAMES: &[&str] = &[
    "flowctl_flow_runs",
    "flowctl_task_runs_total",
    "flowctl_task_duration_seconds",
    "flowctl_rows_written_total",
    "flowctl_dlq_events_total",
    "flowctl_quality_checks_total",
    "flowctl_consumer_lag",
    "flowctl_events_ingested_total",
    "flowctl_ingest_batch_duration_seconds",
    "flowctl_end_to_end_latency_seconds",
    "flowctl_scheduler_heartbeat_timestamp_seconds",
    "flowctl_schedule_fires_total",
    "flowctl_http_requests_total",
    "flowctl_schedule_next_fire_timestamp_seconds",
    "flowctl_sla_missed_runs",
];

fn build() -> Metrics {
    let registry = Registry::new();
    let m = Metrics {
        flow_runs: IntGaugeVec::new(
            Opts::new(
                "flowctl_flow_runs",
                "Flow runs in the state store by flow and state",
            ),
            &["flow", "state"],
        )
        .unwrap(),
        task_runs: IntCounterVec::new(
            Opts::new(
                "flowctl_task_runs_total",
                "Task attempts finished by this process, by flow, task and final state",
            ),
            &["flow", "task", "state"],
        )
        .unwrap(),
        task_duration: HistogramVec::new(
            HistogramOpts::new("flowctl_task_duration_seconds", "Task attempt duration").buckets(
                vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0],
            ),
            &["flow", "task"],
        )
        .unwrap(),
        rows_written: IntCounterVec::new(
            Opts::new("flowctl_rows_written_total", "Rows committed to a table"),
            &["table"],
        )
        .unwrap(),
        dlq_events: IntCounterVec::new(
            Opts::new(
                "flowctl_dlq_events_total",
                "Events routed to the dead-letter queue",
            ),
            &["topic", "category"],
        )
        .unwrap(),
        quality_checks: IntCounterVec::new(
            Opts::new("flowctl_quality_checks_total", "Quality check outcomes"),
            &["table", "check", "outcome"],
        )
        .unwrap(),
        consumer_lag: IntGaugeVec::new(
            Opts::new("flowctl_consumer_lag", "Kafka consumer lag in messages"),
            &["topic", "partition"],
        )
        .unwrap(),
        events_ingested: IntCounterVec::new(
            Opts::new(
                "flowctl_events_ingested_total",
                "Kafka events ingested into bronze (DLQ events excluded)",
            ),
            &["topic"],
        )
        .unwrap(),
        ingest_batch_duration: HistogramVec::new(
            HistogramOpts::new(
                "flowctl_ingest_batch_duration_seconds",
                "Kafka to bronze micro-batch duration (decode, validate, DLQ, commits)",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0]),
            &["topic"],
        )
        .unwrap(),
        end_to_end_latency: HistogramVec::new(
            HistogramOpts::new(
                "flowctl_end_to_end_latency_seconds",
                "From an event's Kafka timestamp to the commit that made it visible in the table",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
                86400.0,
            ]),
            &["table"],
        )
        .unwrap(),
        scheduler_heartbeat: Gauge::with_opts(Opts::new(
            "flowctl_scheduler_heartbeat_timestamp_seconds",
            "Unix time of the scheduler's last heartbeat",
        ))
        .unwrap(),
        schedule_fires: IntCounterVec::new(
            Opts::new("flowctl_schedule_fires_total", "Scheduled runs fired"),
            &["flow"],
        )
        .unwrap(),
        http_requests: IntCounterVec::new(
            Opts::new(
                "flowctl_http_requests_total",
                "HTTP requests served by route class and status",
            ),
            &["route", "status"],
        )
        .unwrap(),
        next_fire: GaugeVec::new(
            Opts::new(
                "flowctl_schedule_next_fire_timestamp_seconds",
                "Unix time of each flow's next scheduled fire",
            ),
            &["flow"],
        )
        .unwrap(),
        sla_missed: IntGaugeVec::new(
            Opts::new(
                "flowctl_sla_missed_runs",
                "Runs that missed their flow's `sla:`, by flow (from the state store)",
            ),
            &["flow"],
        )
        .unwrap(),
        registry,
    };
    for c in m.collectors() {
        m.registry
            .register(c)
            .expect("metric names are unique constants");
    }
    m
}

impl Metrics {
    /// Every metric, for registration (and for the test that keeps `NAMES` honest).
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.flow_runs.clone()),
            Box::new(self.task_runs.clone()),
            Box::new(self.task_duration.clone()),
            Box::new(self.rows_written.clone()),
            Box::new(self.dlq_events.clone()),
            Box::new(self.quality_checks.clone()),
            Box::new(self.consumer_lag.clone()),
            Box::new(self.events_ingested.clone()),
            Box::new(self.ingest_batch_duration.clone()),
            Box::new(self.end_to_end_latency.clone()),
            Box::new(self.scheduler_heartbeat.clone()),
            Box::new(self.schedule_fires.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.next_fire.clone()),
            Box::new(self.sla_missed.clone()),
        ]
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(build)
}

/// Refreshes the store-derived gauges and renders the text exposition format.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let m = get();
    m.flow_runs.reset();
    for (flow, state, n) in store.run_counts().await? {
        m.flow_runs.with_label_values(&[&flow, &state]).set(n);
    }
    m.sla_missed.reset();
    for (flow, n) in store.sla_missed_per_flow().await? {
        m.sla_missed.with_label_values(&[&flow]).set(n);
    }
    for s in store.schedules().await? {
        if let Some(next) = s.next_fire_at {
            m.next_fire
                .with_label_values(&[&s.flow])
                .set(next.timestamp() as f64);
        }
    }
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    Ok(String::from_utf8(buf).expect("exposition is UTF-8"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_list_every_registered_metric() {
        let m = super::build();
        let collectors = m.collectors();
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        names.sort();
        let mut want: Vec<String> = super::NAMES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want);
    }
}
