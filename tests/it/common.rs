//! Helpers: a throwaway FLOWCTL_HOME with its own flows dir, and the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flowctl");

/// A fresh home: `home/` (FLOWCTL_HOME, holds the state DB) and `flows/`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// Copies the repository's expectation files into `env`'s `expectations/` (beside its flows
/// dir, where flowctl looks by default): tests that edit one edit their own copy.
pub fn with_expectations(env: &Env) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
    let dst = env.dir.path().join("expectations");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("flows")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        Env { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn flows(&self) -> PathBuf {
        self.dir.path().join("flows")
    }

    /// A scratch dir for tasks' marker files.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `flows/NAME.yaml`; `{work}` in the text becomes the scratch dir.
    pub fn flow(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.flows().join(format!("{name}.yaml"));
        std::fs::write(
            &p,
            yaml.replace("{work}", &self.work().display().to_string()),
        )
        .unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("FLOWCTL_HOME", self.home())
            .env("FLOWCTL_FLOWS_DIR", self.flows())
            .env("FLOWCTL_HEARTBEAT", "200ms")
            .env_remove("FLOWCTL_DB")
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run flowctl")
    }

    /// Runs a command with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`flowctl {}` did not print JSON ({e}).\nstdout: {}\nstderr: {}",
                a.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The latest state of `task` in a `runs show --json` document.
pub fn task_state(show: &Value, task: &str) -> String {
    show["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == task)
        .unwrap_or_else(|| panic!("no task {task} in {show}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Attempts of `task` that started.
pub fn attempts(show: &Value, task: &str) -> Vec<Value> {
    show["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["task_id"] == task && !a["started_at"].is_null())
        .cloned()
        .collect()
}

pub fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Lines of a file (0 when missing): how many times a task's command ran.
pub fn count_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The run id a `trigger --json` printed.
pub fn run_id(v: &Value) -> i64 {
    v["run"]["id"]
        .as_i64()
        .or_else(|| v["run_id"].as_i64())
        .expect("run id")
}
