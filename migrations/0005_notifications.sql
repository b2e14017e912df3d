-- Flow notifications (`notify:` in a flow file). A claim makes each (run, round, event) notify
-- once even when two processes see it (the SLA watcher of `serve` and the run's own executor);
-- every delivery attempt is recorded and shown on the run page.
CREATE TABLE notification_claims (
    run_id INTEGER NOT NULL REFERENCES flow_runs(id),
    round INTEGER NOT NULL,
    event TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (run_id, round, event)
);

CREATE TABLE notification_attempts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES flow_runs(id),
    event TEXT NOT NULL,
    -- The target as it may be shown: a webhook's scheme and host only (Slack's URLs carry a
    -- secret in their path), or `command`.
    target TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX notification_attempts_run ON notification_attempts (run_id, id);
