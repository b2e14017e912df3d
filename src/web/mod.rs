//! `flowctl serve`'s HTTP side: server-rendered UI, JSON API, /metrics, /healthz, on one port.
//!
//! The web layer reads through the store and asks the engine to act; it never writes SQL.

mod api;
mod auth;
mod lake_tables;
mod svg;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;
use crate::flow::{Flow, load_dir};
use crate::vocab::SourceErrors;

pub use lake_tables::{TableInfo, list_tables};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub flows_dir: PathBuf,
    pub home: PathBuf,
    /// `FLOWCTL_API_TOKEN`: when set, every mutating call needs it.
    pub token: Option<Arc<str>>,
}

impl AppState {
    /// Flows are re-read per request so the UI shows the files as they are now.
    pub fn flows(&self) -> (Vec<Flow>, SourceErrors) {
        let (flows, errors) = load_dir(&self.flows_dir, self.engine.registry());
        (flows, SourceErrors(errors))
    }

    pub fn flow(&self, name: &str) -> Result<Flow, ApiError> {
        self.flows()
            .0
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no flow named `{name}`")))
    }
}

/// Builds the whole application: UI, API, metrics, health, and the Confluent-compatible schema
/// registry (`/subjects`, `/schemas`, `/config`, `/compatibility`) on the same port.
pub fn router(state: AppState) -> Router {
    let registry = guard_registry(
        crate::contracts::registry::registry_router(state.engine.store().clone()),
        state.token.clone(),
    );
    Router::new()
        .route("/", get(ui::index))
        .route("/runs", get(ui::runs_page))
        .route("/runs/{id}", get(ui::run_page))
        .route("/runs/{id}/logs/{task}", get(ui::log_page))
        .route("/flows", get(ui::flows_page))
        .route("/tables", get(ui::tables_page))
        .route("/login", get(ui::login_page).post(ui::login_submit))
        .route("/ui/flows/{name}/trigger", post(ui::trigger_submit))
        .route("/ui/flows/{name}/pause", post(ui::pause_submit))
        .route("/ui/flows/{name}/unpause", post(ui::unpause_submit))
        .route("/ui/runs/{id}/retry", post(ui::retry_submit))
        .route("/ui/runs/{id}/cancel", post(ui::cancel_submit))
        .route("/api/flows", get(api::flows))
        .route("/api/flows/{name}/trigger", post(api::trigger))
        .route("/api/flows/{name}/pause", post(api::pause))
        .route("/api/flows/{name}/unpause", post(api::unpause))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/runs/{id}/logs", get(api::logs))
        .route("/api/runs/{id}/retry", post(api::retry))
        .route("/api/runs/{id}/cancel", post(api::cancel))
        .route("/api/tables", get(api::tables))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .with_state(state)
        .merge(registry)
}

/// With `FLOWCTL_API_TOKEN` set, registry changes (POST/PUT/DELETE) need the bearer token too —
/// Confluent clients send it with `bearer.auth.credentials.source=STATIC_TOKEN`. Errors use the
/// registry's own body shape (`error_code` 40101). Used by `serve` and `registry serve` alike.
pub fn guard_registry(router: Router, token: Option<Arc<str>>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(token, registry_auth))
}

async fn registry_auth(
    axum::extract::State(token): axum::extract::State<Option<Arc<str>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    match auth::check_bearer(token.as_deref(), req.headers()) {
        Err(e) if !reads => (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/vnd.schemaregistry.v1+json",
            )],
            serde_json::json!({"error_code": 40101, "message": e.message}).to_string(),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// `FLOWCTL_API_TOKEN`, when set and non-empty.
pub fn api_token() -> Option<Arc<str>> {
    std::env::var("FLOWCTL_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Arc::from)
}

/// Serves `router` until Ctrl-C / SIGTERM.
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A JSON error: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::get()
            .http_requests
            .with_label_values(&["error", self.status.as_str()])
            .inc();
        (
            self.status,
            axum::Json(serde_json::json!({"error": self.message, "status": self.status.as_u16()})),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::RunNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            crate::store::StoreError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::Store(s) => s.into(),
            E::Params(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// The address `serve` listens on by default (loopback only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|e| format!("bad listen address `{s}`: {e} (expected e.g. 127.0.0.1:8080)"))
}
