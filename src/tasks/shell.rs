//! `shell`: runs a command like Airflow's BashOperator. stdout and stderr go to the task log line
//! by line; a non-zero exit fails the attempt (retryable: commands are often flaky for outside
//! reasons); a command that cannot even start is a user error (not retried).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use marked_yaml::Node;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::process::{KILL_GRACE, ProcessId, WatchedGroup, signal_group};

use super::{
    ParamError, Task, TaskContext, TaskError, TaskLog, TaskOutcome, TaskSettings, parse_params,
};

/// `params:` of a shell task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellConfig {
    /// The command line, run by `shell -c`.
    command: String,
    /// Extra environment variables for the command.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory (relative to where flowctl runs); default: flowctl's own.
    working_dir: Option<String>,
    /// The interpreter; default `sh`.
    shell: Option<String>,
}

#[derive(Debug)]
pub struct ShellTask {
    command: String,
    env: BTreeMap<String, String>,
    working_dir: Option<String>,
    shell: String,
}

pub(super) fn build(
    _settings: &TaskSettings,
    params: Option<&Node>,
) -> Result<Arc<dyn Task>, ParamError> {
    if params.is_none() {
        return Err(ParamError {
            message: "shell task needs `params.command`".into(),
            line: None,
        });
    }
    let cfg: ShellConfig = parse_params(params)?;
    if cfg.command.trim().is_empty() {
        return Err(ParamError {
            message: "params.command is empty".into(),
            line: params.and_then(|n| n.span().start()).map(|m| m.line()),
        });
    }
    Ok(Arc::new(ShellTask {
        command: cfg.command,
        env: cfg.env,
        working_dir: cfg.working_dir,
        shell: cfg.shell.unwrap_or_else(|| "sh".into()),
    }))
}

#[async_trait]
impl Task for ShellTask {
    async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let mut cmd = Command::new(&self.shell);
        cmd.arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so cancelling kills the whole pipeline it starts.
            .process_group(0)
            .env("FLOWCTL_RUN_ID", ctx.run_id.to_string())
            .env("FLOWCTL_FLOW", &ctx.flow)
            .env("FLOWCTL_TASK_ID", &ctx.task_id)
            .env("FLOWCTL_ATTEMPT", ctx.attempt.to_string())
            .env("FLOWCTL_HOME", &ctx.home);
        // The running flowctl, so a flow can call its own subcommands without a PATH setup.
        if let Ok(exe) = std::env::current_exe() {
            cmd.env("FLOWCTL_BIN", exe);
        }
        for (k, v) in &ctx.params {
            cmd.env(format!("FLOWCTL_PARAM_{}", k.to_uppercase()), v);
        }
        cmd.envs(&self.env);
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            TaskError::user(format!(
                "cannot start `{} -c {}`{}: {e}",
                self.shell,
                self.command,
                self.working_dir
                    .as_ref()
                    .map(|d| format!(" in `{d}`"))
                    .unwrap_or_default()
            ))
        })?;
        let pid = child.id();
        // Announced to the watcher (killed with us if we die) and reported for recovery.
        let _watched = pid.map(WatchedGroup::watch);
        if let Some(leader) = pid.and_then(ProcessId::of) {
            ctx.process.started(leader);
        }
        let out = tokio::spawn(pump(child.stdout.take(), ctx.log.clone(), "stdout"));
        let err = tokio::spawn(pump(child.stderr.take(), ctx.log.clone(), "stderr"));

        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| TaskError::external(format!("waiting for command: {e}")))?,
            _ = ctx.cancel.cancelled() => {
                terminate_group(pid, &mut child).await;
                let _ = out.await;
                let _ = err.await;
                return Err(TaskError::cancelled());
            }
        };
        let (stdout_lines, stderr_lines) = (out.await.unwrap_or(0), err.await.unwrap_or(0));
        match status.code() {
            Some(0) => Ok(TaskOutcome::default()
                .with_metric("exit_code", 0)
                .with_metric("stdout_lines", stdout_lines)
                .with_metric("stderr_lines", stderr_lines)),
            Some(code) => Err(TaskError::external(format!(
                "command exited with status {code}"
            ))),
            None => Err(TaskError::external("command killed by a signal")),
        }
    }
}

/// Copies a pipe into the task log line by line; returns the number of lines.
async fn pump<R: AsyncRead + Unpin>(pipe: Option<R>, log: TaskLog, stream: &'static str) -> u64 {
    let Some(pipe) = pipe else { return 0 };
    let mut lines = BufReader::new(pipe).lines();
    let mut n = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        log.write(stream, line);
        n += 1;
    }
    n
}

/// TERM to the command's whole group, KILL after the grace if its leader is still there.
async fn terminate_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    let Some(pid) = pid else { return };
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}
