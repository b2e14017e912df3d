-- Scheduler state: one row per scheduled flow. `last_fire_at` is the cron time of the last fire
-- (not the wall-clock time it happened), the compare-and-set guard against double fires.
CREATE TABLE schedules (
    flow         TEXT PRIMARY KEY,
    expr         TEXT    NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    last_fire_at TEXT,
    next_fire_at TEXT,
    updated_at   TEXT    NOT NULL
);

-- Quality check results (written by quality gates; shown by the UI and `flowctl checks`).
CREATE TABLE IF NOT EXISTS quality_results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER REFERENCES flow_runs (id) ON DELETE CASCADE,
    task_id     TEXT,
    table_name  TEXT    NOT NULL,
    version     INTEGER,
    check_name  TEXT    NOT NULL,
    observed    TEXT,
    threshold   TEXT,
    severity    TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('pass', 'warn', 'fail', 'error')),
    checked_at  TEXT    NOT NULL
);
CREATE INDEX quality_results_by_run ON quality_results (run_id, id);
