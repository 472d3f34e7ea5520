-- The event log holds the engine's domain events (JSON documents with their origin worker and
-- chain). The rows kept before were executor diagnostics, not domain events: they go.
DROP INDEX events_task;
DROP TABLE events;

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
