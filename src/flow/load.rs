//! Flow files → validated [`Flow`]s. Validation reports every problem at once, each with file,
//! line and what is wrong, the way Vector's config validation does: the YAML tree is walked by
//! hand ([`Reader`]) so a wrong type, a bad value or a duplicate key never hides the rest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

use super::dag::Dag;
use super::model::{
    Flow, NotifyEvent, NotifyRule, NotifyTarget, RetryPolicy, TaskSpec, TriggerRule,
};
use super::schedule::Schedule;
use crate::tasks::{Task, TaskRegistry};
use crate::vocab::source::{Reader, SourceError, SourceErrors, line_of, sline};

const FLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "schedule",
    "catchup",
    "max_active_runs",
    "params",
    "retries",
    "timeout",
    "tasks",
    "sla",
    "notify",
];
const NOTIFY_KEYS: &[&str] = &["on", "webhook", "command"];
const TASK_KEYS: &[&str] = &[
    "id",
    "kind",
    "description",
    "depends_on",
    "params",
    "retries",
    "timeout",
    "trigger_rule",
];
const RETRY_KEYS: &[&str] = &["count", "delay", "backoff", "max_delay", "jitter"];
/// More retries than this is a loop, not a policy.
const MAX_RETRY_COUNT: i64 = 1000;

/// Loads and validates one flow file.
pub fn load_file(path: &Path, registry: &TaskRegistry) -> Result<Flow, SourceErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SourceErrors(vec![SourceError {
            path: path.to_path_buf(),
            line: 0,
            message: format!("cannot read flow file: {e}"),
        }])
    })?;
    parse_flow(path, &text, registry)
}

/// The flow-level settings, before the tasks.
struct Header {
    name: String,
    description: Option<String>,
    schedule: Option<Schedule>,
    catchup: bool,
    max_active_runs: u32,
    params: BTreeMap<String, String>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    sla: Option<Duration>,
    notify: Vec<NotifyRule>,
}

/// One task entry as written, before its references are resolved.
struct RawTask<'n> {
    id: String,
    line: usize,
    kind: Option<(String, usize)>,
    depends_on: Vec<(String, usize)>,
    params: Option<&'n Node>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    trigger_rule: TriggerRule,
}

/// Validates flow text; `path` only labels the errors.
pub fn parse_flow(path: &Path, text: &str, registry: &TaskRegistry) -> Result<Flow, SourceErrors> {
    let mut r = Reader::new(path);
    let root = r.parse(text, "flow files", "name:, tasks:, …");
    let Some(map) = root
        .as_ref()
        .and_then(|n| r.mapping(n, "the top level (name:, tasks:, …)"))
    else {
        r.finish()?;
        unreachable!("a file that is not a mapping has an error");
    };
    r.unknown_keys(map, FLOW_KEYS, "a flow");
    let header = read_header(&mut r, map);
    let raws = read_tasks(&mut r, map, &header);
    let index = task_index(&mut r, &raws);
    let deps: Vec<Vec<usize>> = raws
        .iter()
        .map(|t| resolve_deps(&mut r, t, &raws, &index))
        .collect();
    let tasks: Vec<TaskSpec> = raws
        .iter()
        .filter_map(|t| build_task(&mut r, t, registry))
        .collect();
    let dag = match Dag::new(deps) {
        Ok(dag) => Some(dag),
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| raws[i].id.as_str()).collect();
            r.err(
                raws[cycle[0]].line,
                format!("dependency cycle: {}", names.join(" -> ")),
            );
            None
        }
    };
    r.finish()?;
    Ok(Flow {
        name: header.name,
        description: header.description,
        path: path.to_path_buf(),
        yaml: text.to_string(),
        schedule: header.schedule,
        catchup: header.catchup,
        max_active_runs: header.max_active_runs,
        params: header.params,
        tasks,
        dag: dag.expect("no errors means the DAG was built"),
        sla: header.sla,
        notify: header.notify,
    })
}

