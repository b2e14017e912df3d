//! `flowctl serve`'s HTTP side: server-rendered UI, JSON API, /metrics, /healthz, on one port.
//!
//! The web layer reads through the store and asks the engine to act; it never writes SQL.

mod api;
mod auth;
mod flow_page;
mod guard;
pub mod health;
mod lake_tables;
mod listener;
mod run_page;
mod run_view;
mod svg;
mod table_page;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::flow::{Flow, load_dir};
use crate::store::Store;
use crate::vocab::SourceErrors;

pub use guard::Hosts;
pub use lake_tables::{TableInfo, list_tables};
pub use listener::Bounded;

/// The largest request body any route takes (the registry's schemas included); a bigger one
/// is refused with 413 before it is read.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Expensive renders (a run page of thousands of tasks, the lake's tables) running at once;
/// the others wait, so a burst of them cannot take every core from /healthz and the API.
const HEAVY_AT_ONCE: usize = 2;

/// How long an expensive render waits for its turn before the request gets 503.
const HEAVY_WAIT: Duration = Duration::from_secs(30);

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub flows_dir: PathBuf,
    pub home: PathBuf,
    /// `FLOWCTL_API_TOKEN`: when set, every mutating call needs it.
    pub token: Option<Arc<str>>,
    /// The `Host` names this server answers to.
    pub hosts: Arc<Hosts>,
    allowed_hosts: Vec<String>,
    heavy: Arc<Semaphore>,
    /// What `serve`'s watchers last saw, for `/healthz`.
    pub health: Arc<health::Health>,
}

impl AppState {
    /// A state answering to any `Host`; see [`AppState::listening_on`].
    pub fn new(
        engine: Engine,
        flows_dir: PathBuf,
        home: PathBuf,
        token: Option<Arc<str>>,
    ) -> AppState {
        AppState {
            engine,
            flows_dir,
            home,
            token,
            hosts: Arc::new(Hosts::Any),
            allowed_hosts: Vec::new(),
            heavy: Arc::new(Semaphore::new(HEAVY_AT_ONCE)),
            health: Arc::default(),
        }
    }

    /// Also answers to these `Host` names on loopback (`FLOWCTL_ALLOWED_HOSTS`).
    pub fn allowing_hosts(mut self, names: Vec<String>) -> AppState {
        self.allowed_hosts = names;
        self
    }

    /// Answers only to the names a listener on `addr` has (loopback names on loopback, and the
    /// allowed ones).
    pub fn listening_on(mut self, addr: SocketAddr) -> AppState {
        self.hosts = Arc::new(Hosts::for_listener(addr, &self.allowed_hosts));
        self
    }

    /// Flows are re-read per request so the UI shows the files as they are now. Reading and
    /// validating them is file I/O and CPU, so it runs on the blocking pool.
    pub async fn flows(&self) -> Result<(Vec<Flow>, SourceErrors), ApiError> {
        let (dir, registry) = (self.flows_dir.clone(), self.engine.registry().clone());
        tokio::task::spawn_blocking(move || {
            let (flows, errors) = load_dir(&dir, &registry);
            (flows, SourceErrors(errors))
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading flows: {e}"),
            )
        })
    }

    pub async fn flow(&self, name: &str) -> Result<Flow, ApiError> {
        self.flows()
            .await?
            .0
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no flow named `{name}`")))
    }

    /// Runs an expensive render on the blocking pool, at most [`HEAVY_AT_ONCE`] at a time: the
    /// async workers stay free for /healthz, the API and the engine however many big pages are
    /// asked for at once. Waits [`HEAVY_WAIT`] for a turn, then answers 503.
    pub async fn heavy<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(HEAVY_WAIT, self.heavy.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is busy rendering other large pages; try again shortly",
                )
            })?
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _turn = permit;
            work()
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("render failed: {e}"),
            )
        })
    }
}

