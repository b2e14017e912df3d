//! The run page: state, DAG, Gantt timeline, a page of tasks, quality results. Its live part
//! re-fetches itself (`?partial=1`, same page and filter) while the run is active.
//!
//! Bounded however big the run: the task table, the timeline and the live fragment show one
//! page of [`PAGE`] tasks (filterable by state), the graph is drawn up to
//! [`svg::DAG_MAX_TASKS`] tasks, and the rendering runs on the blocking pool, a few at a time
//! ([`AppState::heavy`]), so a burst of big pages cannot starve /healthz or the API.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::run_view::{RunData, RunView, Selection, TaskQuery};
use super::svg::{self, dag, gantt};
use super::ui::{badge, fragment, page, urlencode, when};
use super::{ApiError, AppState};
use crate::vocab::state::TaskState;

/// Tasks per page of the run page.
pub const PAGE: usize = 200;

/// Characters of an error shown in the task table (the API and the log have all of it): a
/// page of tasks that each failed with a long message stays small.
const ERROR_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPageQuery {
    partial: Option<u8>,
    #[serde(default)]
    offset: usize,
    task_state: Option<String>,
}

/// `?task_state=` as a state; empty means all.
pub fn task_state(s: Option<&str>) -> Result<Option<TaskState>, ApiError> {
    s.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<TaskState>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))
        })
        .transpose()
}

pub async fn run_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<RunPageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let query = TaskQuery {
        offset: q.offset,
        limit: PAGE,
        state: task_state(q.task_state.as_deref())?,
    };
    let data = RunData::load(s.engine.store(), id).await?;
    let registry = s.engine.registry().clone();
    s.heavy(move || {
        let view = RunView::build(data, &registry);
        let sel = view.select(&query);
        let live = run_live(&view, &sel, &query);
        if q.partial == Some(1) {
            return fragment(live);
        }
        let state = view.run.state.as_str();
        page(&headers, "Runs", &format!("Run {id}"), |csrf| {
            html! {
                h1 { "Run #" (id) " · " (view.run.flow) }
                div class="card" {
                    form class="inline" method="post" action=(format!("/ui/runs/{id}/retry")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" class="secondary" disabled[!matches!(state, "failed" | "cancelled")] { "Retry failed tasks" }
                    }
                    " "
                    form class="inline" method="post" action=(format!("/ui/runs/{id}/cancel")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" class="danger" disabled[matches!(state, "success" | "failed" | "cancelled")] { "Cancel" }
                    }
                }
                (live)
                script { (PreEscaped("live('run-live', 1500);")) }
            }
        })
    })
    .await
}

/// The part of the page that refreshes while the run is active.
fn run_live(view: &RunView, sel: &Selection, q: &TaskQuery) -> Markup {
    let run = &view.run;
    let id = run.id;
    let state = run.state.as_str();
    let href = |offset: usize, st: Option<&str>| {
        let mut h = format!("/runs/{id}?offset={offset}");
        if let Some(st) = st {
            h.push_str("&task_state=");
            h.push_str(st);
        }
        h
    };
    let filter = q.state.map(TaskState::as_str);
    html! {
        div id="run-live" data-live=(if run.state.is_terminal() { "0" } else { "1" }) data-state=(state) {
            div class="card kv" {
                span class="muted" { "State" } span id="run-state" { (badge(state)) }
                span class="muted" { "Trigger" } span { (run.trigger_source) }
                span class="muted" { "Created" } span { (when(Some(run.created_at))) }
                span class="muted" { "Started" } span { (when(run.started_at)) }
                span class="muted" { "Ended" } span { (when(run.ended_at)) }
                span class="muted" { "Round" } span { (run.round) }
                @if !run.params.is_empty() {
                    span class="muted" { "Params" }
                    span { @for (k, v) in &run.params { code { (k) "=" (v) } " " } }
                }
                @if let Some(e) = &run.error {
                    span class="muted" { "Note" } span class="err" { (svg::truncate(e, 4 * ERROR_CHARS)) }
                }
            }
            h2 { "Graph" }
            div class="card" {
                @match dag(view) {
                    Some(svg) => (svg),
                    None => p class="muted" { "The graph is drawn for runs of up to " (svg::DAG_MAX_TASKS) " tasks; this one has " (view.tasks.len()) "." },
                }
            }
            h2 { "Timeline" }
            div class="card" { (gantt(view, &sel.tasks)) }
            h2 { "Tasks" }
            div class="filters" id="task-states" {
                a href=(href(0, None)) class=(if filter.is_none() { "active" } else { "" }) { "all " (view.tasks.len()) }
                @for (st, n) in view.state_counts() {
                    " · "
                    a href=(href(0, Some(st))) data-state=(st) class=(if filter == Some(st) { "active" } else { "" }) { (st) " " (n) }
                }
            }
            table id="tasks" {
                thead { tr { th { "Task" } th { "Kind" } th { "State" } th { "Attempts" } th { "Error" } th { "Log" } } }
                tbody {
                    @for &i in &sel.tasks {
                        @let t = &view.tasks[i];
                        tr data-task=(t.task) {
                            td { (t.task) }
                            td class="muted" { (t.kind) }
                            td { (badge(t.state_or_pending())) }
                            td { (t.attempts) }
                            td class="err" { (svg::truncate(t.error.as_deref().unwrap_or(""), ERROR_CHARS)) }
                            td { a href=(format!("/runs/{id}/logs/{}", urlencode(&t.task))) { "log" } }
                        }
                    }
                }
            }
            @if sel.matching > sel.tasks.len() {
                div class="pager" id="task-pager" {
                    @if sel.offset > 0 {
                        a href=(href(sel.offset.saturating_sub(PAGE), filter)) { "← previous" } " · "
                    }
                    "tasks " (sel.offset.min(sel.matching) + 1) "–" (sel.offset + sel.tasks.len()) " of " (sel.matching)
                    @if let Some(next) = sel.next_offset {
                        " · " a href=(href(next, filter)) rel="next" { "next →" }
                    }
                }
            }
            h2 { "Quality checks" }
            @if view.quality.is_empty() {
                div class="card muted" { "No quality results recorded for this run." }
            } @else {
                table id="quality" {
                    thead { tr { th { "Table" } th { "Version" } th { "Check" } th { "Observed" } th { "Threshold" } th { "Severity" } th { "Outcome" } } }
                    tbody {
                        @for q in &view.quality {
                            tr {
                                td { (q.table_name) }
                                td { (q.version.map(|v| v.to_string()).unwrap_or_else(|| "null".into())) }
                                td { (q.check_name) }
                                td { (q.observed.as_deref().unwrap_or("")) }
                                td { (q.threshold.as_deref().unwrap_or("")) }
                                td { (q.severity) }
                                td { (badge(match q.outcome.as_str() { "pass" => "success", "warn" => "up_for_retry", _ => "failed" })) " " (q.outcome) }
                            }
                        }
                    }
                }
            }
            h2 { "Notifications" }
            @if view.notifications.is_empty() {
                div class="card muted" { "No notifications sent for this run." }
            } @else {
                table id="notifications" {
                    thead { tr { th { "Event" } th { "Target" } th { "Attempt" } th { "At" } th { "Result" } } }
                    tbody {
                        @for n in &view.notifications {
                            tr {
                                td { (n.event) }
                                td { (n.target) }
                                td { (n.attempt) }
                                td { (n.at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (badge(if n.ok { "success" } else { "failed" })) " " (n.detail) }
                            }
                        }
                    }
                }
            }
        }
    }
}