fn read_header(r: &mut Reader, map: &MarkedMappingNode) -> Header {
    let name = match map.get_node("name") {
        Some(n) => r.name(n, "`name`").unwrap_or_default(),
        None => {
            r.err(0, "a flow needs a `name:`");
            String::new()
        }
    };
    if !name.is_empty() && !valid_ident(&name) {
        let line = map.get_node("name").map(line_of).unwrap_or(0);
        r.err(
            line,
            format!("flow name `{name}` must be letters, digits, `_` or `-`"),
        );
    }
    let retry = map
        .get_node("retries")
        .and_then(|n| retry_policy(r, n, RetryPolicy::default()))
        .unwrap_or_default();
    Header {
        name,
        description: map
            .get_node("description")
            .and_then(|n| r.scalar(n, "`description`"))
            .map(|s| s.as_str().to_string()),
        schedule: map.get_node("schedule").and_then(|n| {
            let s = r.scalar(n, "`schedule`")?;
            Schedule::parse(s.as_str())
                .map_err(|m| r.err(sline(s), m))
                .ok()
        }),
        catchup: map
            .get_node("catchup")
            .and_then(|n| r.boolean(n, "`catchup`"))
            .unwrap_or(false),
        max_active_runs: map
            .get_node("max_active_runs")
            .and_then(|n| r.integer(n, "`max_active_runs`", 1, 1_000_000))
            .map_or(16, |v| v as u32),
        params: map
            .get_node("params")
            .map(|n| read_params(r, n))
            .unwrap_or_default(),
        retry,
        timeout: map
            .get_node("timeout")
            .and_then(|n| r.duration(n, "timeout", false)),
        sla: map
            .get_node("sla")
            .and_then(|n| r.duration(n, "sla", false)),
        notify: map
            .get_node("notify")
            .map(|n| read_notify(r, n))
            .unwrap_or_default(),
    }
}

/// `notify:` a list of `{on: [events], webhook: URL}` or `{on: [events], command: CMD}`.
fn read_notify(r: &mut Reader, n: &Node) -> Vec<NotifyRule> {
    let Some(seq) = n.as_sequence() else {
        r.err(
            line_of(n),
            "`notify` must be a list, e.g. [{on: [failed], webhook: https://…}]",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in seq.iter() {
        let Some(m) = r.mapping(item, "each `notify` entry") else {
            continue;
        };
        r.unknown_keys(m, NOTIFY_KEYS, "a `notify` entry");
        let line = line_of(item);
        let on = match m.get_node("on") {
            Some(n) => r.scalar_list(n, "`on`").map(|events| {
                events
                    .iter()
                    .filter_map(|e| {
                        NotifyEvent::parse(e.as_str().trim()).or_else(|| {
                            r.err(
                                sline(e),
                                format!(
                                    "unknown notify event `{}` (expected one of: {})",
                                    e.as_str(),
                                    NotifyEvent::NAMES.join(", ")
                                ),
                            );
                            None
                        })
                    })
                    .collect::<Vec<_>>()
            }),
            None => {
                r.err(
                    line,
                    "a `notify` entry needs `on: [events]`, e.g. on: [failed]",
                );
                None
            }
        };
        if let Some(n) = m.get_node("on")
            && on.as_ref().is_some_and(|v| v.is_empty())
            && n.as_sequence().is_some_and(|s| s.is_empty())
        {
            r.err(line_of(n), "`on` lists no event; name at least one");
        }
        let webhook = m
            .get_node("webhook")
            .and_then(|n| r.scalar(n, "`webhook`"))
            .and_then(|s| {
                let u = s.as_str().trim();
                match url::Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                        Some(u.to_string())
                    }
                    _ => {
                        r.err(sline(s), "`webhook` must be an http:// or https:// URL");
                        None
                    }
                }
            });
        let command = m.get_node("command").and_then(|n| r.name(n, "`command`"));
        let target = match (
            webhook,
            command,
            m.get_node("webhook"),
            m.get_node("command"),
        ) {
            (Some(w), None, _, None) => Some(NotifyTarget::Webhook(w)),
            (None, Some(c), None, _) => Some(NotifyTarget::Command(c)),
            (_, _, Some(_), Some(_)) => {
                r.err(
                    line,
                    "a `notify` entry takes `webhook:` or `command:`, not both",
                );
                None
            }
            (_, _, None, None) => {
                r.err(
                    line,
                    "a `notify` entry needs a `webhook:` URL or a `command:`",
                );
                None
            }
            _ => None, // the bad value was reported
        };
        if let (Some(on), Some(target)) = (on, target)
            && !on.is_empty()
        {
            out.push(NotifyRule { on, target });
        }
    }
    out
}

