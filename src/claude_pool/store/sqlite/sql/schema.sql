-- Current schema of the SQLite store. It must equal the result of applying every file in
-- migrations/ in order (tests/test_store_sqlite.py checks this). To change the schema, add the
-- next numbered migration and update this file to match.

-- Tasks. Scheduling facts and the result figures that queries need are columns; the prompt,
-- the overrides and the full result are kept as text, last in the row so that scans over the
-- small columns stay cheap.
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    slot_id TEXT,
    target_slot TEXT,
    target_role TEXT,
    target_name TEXT,
    claimed_by TEXT,
    created_at_ms INTEGER,
    started_at_ms INTEGER,
    completed_at_ms INTEGER,
    review_required INTEGER NOT NULL DEFAULT 0,
    max_rejections INTEGER NOT NULL DEFAULT 3,
    rejection_count INTEGER NOT NULL DEFAULT 0,
    timeout_secs REAL,
    assignment_timeout_secs REAL,
    fresh_session INTEGER NOT NULL DEFAULT 0,
    cost_microdollars INTEGER,
    elapsed_ms INTEGER,
    turns_used INTEGER,
    model TEXT,
    success INTEGER,
    tags_json TEXT NOT NULL DEFAULT '[]',
    config_json TEXT,
    original_prompt TEXT,
    prompt TEXT NOT NULL,
    result_json TEXT
, cwd TEXT, attempts_json TEXT, attempts_cost_microdollars INTEGER NOT NULL DEFAULT 0, depends_on_json TEXT, on_dependency_failure TEXT NOT NULL DEFAULT 'cancel', plan_first INTEGER NOT NULL DEFAULT 0, plan_approved INTEGER NOT NULL DEFAULT 0);
-- cwd (migration 0002), the earlier attempts of a task run again with their total cost
-- (migration 0007), a task's dependencies (migration 0013) and plan approval
-- (migration 0014) are spelled as ALTER TABLE writes them.

-- Claims: the queue order, over pending tasks only.
CREATE INDEX tasks_queue ON tasks (state, priority DESC, seq) WHERE state = 'pending';
-- Listing by state in submission order; counts by state.
CREATE INDEX tasks_state ON tasks (state, seq);
CREATE INDEX tasks_slot ON tasks (slot_id, seq);
CREATE INDEX tasks_claimed_by ON tasks (claimed_by) WHERE claimed_by IS NOT NULL;
-- The dependents of a task that ended, among the pending tasks that have dependencies
-- (migration 0015).
CREATE INDEX tasks_waiting ON tasks (seq) WHERE state = 'pending' AND depends_on_json IS NOT NULL;
-- Session metrics read covering indexes, never the wide rows: over every task, one pass
-- grouped by state and model and the median walked in elapsed order; over a time range (a
-- session), the range's rows in creation order (migration 0009).
CREATE INDEX tasks_metrics ON tasks (
    state, model, elapsed_ms, cost_microdollars, attempts_cost_microdollars, turns_used,
    created_at_ms
);
CREATE INDEX tasks_elapsed ON tasks (state, elapsed_ms, model, created_at_ms);
CREATE INDEX tasks_created ON tasks (
    created_at_ms, state, model, elapsed_ms, cost_microdollars, attempts_cost_microdollars,
    turns_used
);

-- The number of tasks in each state, kept by the triggers below (migration 0009), so that
-- status reads a few rows however many tasks are stored.
CREATE TABLE task_counts (
    state TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;

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

CREATE TABLE task_tags (
    task_seq INTEGER NOT NULL REFERENCES tasks (seq) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (task_seq, tag)
);

CREATE INDEX task_tags_tag ON task_tags (tag, task_seq);

-- Pool processes sharing this store, and when each was last seen alive.
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    last_heartbeat_ms INTEGER NOT NULL
, rate_limit_json TEXT); -- rate_limit_json: the worker's rate-limit hold (migration 0008)

CREATE TABLE slots (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    worker_id TEXT NOT NULL,
    state TEXT NOT NULL,
    current_task TEXT,
    session_id TEXT,
    tasks_completed INTEGER NOT NULL DEFAULT 0,
    cost_microdollars INTEGER NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    worktree_path TEXT,
    config_json TEXT NOT NULL
, session_cwd TEXT, session_host TEXT);
-- session_cwd and session_host (the machine a session was recorded on): added by migrations
-- 0004 and 0011, spelled as ALTER TABLE writes them.

CREATE INDEX slots_worker ON slots (worker_id, seq);

-- Named integer counters; 'spend_microdollars' is the pool's total spend.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

INSERT INTO counters (name, value) VALUES ('spend_microdollars', 0);

-- Budget reserved for running tasks, in the store, so that every worker on it keeps one budget.
CREATE TABLE budget_reservations (
    task_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    microdollars INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE context (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_slot TEXT NOT NULL,
    to_slot TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX messages_unread ON messages (to_slot, id) WHERE delivered = 0;

-- The event log: every domain event as a JSON document; id is its sequence number.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    task_id TEXT,
    slot_id TEXT,
    chain_id TEXT,
    worker_id TEXT,
    created_at_ms INTEGER NOT NULL,
    data_json TEXT NOT NULL
);

CREATE INDEX events_task ON events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_chain ON events (chain_id, id) WHERE chain_id IS NOT NULL;

-- Chains: each chain's progress (its spec and step results, as one JSON document) and state,
-- so that a restarted pool can show it and resume it.
CREATE TABLE chains (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    data_json TEXT NOT NULL
);

CREATE INDEX chains_state ON chains (state, seq);

-- Webhooks and the durable outbox of their deliveries (a delivery row is added in the same
-- transaction as its event), retried from here after a crash.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT,
    source TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- The event types each webhook wants ('*': every one).
CREATE TABLE webhook_events (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    PRIMARY KEY (webhook_id, kind)
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    payload_json TEXT NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms, seq)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);

-- The outbox rule (migration 0012): each logged event gets a delivery per webhook wanting it.
CREATE TRIGGER events_webhook_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM webhook_events) BEGIN
    INSERT INTO webhook_deliveries
        (webhook_id, seq, event_type, next_attempt_ms, created_at_ms, payload_json)
    SELECT DISTINCT webhook_id, NEW.id, NEW.kind, NEW.created_at_ms, NEW.created_at_ms,
        NEW.data_json
    FROM webhook_events WHERE kind = NEW.kind OR kind = '*';
END;
