//! Task kinds. Each kind implements [`Task`] and registers a builder in [`TaskRegistry`]; the
//! executor only ever sees `Arc<dyn Task>`, so new kinds plug in without touching it.

mod aggregate_gold;
mod context;
pub mod ingest_bronze;
mod maintain;
mod noop;
mod publish_staged;
mod quality_check;
mod shell;
mod transform_silver;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::de::DeserializeOwned;

use crate::kafka::KafkaSettings;

pub use context::{ProcessReport, TaskContext};
// The words a task kind is written in, from the shared vocabulary.
pub use crate::vocab::log::{LogLine, TaskLog};
pub use crate::vocab::quality::{QualityBuffer, QualityRecord};
pub use crate::vocab::task::{FaultClass, ParamError, TaskError};
pub use noop::NoopTask;
pub use quality_check::QualityCheckTask;
pub use shell::ShellTask;

/// One unit of work in a flow.
#[async_trait]
pub trait Task: Send + Sync + std::fmt::Debug {
    /// Runs one attempt. Must be idempotent: a retry after a crash produces the same tables.
    /// Must return soon after `ctx.cancel` fires (timeout or `flowctl cancel`).
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError>;
}

/// What a successful attempt reports: metrics (stored as the attempt's metrics JSON) and the
/// datasets it read and wrote (for OpenLineage).
#[derive(Debug, Default, Clone)]
pub struct TaskOutcome {
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub inputs: Vec<crate::lineage::openlineage::Dataset>,
    pub outputs: Vec<crate::lineage::openlineage::Dataset>,
}

impl TaskOutcome {
    pub fn with_metric(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.metrics.insert(key.to_string(), value.into());
        self
    }

    pub fn with_input(mut self, d: crate::lineage::openlineage::Dataset) -> Self {
        self.inputs.push(d);
        self
    }

    pub fn with_output(mut self, d: crate::lineage::openlineage::Dataset) -> Self {
        self.outputs.push(d);
        self
    }
}

/// What task kinds need from the environment: read once at the edge (`config`) and handed to
/// every builder (when a flow is validated) and every attempt (through its context), so no
/// task reads an environment variable.
#[derive(Debug, Clone, Default)]
pub struct TaskSettings {
    /// The expectation files (`FLOWCTL_EXPECTATIONS_DIR`; default `expectations/` beside the
    /// flows directory).
    pub expectations_dir: PathBuf,
    /// The Kafka cluster ingest reads from.
    pub kafka: KafkaSettings,
}

/// Builds a task from the `params:` node of a flow file (None when the task has no params).
pub type BuildFn = fn(&TaskSettings, Option<&Node>) -> Result<Arc<dyn Task>, ParamError>;

/// Explicit map from kind name to builder: no magic discovery.
#[derive(Clone)]
pub struct TaskRegistry {
    kinds: BTreeMap<&'static str, BuildFn>,
    settings: Arc<TaskSettings>,
}

impl TaskRegistry {
    /// The kinds that ship with flowctl, built with `settings`.
    pub fn builtin(settings: TaskSettings) -> TaskRegistry {
        let mut r = TaskRegistry {
            kinds: BTreeMap::new(),
            settings: Arc::new(settings),
        };
        r.register("noop", noop::build);
        r.register("quality_check", quality_check::build);
        r.register("shell", shell::build);
        r.register("ingest_bronze", ingest_bronze::build);
        r.register("transform_silver", transform_silver::build);
        r.register("aggregate_gold", aggregate_gold::build);
        r.register("publish_staged", publish_staged::build);
        r.register("maintain", maintain::build);
        r
    }

    pub fn register(&mut self, kind: &'static str, build: BuildFn) {
        self.kinds.insert(kind, build);
    }

    /// The settings tasks are built and run with.
    pub fn settings(&self) -> &Arc<TaskSettings> {
        &self.settings
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// None when the kind is unknown.
    pub fn build(
        &self,
        kind: &str,
        params: Option<&Node>,
    ) -> Option<Result<Arc<dyn Task>, ParamError>> {
        self.kinds.get(kind).map(|b| b(&self.settings, params))
    }
}

/// Deserializes a kind's typed config from its `params:` node, keeping line numbers in errors.
pub fn parse_params<T: DeserializeOwned>(node: Option<&Node>) -> Result<T, ParamError> {
    let empty;
    let node = match node {
        Some(n) => n,
        None => {
            empty = Node::from(marked_yaml::types::MarkedMappingNode::new_empty(
                marked_yaml::Span::new_blank(),
            ));
            &empty
        }
    };
    marked_yaml::from_node(node).map_err(|e| {
        let inner = e.into_inner();
        let mut line = inner.start_mark().map(|m| m.line());
        // Unknown-field errors carry no position: point at the offending key ourselves.
        if let (None, marked_yaml::spanned_serde::Error::UnknownFieldError(field, _, _)) =
            (line, &inner)
        {
            line = node.as_mapping().and_then(|m| {
                m.keys()
                    .find(|k| k.as_str() == field)
                    .and_then(|k| k.span().start().map(|s| s.line()))
            });
        }
        ParamError {
            message: inner.to_string(),
            line,
        }
    })
}