/// Declared run parameters: names a shell task can see as `FLOWCTL_PARAM_<NAME>` (so letters,
/// digits and `_`, unique whatever their case), each with a single-value default.
fn read_params(r: &mut Reader, n: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(m) = r.mapping(n, "`params`") else {
        return out;
    };
    let mut upper: HashMap<String, usize> = HashMap::new();
    for (k, v) in m.iter() {
        let name = k.as_str();
        let line = sline(k);
        if !valid_param_name(name) {
            r.err(
                line,
                format!(
                    "parameter name `{name}` must start with a letter or `_` and hold only \
                     letters, digits and `_`"
                ),
            );
            continue;
        }
        if let Some(first) = upper.insert(name.to_ascii_uppercase(), line) {
            r.err(
                line,
                format!(
                    "parameter `{name}` collides with the one at line {first}: both become \
                     FLOWCTL_PARAM_{}",
                    name.to_ascii_uppercase()
                ),
            );
            continue;
        }
        if let Some(s) = r.scalar(v, &format!("the default of parameter `{name}`")) {
            out.insert(name.to_string(), s.as_str().to_string());
        }
    }
    out
}

fn read_tasks<'n>(r: &mut Reader, map: &'n MarkedMappingNode, header: &Header) -> Vec<RawTask<'n>> {
    let Some(node) = map.get_node("tasks") else {
        r.err(0, "a flow needs at least one task under `tasks:`");
        return Vec::new();
    };
    let Some(seq) = node.as_sequence() else {
        r.err(
            line_of(node),
            "`tasks` must be a list of tasks (`- id: ...`)",
        );
        return Vec::new();
    };
    if seq.is_empty() {
        r.err(
            line_of(node),
            "a flow needs at least one task under `tasks:`",
        );
    }
    seq.iter()
        .filter_map(|item| read_task(r, item, header))
        .collect()
}

fn read_task<'n>(r: &mut Reader, item: &'n Node, header: &Header) -> Option<RawTask<'n>> {
    let m = r.mapping(item, "each task")?;
    r.unknown_keys(m, TASK_KEYS, "a task");
    let line = line_of(item);
    let id = match m.get_node("id") {
        Some(n) => r.name(n, "a task's `id`")?,
        None => {
            r.err(line, "a task needs an `id:`");
            return None;
        }
    };
    let id_line = m.get_node("id").map(line_of).unwrap_or(line);
    if !valid_ident(&id) {
        r.err(
            id_line,
            format!("task id `{id}` must be letters, digits, `_` or `-`"),
        );
    }
    let kind = match m.get_node("kind") {
        Some(n) => r
            .name(n, &format!("`kind` of task `{id}`"))
            .map(|k| (k, line_of(n))),
        None => {
            r.err(id_line, format!("task `{id}` needs a `kind:`"));
            None
        }
    };
    if let Some(n) = m.get_node("description") {
        r.scalar(n, "a task's `description`");
    }
    let depends_on = m
        .get_node("depends_on")
        .and_then(|n| r.scalar_list(n, &format!("`depends_on` of task `{id}`")))
        .map(|v| {
            v.into_iter()
                .map(|s| (s.as_str().trim().to_string(), sline(s)))
                .collect()
        })
        .unwrap_or_default();
    let trigger_rule = m
        .get_node("trigger_rule")
        .and_then(|n| {
            let s = r.scalar(n, "`trigger_rule`")?;
            let rule = TriggerRule::parse(s.as_str().trim());
            if rule.is_none() {
                r.err(
                    sline(s),
                    format!(
                        "unknown trigger rule `{}` (expected one of {})",
                        s.as_str(),
                        TriggerRule::NAMES.join(", ")
                    ),
                );
            }
            rule
        })
        .unwrap_or(TriggerRule::AllSuccess);
    Some(RawTask {
        line: id_line,
        kind,
        depends_on,
        params: m.get_node("params"),
        retry: m
            .get_node("retries")
            .and_then(|n| retry_policy(r, n, header.retry))
            .unwrap_or(header.retry),
        timeout: match m.get_node("timeout") {
            Some(n) => r.duration(n, "timeout", false),
            None => header.timeout,
        },
        trigger_rule,
        id,
    })
}

/// Task id → its index; a repeated id is an error at the repeat.
fn task_index(r: &mut Reader, raws: &[RawTask]) -> HashMap<String, usize> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, t) in raws.iter().enumerate() {
        if let Some(&first) = index.get(&t.id) {
            r.err(
                t.line,
                format!(
                    "duplicate task id `{}` (first defined at line {})",
                    t.id, raws[first].line
                ),
            );
        } else {
            index.insert(t.id.clone(), i);
        }
    }
    index
}

