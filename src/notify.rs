//! Flow notifications (`notify:` and `sla:` in a flow file): who hears of a failed run, a failed
//! quality gate or a missed SLA, by webhook or command.
//!
//! Delivery never blocks or fails a run: the run's state is recorded first, then each delivery
//! runs in the background, is retried with backoff, and every attempt is recorded in the state
//! store (the run page shows them). Each (run, round, event) is claimed in the store before it
//! is sent, so it notifies once even when two processes see it (the SLA watcher of `serve` and
//! the run's own executor). `flowctl trigger` waits for its deliveries before exiting
//! ([`Notifier::drain`]), bounded, so a dead webhook cannot hold the command forever.
//!
//! A webhook URL is a secret (Slack's carry their token in the path): it is shown as its scheme
//! and host only, in attempts, logs and pages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::flow::{NotifyEvent, NotifyRule, NotifyTarget};
use crate::store::{NotificationAttempt, RunRow, Store};
use crate::vocab::state::{RunState, TaskState};

/// Tries per delivery, and the wait before the second (doubling after).
const ATTEMPTS: i64 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a notification says: the webhook's JSON body, the command's stdin.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub flow: String,
    pub run_id: i64,
    pub round: i64,
    pub event: String,
    pub state: String,
    pub failed_tasks: Vec<String>,
    pub error: Option<String>,
    /// The run page.
    pub url: String,
    /// One line for people: a Slack incoming webhook takes the payload as is.
    pub text: String,
}

/// Sends a flow's notifications. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    store: Store,
    http: reqwest::Client,
    /// Where run pages are (`FLOWCTL_PUBLIC_URL`), for the links in notifications.
    public_url: Arc<str>,
    pending: Arc<Mutex<JoinSet<()>>>,
}

impl Notifier {
    pub fn new(store: Store, public_url: &str) -> Notifier {
        Notifier {
            store,
            http: reqwest::Client::builder()
                .timeout(WEBHOOK_TIMEOUT)
                .build()
                .unwrap_or_default(),
            public_url: public_url.trim_end_matches('/').into(),
            pending: Arc::default(),
        }
    }

    /// After a run reached a final state: its state's event, `gate_failed` when a quality gate
    /// failed in it, `sla_missed` when it finished later than its SLA allowed.
    pub async fn run_finished(&self, run_id: i64, sla: Option<Duration>, rules: &[NotifyRule]) {
        if rules.is_empty() && sla.is_none() {
            return;
        }
        if let Err(e) = self.try_run_finished(run_id, sla, rules).await {
            tracing::warn!(run = run_id, error = %e, "cannot prepare the run's notifications");
        }
    }

    async fn try_run_finished(
        &self,
        run_id: i64,
        sla: Option<Duration>,
        rules: &[NotifyRule],
    ) -> Result<(), crate::store::StoreError> {
        let run = self.store.get_run(run_id).await?;
        let mut events = Vec::new();
        match run.state {
            RunState::Success => events.push(NotifyEvent::Success),
            RunState::Failed => events.push(NotifyEvent::Failed),
            RunState::Cancelled => events.push(NotifyEvent::Cancelled),
            RunState::Queued | RunState::Running => return Ok(()),
        }
        let gate_failed = self
            .store
            .quality_results(run_id)
            .await?
            .iter()
            .any(|q| q.outcome == "fail");
        if gate_failed {
            events.push(NotifyEvent::GateFailed);
        }
        if let (Some(sla), Some(ended)) = (sla, run.ended_at)
            && (ended - run.created_at).to_std().unwrap_or_default() > sla
        {
            events.push(NotifyEvent::SlaMissed);
        }
        for event in events {
            self.send(&run, event, rules).await?;
        }
        Ok(())
    }

    /// A run still unfinished past its SLA (the watcher of `serve`).
    pub async fn sla_missed(&self, run: &RunRow, rules: &[NotifyRule]) {
        if let Err(e) = self.send(run, NotifyEvent::SlaMissed, rules).await {
            tracing::warn!(run = run.id, error = %e, "cannot send the SLA notification");
        }
    }

    /// Claims `event` for `run` and starts a delivery to every rule that listens to it.
    async fn send(
        &self,
        run: &RunRow,
        event: NotifyEvent,
        rules: &[NotifyRule],
    ) -> Result<(), crate::store::StoreError> {
        let targets: Vec<&NotifyTarget> = rules
            .iter()
            .filter(|r| r.on.contains(&event))
            .map(|r| &r.target)
            .collect();
        // A missed SLA is claimed (and so counted in `flowctl_sla_missed_runs`) even when no
        // rule listens to it.
        if targets.is_empty() && event != NotifyEvent::SlaMissed {
            return Ok(());
        }
        // The SLA is missed once per run, whatever its rounds; run outcomes once per round.
        let round = if event == NotifyEvent::SlaMissed {
            0
        } else {
            run.round
        };
        if !self
            .store
            .claim_notification(run.id, round, event.as_str(), Utc::now())
            .await?
        {
            return Ok(());
        }
        if targets.is_empty() {
            return Ok(());
        }
        let payload = self.payload(run, event).await?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Finished deliveries are reaped here, so a long-lived `serve` holds only live ones.
        while pending.try_join_next().is_some() {}
        for target in targets {
            let (me, target, payload) = (self.clone(), target.clone(), payload.clone());
            pending.spawn(async move { me.deliver(&target, &payload).await });
        }
        Ok(())
    }

