-- The PostgreSQL store's statements, by name (the layout claude_pool.store._queries reads; see
-- the SQLite store's queries.sql for the conventions). Parameters are positional (%s), in the
-- order the comment under the name gives; a list parameter is matched with = ANY (%s).
-- {name} is replaced by the block of that name when the file is loaded; any other {word} is
-- filled in by store.py from the fragments below the statement.


-- ── tasks ────────────────────────────────────────────────────────────

-- name: task_columns
-- A task row as store._rows.task_from_row reads it, in this order.
seq, id, state, priority, slot_id, target_slot, target_role, target_name, claimed_by,
created_at_ms, started_at_ms, completed_at_ms, review_required, max_rejections,
rejection_count, timeout_secs, assignment_timeout_secs, fresh_session, tags_json,
config_json, original_prompt, prompt, result_json, cwd, attempts_json, depends_on_json,
on_dependency_failure, plan_first, plan_approved

-- name: result_assignments
-- A task's result: _rows.result_values(result).
result_json = %s, cost_microdollars = %s, elapsed_ms = %s, turns_used = %s, model = %s,
success = %s

-- name: attempts_assignments
-- A task's earlier attempts: _rows.attempts_values(attempts).
attempts_json = %s, attempts_cost_microdollars = %s

-- name: insert_task
-- _rows.task_values(task); returns the seq it was given.
INSERT INTO tasks (id, state, priority, slot_id, target_slot, target_role, target_name,
    claimed_by, created_at_ms, started_at_ms, completed_at_ms, review_required,
    max_rejections, rejection_count, timeout_secs, assignment_timeout_secs, fresh_session,
    tags_json, config_json, original_prompt, prompt, result_json, cost_microdollars,
    elapsed_ms, turns_used, model, success, cwd, attempts_json, attempts_cost_microdollars,
    depends_on_json, on_dependency_failure, plan_first, plan_approved)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING seq;

-- name: insert_task_tags
-- task seq, the tags (a list).
INSERT INTO task_tags (task_seq, tag) SELECT %s, unnest(%s::text[]);

-- name: get_task
-- task id.
SELECT {task_columns} FROM tasks WHERE id = %s;

-- name: list_tasks
-- The filters' parameters, limit, offset. {where}: WHERE and the task_* fragments joined with
-- AND, or nothing; {order}: ASC or DESC.
SELECT {task_columns} FROM tasks {where} ORDER BY seq {order} LIMIT %s OFFSET %s;

-- name: task_in_state
-- state.
state = %s

-- name: task_on_slot
-- slot id.
slot_id = %s

-- name: task_with_any_tag
-- the tags (a list).
seq IN (SELECT task_seq FROM task_tags WHERE tag = ANY (%s))

-- name: count_tasks
SELECT state, COUNT(*) FROM tasks GROUP BY state;

