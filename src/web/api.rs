//! The JSON API. Reads go through the store; actions go through the engine.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::require_bearer;
use super::run_view::{RunData, RunView, TaskQuery};
use super::{ApiError, AppState};
use crate::engine::scheduler::Scheduler;
use crate::store::{RunFilter, Submitted};
use crate::vocab::state::RunState;

pub type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    crate::metrics::get()
        .http_requests
        .with_label_values(&["api", "200"])
        .inc();
    Ok(Json(v).into_response())
}

fn path_id(p: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad run id: {e}")))
}

pub async fn flows(State(s): State<AppState>) -> ApiResult {
    let (flows, errors) = s.flows().await?;
    let store = s.engine.store();
    let schedules = store.schedules().await?;
    let mut out = Vec::new();
    for f in &flows {
        let sched = schedules.iter().find(|r| r.flow == f.name);
        let recent = store
            .list_runs(&RunFilter {
                flow: Some(f.name.clone()),
                limit: 10,
                ..Default::default()
            })
            .await?;
        out.push(json!({
            "name": f.name,
            "description": f.description,
            "schedule": f.schedule.as_ref().map(|s| s.expr()),
            "catchup": f.catchup,
            "paused": sched.is_some_and(|r| r.paused),
            "next_fire_at": sched.and_then(|r| r.next_fire_at)
                .or_else(|| f.schedule.as_ref().and_then(|s| s.next_after(chrono::Utc::now()))),
            "last_fire_at": sched.and_then(|r| r.last_fire_at),
            "max_active_runs": f.max_active_runs,
            "params": f.params,
            "tasks": f.tasks.iter().map(|t| &t.id).collect::<Vec<_>>(),
            "recent_runs": recent.iter().map(|r| json!({"id": r.id, "state": r.state.as_str()})).collect::<Vec<_>>(),
        }));
    }
    ok(json!({"flows": out, "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
}

pub async fn trigger(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<TriggerBody>, JsonRejection>,
) -> ApiResult {
    require_bearer(&s, &headers)?;
    let flow = s.flow(&name).await?;
    let body = match body {
        Ok(Json(b)) => b,
        // An empty body means "no params".
        Err(JsonRejection::MissingJsonContentType(_))
            if headers.get(header::CONTENT_LENGTH).is_none_or(|v| v == "0") =>
        {
            TriggerBody {
                params: BTreeMap::new(),
                idempotency_key: None,
            }
        }
        Err(e) => return Err(body_rejection(e)),
    };
    let submitted = s
        .engine
        .submit(&flow, &body.params, "api", body.idempotency_key.as_deref())
        .await?;
    let created = matches!(submitted, Submitted::Created(_));
    if created {
        s.engine.adopt(submitted.run_id());
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"run_id": submitted.run_id(), "created": created, "flow": flow.name})),
    )
        .into_response())
}

/// A JSON body the extractor refused: 413 when over [`super::MAX_BODY`] (a chunked body
/// without a length gets this far), 415 without a JSON content type, 400 for anything the
/// body says wrong.
fn body_rejection(e: JsonRejection) -> ApiError {
    let status = match e.status() {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, format!("bad request body: {}", e.body_text()))
}

async fn set_paused(s: AppState, headers: HeaderMap, name: String, paused: bool) -> ApiResult {
    require_bearer(&s, &headers)?;
    let flow = s.flow(&name).await?;
    if flow.schedule.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("flow `{name}` has no schedule to pause"),
        ));
    }
    Scheduler::set_paused(&s.engine, &flow, paused)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    ok(json!({"flow": name, "paused": paused}))
}

pub async fn pause(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(s, headers, name, true).await
}

pub async fn unpause(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(s, headers, name, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    pub flow: Option<String>,
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

pub fn run_filter(q: &RunsQuery) -> Result<RunFilter, ApiError> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(st) => Some(
            st.parse::<RunState>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..=1000, found {limit}"),
        ));
    }
    Ok(RunFilter {
        flow: q.flow.clone().filter(|f| !f.is_empty()),
        state,
        limit,
        before_id: q.before,
    })
}

pub async fn runs(
    State(s): State<AppState>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = run_filter(&q)?;
    let rows = s.engine.store().list_runs(&filter).await?;
    let next = (rows.len() as u32 == filter.limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    ok(json!({"runs": rows, "next_before": next}))
}

/// Tasks per page of `GET /api/runs/{id}`, by default and at most.
pub const RUN_TASKS_MAX: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
    /// Only tasks whose latest attempt is in this state (`pending`: no attempt yet).
    pub task_state: Option<String>,
}

