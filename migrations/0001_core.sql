-- Core orchestrator state: flow runs, one row per task attempt, task logs.
-- Timestamps are UTC, RFC 3339 with microseconds, so they sort as text.

CREATE TABLE flow_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    flow             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued','running','success','failed','cancelled')),
    trigger_source   TEXT    NOT NULL CHECK (trigger_source IN ('cli','api','schedule','retry')),
    params           TEXT    NOT NULL DEFAULT '{}',
    idempotency_key  TEXT,
    -- The flow file as it was when the run was created: retries and recovery run the same DAG.
    flow_yaml        TEXT    NOT NULL,
    flow_path        TEXT    NOT NULL,
    round            INTEGER NOT NULL DEFAULT 1,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    heartbeat_at     TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    error            TEXT
);
CREATE UNIQUE INDEX flow_runs_idempotency ON flow_runs (flow, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, id DESC);
CREATE INDEX flow_runs_by_state ON flow_runs (state, id DESC);
CREATE INDEX flow_runs_by_flow_state ON flow_runs (flow, state, id DESC);

CREATE TABLE task_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES flow_runs (id) ON DELETE CASCADE,
    task_id      TEXT    NOT NULL,
    -- Global attempt number of this task within the run (1, 2, ...); `round` counts `flowctl retry`s.
    attempt      INTEGER NOT NULL,
    round        INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending','queued','running','success','failed',
                                                   'up_for_retry','upstream_failed','skipped','cancelled')),
    owner        TEXT,
    queued_at    TEXT,
    started_at   TEXT,
    heartbeat_at TEXT,
    ended_at     TEXT,
    next_try_at  TEXT,
    error        TEXT,
    metrics      TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (run_id, task_id, attempt)
);
CREATE INDEX task_runs_by_run ON task_runs (run_id, task_id, attempt);
CREATE INDEX task_runs_live ON task_runs (state) WHERE state IN ('queued','running');

CREATE TABLE task_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  INTEGER NOT NULL REFERENCES flow_runs (id) ON DELETE CASCADE,
    task_id TEXT    NOT NULL,
    attempt INTEGER NOT NULL,
    ts      TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    line    TEXT    NOT NULL
);
CREATE INDEX task_logs_by_task ON task_logs (run_id, task_id, attempt, id);