-- name: claim_task
-- The slot's next task: the pending task of highest priority, then oldest, whose target the
-- slot matches and whose dependencies have completed (or, with on_dependency_failure 'run',
-- ended), locked with SKIP LOCKED so that concurrent claimers each take another one; the
-- claiming slot shows it. One statement, so one round trip and one commit per claim: the
-- claim loop of a pool waits for each claim, so its latency bounds the pool's throughput.
-- slot id, worker id, now, slot id again, targeted only (boolean), the slot's role, name,
-- slot id again.
WITH claimed AS (
    UPDATE tasks SET state = 'running', slot_id = %s, claimed_by = %s, started_at_ms = %s
    WHERE seq = (
        SELECT seq FROM tasks
        WHERE state = 'pending'
            AND (target_slot IS NULL OR target_slot = %s)
            AND (NOT %s OR target_slot IS NOT NULL OR target_role IS NOT NULL
                OR target_name IS NOT NULL)
            AND (target_role IS NULL OR target_role = %s)
            AND (target_name IS NULL OR target_name = %s)
            AND (depends_on_json IS NULL OR NOT EXISTS (
                SELECT 1 FROM jsonb_array_elements_text(tasks.depends_on_json::jsonb) d(id)
                LEFT JOIN tasks dep ON dep.id = d.id
                WHERE dep.state IS NULL OR (dep.state <> 'completed'
                    AND (tasks.on_dependency_failure <> 'run'
                        OR dep.state NOT IN ('failed', 'cancelled')))))
        ORDER BY priority DESC, seq LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {task_columns}
), occupied AS (
    UPDATE slots SET state = 'busy', current_task = (SELECT id FROM claimed)
    WHERE id = %s AND EXISTS (SELECT 1 FROM claimed)
)
SELECT * FROM claimed;

-- name: unclaim_task
-- Back to the queue, if still this worker's claim. task id, worker id.
UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, started_at_ms = NULL
WHERE id = %s AND state = 'running' AND claimed_by = %s;

-- name: lock_task
-- The task's row, locked for the rest of the transaction. task id.
SELECT {task_columns} FROM tasks WHERE id = %s FOR UPDATE;

-- name: transition_task
-- Compare-and-set: the task moves only from one of the given states. The assignments'
-- parameters, task id, the states (a list). {assignments}: task_set_state, then task_started,
-- task_requeued or task_finished, then result_assignments and "column = %s" for the other
-- fields changed, joined with commas.
UPDATE tasks SET {assignments} WHERE id = %s AND state = ANY (%s)
RETURNING {task_columns};

-- name: task_set_state
-- the new state.
state = %s

-- name: task_started
-- now.
started_at_ms = %s

-- name: task_requeued
claimed_by = NULL, started_at_ms = NULL, completed_at_ms = NULL

-- name: task_finished
-- now.
claimed_by = NULL, completed_at_ms = %s

-- name: dependent_tasks
-- Pending tasks that depend on a task, oldest first. task id (a JSON array of it).
SELECT {task_columns} FROM tasks
WHERE state = 'pending' AND depends_on_json IS NOT NULL
    AND depends_on_json::jsonb @> %s::jsonb
ORDER BY seq;

-- name: pending_tasks
-- Oldest first. created before (or NULL for all), the same again.
SELECT {task_columns} FROM tasks
WHERE state = 'pending' AND (%s::bigint IS NULL OR created_at_ms < %s)
ORDER BY seq;

-- name: running_tasks_of_worker
-- worker id.
SELECT {task_columns} FROM tasks WHERE state = 'running' AND claimed_by = %s FOR UPDATE;

-- name: set_task_attempts
-- _rows.attempts_values(attempts), task id.
UPDATE tasks SET {attempts_assignments} WHERE id = %s;

-- name: requeue_tasks_of_worker
-- Recovery: a dead worker's running tasks go back to the queue. worker id.
UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, started_at_ms = NULL
WHERE state = 'running' AND claimed_by = %s
RETURNING {task_columns};

-- name: fail_tasks_of_worker
-- Recovery: a dead worker's running tasks fail. now, _rows.result_values(the failure),
-- worker id.
UPDATE tasks SET state = 'failed', claimed_by = NULL, completed_at_ms = %s, {result_assignments}
WHERE state = 'running' AND claimed_by = %s
RETURNING {task_columns};


-- ── workers ──────────────────────────────────────────────────────────

-- name: heartbeat_worker
-- worker id, now.
INSERT INTO workers (id, last_heartbeat_ms) VALUES (%s, %s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat_ms = EXCLUDED.last_heartbeat_ms;

-- name: remove_worker
-- worker id.
DELETE FROM workers WHERE id = %s;

-- name: live_workers
-- alive since.
SELECT id FROM workers WHERE last_heartbeat_ms >= %s ORDER BY id;

-- name: set_rate_limit
-- The rate-limit hold a worker publishes (NULL: none). JSON, worker id.
UPDATE workers SET rate_limit_json = %s WHERE id = %s;

-- name: rate_limits
-- The holds workers have published.
SELECT id, rate_limit_json FROM workers WHERE rate_limit_json IS NOT NULL ORDER BY id;

-- name: stale_task_owners
-- Workers holding running tasks with no heartbeat since then (or none at all). alive since.
SELECT DISTINCT t.claimed_by FROM tasks t LEFT JOIN workers w ON w.id = t.claimed_by
WHERE t.state = 'running' AND t.claimed_by IS NOT NULL
    AND (w.id IS NULL OR w.last_heartbeat_ms < %s)
ORDER BY t.claimed_by;


-- ── slots ────────────────────────────────────────────────────────────

-- name: slot_columns
-- A slot row as _rows.slot_from_row reads it, in this order.
id, state, current_task, session_id, tasks_completed, cost_microdollars, restart_count,
worktree_path, config_json, session_cwd, session_host

-- name: upsert_slot
-- _rows.slot_values(slot, worker id).
INSERT INTO slots (id, worker_id, state, current_task, session_id, tasks_completed,
    cost_microdollars, restart_count, worktree_path, config_json, session_cwd, session_host)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    worker_id = EXCLUDED.worker_id,
    state = EXCLUDED.state,
    current_task = EXCLUDED.current_task,
    session_id = EXCLUDED.session_id,
    tasks_completed = EXCLUDED.tasks_completed,
    cost_microdollars = EXCLUDED.cost_microdollars,
    restart_count = EXCLUDED.restart_count,
    worktree_path = EXCLUDED.worktree_path,
    config_json = EXCLUDED.config_json,
    session_cwd = EXCLUDED.session_cwd,
    session_host = EXCLUDED.session_host;

-- name: get_slot
-- slot id.
SELECT {slot_columns} FROM slots WHERE id = %s;

-- name: list_slots
SELECT {slot_columns} FROM slots ORDER BY seq;

-- name: list_slots_of_worker
-- worker id.
SELECT {slot_columns} FROM slots WHERE worker_id = %s ORDER BY seq;

-- name: update_slot
-- The assignments' values, slot id. {assignments}: "column = %s" for each field changed
-- (_rows.slot_column_value), joined with commas.
UPDATE slots SET {assignments} WHERE id = %s RETURNING {slot_columns};

-- name: add_slot_cost
-- cost, tasks completed, slot id.
UPDATE slots SET cost_microdollars = cost_microdollars + %s,
    tasks_completed = tasks_completed + %s
WHERE id = %s;

-- name: settle_slot
-- add_slot_cost that also sets slot fields: cost, tasks completed, the assignments' values,
-- slot id. {more_assignments}: ", column = %s" for each field set, or nothing.
UPDATE slots SET cost_microdollars = cost_microdollars + %s,
    tasks_completed = tasks_completed + %s{more_assignments}
WHERE id = %s;

-- name: delete_slot
-- slot id.
DELETE FROM slots WHERE id = %s;


-- ── spend ────────────────────────────────────────────────────────────

-- name: add_spend
-- microdollars; returns the new total. Takes the spend row's lock until commit.
UPDATE counters SET value = value + %s WHERE name = 'spend_microdollars' RETURNING value;

-- name: lock_spend
-- The spend row, locked until commit: reservations and spending take turns across workers.
SELECT value FROM counters WHERE name = 'spend_microdollars' FOR UPDATE;

-- name: get_spend
SELECT value FROM counters WHERE name = 'spend_microdollars';

-- name: budget_state
-- (spent, reserved).
SELECT (SELECT value FROM counters WHERE name = 'spend_microdollars'),
    (SELECT COALESCE(SUM(microdollars), 0)::bigint FROM budget_reservations);

-- name: reserve_budget
-- After lock_spend, in the same transaction. task id, worker id, microdollars, now, task id
-- (leave out its own earlier reservation), spend, microdollars, limit: inserted only if
-- spend + the other reservations + this one fit the limit.
INSERT INTO budget_reservations (task_id, worker_id, microdollars, created_at_ms)
SELECT %s, %s, %s, %s
WHERE (SELECT COALESCE(SUM(microdollars), 0) FROM budget_reservations WHERE task_id != %s)
    + %s + %s <= %s
ON CONFLICT (task_id) DO UPDATE SET worker_id = EXCLUDED.worker_id,
    microdollars = EXCLUDED.microdollars, created_at_ms = EXCLUDED.created_at_ms;

-- name: release_budget
-- task id.
DELETE FROM budget_reservations WHERE task_id = %s;

-- name: release_budget_of_worker
-- worker id: the reservations of a dead worker's tasks.
DELETE FROM budget_reservations WHERE worker_id = %s;


-- ── shared context ───────────────────────────────────────────────────

-- name: context_set
-- key, value.
INSERT INTO context (key, value) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: context_get
-- key.
SELECT value FROM context WHERE key = %s;

-- name: context_delete
-- key.
DELETE FROM context WHERE key = %s;

-- name: context_list
SELECT key, value FROM context ORDER BY key;


-- ── messages ─────────────────────────────────────────────────────────

-- name: message_columns
-- A message row as _rows.message_from_row reads it, in this order.
id, from_slot, to_slot, content, created_at_ms

-- name: send_message
-- from slot, to slot, content, now.
INSERT INTO messages (from_slot, to_slot, content, created_at_ms) VALUES (%s, %s, %s, %s)
RETURNING {message_columns};

-- name: undelivered_messages
-- A slot's messages not yet drained, up to an id. slot id, the highest id (or -1 for all),
-- the same again.
to_slot = %s AND delivered = 0 AND (%s::bigint < 0 OR id <= %s)

-- name: read_messages
-- undelivered_messages' parameters.
SELECT {message_columns} FROM messages WHERE {undelivered_messages} ORDER BY id;

-- name: drain_messages
-- undelivered_messages' parameters. RETURNING gives no order: the caller sorts by id.
UPDATE messages SET delivered = 1 WHERE {undelivered_messages}
RETURNING {message_columns};

-- name: undeliver_messages
-- Give back drained messages. the message ids (a list).
UPDATE messages SET delivered = 0 WHERE id = ANY (%s);


-- ── events ───────────────────────────────────────────────────────────

-- name: insert_events
-- Append events, add their webhook deliveries and announce them, in one statement: the last
-- number is taken from the event_seq counter, whose row stays locked until commit, so events
-- become visible in the order of their numbers (a reader that has seen one has seen every
-- smaller one); each event gets one pending delivery, due at once, per webhook wanting it
-- (the outbox rule); the NOTIFY with the last number is sent when the transaction commits.
-- How many events, the same again, then one array per column (_rows.event_values,
-- transposed), the writer's clock offset (deliveries are due in the server's clock), the
-- channel. Returns the last number.
WITH taken AS (
    UPDATE counters SET value = value + %s WHERE name = 'event_seq' RETURNING value
), inserted AS (
    INSERT INTO events (id, kind, task_id, slot_id, chain_id, worker_id, created_at_ms,
        data_json)
    SELECT taken.value - %s + e.ord, e.kind, e.task_id, e.slot_id, e.chain_id, e.worker_id,
        e.created_at_ms, e.data_json
    FROM taken, unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
        %s::bigint[], %s::text[])
        WITH ORDINALITY AS e (kind, task_id, slot_id, chain_id, worker_id, created_at_ms,
            data_json, ord)
    RETURNING id, kind, created_at_ms, data_json
), enqueued AS (
    INSERT INTO webhook_deliveries
        (webhook_id, seq, event_type, next_attempt_ms, created_at_ms, payload_json)
    SELECT DISTINCT w.webhook_id, i.id, i.kind, i.created_at_ms + %s, i.created_at_ms,
        i.data_json
    FROM inserted AS i JOIN webhook_events AS w ON w.kind = i.kind OR w.kind = '*'
)
SELECT value, pg_notify(%s, value::text) FROM taken;

