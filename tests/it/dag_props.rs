//! Property test over random DAGs, in process: the executor never starts a task before its
//! dependencies finish, runs every reachable task exactly once, and never runs a task below a
//! failure (all_success).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use flowctl::engine::{Engine, EngineConfig};
use flowctl::flow::parse_flow;
use flowctl::store::Store;
use flowctl::tasks::{
    ParamError, Task, TaskContext, TaskError, TaskOutcome, TaskRegistry, TaskSettings, parse_params,
};
use flowctl::vocab::state::RunState;
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
            Err(TaskError::user("probe told to fail"))
        } else {
            Ok(TaskOutcome::default())
        }
    }
}

fn build_probe(
    _: &TaskSettings,
    node: Option<&marked_yaml::Node>,
) -> Result<Arc<dyn Task>, ParamError> {
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
    let mut registry = TaskRegistry::builtin(TaskSettings::default());
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

#[derive(Debug)]
struct Panics;

#[async_trait]
impl Task for Panics {
    async fn run(&self, _ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        tokio::task::yield_now().await;
        panic!("a bug in a task kind");
    }
}

fn build_panics(
    _: &TaskSettings,
    _: Option<&marked_yaml::Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    Ok(Arc::new(Panics))
}

/// Issue 18: a panic inside a run used to leave it `running` under a live owner for good
/// (retry 409, cancel hanging). Now the attempt fails as an internal error, the run ends, and a
/// run beside it in the same engine is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_its_run_and_wedges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).await.unwrap();
    let mut registry = TaskRegistry::builtin(TaskSettings::default());
    registry.register("panics", build_panics);
    registry.register("probe", build_probe);
    let engine = Engine::new(
        store.clone(),
        registry.clone(),
        EngineConfig {
            home: dir.path().to_path_buf(),
            ..EngineConfig::default()
        },
    );
    let bad = parse_flow(
        Path::new("bad.yaml"),
        "name: bad\nretries: {count: 1, delay: 10ms}\ntasks:\n  - id: boom\n    kind: panics\n  - id: after\n    kind: probe\n    depends_on: [boom]\n",
        &registry,
    )
    .unwrap();
    let good = parse_flow(
        Path::new("good.yaml"),
        "name: good\ntasks:\n  - id: a\n    kind: probe\n    params: {sleep_us: 50000}\n",
        &registry,
    )
    .unwrap();
    let none = BTreeMap::new();
    let bad_id = engine
        .submit(&bad, &none, "cli", None)
        .await
        .unwrap()
        .run_id();
    let good_id = engine
        .submit(&good, &none, "cli", None)
        .await
        .unwrap()
        .run_id();
    let (b, g) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(engine.execute(bad_id), engine.execute(good_id))
    })
    .await
    .expect("neither run wedges");
    assert_eq!(b.unwrap(), RunState::Failed);
    assert_eq!(g.unwrap(), RunState::Success);
    let attempts = store.attempts(bad_id).await.unwrap();
    let boom: Vec<_> = attempts.iter().filter(|a| a.task_id == "boom").collect();
    assert_eq!(
        boom.len(),
        2,
        "the internal error was retried once by policy"
    );
    let last = boom.iter().max_by_key(|a| a.attempt).unwrap();
    assert_eq!(last.state.as_str(), "failed");
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("the task panicked: a bug in a task kind")),
        "{:?}",
        last.error
    );
    let after = attempts.iter().find(|a| a.task_id == "after").unwrap();
    assert_eq!(after.state.as_str(), "upstream_failed");
    let run = store.get_run(bad_id).await.unwrap();
    assert!(run.owner.is_none(), "a finished run has no owner");
    // And it can be retried, unlike a wedged run (409).
    assert_eq!(engine.retry(bad_id).await.unwrap(), RunState::Failed);
}
