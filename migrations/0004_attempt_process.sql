-- The OS process a task attempt started (shell tasks): the group leader's pid and its start
-- time in clock ticks since boot, so that recovery can kill a still-running orphan of a dead
-- owner before the task runs again, and never hits a recycled pid.
ALTER TABLE task_runs ADD COLUMN pid INTEGER;
ALTER TABLE task_runs ADD COLUMN pid_start INTEGER;
