//! Flow files → validated [`Flow`]s. Validation reports every problem at once, each with file,
//! line and what is wrong, the way Vector's config validation does.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use marked_yaml::{LoaderOptions, Node, Spanned};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::dag::Dag;
use super::duration::parse_duration;
use super::model::{Flow, RetryPolicy, TaskSpec, TriggerRule};
use super::schedule::Schedule;
use crate::tasks::TaskRegistry;

/// One problem in one flow file.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

/// All the problems found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct FlowErrors(pub Vec<FlowError>);

impl fmt::Display for FlowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    catchup: Option<bool>,
    #[serde(default)]
    max_active_runs: Option<Spanned<u32>>,
    #[serde(default)]
    params: Option<BTreeMap<String, String>>,
    #[serde(default)]
    retries: Option<Spanned<RawRetry>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    /// Checked by the task kind's builder, which reads the node itself.
    #[serde(default)]
    params: Option<IgnoredAny>,
    #[serde(default)]
    retries: Option<Spanned<RawRetry>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    trigger_rule: Option<Spanned<String>>,
}

/// `retries: 3` or `retries: {count, delay, backoff, max_delay, jitter}`.
#[derive(Debug, Default)]
struct RawRetry {
    count: Option<u32>,
    delay: Option<String>,
    backoff: Option<f64>,
    max_delay: Option<String>,
    jitter: Option<f64>,
}

struct RawRetryVisitor;

impl<'de> Visitor<'de> for RawRetryVisitor {
    type Value = RawRetry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a retry count or a mapping with count, delay, backoff, max_delay, jitter")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRetry, E> {
        let count = v.trim().parse().map_err(|_| {
            E::custom(format!(
                "retries: `{v}` is not a count (expected e.g. `retries: 3`)"
            ))
        })?;
        Ok(RawRetry {
            count: Some(count),
            ..RawRetry::default()
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawRetry, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRetry, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            count: Option<u32>,
            delay: Option<String>,
            backoff: Option<f64>,
            max_delay: Option<String>,
            jitter: Option<f64>,
        }
        let f = Fields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawRetry {
            count: f.count,
            delay: f.delay,
            backoff: f.backoff,
            max_delay: f.max_delay,
            jitter: f.jitter,
        })
    }
}

impl<'de> Deserialize<'de> for RawRetry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawRetryVisitor)
    }
}

fn line_of<T>(s: &Spanned<T>) -> usize {
    s.span().start().map(|m| m.line()).unwrap_or(0)
}

/// Loads and validates one flow file.
pub fn load_file(path: &Path, registry: &TaskRegistry) -> Result<Flow, FlowErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FlowErrors(vec![FlowError {
            path: path.to_path_buf(),
            line: 0,
            message: format!("cannot read flow file: {e}"),
        }])
    })?;
    parse_flow(path, &text, registry)
}

