//! The run page's pictures: the DAG coloured by task state, and a Gantt chart of attempts.
//! Built with maud, so task ids and errors are escaped like everything else.

use std::collections::HashMap;

use chrono::Utc;
use maud::{Markup, html};

use super::run_view::RunView;

pub fn state_colour(state: &str) -> &'static str {
    match state {
        "success" => "#2e9d5b",
        "failed" => "#d64545",
        "running" => "#2f7fd8",
        "queued" => "#8aa8d6",
        "up_for_retry" => "#e3a21a",
        "upstream_failed" => "#e07b39",
        "skipped" => "#b6b6b6",
        "cancelled" => "#7a6f8f",
        _ => "#d9dde3", // pending
    }
}

/// Runs with more tasks than this get no graph: thousands of boxes are neither readable nor
/// cheap to send (the task table pages through them instead).
pub const DAG_MAX_TASKS: usize = 300;

/// The run's DAG, each task coloured by state; `None` for runs over [`DAG_MAX_TASKS`].
pub fn dag(view: &RunView) -> Option<Markup> {
    let tasks = &view.tasks;
    if tasks.len() > DAG_MAX_TASKS {
        return None;
    }
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.task.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    // Layer = longest path from a root; tasks arrive in topological order.
    let mut layer = vec![0usize; tasks.len()];
    for i in 0..tasks.len() {
        for &j in &deps[i] {
            layer[i] = layer[i].max(layer[j] + 1);
        }
    }
    let mut row = vec![0usize; tasks.len()];
    let mut per_layer = vec![0usize; layer.iter().max().map_or(1, |m| m + 1)];
    for i in 0..tasks.len() {
        row[i] = per_layer[layer[i]];
        per_layer[layer[i]] += 1;
    }
    let (w, h, gx, gy) = (150.0, 38.0, 200.0, 56.0);
    let pos = |i: usize| (20.0 + layer[i] as f64 * gx, 20.0 + row[i] as f64 * gy);
    let width = 40.0 + per_layer.len() as f64 * gx;
    let height = 40.0 + per_layer.iter().max().copied().unwrap_or(1) as f64 * gy;
    Some(html! {
        svg class="dag" xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="task graph" {
            @for (i, ds) in deps.iter().enumerate() {
                @for &j in ds {
                    @let (x1, y1) = pos(j);
                    @let (x2, y2) = pos(i);
                    path class="edge" d=(format!("M{} {} C{} {} {} {} {} {}", x1 + w, y1 + h / 2.0, x1 + w + 30.0, y1 + h / 2.0, x2 - 30.0, y2 + h / 2.0, x2, y2 + h / 2.0)) fill="none" stroke="#9aa3ad" stroke-width="1.5" {}
                }
            }
            @for (i, t) in tasks.iter().enumerate() {
                @let (x, y) = pos(i);
                @let state = t.state_or_pending();
                g class="node" data-task=(t.task) data-state=(state) {
                    title { (t.task) ": " (state) }
                    rect x=(x) y=(y) width=(w) height=(h) rx="6" fill=(state_colour(state)) {}
                    text x=(x + 10.0) y=(y + 16.0) fill="#fff" font-size="12" font-weight="600" { (truncate(&t.task, 20)) }
                    text x=(x + 10.0) y=(y + 30.0) fill="#fff" font-size="10" { (state) }
                }
            }
        }
    })
}

