//! One table's page: its facts, lineage and history, a preview of its rows at any version (the
//! version picker is time travel), and its quality checks over versions (pass, warn, fail).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::svg::{Stack, category_colour, stacked_bars};
use super::ui::{badge, page, table_card};
use super::{ApiError, AppState};
use crate::lake::{LakeTable, table_dir};

/// Rows the preview shows.
const PREVIEW_ROWS: u32 = 50;
/// Versions the quality history shows.
const QUALITY_VERSIONS: usize = 50;

#[derive(Debug, Deserialize)]
pub struct TableQuery {
    pub version: Option<i64>,
}

/// Days the DLQ chart shows.
const DLQ_DAYS: u32 = 30;

/// The preview: column names and rows as text.
struct Preview {
    version: i64,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

pub async fn table_page(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<TableQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lake = s.home.join("lake");
    let dir = table_dir(&lake, &name)
        .filter(|d| d.join("_delta_log").is_dir())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no table named `{name}`")))?;
    let table = LakeTable::open(&dir)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let version = q.version.unwrap_or_else(|| table.version());
    table
        .check_version(version)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let files = table
        .files_at(version)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let quality = s
        .engine
        .store()
        .quality_by_version(&name, QUALITY_VERSIONS)
        .await?;
    s.heavy(move || {
        let info = super::lake_tables::read_table(&dir);
        let preview = table
            .scan_files(&files)
            .map_err(|e| e.to_string())
            .and_then(|lf| lf.limit(PREVIEW_ROWS).collect().map_err(|e| e.to_string()))
            .map(|df| Preview {
                version,
                columns: df
                    .get_column_names()
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                rows: (0..df.height())
                    .map(|i| {
                        df.columns()
                            .iter()
                            .map(|c| c.get(i).map(|v| cell_text(&v)).unwrap_or_default())
                            .collect()
                    })
                    .collect(),
            });
        let dlq = (name == crate::ingest::AUDIT_TABLE)
            .then(|| dlq_by_day(&table, &files))
            .flatten();
        render(
            &headers,
            &lake,
            &name,
            info,
            preview,
            &quality,
            dlq.as_deref(),
        )
    })
    .await
}

/// Dead letters per ingest day and category, the last [`DLQ_DAYS`] days (only the two columns
/// are read).
fn dlq_by_day(table: &LakeTable, files: &[crate::lake::DataFile]) -> Option<Vec<Stack>> {
    use polars::prelude::*;
    let day = crate::ingest::AUDIT_PARTITION;
    let df = table
        .scan_files(files)
        .ok()?
        .select([col(day).cast(DataType::String), col("error_type")])
        .group_by([col(day), col("error_type")])
        .agg([len().alias("n")])
        .sort([day], SortMultipleOptions::default())
        .collect()
        .ok()?;
    let (days, cats, ns) = (
        df.column(day).ok()?.str().ok()?.clone(),
        df.column("error_type").ok()?.str().ok()?.clone(),
        df.column("n")
            .ok()?
            .cast(&DataType::Int64)
            .ok()?
            .i64()
            .ok()?
            .clone(),
    );
    let mut bars: Vec<Stack> = Vec::new();
    for i in 0..df.height() {
        let d = days.get(i).unwrap_or("?").to_string();
        let part = (
            cats.get(i).unwrap_or("?").to_string(),
            ns.get(i).unwrap_or(0),
        );
        match bars.last_mut() {
            Some(b) if b.label == d => b.parts.push(part),
            _ => bars.push(Stack {
                label: d,
                parts: vec![part],
            }),
        }
    }
    let skip = bars.len().saturating_sub(DLQ_DAYS as usize);
    Some(bars.split_off(skip))
}

fn cell_text(v: &polars::prelude::AnyValue) -> String {
    let s = match v {
        polars::prelude::AnyValue::Null => String::new(),
        polars::prelude::AnyValue::String(s) => s.to_string(),
        other => other.to_string(),
    };
    super::svg::truncate(&s, 80)
}

fn render(
    headers: &HeaderMap,
    lake: &std::path::Path,
    name: &str,
    info: Option<super::lake_tables::TableInfo>,
    preview: Result<Preview, String>,
    quality: &[crate::store::QualityByVersion],
    dlq: Option<&[Stack]>,
) -> Response {
    // Oldest version on the left.
    let quality_bars: Vec<Stack> = quality
        .iter()
        .rev()
        .map(|q| Stack {
            label: q
                .version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            parts: vec![
                ("pass".into(), q.pass),
                ("warn".into(), q.warn),
                ("fail".into(), q.fail),
            ],
        })
        .collect();
    let outcome_colour = |o: &str| match o {
        "pass" => "#2e9d5b",
        "warn" => "#e3a21a",
        _ => "#d64545",
    };
    let versions: Vec<u64> = info
        .as_ref()
        .map(|t| t.versions.iter().map(|v| v.version).rev().collect())
        .unwrap_or_default();
    page(headers, "Tables", name, |_| {
        html! {
            h1 { "Table " code { (name) } }
            @if let Some(t) = &info { (table_card(lake, t)) }
            h2 { "Rows" }
            @match &preview {
                Err(e) => div class="card" { "Cannot read the rows: " (e) }
                Ok(p) => {
                    form id="version-picker" method="get" action=(format!("/tables/{}", super::ui::urlencode(name))) {
                        label { "Version " }
                        select name="version" aria-label="version" {
                            @for v in &versions {
                                option value=(v) selected[*v as i64 == p.version] { (v) }
                            }
                        }
                        " " button type="submit" { "Show" }
                    }
                    p class="muted" id="preview-caption" {
                        "First " (p.rows.len()) " row(s) at version " span id="preview-version" { (p.version) }
                    }
                    div style="overflow-x:auto" {
                        table id="preview" {
                            thead { tr { @for c in &p.columns { th { (c) } } } }
                            tbody {
                                @for r in &p.rows { tr { @for v in r { td { (v) } } } }
                            }
                        }
                    }
                }
            }
            @if let Some(bars) = dlq {
                h2 { "Dead letters by day and category" }
                @if bars.is_empty() {
                    div class="card muted" { "No dead letters." }
                } @else {
                    div class="card" { (stacked_bars("dlq-chart", bars, &category_colour)) }
                }
            }
            h2 { "Quality checks by version" }
            @if quality.is_empty() {
                div class="card muted" { "No quality check has looked at this table." }
            } @else {
                div class="card" { (stacked_bars("quality-chart", &quality_bars, &outcome_colour)) }
                table id="quality-history" {
                    thead { tr { th { "Version" } th { "Pass" } th { "Warn" } th { "Fail" } th { "Last run" } } }
                    tbody {
                        @for q in quality {
                            tr data-version=(q.version.map(|v| v.to_string()).unwrap_or_default()) {
                                td { (q.version.map(|v| v.to_string()).unwrap_or_else(|| "-".into())) }
                                td { (q.pass) }
                                td { @if q.warn > 0 { (badge("up_for_retry")) " " } (q.warn) }
                                td { @if q.fail > 0 { (badge("failed")) " " } (q.fail) }
                                td { a href=(format!("/runs/{}", q.last_run)) { "#" (q.last_run) } }
                            }
                        }
                    }
                }
            }
        }
    })
}
