-- Current schema of the PostgreSQL store, in the schema the store's search_path names. It
-- must equal the result of applying every file in migrations/ in order
-- (tests/test_store_postgres.py checks this). To change the schema, add the next numbered
-- migration and update this file to match.

-- Which version of this schema the tables are at: one row, written by the migrations.
CREATE TABLE claude_pool_schema (
    version INTEGER NOT NULL
);

-- Tasks. The same columns as the SQLite store's (store/_rows.py reads both): scheduling facts
-- and the result figures queries need are columns; prompt, overrides and full result are text.
CREATE TABLE tasks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    slot_id TEXT,
    target_slot TEXT,
    target_role TEXT,
    target_name TEXT,
    claimed_by TEXT,
    created_at_ms BIGINT,
    started_at_ms BIGINT,
    completed_at_ms BIGINT,
    review_required INTEGER NOT NULL DEFAULT 0,
    max_rejections INTEGER NOT NULL DEFAULT 3,
    rejection_count INTEGER NOT NULL DEFAULT 0,
    timeout_secs DOUBLE PRECISION,
    assignment_timeout_secs DOUBLE PRECISION,
    fresh_session INTEGER NOT NULL DEFAULT 0,
    cost_microdollars BIGINT,
    elapsed_ms BIGINT,
    turns_used INTEGER,
    model TEXT,
    success INTEGER,
    tags_json TEXT NOT NULL DEFAULT '[]',
    config_json TEXT,
    original_prompt TEXT,
    prompt TEXT NOT NULL,
    result_json TEXT,
    cwd TEXT,
    attempts_json TEXT,
    attempts_cost_microdollars BIGINT NOT NULL DEFAULT 0,
    depends_on_json TEXT,
    on_dependency_failure TEXT NOT NULL DEFAULT 'cancel',
    plan_first INTEGER NOT NULL DEFAULT 0,
    plan_approved INTEGER NOT NULL DEFAULT 0
);

-- Claims: the queue order, over pending tasks only.
CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'pending';
CREATE INDEX tasks_state ON tasks (state, seq);
CREATE INDEX tasks_slot ON tasks (slot_id, seq);
CREATE INDEX tasks_claimed_by ON tasks (claimed_by) WHERE claimed_by IS NOT NULL;
-- The dependents of a task that ended (migration 0005).
CREATE INDEX tasks_waiting ON tasks (seq) WHERE state = 'pending' AND depends_on_json IS NOT NULL;
CREATE INDEX tasks_metrics ON tasks (state, model, created_at_ms);

CREATE TABLE task_tags (
    task_seq BIGINT NOT NULL REFERENCES tasks (seq) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (task_seq, tag)
);

CREATE INDEX task_tags_tag ON task_tags (tag, task_seq);

-- Pool processes sharing this store, on any machine, and when each was last seen alive.
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    last_heartbeat_ms BIGINT NOT NULL,
    rate_limit_json TEXT
);

-- Slots, with the machine their Claude session was recorded on (session_host): a session is
-- resumed only there.
CREATE TABLE slots (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    worker_id TEXT NOT NULL,
    state TEXT NOT NULL,
    current_task TEXT,
    session_id TEXT,
    tasks_completed INTEGER NOT NULL DEFAULT 0,
    cost_microdollars BIGINT NOT NULL DEFAULT 0,
    restart_count INTEGER NOT NULL DEFAULT 0,
    worktree_path TEXT,
    config_json TEXT NOT NULL,
    session_cwd TEXT,
    session_host TEXT
);

CREATE INDEX slots_worker ON slots (worker_id, seq);

-- Named integer counters: 'spend_microdollars' is the pool's total spend; 'event_seq' the last
-- event number handed out (taken under this row's lock, so events are numbered in commit order).
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('spend_microdollars', 0), ('event_seq', 0);

-- Budget reserved for running tasks, so that every worker on the store keeps one budget.
CREATE TABLE budget_reservations (
    task_id TEXT PRIMARY KEY,
    worker_id TEXT NOT NULL,
    microdollars BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE context (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    from_slot TEXT NOT NULL,
    to_slot TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX messages_unread ON messages (to_slot, id) WHERE delivered = 0;

-- The event log: every domain event as a JSON document; id is its sequence number.
CREATE TABLE events (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    task_id TEXT,
    slot_id TEXT,
    chain_id TEXT,
    worker_id TEXT,
    created_at_ms BIGINT NOT NULL,
    data_json TEXT NOT NULL
);

CREATE INDEX events_task ON events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_chain ON events (chain_id, id) WHERE chain_id IS NOT NULL;
CREATE INDEX events_created ON events (created_at_ms, id);

-- Chains: each chain's progress (one JSON document) and state.
CREATE TABLE chains (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    data_json TEXT NOT NULL
);

CREATE INDEX chains_state ON chains (state, seq);

-- Webhooks and the durable outbox of their deliveries: a delivery row is added in the same
-- statement as its event (insert_events), and retried from here after a crash (migration
-- 0002).
CREATE TABLE webhooks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    secret TEXT,
    source TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- The event types each webhook wants ('*': every one).
CREATE TABLE webhook_events (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    PRIMARY KEY (webhook_id, kind)
);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    payload_json TEXT NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms, seq)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);

-- The version row (the migration runner sets it to the latest version).
INSERT INTO claude_pool_schema (version) VALUES (1);
