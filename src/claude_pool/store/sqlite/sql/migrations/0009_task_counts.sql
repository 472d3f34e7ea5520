-- Costs that do not grow with history. The number of tasks in each state is kept by triggers,
-- so that status reads a few rows however many tasks are stored; session metrics and the median
-- read an index in creation order, so that a session's figures cost what the session holds.
CREATE TABLE task_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO task_counts (state, n) SELECT state, COUNT(*) FROM tasks GROUP BY state;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER task_counts_update AFTER UPDATE OF state ON tasks
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO task_counts (state, n) VALUES (NEW.state, 1)
    ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = OLD.state;
END;

-- The metrics index covers the attempts' spend again (migration 0007 left it out, so every
-- metrics query read the wide rows), and a second one serves a time range.
DROP INDEX tasks_metrics;
CREATE INDEX tasks_metrics ON tasks (
    state, model, elapsed_ms, cost_microdollars, attempts_cost_microdollars, turns_used,
    created_at_ms
);
CREATE INDEX tasks_created ON tasks (
    created_at_ms, state, model, elapsed_ms, cost_microdollars, attempts_cost_microdollars,
    turns_used
);
