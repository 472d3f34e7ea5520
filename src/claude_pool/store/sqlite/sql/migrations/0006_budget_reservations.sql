-- Budget reserved for running tasks, in the store, so that every worker on it keeps one budget.
CREATE TABLE budget_reservations (
    task_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    microdollars INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