/// Builds the whole application: UI, API, metrics, health, and the Confluent-compatible schema
/// registry (`/subjects`, `/schemas`, `/config`, `/compatibility`) on the same port. Each group
/// of routes sits behind its [`guard`]: Host, body size, cross-site and media-type checks.
pub fn router(state: AppState) -> Router {
    let store = state.engine.store().clone();
    let guarded = |routes| {
        axum::middleware::from_fn_with_state(
            guard::Guard {
                routes,
                hosts: state.hosts.clone(),
                store: store.clone(),
            },
            guard::check,
        )
    };
    let registry = guard_registry(
        crate::contracts::registry::registry_router(store.clone()),
        store.clone(),
        state.token.clone(),
        state.hosts.clone(),
    );
    let ui = Router::new()
        .route("/", get(ui::index))
        .route("/runs", get(ui::runs_page))
        .route("/runs/{id}", get(run_page::run_page))
        .route("/runs/{id}/logs/{task}", get(ui::log_page))
        .route("/flows", get(ui::flows_page))
        .route("/flows/{name}", get(flow_page::flow_page))
        .route("/tables", get(ui::tables_page))
        .route("/tables/{name}", get(table_page::table_page))
        .route("/login", get(ui::login_page).post(ui::login_submit))
        .route("/ui/flows/{name}/trigger", post(ui::trigger_submit))
        .route("/ui/flows/{name}/pause", post(ui::pause_submit))
        .route("/ui/flows/{name}/unpause", post(ui::unpause_submit))
        .route("/ui/runs/{id}/retry", post(ui::retry_submit))
        .route("/ui/runs/{id}/cancel", post(ui::cancel_submit))
        .layer(guarded(guard::Routes::Forms));
    let api = Router::new()
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
        .layer(guarded(guard::Routes::Api));
    Router::new()
        .merge(ui)
        .merge(api)
        .fallback(api::not_found)
        .with_state(state)
        .merge(registry)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The registry's guard, used by `serve` and `registry serve` alike: the request checks of
/// [`guard`] in the registry's error format, and, with `FLOWCTL_API_TOKEN` set, the bearer
/// token on changes (POST/PUT/DELETE) — Confluent clients send it with
/// `bearer.auth.credentials.source=STATIC_TOKEN`; errors use the registry's own body shape
/// (`error_code` 40101).
pub fn guard_registry(
    router: Router,
    store: Store,
    token: Option<Arc<str>>,
    hosts: Arc<Hosts>,
) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(token, registry_auth))
        .layer(axum::middleware::from_fn_with_state(
            guard::Guard {
                routes: guard::Routes::Registry,
                hosts,
                store,
            },
            guard::check,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

/// Says loudly on stderr when `what` listens beyond this machine with nobody asked for a
/// token: anyone who can reach the address may then trigger, cancel and reconfigure.
pub fn warn_if_exposed(what: &str, addr: SocketAddr, token: Option<&str>) {
    if let Some(text) = exposure_warning(what, addr, token) {
        eprintln!("{text}");
    }
}

fn exposure_warning(what: &str, addr: SocketAddr, token: Option<&str>) -> Option<String> {
    if addr.ip().is_loopback() || token.is_some() {
        return None;
    }
    let bar = "!".repeat(78);
    Some(format!(
        "{bar}\n!! WARNING: {what} listens on {addr}, beyond this machine, and FLOWCTL_API_TOKEN \
         is not set.\n!! Anyone who can reach this address can trigger, retry and cancel runs, \
         pause\n!! schedules and change the schema registry. Set FLOWCTL_API_TOKEN, or listen on \
         127.0.0.1.\n{bar}"
    ))
}

/// Serves `router` until Ctrl-C / SIGTERM, on a [`Bounded`] listener.
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(Bounded::new(listener), router(state.listening_on(addr)))
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
            crate::store::StoreError::FileGone(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_loopback_listener_without_a_token_is_warned_about() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let w = exposure_warning("flowctl serve", public, None).unwrap();
        assert!(
            w.contains("WARNING") && w.contains("0.0.0.0:8080") && w.contains("FLOWCTL_API_TOKEN"),
            "{w}"
        );
        assert!(exposure_warning("flowctl serve", public, Some("t")).is_none());
        for lo in ["127.0.0.1:8080", "[::1]:8080"] {
            assert!(exposure_warning("x", lo.parse().unwrap(), None).is_none());
        }
    }
}