fn resolve_deps(
    r: &mut Reader,
    t: &RawTask,
    raws: &[RawTask],
    index: &HashMap<String, usize>,
) -> Vec<usize> {
    let mut deps = Vec::new();
    for (d, line) in &t.depends_on {
        match index.get(d) {
            Some(&j) if !deps.contains(&j) => deps.push(j),
            Some(_) => {}
            None => r.err(
                *line,
                format!(
                    "unknown dependency `{d}` in task `{}` (tasks in this flow: {})",
                    t.id,
                    raws.iter()
                        .map(|t| t.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    deps
}

fn build_task(r: &mut Reader, t: &RawTask, registry: &TaskRegistry) -> Option<TaskSpec> {
    let (kind, kind_line) = t.kind.as_ref()?;
    let task: Arc<dyn Task> = match registry.build(kind, t.params) {
        None => {
            r.err(
                *kind_line,
                format!(
                    "unknown task kind `{kind}` in task `{}` (known kinds: {})",
                    t.id,
                    registry.kinds().collect::<Vec<_>>().join(", ")
                ),
            );
            return None;
        }
        Some(Err(p)) => {
            r.err(
                p.line.unwrap_or(t.line),
                format!("task `{}` ({kind}): {}", t.id, p.message),
            );
            return None;
        }
        Some(Ok(task)) => task,
    };
    Some(TaskSpec {
        id: t.id.clone(),
        kind: kind.clone(),
        depends_on: t.depends_on.iter().map(|(d, _)| d.clone()).collect(),
        retry: t.retry,
        timeout: t.timeout,
        trigger_rule: t.trigger_rule,
        line: t.line,
        task,
    })
}

/// `retries: 3` or `retries: {count, delay, backoff, max_delay, jitter}` over `base`. None
/// (with the problems recorded) when any part is wrong.
fn retry_policy(r: &mut Reader, n: &Node, base: RetryPolicy) -> Option<RetryPolicy> {
    let mut p = base;
    if n.as_scalar().is_some() {
        p.count = r.integer(n, "retries (a count)", 0, MAX_RETRY_COUNT)? as u32;
        return Some(p);
    }
    let Some(m) = n.as_mapping() else {
        r.err(
            line_of(n),
            "retries must be a count or a mapping with count, delay, backoff, max_delay, jitter",
        );
        return None;
    };
    r.unknown_keys(m, RETRY_KEYS, "retries");
    let before = r.errors.len();
    if let Some(v) = m.get_node("count") {
        p.count = r
            .integer(v, "retries.count", 0, MAX_RETRY_COUNT)
            .map_or(p.count, |c| c as u32);
    }
    if let Some(v) = m.get_node("delay") {
        p.delay = r.duration(v, "retries.delay", true).unwrap_or(p.delay);
    }
    if let Some(v) = m.get_node("max_delay") {
        p.max_delay = r
            .duration(v, "retries.max_delay", true)
            .unwrap_or(p.max_delay);
    }
    if let Some(v) = m.get_node("backoff") {
        p.backoff = r
            .number(v, "retries.backoff", 1.0, 100.0)
            .unwrap_or(p.backoff);
    }
    if let Some(v) = m.get_node("jitter") {
        p.jitter = r
            .number(v, "retries.jitter (a fraction)", 0.0, 1.0)
            .unwrap_or(p.jitter);
    }
    if p.max_delay < p.delay {
        p.max_delay = p.delay;
    }
    (r.errors.len() == before).then_some(p)
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A run parameter name: an environment-variable-safe identifier.
pub fn valid_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `*.yaml` / `*.yml` file in `dir`, validated. Flow names must be unique across files.
/// One bad file never hides the good ones: its problems are reported and the others load, even
/// if validating it panicked (a bug, reported as such, not a dead server).
pub fn load_dir(dir: &Path, registry: &TaskRegistry) -> (Vec<Flow>, Vec<SourceError>) {
    let mut flows: Vec<Flow> = Vec::new();
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            errors.push(SourceError {
                path: dir.to_path_buf(),
                line: 0,
                message: format!("cannot read the flows directory: {e}"),
            });
            return (flows, errors);
        }
    };
    paths.sort();
    for p in paths {
        let loaded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_file(&p, registry)))
                .unwrap_or_else(|panic| {
                    Err(SourceErrors(vec![SourceError {
                        path: p.clone(),
                        line: 0,
                        message: format!(
                            "internal error while validating this file (please report it): {}",
                            crate::vocab::panic_message(&panic)
                        ),
                    }]))
                });
        match loaded {
            Ok(f) => {
                if let Some(other) = flows.iter().find(|o| o.name == f.name) {
                    errors.push(SourceError {
                        path: p.clone(),
                        line: 1,
                        message: format!(
                            "flow name `{}` is also used by {}",
                            f.name,
                            other.path.display()
                        ),
                    });
                } else {
                    flows.push(f);
                }
            }
            Err(SourceErrors(es)) => errors.extend(es),
        }
    }
    (flows, errors)
}