-- name: read_events
-- The filters' parameters, limit. {filters}: event_after, then the other event_* fragments
-- asked for, joined with AND.
SELECT id, data_json FROM events WHERE {filters} ORDER BY id LIMIT %s;

-- name: event_after
-- seq.
id > %s

-- name: event_up_to
-- seq.
id <= %s

-- name: event_of_task
-- task id.
task_id = %s

-- name: event_of_chain
-- chain id.
chain_id = %s

-- name: event_of_kinds
-- the kinds (a list).
kind = ANY (%s)

-- name: event_not_from
-- worker id.
(worker_id IS NULL OR worker_id != %s)

-- name: latest_event_seq
SELECT value FROM counters WHERE name = 'event_seq';

-- name: first_event_since
-- created since.
SELECT id FROM events WHERE created_at_ms >= %s ORDER BY id LIMIT 1;

-- name: last_event_id
SELECT MAX(id) FROM events;

-- name: delete_events_before
-- seq.
DELETE FROM events WHERE id < %s;


-- ── chains ───────────────────────────────────────────────────────────

-- name: get_chain
-- chain id.
SELECT data_json FROM chains WHERE id = %s;

-- name: lock_chain
-- The chain's row, locked until commit. chain id.
SELECT data_json FROM chains WHERE id = %s FOR UPDATE;