/// Run, a page of its tasks (latest attempt each, in DAG order, with upstreams) and their
/// attempts, quality results; `next_offset` pages on.
pub async fn run(
    State(s): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> ApiResult {
    let id = path_id(id)?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(RUN_TASKS_MAX);
    if limit == 0 || limit > RUN_TASKS_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={RUN_TASKS_MAX}, found {limit}"),
        ));
    }
    let query = TaskQuery {
        offset: q.offset,
        limit,
        state: super::run_page::task_state(q.task_state.as_deref())?,
    };
    let data = RunData::load(s.engine.store(), id).await?;
    let registry = s.engine.registry().clone();
    // Building and serialising thousands of tasks is CPU work: off the async workers.
    let body = s
        .heavy(move || {
            let view = RunView::build(data, &registry);
            serde_json::to_vec(&view.to_json(&view.select(&query)))
        })
        .await?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    crate::metrics::get()
        .http_requests
        .with_label_values(&["api", "200"])
        .inc();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Log lines per `GET /api/runs/{id}/logs`, by default and at most.
pub const LOG_LINES_MAX: u32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub task: Option<String>,
    #[serde(default)]
    pub after: i64,
    pub limit: Option<u32>,
}

pub async fn logs(
    State(s): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult {
    let id = path_id(id)?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(LOG_LINES_MAX);
    if limit == 0 || limit > LOG_LINES_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1..={LOG_LINES_MAX}, found {limit}"),
        ));
    }
    let store = s.engine.store();
    let run = store.get_run(id).await?;
    let lines = store.logs(id, q.task.as_deref(), q.after, limit).await?;
    let next = lines.last().map(|(i, _)| *i).unwrap_or(q.after);
    ok(json!({
        "run_state": run.state.as_str(),
        "next_after": next,
        "lines": lines.into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
    }))
}

pub async fn retry(
    State(s): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult {
    require_bearer(&s, &headers)?;
    let id = path_id(id)?;
    start_retry(&s, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": id, "retrying": true})),
    )
        .into_response())
}

/// Validates a retry synchronously (so the caller gets 404/409 at once), then runs it in the
/// background.
pub async fn start_retry(s: &AppState, id: i64) -> Result<(), ApiError> {
    let run = s.engine.store().get_run(id).await?;
    match run.state {
        RunState::Success => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("run {id} succeeded; nothing to retry"),
            ));
        }
        RunState::Queued | RunState::Running if run.owner.is_some() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("run {id} is still {}", run.state),
            ));
        }
        _ => {}
    }
    let engine = s.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.retry(id).await {
            tracing::error!(run = id, error = %e, "retry failed");
        }
    });
    Ok(())
}

pub async fn cancel(
    State(s): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult {
    require_bearer(&s, &headers)?;
    let id = path_id(id)?;
    let state = s.engine.cancel(id, Duration::from_secs(5)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": id, "state": state.as_str()})),
    )
        .into_response())
}

pub async fn tables(State(s): State<AppState>) -> ApiResult {
    let lake = s.home.join("lake");
    let tables = s.heavy(move || super::list_tables(&lake)).await?;
    ok(json!({"tables": tables}))
}

/// What is wrong, if anything: the state DB, the scheduler heartbeat, the broker as the lag
/// watcher last saw it, the last run of each flow (see `web::health` for the status rules).
pub async fn healthz(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let store = s.engine.store();
    let mut problems: Vec<String> = Vec::new();
    let db = match store.check_file() {
        Ok(()) => store
            .count_runs(None, Some(RunState::Running))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    let db_json = match &db {
        Ok(()) => json!({"ok": true}),
        Err(e) => {
            problems.push(format!("state DB: {e}"));
            json!({"ok": false, "error": e.to_string()})
        }
    };
    let beat = crate::metrics::get().scheduler_heartbeat.get();
    let scheduler = if beat <= 0.0 {
        json!({"running": false})
    } else {
        let age = (Utc::now().timestamp_millis() as f64 / 1000.0 - beat).max(0.0);
        if age > super::health::STALE_AFTER.as_secs_f64() {
            problems.push(format!("scheduler heartbeat is {age:.0}s old"));
        }
        json!({"running": true, "heartbeat_age_seconds": (age * 10.0).round() / 10.0})
    };
    let broker = match s.health.broker() {
        None => json!({"checked": false}),
        Some(b) => {
            if !b.reachable
                && q.get("require")
                    .is_some_and(|r| r.split(',').any(|x| x == "broker"))
            {
                problems.push(format!(
                    "broker unreachable: {}",
                    b.detail.clone().unwrap_or_default()
                ));
            }
            json!({"checked": true, "reachable": b.reachable, "checked_at": b.at, "error": b.detail})
        }
    };
    let flows: Value = match db {
        Ok(()) => match store.last_run_per_flow().await {
            Ok(runs) => runs
                .iter()
                .map(|r| {
                    (
                        r.flow.clone(),
                        json!({"run_id": r.id, "state": r.state.to_string(),
                               "created_at": r.created_at, "ended_at": r.ended_at}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Err(_) => Value::Null,
        },
        Err(_) => Value::Null,
    };
    let body = json!({
        "status": if problems.is_empty() { "ok" } else { "error" },
        "error": problems.first(),
        "problems": problems,
        "state_db": db_json,
        "scheduler": scheduler,
        "broker": broker,
        "last_runs": flows,
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn metrics(State(s): State<AppState>) -> ApiResult {
    let text = crate::metrics::render(s.engine.store()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}
