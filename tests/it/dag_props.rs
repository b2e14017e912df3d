//! Property test over random DAGs, in process: the executor never starts a task before its
//! dependencies finish, runs every reachable task exactly once, and never runs a task below a
//! failure (all_success).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use flowctl::engine::state::RunState;
use flowctl::engine::{Engine, EngineConfig};
use flowctl::flow::parse_flow;
use flowctl::store::Store;
use flowctl::tasks::{
    ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskRegistry, parse_params,
};
use proptest::prelude::*;

/// (task id, start, end) of every attempt, per run.
type Journal = Mutex<BTreeMap<i64, Vec<(String, Instant, Instant)>>>;

fn journal() -> &'static Journal {
    static J: OnceLock<Journal> = OnceLock::new();
    J.get_or_init(Default::default)
}

#[derive(Debug, serde::Deserialize, Default)]
struct ProbeCfg {
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    sleep_us: u64,
}

#[derive(Debug)]
struct Probe(ProbeCfg);

#[async_trait]
impl Task for Probe {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let start = Instant::now();
        if self.0.sleep_us > 0 {
            tokio::time::sleep(std::time::Duration::from_micros(self.0.sleep_us)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let end = Instant::now();
        journal()
            .lock()
            .unwrap()
            .entry(ctx.run_id)
            .or_default()
            .push((ctx.task_id.clone(), start, end));
        if self.0.fail {
            Err(TaskError::User("probe told to fail".into()))
        } else {
            Ok(TaskOutcome::default())
        }
    }
}

fn build_probe(node: Option<&marked_yaml::Node>) -> Result<Arc<dyn Task>, ParamError> {
    Ok(Arc::new(Probe(parse_params(node)?)))
}

/// A random DAG: task i may depend on any j < i.
fn dags() -> impl Strategy<Value = Vec<(Vec<usize>, bool, u64)>> {
    (1usize..25).prop_flat_map(|n| {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                proptest::bool::weighted(0.1),
                0u64..300,
            ),
            n,
        )
        .prop_map(|tasks| {
            tasks
                .into_iter()
                .enumerate()
                .map(|(i, (deps, fail, sleep))| {
                    let mut d: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        deps.iter().map(|x| x.index(i)).collect()
                    };
                    d.sort();
                    d.dedup();
                    (d, fail, sleep)
                })
                .collect()
        })
    })
}

fn yaml(tasks: &[(Vec<usize>, bool, u64)]) -> String {
    let mut s = String::from("name: prop\nmax_active_runs: 100\ntasks:\n");
    for (i, (deps, fail, sleep)) in tasks.iter().enumerate() {
        s.push_str(&format!(
            "  - id: t{i}\n    kind: probe\n    params: {{fail: {fail}, sleep_us: {sleep}}}\n"
        ));
        if !deps.is_empty() {
            let d: Vec<String> = deps.iter().map(|j| format!("t{j}")).collect();
            s.push_str(&format!("    depends_on: [{}]\n", d.join(", ")));
        }
    }
    s
}

#[test]
fn executor_respects_dependencies_on_random_dags() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(&dir.path().join("state.db")))
        .unwrap();
    let mut registry = TaskRegistry::builtin();
    registry.register("probe", build_probe);
    let mut config = ProptestConfig::with_cases(48);
    config.failure_persistence = None;
    proptest!(config, |(tasks in dags(), concurrency in 1usize..6)| {
        let engine = Engine::new(store.clone(), registry.clone(), EngineConfig { concurrency, home: dir.path().to_path_buf(), ..EngineConfig::default() });
        let flow = parse_flow(Path::new("prop.yaml"), &yaml(&tasks), &registry).unwrap();
        let (state, id) = rt.block_on(async {
            let id = engine.submit(&flow, &BTreeMap::new(), "cli", None).await.unwrap().run_id();
            (engine.execute(id).await.unwrap(), id)
        });
        let runs = journal().lock().unwrap().remove(&id).unwrap_or_default();
        // Which tasks should have run: none of their ancestors failed.
        let n = tasks.len();
        let mut blocked: Vec<bool> = Vec::with_capacity(n);
        for (deps, _, _) in &tasks {
            let b = deps.iter().any(|&d| blocked[d] || tasks[d].1);
            blocked.push(b);
        }
        for (i, is_blocked) in blocked.iter().enumerate() {
            let count = runs.iter().filter(|(t, _, _)| *t == format!("t{i}")).count();
            prop_assert_eq!(count, usize::from(!is_blocked), "task t{} ran {} times", i, count);
        }
        for (t, start, _) in &runs {
            let i: usize = t[1..].parse().unwrap();
            for &d in &tasks[i].0 {
                let (_, _, dep_end) = runs.iter().find(|(u, _, _)| *u == format!("t{d}")).expect("dependency ran");
                prop_assert!(start >= dep_end, "t{} started before its dependency t{} finished", i, d);
            }
        }
        let any_failure = tasks.iter().enumerate().any(|(i, t)| t.1 && !blocked[i]);
        prop_assert_eq!(state, if any_failure { RunState::Failed } else { RunState::Success });
    });
}