-- name: upsert_chain
-- chain id, state, now, now again, data.
INSERT INTO chains (id, state, created_at_ms, updated_at_ms, data_json)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    state = EXCLUDED.state,
    updated_at_ms = EXCLUDED.updated_at_ms,
    data_json = EXCLUDED.data_json;

-- name: update_chain_data
-- data, now, chain id.
UPDATE chains SET data_json = %s, updated_at_ms = %s WHERE id = %s;

-- name: list_chains
-- limit, offset.
SELECT data_json FROM chains ORDER BY seq LIMIT %s OFFSET %s;

-- name: list_chains_in_state
-- state, limit, offset.
SELECT data_json FROM chains WHERE state = %s ORDER BY seq LIMIT %s OFFSET %s;


-- ── metrics ──────────────────────────────────────────────────────────

-- name: metric_groups
-- The figures of the tasks in scope, by state and model (store.metrics.MetricGroup). The
-- filters' parameters. {filters}: the task_* fragments joined with AND ("TRUE" for none).
SELECT state, model, COUNT(*), COUNT(cost_microdollars),
    COALESCE(SUM(cost_microdollars + attempts_cost_microdollars), 0)::bigint,
    MAX(cost_microdollars + attempts_cost_microdollars),
    COALESCE(SUM(elapsed_ms), 0)::bigint, MIN(elapsed_ms), MAX(elapsed_ms),
    COALESCE(SUM(turns_used), 0)::bigint,
    COALESCE(SUM(COALESCE(cost_microdollars, 0) + attempts_cost_microdollars), 0)::bigint
