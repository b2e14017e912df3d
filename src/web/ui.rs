//! Server-rendered pages (maud escapes everything interpolated). Live parts re-fetch their own
//! fragment (`?partial=1`) while a run is active, so nothing reloads the whole page.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::api::{RunsQuery, run_filter, start_retry};
use super::auth::{SESSION_COOKIE, csrf_token, require_form};
use super::svg::state_colour;
use super::{ApiError, AppState};
use crate::engine::scheduler::Scheduler;
use crate::store::{RunFilter, RunRow, Submitted};
use crate::vocab::format_duration;
use crate::vocab::state::RunState;

const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2933;background:#f5f7fa}
header{background:#1f2933;color:#fff;display:flex;align-items:center;gap:24px;padding:0 24px;height:52px}
header .brand{font-weight:700;font-size:17px;letter-spacing:.3px}header a{color:#cbd2d9;text-decoration:none;font-weight:500}
header a.active,header a:hover{color:#fff}main{padding:24px;max-width:1280px;margin:0 auto}
h1{font-size:22px;margin:0 0 16px}h2{font-size:16px;margin:28px 0 10px}
table{width:100%;border-collapse:collapse;background:#fff;border-radius:8px;overflow:hidden;box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{text-align:left;padding:8px 12px;border-bottom:1px solid #e4e7eb;vertical-align:top}th{background:#f0f3f6;font-weight:600;font-size:12px;text-transform:uppercase;color:#52606d}
tr:last-child td{border-bottom:0}a{color:#2f6fbd}.muted{color:#7b8794}.err{color:#b42318;max-width:420px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.06);padding:16px;margin-bottom:16px;overflow-x:auto}
.filters{display:flex;gap:8px;align-items:center;margin-bottom:12px}select,input{padding:5px 8px;border:1px solid #cbd2d9;border-radius:6px;font:inherit}
button{padding:5px 12px;border:0;border-radius:6px;background:#2f6fbd;color:#fff;font:inherit;font-weight:600;cursor:pointer}button.secondary{background:#7b8794}button:disabled{opacity:.35;cursor:default}button.danger{background:#d64545}
.kv{display:grid;grid-template-columns:140px 1fr;gap:4px 16px}.dots span{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:3px}
pre.log{background:#111827;color:#e5e7eb;padding:12px;border-radius:8px;overflow:auto;max-height:70vh;font:12px/1.5 ui-monospace,Menlo,monospace}
.pager{margin-top:12px}.inline{display:inline}form.trigger{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
"#;

const LIVE_JS: &str = r#"
function live(id, ms){setInterval(async()=>{const el=document.getElementById(id);if(!el||el.dataset.live!=='1')return;
const u=new URL(window.location.href);u.searchParams.set('partial','1');
try{const r=await fetch(u);if(r.ok){el.outerHTML=await r.text();}}catch(e){}},ms);}
"#;

pub(super) fn badge(state: &str) -> Markup {
    html! { span class="badge" data-state=(state) style=(format!("background:{}", state_colour(state))) { (state) } }
}

pub(super) fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn duration(r: &RunRow) -> String {
    match (r.started_at, r.ended_at) {
        (Some(s), Some(e)) => format_duration((e - s).to_std().unwrap_or_default()),
        (Some(s), None) => format!(
            "{}…",
            format_duration((chrono::Utc::now() - s).to_std().unwrap_or_default())
        ),
        _ => "-".into(),
    }
}

/// A full page; sets the CSRF cookie on first visit.
pub(super) fn page(
    headers: &HeaderMap,
    active: &str,
    title: &str,
    body: impl FnOnce(&str) -> Markup,
) -> Response {
    let (csrf, set) = csrf_token(headers);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · flowctl" }
                style { (PreEscaped(CSS)) }
                script { (PreEscaped(LIVE_JS)) }
            }
            body {
                header {
                    span class="brand" { "flowctl" }
                    @for (href, label) in [("/runs", "Runs"), ("/flows", "Flows"), ("/tables", "Tables")] {
                        a href=(href) class=(if label == active { "active" } else { "" }) { (label) }
                    }
                    a href="/metrics" { "Metrics" }
                }
                main { (body(&csrf)) }
            }
        }
    };
    let mut resp = markup.into_response();
    if let Some(cookie) = set {
        resp.headers_mut()
            .insert(header::SET_COOKIE, cookie.parse().expect("cookie header"));
    }
    resp
}

pub(super) fn fragment(m: Markup) -> Response {
    m.into_response()
}

pub async fn index() -> Redirect {
    Redirect::to("/runs")
}

#[derive(Debug, Deserialize)]
pub struct RunsPageQuery {
    flow: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    partial: Option<u8>,
}

pub async fn runs_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RunsPageQuery>,
) -> Result<Response, ApiError> {
    let filter = run_filter(&RunsQuery {
        flow: q.flow.clone(),
        state: q.state.clone(),
        limit: Some(50),
        before: q.before,
    })?;
    let rows = s.engine.store().list_runs(&filter).await?;
    let table = runs_table(&rows, &filter);
    if q.partial == Some(1) {
        return Ok(fragment(table));
    }
    let flows = s.flows().await?.0;
    Ok(page(&headers, "Runs", "Runs", |_| {
        html! {
            h1 { "Runs" }
            form class="filters" method="get" action="/runs" {
                select name="flow" aria-label="flow" {
                    option value="" { "all flows" }
                    @for f in &flows {
                        option value=(f.name) selected[q.flow.as_deref() == Some(f.name.as_str())] { (f.name) }
                    }
                }
                select name="state" aria-label="state" {
                    option value="" { "any state" }
                    @for st in RunState::ALL {
                        option value=(st.as_str()) selected[q.state.as_deref() == Some(st.as_str())] { (st.as_str()) }
                    }
                }
                button type="submit" { "Filter" }
            }
            (table)
            script { (PreEscaped("live('runs-live', 2000);")) }
        }
    }))
}

fn runs_table(rows: &[RunRow], filter: &RunFilter) -> Markup {
    let active = rows.iter().any(|r| !r.state.is_terminal());
    let next = (rows.len() as u32 == filter.limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    html! {
        div id="runs-live" data-live=(if active { "1" } else { "0" }) {
            @if rows.is_empty() {
                div class="card muted" { "No runs yet. Trigger one from the Flows page or with `flowctl trigger FLOW`." }
            } @else {
                table id="runs" {
                    thead { tr { th { "Run" } th { "Flow" } th { "State" } th { "Source" } th { "Created" } th { "Duration" } th { "Error" } } }
                    tbody {
                        @for r in rows {
                            tr data-run=(r.id) {
                                td { a href=(format!("/runs/{}", r.id)) { "#" (r.id) } }
                                td { (r.flow) }
                                td { (badge(r.state.as_str())) }
                                td class="muted" { (r.trigger_source) }
                                td { (when(Some(r.created_at))) }
                                td { (duration(r)) }
                                td class="err" { (super::svg::truncate(r.error.as_deref().unwrap_or(""), 500)) }
                            }
                        }
                    }
                }
                @if let Some(before) = next {
                    div class="pager" {
                        a href=(format!("/runs?before={before}{}{}",
                            filter.flow.as_ref().map(|f| format!("&flow={}", urlencode(f))).unwrap_or_default(),
                            filter.state.map(|s| format!("&state={}", s.as_str())).unwrap_or_default())) { "Older runs →" }
                    }
                }
            }
        }
    }
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Log lines per log page; the page links to the next one, and a live tail fetches the rest.
pub const LOG_PAGE: u32 = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPageQuery {
    #[serde(default)]
    after: i64,
}

pub async fn log_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, task)): Path<(i64, String)>,
    Query(q): Query<LogPageQuery>,
) -> Result<Response, ApiError> {
    let store = s.engine.store();
    let run = store.get_run(id).await?;
    let lines = store.logs(id, Some(&task), q.after, LOG_PAGE).await?;
    let last = lines.last().map(|(i, _)| *i).unwrap_or(q.after);
    let more = lines.len() == LOG_PAGE as usize;
    // Tail only from the last page: a page in the middle of a long log links on instead.
    let script = format!(
        "(function(){{let after={last};const pre=document.getElementById('log');const api='/api/runs/{id}/logs?task='+encodeURIComponent(pre.dataset.task);\
         async function tick(){{const r=await fetch(api+'&after='+after);if(!r.ok)return;const d=await r.json();\
         for(const l of d.lines){{pre.append(document.createTextNode(l.ts.substring(11,23)+' #'+l.attempt+' ['+l.stream+'] '+l.line+'\\n'));}}\
         after=d.next_after;if(d.run_state==='queued'||d.run_state==='running')setTimeout(tick,1000);}}\
         if({active})setTimeout(tick,1000);}})();",
        active = !run.state.is_terminal() && !more
    );
    Ok(page(&headers, "Runs", &format!("Log {task}"), |_| {
        html! {
            h1 { "Run " a href=(format!("/runs/{id}")) { "#" (id) } " · " (task) " log" }
            pre class="log" id="log" data-task=(task) {
                @for (_, l) in &lines {
                    (l.ts.format("%H:%M:%S%.3f")) " #" (l.attempt) " [" (l.stream) "] " (l.line) "\n"
                }
            }
            @if more {
                div class="pager" {
                    a href=(format!("/runs/{id}/logs/{}?after={last}", urlencode(&task))) rel="next" { "next " (LOG_PAGE) " lines →" }
                }
            }
            @if lines.is_empty() && q.after == 0 && run.state.is_terminal() { p class="muted" { "This task wrote no log lines." } }
            script { (PreEscaped(script)) }
        }
    }))
}

pub async fn flows_page(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (flows, errors) = s.flows().await?;
    let store = s.engine.store();
    let schedules = store.schedules().await?;
    let mut recent = HashMap::new();
    for f in &flows {
        recent.insert(
            f.name.clone(),
            store
                .list_runs(&RunFilter {
                    flow: Some(f.name.clone()),
                    limit: 10,
                    ..Default::default()
                })
                .await?,
        );
    }
    Ok(page(&headers, "Flows", "Flows", |csrf| {
        html! {
            h1 { "Flows" }
            @for e in &errors.0 { div class="card err" { (e.to_string()) } }
            table id="flows" {
                thead { tr { th { "Flow" } th { "Schedule" } th { "Next fire" } th { "Recent runs" } th { "Trigger" } th { "" } } }
                tbody {
                    @for f in &flows {
                        @let sched = schedules.iter().find(|r| r.flow == f.name);
                        @let paused = sched.is_some_and(|r| r.paused);
                        tr data-flow=(f.name) {
                            td { a href=(format!("/flows/{}", urlencode(&f.name))) { strong { (f.name) } } @if let Some(d) = &f.description { br; span class="muted" { (d) } } }
                            td { (f.schedule.as_ref().map(|s| s.expr()).unwrap_or("-")) @if paused { " " span class="badge" style="background:#7b8794" { "paused" } } }
                            td { (when(sched.and_then(|r| r.next_fire_at).or_else(|| f.schedule.as_ref().and_then(|s| s.next_after(chrono::Utc::now()))))) }
                            td class="dots" {
                                @for r in recent.get(&f.name).into_iter().flatten() {
                                    a href=(format!("/runs/{}", r.id)) title=(format!("#{} {}", r.id, r.state)) { span style=(format!("background:{}", state_colour(r.state.as_str()))) {} }
                                }
                            }
                            td {
                                form class="trigger" method="post" action=(format!("/ui/flows/{}/trigger", urlencode(&f.name))) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    @for (k, v) in &f.params {
                                        input name=(format!("param.{k}")) placeholder=(k) value=(v) aria-label=(k) size="10";
                                    }
                                    input name="idempotency_key" placeholder="idempotency key" size="14";
                                    button type="submit" data-trigger=(f.name) { "Trigger" }
                                }
                            }
                            td {
                                @if f.schedule.is_some() {
                                    form class="inline" method="post" action=(format!("/ui/flows/{}/{}", urlencode(&f.name), if paused { "unpause" } else { "pause" })) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" class="secondary" { (if paused { "Unpause" } else { "Pause" }) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }))
}

fn input_text(i: &crate::lineage::Input) -> String {
    match i {
        crate::lineage::Input::Kafka {
            topic,
            partition,
            from_offset,
            to_offset,
        } => format!("Kafka {topic}[{partition}] offsets {from_offset}..={to_offset}"),
        crate::lineage::Input::Table {
            table,
            from_version,
            to_version,
        } => format!("{table} versions {from_version}..={to_version}"),
    }
}

pub async fn tables_page(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lake = s.home.join("lake");
    s.heavy(move || tables_html(&headers, &lake)).await
}

/// The tables page: one line per table (reads every table's Delta log, for the blocking
/// pool); each links to its own page.
fn tables_html(headers: &HeaderMap, lake: &std::path::Path) -> Response {
    let tables = super::list_tables(lake);
    page(headers, "Tables", "Tables", |_| {
        html! {
            h1 { "Tables" }
            @if tables.is_empty() {
                div class="card muted" { "No Delta tables under the lake yet." }
            } @else {
                table id="tables" {
                    thead { tr { th { "Table" } th { "Version" } th { "Rows" } th { "Live files" } th { "Last commit" } th { "Written by run" } } }
                    tbody {
                        @for t in &tables {
                            @let last = t.versions.last();
                            tr data-table=(t.name) {
                                td { a href=(format!("/tables/{}", urlencode(&t.name))) { (t.name) } }
                                td { (last.map(|v| v.version.to_string()).unwrap_or_default()) }
                                td { (t.row_count.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into())) }
                                td { (t.files) }
                                td { (last.and_then(|v| v.timestamp_ms).and_then(chrono::DateTime::from_timestamp_millis).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                                td { @if let Some(r) = last.and_then(|v| v.run_id) { a href=(format!("/runs/{r}")) { "#" (r) } } @else { "-" } }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A table's facts, lineage and version history: the top of its page.
pub(super) fn table_card(lake: &std::path::Path, t: &super::lake_tables::TableInfo) -> Markup {
    html! {
        div class="card" data-table=(t.name) {
            div class="kv" {
                span class="muted" { "Location" } code { (t.path.display().to_string()) }
                span class="muted" { "Versions" } span { (t.versions.len()) }
                span class="muted" { "Live files" } span { (t.files) }
                span class="muted" { "Rows" } span { (t.row_count.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into())) }
                span class="muted" { "Schema" } span { @for (n, ty) in &t.schema { code { (n) ": " (ty) } " " } }
            }
            @if let Ok(l) = crate::lineage::trace(lake, &t.name, None) {
                div class="lineage" {
                    h3 { "Lineage of v" (l.version) }
                    @if l.commit_inputs.is_empty() && l.tables.is_empty() && l.kafka.is_empty() {
                        span class="muted" { "No recorded inputs." }
                    }
                    ul {
                        @for i in &l.commit_inputs {
                            li { "this version's commit read " (input_text(i)) }
                        }
                        @for src in &l.tables {
                            li { "reflects " code { (src.table) } " up to v" (src.version) }
                        }
                        @for k in l.kafka_sources() {
                            li { "reflects Kafka " code { (k.topic) "[" (k.partition) "]" } " offsets ..=" (k.to_offset) }
                        }
                    }
                }
            }
            table {
                thead { tr { th { "Version" } th { "Committed" } th { "Operation" } th { "Written by run" } } }
                tbody {
                    @for v in t.versions.iter().rev().take(20) {
                        tr {
                            td { (v.version) }
                            td { (v.timestamp_ms.and_then(chrono::DateTime::from_timestamp_millis).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()) }
                            td { (v.operation.as_deref().unwrap_or("")) }
                            td { @if let Some(r) = v.run_id { a href=(format!("/runs/{r}")) { "#" (r) } } @else { "-" } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn login_page(headers: HeaderMap) -> Response {
    page(&headers, "", "Log in", |csrf| {
        html! {
            h1 { "Log in" }
            div class="card" {
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="password" name="token" placeholder="FLOWCTL_API_TOKEN" aria-label="token" size="40";
                    " " button type="submit" { "Log in" }
                }
            }
        }
    })
}

pub async fn login_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    // Only the CSRF half of the check: the token is what is being presented here.
    let mut csrf_only = s.clone();
    csrf_only.token = None;
    require_form(
        &csrf_only,
        &headers,
        f.get("csrf").map(String::as_str).unwrap_or(""),
    )?;
    let given = f.get("token").cloned().unwrap_or_default();
    if s.token.as_deref().is_some_and(|t| t != given) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token"));
    }
    let mut resp = Redirect::to("/runs").into_response();
    let cookie = format!("{SESSION_COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "token has characters a cookie cannot hold",
            )
        })?,
    );
    Ok(resp)
}

pub async fn trigger_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_form(&s, &headers, &f)?;
    let flow = s.flow(&name).await?;
    let params = f
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let key = f
        .get("idempotency_key")
        .map(|k| k.trim())
        .filter(|k| !k.is_empty());
    let submitted = s.engine.submit(&flow, &params, "api", key).await?;
    if matches!(submitted, Submitted::Created(_)) {
        s.engine.adopt(submitted.run_id());
    }
    Ok(Redirect::to(&format!("/runs/{}", submitted.run_id())).into_response())
}

async fn pause_ui(
    s: AppState,
    headers: HeaderMap,
    name: String,
    f: HashMap<String, String>,
    paused: bool,
) -> Result<Response, ApiError> {
    check_form(&s, &headers, &f)?;
    let flow = s.flow(&name).await?;
    Scheduler::set_paused(&s.engine, &flow, paused)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Redirect::to("/flows").into_response())
}

/// CSRF (and, with a token configured, session) check of a UI form post.
fn check_form(
    s: &AppState,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> Result<(), ApiError> {
    require_form(s, headers, f.get("csrf").map(String::as_str).unwrap_or(""))
}

pub async fn pause_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    pause_ui(s, headers, name, f, true).await
}

pub async fn unpause_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    pause_ui(s, headers, name, f, false).await
}

pub async fn retry_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_form(&s, &headers, &f)?;
    start_retry(&s, id).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}

pub async fn cancel_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_form(&s, &headers, &f)?;
    s.engine
        .cancel(id, std::time::Duration::from_secs(5))
        .await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}