    async fn payload(
        &self,
        run: &RunRow,
        event: NotifyEvent,
    ) -> Result<Payload, crate::store::StoreError> {
        let mut failed_tasks: Vec<String> =
            crate::store::latest_states(&self.store.attempts(run.id).await?)
                .into_iter()
                .filter(|(_, s)| *s == TaskState::Failed)
                .map(|(t, _)| t)
                .collect();
        failed_tasks.sort();
        let url = format!("{}/runs/{}", self.public_url, run.id);
        let what = match event {
            NotifyEvent::Success => "succeeded".to_string(),
            NotifyEvent::Failed => "failed".to_string(),
            NotifyEvent::Cancelled => "was cancelled".to_string(),
            NotifyEvent::GateFailed => "was stopped by a failing quality gate".to_string(),
            NotifyEvent::SlaMissed => format!("missed its SLA (state {})", run.state),
        };
        let mut text = format!("flowctl: {} run {} {what}", run.flow, run.id);
        if !failed_tasks.is_empty() {
            text.push_str(&format!("; failed task(s): {}", failed_tasks.join(", ")));
        }
        text.push_str(&format!(" — {url}"));
        Ok(Payload {
            flow: run.flow.clone(),
            run_id: run.id,
            round: run.round,
            event: event.as_str().to_string(),
            state: run.state.to_string(),
            failed_tasks,
            error: run.error.clone(),
            url,
            text,
        })
    }

    /// Delivers `payload` to `target`, retrying with backoff, recording every attempt.
    async fn deliver(&self, target: &NotifyTarget, payload: &Payload) {
        let shown = shown_target(target);
        let mut wait = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let (ok, detail) = match target {
                NotifyTarget::Webhook(url) => self.post(url, &shown, payload).await,
                NotifyTarget::Command(cmd) => run_command(cmd, payload).await,
            };
            let record = NotificationAttempt {
                event: payload.event.clone(),
                target: shown.clone(),
                attempt,
                at: Utc::now(),
                ok,
                detail: detail.clone(),
            };
            if let Err(e) = self
                .store
                .record_notification_attempt(payload.run_id, &record)
                .await
            {
                tracing::warn!(run = payload.run_id, error = %e, "cannot record a notification attempt");
            }
            if ok {
                return;
            }
            tracing::warn!(
                run = payload.run_id,
                event = %payload.event,
                target = %shown,
                attempt,
                detail = %detail,
                "notification not delivered"
            );
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }

    async fn post(&self, url: &str, shown: &str, payload: &Payload) -> (bool, String) {
        match self.http.post(url).json(payload).send().await {
            Ok(resp) if resp.status().is_success() => {
                (true, format!("HTTP {}", resp.status().as_u16()))
            }
            Ok(resp) => (false, format!("HTTP {}", resp.status().as_u16())),
            // reqwest's message names the URL: never the secret part of it.
            Err(e) => (false, crate::vocab::error_chain(&e).replace(url, shown)),
        }
    }

    /// Waits for the deliveries started so far, at most `limit` (what `flowctl trigger` does
    /// before it exits).
    pub async fn drain(&self, limit: Duration) {
        let mut set = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if set.is_empty() {
            return;
        }
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("notifications still being retried after {limit:?}; left undelivered");
        }
    }
}

/// A webhook as it may be shown: scheme and host (the path of a Slack URL is its secret).
pub fn shown_target(target: &NotifyTarget) -> String {
    match target {
        NotifyTarget::Webhook(url) => match url::Url::parse(url) {
            Ok(u) => format!(
                "webhook {}://{}{}/…",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => "webhook".into(),
        },
        NotifyTarget::Command(_) => "command".into(),
    }
}

/// `sh -c CMD`, the payload as JSON on stdin and as `FLOWCTL_NOTIFY_*` variables.
async fn run_command(cmd: &str, p: &Payload) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let json = serde_json::to_string(p).unwrap_or_default();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("FLOWCTL_NOTIFY_EVENT", &p.event)
        .env("FLOWCTL_NOTIFY_FLOW", &p.flow)
        .env("FLOWCTL_NOTIFY_RUN_ID", p.run_id.to_string())
        .env("FLOWCTL_NOTIFY_STATE", &p.state)
        .env("FLOWCTL_NOTIFY_URL", &p.url)
        .env("FLOWCTL_NOTIFY_TEXT", &p.text)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot start sh: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is fine.
        let _ = stdin.write_all(json.as_bytes()).await;
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => (
            false,
            format!("did not finish within {COMMAND_TIMEOUT:?}; killed"),
        ),
        Ok(Err(e)) => (false, format!("waiting for the command: {e}")),
        Ok(Ok(out)) if out.status.success() => (true, "exit 0".into()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last: String = err.lines().last().unwrap_or("").chars().take(200).collect();
            (false, format!("{}: {last}", out.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_shown_without_its_secret_path() {
        let t =
            NotifyTarget::Webhook("https://hooks.slack.com/services/T000/B000/XXXXSECRET".into());
        assert_eq!(shown_target(&t), "webhook https://hooks.slack.com/…");
        let t = NotifyTarget::Webhook("http://127.0.0.1:8099/hook?token=abc".into());
        assert_eq!(shown_target(&t), "webhook http://127.0.0.1:8099/…");
    }
}