FROM tasks WHERE {filters}
GROUP BY state, model;

-- name: middle_elapsed
-- The one or two middle durations of the completed tasks in scope (for the median). The
-- filters' parameters, the offset of the first.
SELECT elapsed_ms FROM tasks
WHERE state = 'completed' AND elapsed_ms IS NOT NULL AND {filters}
ORDER BY elapsed_ms LIMIT 2 OFFSET %s;

-- name: task_created_since
-- since.
created_at_ms >= %s

-- name: task_created_before
-- until.
created_at_ms < %s

-- name: task_of_model
-- model.
model = %s


-- ── webhooks ─────────────────────────────────────────────────────────

-- name: delivery_columns
-- A delivery row as store._delivery reads it, in this order.
id, webhook_id, seq, event_type, state, attempts, next_attempt_ms, last_status, last_error,
created_at_ms, delivered_at_ms, payload_json

-- name: upsert_webhook
-- id, url, secret, source, created_at_ms.
INSERT INTO webhooks (id, url, secret, source, created_at_ms) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,
    source = EXCLUDED.source;

-- name: clear_webhook_events
-- webhook id.
DELETE FROM webhook_events WHERE webhook_id = %s;

-- name: insert_webhook_events
-- webhook id, the kinds (a list).
INSERT INTO webhook_events (webhook_id, kind) SELECT %s, unnest(%s::text[])
ON CONFLICT DO NOTHING;

-- name: delete_webhook
-- webhook id (its event types go with it).
DELETE FROM webhooks WHERE id = %s;

-- name: delete_pending_deliveries
-- webhook id.
DELETE FROM webhook_deliveries WHERE webhook_id = %s AND state = 'pending';

-- name: list_webhooks
SELECT w.id, w.url, w.secret, w.source, w.created_at_ms,
    ARRAY(SELECT kind FROM webhook_events WHERE webhook_id = w.id ORDER BY kind)
FROM webhooks AS w ORDER BY w.created_at_ms, w.seq;

-- name: claim_deliveries
-- now + lease, now, limit: the due pending deliveries, oldest event first, leased; rows
-- another claimant is taking at this moment are skipped. Due times and leases are in the
-- database server's clock (the store adds its clock offset to the caller's times), so that
-- workers whose clocks disagree never take a delivery that another one holds.
UPDATE webhook_deliveries SET next_attempt_ms = %s
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_ms <= %s
    ORDER BY seq, id LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING {delivery_columns};

-- name: finish_delivery
-- state, status, error, next_attempt_ms (kept when NULL), delivered_at_ms, id.
UPDATE webhook_deliveries
SET state = %s, attempts = attempts + 1, last_status = %s, last_error = %s,
    next_attempt_ms = COALESCE(%s, next_attempt_ms), delivered_at_ms = %s
WHERE id = %s AND state = 'pending';

-- name: next_delivery_due
SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE state = 'pending';

-- name: prune_deliveries
DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at_ms < %s;

-- name: list_deliveries
-- The filters' parameters, limit, offset. {filters}: WHERE and delivery_of_webhook,
-- delivery_in_state joined with AND, or nothing.
SELECT {delivery_columns} FROM webhook_deliveries {filters} ORDER BY id DESC LIMIT %s OFFSET %s;

-- name: delivery_of_webhook
webhook_id = %s

-- name: delivery_in_state
state = %s


-- ── schema ───────────────────────────────────────────────────────────

-- name: server_clock_ms
-- The server's clock, in ms since the epoch.
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

-- name: schema_version
-- The version the tables are at (no row, or no table: none).
SELECT version FROM claude_pool_schema;

-- name: set_schema_version
-- version.
UPDATE claude_pool_schema SET version = %s;

-- name: store_tables
-- Which of the store's tables exist in the current schema, whatever the user may do with
-- them (information_schema shows only those it has privileges on). the names (a list).
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY (%s);
