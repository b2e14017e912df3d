//! A run as the run page and `GET /api/runs/{id}` show it: its tasks in DAG order, each with
//! its latest attempt, and pages of them.
//!
//! Built in one pass over the attempts, grouped by task: linear in tasks + attempts. (Finding
//! each task's attempts by scanning all of them — in the JSON, the DAG and the Gantt chart —
//! made a 10,000-task run page cost ~10^8 steps and 22 s on one core.) Everything here is plain
//! CPU work on data already read from the store, meant for the blocking pool.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::{AttemptRow, NotificationAttempt, QualityRow, RunRow, Store, StoreError};
use crate::tasks::TaskRegistry;
use crate::vocab::state::TaskState;

/// What the store holds about a run; read on the async side, turned into a [`RunView`] off it.
pub struct RunData {
    pub run: RunRow,
    pub attempts: Vec<AttemptRow>,
    pub quality: Vec<QualityRow>,
    pub notifications: Vec<NotificationAttempt>,
}

impl RunData {
    pub async fn load(store: &Store, id: i64) -> Result<RunData, StoreError> {
        Ok(RunData {
            run: store.get_run(id).await?,
            attempts: store.attempts(id).await?,
            quality: store.quality_results(id).await?,
            notifications: store.notification_attempts(id).await?,
        })
    }
}

/// One task of a run: its definition and the outcome of its latest attempt.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub task: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub trigger_rule: &'static str,
    /// The latest attempt's state (`None`: no attempt recorded).
    pub state: Option<&'static str>,
    /// Attempts that started.
    pub attempts: usize,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    pub fn state_or_pending(&self) -> &'static str {
        self.state.unwrap_or(TaskState::Pending.as_str())
    }
}

/// A run with its tasks in DAG order (declaration order when its flow no longer parses).
pub struct RunView {
    pub run: RunRow,
    pub tasks: Vec<TaskRow>,
    pub attempts: Vec<AttemptRow>,
    /// `attempts_of[i]`: indices into `attempts` of task `i`'s attempts, in attempt order.
    attempts_of: Vec<Vec<usize>>,
    pub quality: Vec<QualityRow>,
    /// Delivery attempts of the run's notifications (targets shown without secrets).
    pub notifications: Vec<NotificationAttempt>,
}

/// Which tasks to show: a page of those in one state (or all).
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub offset: usize,
    pub limit: usize,
    pub state: Option<TaskState>,
}

/// The tasks a [`TaskQuery`] picked.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Indices into [`RunView::tasks`], in DAG order.
    pub tasks: Vec<usize>,
    /// Tasks matching the state filter, over all pages.
    pub matching: usize,
    pub offset: usize,
    pub limit: usize,
    pub next_offset: Option<usize>,
}

impl RunView {
    pub fn build(data: RunData, registry: &TaskRegistry) -> RunView {
        let RunData {
            run,
            attempts,
            quality,
            notifications,
        } = data;
        let flow = crate::flow::parse_flow(
            std::path::Path::new(&run.flow_path),
            &run.flow_yaml,
            registry,
        )
        .ok();
        let mut by_task: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut first_seen: Vec<&str> = Vec::new();
        for (i, a) in attempts.iter().enumerate() {
            by_task
                .entry(a.task_id.as_str())
                .or_insert_with(|| {
                    first_seen.push(a.task_id.as_str());
                    Vec::new()
                })
                .push(i);
        }
        for list in by_task.values_mut() {
            list.sort_by_key(|&i| attempts[i].attempt);
        }
        // (id, kind, depends_on, trigger rule) per task, in DAG order.
        let specs: Vec<(String, String, Vec<String>, &'static str)> = match &flow {
            Some(f) => f
                .dag
                .topological_order()
                .into_iter()
                .map(|i| {
                    let t = &f.tasks[i];
                    (
                        t.id.clone(),
                        t.kind.clone(),
                        t.depends_on.clone(),
                        t.trigger_rule.as_str(),
                    )
                })
                .collect(),
            None => first_seen
                .iter()
                .map(|id| (id.to_string(), String::new(), Vec::new(), ""))
                .collect(),
        };
        let mut tasks = Vec::with_capacity(specs.len());
        let mut attempts_of = Vec::with_capacity(specs.len());
        for (id, kind, depends_on, trigger_rule) in specs {
            let mine = by_task.remove(id.as_str()).unwrap_or_default();
            let last = mine.last().map(|&i| &attempts[i]);
            tasks.push(TaskRow {
                kind,
                depends_on,
                trigger_rule,
                state: last.map(|a| a.state.as_str()),
                attempts: mine
                    .iter()
                    .filter(|&&i| attempts[i].started_at.is_some())
                    .count(),
                error: last.and_then(|a| a.error.clone()),
                started_at: mine.iter().filter_map(|&i| attempts[i].started_at).min(),
                ended_at: last.and_then(|a| a.ended_at),
                task: id,
            });
            attempts_of.push(mine);
        }
        RunView {
            run,
            tasks,
            attempts,
            attempts_of,
            quality,
            notifications,
        }
    }

    /// Task `i`'s attempts, in attempt order.
    pub fn attempts_of(&self, i: usize) -> impl Iterator<Item = &AttemptRow> {
        self.attempts_of[i].iter().map(|&j| &self.attempts[j])
    }

    /// How many tasks are in each state (`pending` for tasks without an attempt).
    pub fn state_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.tasks {
            *counts.entry(t.state_or_pending()).or_insert(0) += 1;
        }
        counts
    }

    pub fn select(&self, q: &TaskQuery) -> Selection {
        let wanted = q.state.map(TaskState::as_str);
        let matching: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| wanted.is_none_or(|w| self.tasks[i].state_or_pending() == w))
            .collect();
        let end = q.offset.saturating_add(q.limit).min(matching.len());
        let start = q.offset.min(end);
        Selection {
            tasks: matching[start..end].to_vec(),
            matching: matching.len(),
            offset: q.offset,
            limit: q.limit,
            next_offset: (end < matching.len()).then_some(end),
        }
    }

    /// The API's run detail: the run, the selected tasks and their attempts, quality results,
    /// and where the page sits (`tasks_total`, `tasks_matching`, `next_offset`, `task_states`).
    /// A run that fits in one page reads exactly as before paging existed, plus those fields.
    pub fn to_json(&self, sel: &Selection) -> Value {
        let tasks: Vec<&TaskRow> = sel.tasks.iter().map(|&i| &self.tasks[i]).collect();
        let mut attempt_ix: Vec<usize> = sel
            .tasks
            .iter()
            .flat_map(|&i| self.attempts_of[i].iter().copied())
            .collect();
        attempt_ix.sort_unstable(); // the store's order
        let attempts: Vec<&AttemptRow> = attempt_ix.iter().map(|&j| &self.attempts[j]).collect();
        json!({
            "run": self.run,
            "tasks": tasks,
            "attempts": attempts,
            "quality": self.quality,
            "notifications": self.notifications,
            "tasks_total": self.tasks.len(),
            "tasks_matching": sel.matching,
            "offset": sel.offset,
            "limit": sel.limit,
            "next_offset": sel.next_offset,
            "task_states": self.state_counts(),
        })
    }
}