/// Validates flow text; `path` only labels the errors.
pub fn parse_flow(path: &Path, text: &str, registry: &TaskRegistry) -> Result<Flow, FlowErrors> {
    let err = |line: usize, message: String| FlowError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let root = marked_yaml::parse_yaml_with_options(
        0,
        text,
        LoaderOptions::default().error_on_duplicate_keys(true),
    )
    .map_err(|e| FlowErrors(vec![load_error(path, &e)]))?;
    let raw: RawFlow = marked_yaml::from_node(&root).map_err(|e| {
        let where_ = e.path().map(|p| format!(" (at `{p}`)")).unwrap_or_default();
        let inner = e.into_inner();
        let line = inner.start_mark().map(|m| m.line()).unwrap_or(0);
        FlowErrors(vec![err(line, format!("{inner}{where_}"))])
    })?;

    let mut errors = Vec::new();
    let name = raw.name.as_str().trim().to_string();
    if !valid_ident(&name) {
        errors.push(err(
            line_of(&raw.name),
            format!("flow name `{name}` must be letters, digits, `_` or `-`"),
        ));
    }
    let schedule = raw.schedule.as_ref().and_then(|s| {
        Schedule::parse(s.as_str())
            .map_err(|m| errors.push(err(line_of(s), m)))
            .ok()
    });
    let max_active_runs = match &raw.max_active_runs {
        Some(m) if **m == 0 => {
            errors.push(err(line_of(m), "max_active_runs must be at least 1".into()));
            1
        }
        Some(m) => **m,
        None => 16,
    };
    let default_retry = match &raw.retries {
        Some(r) => retry_policy(r, RetryPolicy::default()).unwrap_or_else(|m| {
            errors.push(err(line_of(r), m));
            RetryPolicy::default()
        }),
        None => RetryPolicy::default(),
    };
    let default_timeout = raw.timeout.as_ref().and_then(|t| {
        parse_duration(t.as_str())
            .map_err(|m| errors.push(err(line_of(t), format!("timeout: {m}"))))
            .ok()
    });
    if raw.tasks.is_empty() {
        errors.push(err(
            0,
            "a flow needs at least one task under `tasks:`".into(),
        ));
    }

    let task_nodes = root.as_mapping().and_then(|m| m.get_sequence("tasks"));
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, t) in raw.tasks.iter().enumerate() {
        let id = t.id.as_str().to_string();
        if !valid_ident(&id) {
            errors.push(err(
                line_of(&t.id),
                format!("task id `{id}` must be letters, digits, `_` or `-`"),
            ));
        }
        if let Some(&first) = index.get(&id) {
            errors.push(err(
                line_of(&t.id),
                format!(
                    "duplicate task id `{id}` (first defined at line {})",
                    line_of(&raw.tasks[first].id)
                ),
            ));
        } else {
            index.insert(id, i);
        }
    }

    let mut tasks = Vec::with_capacity(raw.tasks.len());
    let mut deps = Vec::with_capacity(raw.tasks.len());
    for (i, t) in raw.tasks.iter().enumerate() {
        let line = line_of(&t.id);
        let mut my_deps = Vec::new();
        for d in &t.depends_on {
            match index.get(d.as_str()) {
                Some(&j) => {
                    if !my_deps.contains(&j) {
                        my_deps.push(j);
                    }
                }
                None => errors.push(err(
                    line_of(d),
                    format!(
                        "unknown dependency `{}` in task `{}` (tasks in this flow: {})",
                        d.as_str(),
                        t.id.as_str(),
                        raw.tasks
                            .iter()
                            .map(|t| t.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        deps.push(my_deps);

        let trigger_rule = match &t.trigger_rule {
            Some(r) => TriggerRule::parse(r.as_str()).unwrap_or_else(|| {
                errors.push(err(
                    line_of(r),
                    format!(
                        "unknown trigger rule `{}` (expected one of {})",
                        r.as_str(),
                        TriggerRule::NAMES.join(", ")
                    ),
                ));
                TriggerRule::AllSuccess
            }),
            None => TriggerRule::AllSuccess,
        };
        let retry = match &t.retries {
            Some(r) => retry_policy(r, default_retry).unwrap_or_else(|m| {
                errors.push(err(line_of(r), m));
                default_retry
            }),
            None => default_retry,
        };
        let timeout = match &t.timeout {
            Some(s) => parse_duration(s.as_str())
                .map_err(|m| errors.push(err(line_of(s), format!("timeout: {m}"))))
                .ok(),
            None => default_timeout,
        };
        let params_node: Option<&Node> = task_nodes
            .and_then(|seq| seq.get_mapping(i))
            .and_then(|m| m.get_node("params"));
        let kind = t.kind.as_str();
        let task = match registry.build(kind, params_node) {
            None => {
                errors.push(err(
                    line_of(&t.kind),
                    format!(
                        "unknown task kind `{kind}` in task `{}` (known kinds: {})",
                        t.id.as_str(),
                        registry.kinds().collect::<Vec<_>>().join(", ")
                    ),
                ));
                None
            }
            Some(Err(p)) => {
                errors.push(err(
                    p.line.unwrap_or(line),
                    format!("task `{}` ({kind}): {}", t.id.as_str(), p.message),
                ));
                None
            }
            Some(Ok(task)) => Some(task),
        };
        let _ = &t.description;
        if let Some(task) = task {
            tasks.push(TaskSpec {
                id: t.id.as_str().to_string(),
                kind: kind.to_string(),
                depends_on: t
                    .depends_on
                    .iter()
                    .map(|d| d.as_str().to_string())
                    .collect(),
                retry,
                timeout,
                trigger_rule,
                line,
                task,
            });
        }
    }

    let dag = match Dag::new(deps) {
        Ok(dag) => Some(dag),
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| raw.tasks[i].id.as_str()).collect();
            errors.push(err(
                line_of(&raw.tasks[cycle[0]].id),
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
            None
        }
    };

    errors.sort_by_key(|e| e.line);
    match dag {
        Some(dag) if errors.is_empty() => Ok(Flow {
            name,
            description: raw.description,
            path: path.to_path_buf(),
            yaml: text.to_string(),
            schedule,
            catchup: raw.catchup.unwrap_or(false),
            max_active_runs,
            params: raw.params.unwrap_or_default(),
            tasks,
            dag,
        }),
        _ => Err(FlowErrors(errors)),
    }
}

fn load_error(path: &Path, e: &marked_yaml::LoadError) -> FlowError {
    use marked_yaml::LoadError as L;
    let (line, message) = match e {
        L::TopLevelMustBeMapping(m) => (
            m.line(),
            "the top level of a flow file must be a mapping (name:, tasks:, …)".to_string(),
        ),
        L::TopLevelMustBeSequence(m) => (m.line(), "expected a sequence".to_string()),
        L::UnexpectedAnchor(m) => (
            m.line(),
            "YAML anchors are not supported in flow files".to_string(),
        ),
        L::MappingKeyMustBeScalar(m) => {
            (m.line(), "mapping keys must be plain scalars".to_string())
        }
        L::UnexpectedTag(m) => (
            m.line(),
            "YAML tags are not supported in flow files".to_string(),
        ),
        L::ScanError(m, s) => (m.line(), format!("malformed YAML: {s}")),
        L::DuplicateKey(d) => (
            d.key.span().start().map(|m| m.line()).unwrap_or(0),
            format!(
                "duplicate key `{}` (first at line {})",
                d.key.as_str(),
                d.prev_key.span().start().map(|m| m.line()).unwrap_or(0)
            ),
        ),
    };
    FlowError {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn retry_policy(r: &Spanned<RawRetry>, base: RetryPolicy) -> Result<RetryPolicy, String> {
    let mut p = base;
    if let Some(c) = r.count {
        p.count = c;
    }
    if let Some(d) = &r.delay {
        p.delay = parse_duration(d).map_err(|m| format!("retries.delay: {m}"))?;
    }
    if let Some(d) = &r.max_delay {
        p.max_delay = parse_duration(d).map_err(|m| format!("retries.max_delay: {m}"))?;
    }
    if let Some(b) = r.backoff {
        if !(1.0..=100.0).contains(&b) {
            return Err(format!(
                "retries.backoff must be between 1.0 and 100, found {b}"
            ));
        }
        p.backoff = b;
    }
    if let Some(j) = r.jitter {
        if !(0.0..=1.0).contains(&j) {
            return Err(format!(
                "retries.jitter must be a fraction between 0 and 1, found {j}"
            ));
        }
        p.jitter = j;
    }
    if p.max_delay < p.delay {
        p.max_delay = p.delay;
    }
    Ok(p)
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Every `*.yaml` / `*.yml` file in `dir`, validated. Flow names must be unique across files.
pub fn load_dir(dir: &Path, registry: &TaskRegistry) -> (Vec<Flow>, Vec<FlowError>) {
    let mut flows: Vec<Flow> = Vec::new();
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            errors.push(FlowError {
                path: dir.to_path_buf(),
                line: 0,
                message: format!("cannot read the flows directory: {e}"),
            });
            return (flows, errors);
        }
    };
    paths.sort();
    for p in paths {
        match load_file(&p, registry) {
            Ok(f) => {
                if let Some(other) = flows.iter().find(|o| o.name == f.name) {
                    errors.push(FlowError {
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
            Err(FlowErrors(es)) => errors.extend(es),
        }
    }
    (flows, errors)
}
