//! One flow's page: its last runs' durations over time (a bar per run, coloured by state, so a
//! slowing pipeline or a streak of failures shows at a glance) and the runs themselves.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};

use super::svg::state_colour;
use super::ui::{badge, duration, page, when};
use super::{ApiError, AppState};
use crate::store::{RunFilter, RunRow};

/// Runs the chart and the list show.
const RUNS: u32 = 100;

pub async fn flow_page(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let flow = s.flow(&name).await?;
    let runs = s
        .engine
        .store()
        .list_runs(&RunFilter {
            flow: Some(flow.name.clone()),
            state: None,
            limit: RUNS,
            before_id: None,
        })
        .await?;
    Ok(page(&headers, "Flows", &flow.name, |_| {
        html! {
            h1 { "Flow " code { (flow.name) } }
            @if let Some(d) = &flow.description { p class="muted" { (d) } }
            h2 { "Run durations" }
            @if runs.is_empty() {
                div class="card muted" { "No runs yet." }
            } @else {
                div class="card" { (durations(&runs)) }
            }
            h2 { "Last runs" }
            table id="flow-runs" {
                thead { tr { th { "Run" } th { "State" } th { "Trigger" } th { "Created" } th { "Duration" } } }
                tbody {
                    @for r in &runs {
                        tr data-run=(r.id) {
                            td { a href=(format!("/runs/{}", r.id)) { "#" (r.id) } }
                            td { (badge(&r.state.to_string())) " " (r.state) }
                            td { (r.trigger_source) }
                            td { (when(Some(r.created_at))) }
                            td { (duration(r)) }
                        }
                    }
                }
            }
        }
    }))
}

/// How long a finished run took, start to end, for the chart.
fn seconds(r: &RunRow) -> Option<f64> {
    let end = r.ended_at?;
    let start = r.started_at.unwrap_or(r.created_at);
    Some(((end - start).num_milliseconds().max(0)) as f64 / 1000.0)
}

/// A bar per finished run, oldest on the left, height by duration.
fn durations(runs: &[RunRow]) -> Markup {
    let done: Vec<(&RunRow, f64)> = runs
        .iter()
        .rev()
        .filter_map(|r| Some((r, seconds(r)?)))
        .collect();
    let max = done
        .iter()
        .map(|(_, d)| *d)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let (w, h, bar) = (800.0, 160.0, (800.0 / done.len().max(1) as f64).min(24.0));
    html! {
        svg id="durations" width=(w) height=(h + 20.0) viewBox=(format!("0 0 {w} {}", h + 20.0)) role="img" aria-label="run durations" {
            @for (i, (r, d)) in done.iter().enumerate() {
                @let bh = (d / max * h).max(1.0);
                rect data-run=(r.id) x=(format!("{:.1}", i as f64 * bar)) y=(format!("{:.1}", h - bh)) width=(format!("{:.1}", (bar - 2.0).max(1.0))) height=(format!("{bh:.1}")) fill=(state_colour(&r.state.to_string())) {
                    title { "run " (r.id) ": " (r.state) ", " (format!("{d:.1}")) " s" }
                }
            }
            text x="0" y=(h + 15.0) font-size="11" fill="#666" { "longest: " (format!("{max:.1}")) " s; " (done.len()) " finished run(s)" }
        }
    }
}