/// One row per selected task (indices into `view.tasks`), one bar per attempt that started,
/// on the time axis of the whole run.
pub fn gantt(view: &RunView, rows: &[usize]) -> Markup {
    let Some(start) = view.attempts.iter().filter_map(|a| a.started_at).min() else {
        return html! { p class="muted" { "No attempt has started yet." } };
    };
    let now = Utc::now();
    let end = view
        .attempts
        .iter()
        .filter_map(|a| a.ended_at.or(a.started_at.map(|_| now)))
        .max()
        .unwrap_or(now)
        .max(start + chrono::Duration::milliseconds(1));
    let span_ms = (end - start).num_milliseconds().max(1) as f64;
    let (label_w, plot_w, row_h) = (160.0, 640.0, 22.0);
    let height = 30.0 + rows.len() as f64 * row_h;
    html! {
        svg class="gantt" xmlns="http://www.w3.org/2000/svg" width=(label_w + plot_w + 20.0) height=(height) role="img" aria-label="attempt timeline" {
            @for (r, &i) in rows.iter().enumerate() {
                @let id = view.tasks[i].task.as_str();
                @let y = 10.0 + r as f64 * row_h;
                text x="4" y=(y + 14.0) font-size="11" fill="#333" { (truncate(id, 22)) }
                @for a in view.attempts_of(i) {
                    @if let Some(s) = a.started_at {
                        @let e = a.ended_at.unwrap_or(now);
                        @let x = label_w + (s - start).num_milliseconds() as f64 / span_ms * plot_w;
                        @let bw = ((e - s).num_milliseconds() as f64 / span_ms * plot_w).max(2.0);
                        @let state = a.state.as_str();
                        rect x=(x) y=(y + 3.0) width=(bw) height=(row_h - 6.0) rx="3" fill=(state_colour(state)) {
                            title { (id) " attempt " (a.attempt) ": " (state) ", " ((e - s).num_milliseconds()) " ms" }
                        }
                    }
                }
            }
            text x=(label_w) y=(height - 4.0) font-size="10" fill="#666" { "0" }
            text x=(label_w + plot_w - 60.0) y=(height - 4.0) font-size="10" fill="#666" { (format!("{:.2}s", span_ms / 1000.0)) }
        }
    }
}

/// `s` cut to `n` characters, the last one an ellipsis when anything was cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

/// One bar of a stacked bar chart: its label and its parts (category, count).
pub struct Stack {
    pub label: String,
    pub parts: Vec<(String, i64)>,
}

/// Stacked bars, oldest left, each part coloured by `colour(category)`, with a legend.
pub fn stacked_bars(id: &str, bars: &[Stack], colour: &dyn Fn(&str) -> &'static str) -> Markup {
    let (w, h) = (800.0, 140.0);
    let max = bars
        .iter()
        .map(|b| b.parts.iter().map(|(_, n)| *n).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bar = (w / bars.len().max(1) as f64).min(40.0);
    let mut categories: Vec<&str> = bars
        .iter()
        .flat_map(|b| b.parts.iter().map(|(c, _)| c.as_str()))
        .collect();
    categories.sort_unstable();
    categories.dedup();
    html! {
        svg id=(id) width=(w) height=(h + 34.0) viewBox=(format!("0 0 {w} {}", h + 34.0)) role="img" {
            @for (i, b) in bars.iter().enumerate() {
                @let mut top = h;
                @for (cat, n) in &b.parts {
                    @let ph = *n as f64 / max * h;
                    @let y = { top -= ph; top };
                    rect data-bar=(b.label) data-part=(cat) x=(format!("{:.1}", i as f64 * bar)) y=(format!("{y:.1}")) width=(format!("{:.1}", (bar - 2.0).max(1.0))) height=(format!("{ph:.1}")) fill=(colour(cat)) {
                        title { (b.label) ": " (n) " " (cat) }
                    }
                }
            }
            text x="0" y=(h + 14.0) font-size="11" fill="#666" {
                (bars.first().map(|b| b.label.as_str()).unwrap_or("")) " … " (bars.last().map(|b| b.label.as_str()).unwrap_or("")) "; highest bar " (max)
            }
            @for (i, c) in categories.iter().enumerate() {
                rect x=(i as f64 * 130.0) y=(h + 22.0) width="10" height="10" fill=(colour(c)) {}
                text x=(i as f64 * 130.0 + 14.0) y=(h + 31.0) font-size="11" { (c) }
            }
        }
    }
}

/// A stable colour per DLQ category (or any label): a fixed palette by hash.
pub fn category_colour(category: &str) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#d64545", "#e3a21a", "#2f7fd8", "#7a6f8f", "#e07b39", "#2e9d5b", "#8aa8d6", "#b6b6b6",
    ];
    let h = category
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[h as usize % PALETTE.len()]
}
