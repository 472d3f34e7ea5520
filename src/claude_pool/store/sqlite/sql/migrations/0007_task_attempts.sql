-- The earlier runs of a task that ran again (rejected, queued again, recovered), with what
-- each cost: no attempt's spend is lost when a task is queued again.
ALTER TABLE tasks ADD COLUMN attempts_json TEXT;
ALTER TABLE tasks ADD COLUMN attempts_cost_microdollars INTEGER NOT NULL DEFAULT 0;
