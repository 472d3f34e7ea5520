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
