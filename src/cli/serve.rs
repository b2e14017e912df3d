//! `flowctl serve` (scheduler + web UI + API + metrics on one port) and `flowctl schedules`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::UsageError;
use super::flows::find_flow;
use super::output::{Table, print_json, time};
use crate::config::Config;
use crate::engine::Engine;
use crate::engine::scheduler::{ADOPT_EVERY, Scheduler};
use crate::flow::load_dir;
use crate::web::{AppState, DEFAULT_ADDR, parse_addr};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (loopback by default).
    #[arg(long, env = "FLOWCTL_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Serve the UI and API only: no cron fires, no adoption of orphaned runs.
    #[arg(long)]
    pub no_scheduler: bool,
}

pub async fn serve(cfg: &Config, engine: Engine, a: ServeArgs) -> anyhow::Result<u8> {
    let addr = parse_addr(&a.addr).map_err(UsageError)?;
    let (flows, errors) = load_dir(&cfg.flows_dir, engine.registry());
    for e in &errors {
        eprintln!("invalid flow (not scheduled): {e}");
    }
    let scheduler = if a.no_scheduler {
        None
    } else {
        let s = Scheduler::start(engine.clone(), flows).await?;
        let names: Vec<&str> = s.flows().map(|f| f.name.as_str()).collect();
        eprintln!(
            "scheduler: {} scheduled flow(s): {}",
            names.len(),
            names.join(", ")
        );
        let e = engine.clone();
        tokio::spawn(async move { adopt_loop(e).await });
        Some(s)
    };
    let token = cfg.api_token.clone();
    crate::web::warn_if_exposed("flowctl serve", addr, token.as_deref());
    let state = AppState::new(
        engine.clone(),
        cfg.flows_dir.clone(),
        cfg.home.clone(),
        token,
    )
    .allowing_hosts(cfg.allowed_hosts.clone());
    tokio::spawn(watch_state_db(engine.store().clone()));
    tokio::spawn(watch_lag(
        cfg.kafka.clone(),
        cfg.home.join("lake"),
        state.health.clone(),
    ));
    eprintln!("flowctl serving on http://{addr}");
    crate::web::serve(addr, state).await?;
    if let Some(s) = scheduler {
        s.shutdown().await;
    }
    Ok(0)
}

/// Checks every second that the state DB is still the file `serve` opened. The first time it is
/// not, the store closes itself (nothing more is written into a deleted file or a stranger's)
/// and this says so on stderr; /healthz answers 503 from then on.
async fn watch_state_db(store: crate::store::Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = store.check_file() {
            eprintln!("error: {e}");
            return;
        }
    }
}

/// How often `serve` measures consumer lag (and so whether the broker answers).
const LAG_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Exports `flowctl_consumer_lag` for every topic with a bronze table, whether or not an
/// ingest runs, and records whether the broker answered (for /healthz).
async fn watch_lag(
    kafka: crate::kafka::KafkaSettings,
    lake: std::path::PathBuf,
    health: std::sync::Arc<crate::web::health::Health>,
) {
    use crate::web::health::BrokerSeen;
    let mut tick = tokio::time::interval(LAG_EVERY);
    loop {
        tick.tick().await;
        let seen = match crate::ingest::lag::measure(&kafka, &lake).await {
            Ok(lags) => {
                let m = crate::metrics::get();
                for l in &lags {
                    m.consumer_lag
                        .with_label_values(&[l.topic.as_str(), &l.partition.to_string()])
                        .set(l.lag);
                }
                BrokerSeen {
                    reachable: true,
                    at: chrono::Utc::now(),
                    detail: None,
                }
            }
            Err(e) => BrokerSeen {
                reachable: false,
                at: chrono::Utc::now(),
                detail: Some(e.to_string()),
            },
        };
        health.broker_seen(seen);
    }
}

/// Recovers runs of dead processes and executes runs nobody owns; beats the scheduler heartbeat.
async fn adopt_loop(engine: Engine) {
    let mut tick = tokio::time::interval(ADOPT_EVERY);
    loop {
        tick.tick().await;
        crate::metrics::get()
            .scheduler_heartbeat
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        if let Err(e) = engine.recover().await {
            tracing::error!(error = %e, "recovery failed");
        }
        match engine.store().unowned_queued_runs(100).await {
            Ok(ids) => ids.into_iter().for_each(|id| engine.adopt(id)),
            Err(e) => tracing::error!(error = %e, "cannot list runs to adopt"),
        }
        engine.check_slas().await;
    }
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// Scheduled flows with their last and next fire times.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop firing a flow on its schedule.
    Pause { flow: String },
    /// Resume firing; windows missed while paused are skipped.
    Unpause { flow: String },
}

pub async fn schedules(cfg: &Config, engine: &Engine, cmd: SchedulesCmd) -> anyhow::Result<u8> {
    match cmd {
        SchedulesCmd::List { json } => {
            let (flows, _) = load_dir(&cfg.flows_dir, engine.registry());
            let rows = engine.store().schedules().await?;
            let now = chrono::Utc::now();
            let list: Vec<_> = flows
                .iter()
                .filter_map(|f| {
                    let s = f.schedule.as_ref()?;
                    let row = rows.iter().find(|r| r.flow == f.name);
                    let next = s.next_after(now);
                    Some(json!({
                        "flow": f.name,
                        "schedule": s.expr(),
                        "catchup": f.catchup,
                        "paused": row.is_some_and(|r| r.paused),
                        "last_fire_at": row.and_then(|r| r.last_fire_at),
                        "next_fire_at": next,
                    }))
                })
                .collect();
            if json {
                print_json(&json!({"schedules": list}));
            } else {
                let mut t = Table::new(&[
                    "FLOW",
                    "SCHEDULE",
                    "PAUSED",
                    "CATCHUP",
                    "LAST FIRE",
                    "NEXT FIRE (UTC)",
                ]);
                for s in &list {
                    let ts = |v: &serde_json::Value| {
                        time(
                            v.as_str()
                                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                                .map(|d| d.with_timezone(&chrono::Utc)),
                        )
                    };
                    t.row(vec![
                        s["flow"].as_str().unwrap_or("").into(),
                        s["schedule"].as_str().unwrap_or("").into(),
                        s["paused"].to_string(),
                        s["catchup"].to_string(),
                        ts(&s["last_fire_at"]),
                        ts(&s["next_fire_at"]),
                    ]);
                }
                t.print();
            }
            Ok(0)
        }
        SchedulesCmd::Pause { flow } => set(cfg, engine, &flow, true).await,
        SchedulesCmd::Unpause { flow } => set(cfg, engine, &flow, false).await,
    }
}

async fn set(cfg: &Config, engine: &Engine, name: &str, paused: bool) -> anyhow::Result<u8> {
    let flow = find_flow(cfg, engine.registry(), name)?;
    if flow.schedule.is_none() {
        return Err(UsageError(format!("flow `{name}` has no schedule")).into());
    }
    Scheduler::set_paused(engine, &flow, paused).await?;
    println!("{name} {}", if paused { "paused" } else { "unpaused" });
    Ok(0)
}
