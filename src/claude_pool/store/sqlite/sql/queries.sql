-- The SQLite store's statements, by name. queries.py loads this file once; database.py runs
-- each statement by its name.
--
-- A block runs from its "-- name: NAME" line to the next one. Comment lines are left out of
-- the statement, so write comments on lines of their own (never after SQL on a line: the
-- fragments are pasted into other statements). Parameters are positional (?), in the order
-- the comment under the name gives.
--
-- {name} in a block is replaced, when the file is loaded, by the block of that name: the
-- column lists that the row mappers in rows.py read by position are written once. Any other
-- {word} is filled in by database.py when it runs the statement, from the fragments below the
-- statement (optional filters, SET lists, the ? of an IN list).


-- ── tasks ────────────────────────────────────────────────────────────

-- name: task_columns
-- A task row as rows.task_from_row reads it, in this order.
seq, id, state, priority, slot_id, target_slot, target_role, target_name, claimed_by,
created_at_ms, started_at_ms, completed_at_ms, review_required, max_rejections,
rejection_count, timeout_secs, assignment_timeout_secs, fresh_session, tags_json,
config_json, original_prompt, prompt, result_json, cwd, attempts_json, depends_on_json,
on_dependency_failure, plan_first, plan_approved

-- name: result_assignments
-- A task's result: rows.result_values(result).
result_json = ?, cost_microdollars = ?, elapsed_ms = ?, turns_used = ?, model = ?, success = ?

-- name: attempts_assignments
-- A task's earlier attempts: rows.attempts_values(attempts).
attempts_json = ?, attempts_cost_microdollars = ?

-- name: insert_task
-- rows.task_values(task); returns the seq it was given.
INSERT INTO tasks (id, state, priority, slot_id, target_slot, target_role, target_name,
    claimed_by, created_at_ms, started_at_ms, completed_at_ms, review_required,
    max_rejections, rejection_count, timeout_secs, assignment_timeout_secs, fresh_session,
    tags_json, config_json, original_prompt, prompt, result_json, cost_microdollars,
    elapsed_ms, turns_used, model, success, cwd, attempts_json, attempts_cost_microdollars,
    depends_on_json, on_dependency_failure, plan_first, plan_approved)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
    ?, ?, ?, ?)
RETURNING seq;

-- name: last_task_seq
-- The highest seq ever handed out, AUTOINCREMENT's own counter included: a batch inserted
-- with executemany (which cannot return the keys it assigns) is numbered after it.
SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0),
    COALESCE((SELECT MAX(seq) FROM tasks), 0));

-- name: insert_numbered_task
-- seq, then rows.task_values(task).
INSERT INTO tasks (seq, id, state, priority, slot_id, target_slot, target_role, target_name,
    claimed_by, created_at_ms, started_at_ms, completed_at_ms, review_required,
    max_rejections, rejection_count, timeout_secs, assignment_timeout_secs, fresh_session,
    tags_json, config_json, original_prompt, prompt, result_json, cost_microdollars,
    elapsed_ms, turns_used, model, success, cwd, attempts_json, attempts_cost_microdollars,
    depends_on_json, on_dependency_failure, plan_first, plan_approved)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
    ?, ?, ?, ?, ?);

-- name: insert_task_tag
-- task seq, tag.
INSERT INTO task_tags (task_seq, tag) VALUES (?, ?);

-- name: get_task
-- task id.
SELECT {task_columns} FROM tasks WHERE id = ?;

-- name: list_tasks
-- The filters' parameters, limit, offset. {where}: WHERE and the task_* fragments joined with
-- AND, or nothing; {order}: ASC or DESC.
SELECT {task_columns} FROM tasks {where} ORDER BY seq {order} LIMIT ? OFFSET ?;

-- name: task_in_state
-- state.
state = ?

-- name: task_on_slot
-- slot id.
slot_id = ?

-- name: task_with_any_tag
-- Each tag; {tags} is one ? per tag.
seq IN (SELECT task_seq FROM task_tags WHERE tag IN ({tags}))

-- name: count_tasks
-- Kept by triggers on tasks (migration 0009): a few rows, however many tasks are stored.
SELECT state, n FROM task_counts WHERE n > 0;

-- name: claim_task
-- The slot's next task, in one compare-and-set UPDATE: the pending task of highest priority,
-- then oldest, whose target the slot matches and whose dependencies have completed (or,
-- with on_dependency_failure 'run', ended). slot id, worker id, now, slot id again,
-- 1 for targeted tasks only (else 0), the slot's role, the slot's name.
UPDATE tasks SET state = 'running', slot_id = ?, claimed_by = ?, started_at_ms = ?
WHERE seq = (
    SELECT seq FROM tasks
    WHERE state = 'pending'
        AND (target_slot IS NULL OR target_slot = ?)
        AND (? = 0 OR target_slot IS NOT NULL OR target_role IS NOT NULL
            OR target_name IS NOT NULL)
        AND (target_role IS NULL OR target_role = ?)
        AND (target_name IS NULL OR target_name = ?)
        AND (depends_on_json IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(tasks.depends_on_json) d
            LEFT JOIN tasks dep ON dep.id = d.value
            WHERE dep.state IS NULL OR (dep.state <> 'completed'
                AND (tasks.on_dependency_failure <> 'run'
                    OR dep.state NOT IN ('failed', 'cancelled')))))
    ORDER BY priority DESC, seq LIMIT 1
)
RETURNING {task_columns};

-- name: occupy_slot
-- The claiming slot shows its task. task id, slot id.
UPDATE slots SET state = 'busy', current_task = ? WHERE id = ?;

-- name: unclaim_task
-- Back to the queue, if still this worker's claim. task id, worker id.
UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, started_at_ms = NULL
WHERE id = ? AND state = 'running' AND claimed_by = ?;

-- name: transition_task
-- Compare-and-set: the task moves only from one of the given states. The assignments'
-- parameters, task id, each state. {assignments}: task_set_state, then task_started,
-- task_requeued or task_finished, then result_assignments and "column = ?" for the other
-- fields changed, joined with commas; {states}: one ? per state.
UPDATE tasks SET {assignments} WHERE id = ? AND state IN ({states})
RETURNING {task_columns};

-- name: transition_task_returning_id
-- transition_task for a caller that needs to know only whether the task moved.
UPDATE tasks SET {assignments} WHERE id = ? AND state IN ({states})
RETURNING id;

-- name: task_set_state
-- the new state.
state = ?

-- name: task_started
-- now.
started_at_ms = ?

-- name: task_requeued
claimed_by = NULL, started_at_ms = NULL, completed_at_ms = NULL

-- name: task_finished
-- now.
claimed_by = NULL, completed_at_ms = ?

-- name: dependent_tasks
-- Pending tasks that depend on a task, oldest first. task id. (Without statistics the
-- planner would walk every pending task through tasks_state.)
SELECT {task_columns} FROM tasks INDEXED BY tasks_waiting
WHERE state = 'pending' AND depends_on_json IS NOT NULL
    AND EXISTS (SELECT 1 FROM json_each(tasks.depends_on_json) d WHERE d.value = ?)
ORDER BY seq;

-- name: pending_tasks
-- Oldest first. created before (or NULL for all), the same again.
SELECT {task_columns} FROM tasks
WHERE state = 'pending' AND (? IS NULL OR created_at_ms < ?)
ORDER BY seq;

-- name: running_tasks_of_worker
-- worker id.
SELECT {task_columns} FROM tasks WHERE state = 'running' AND claimed_by = ?;

-- name: set_task_attempts
-- rows.attempts_values(attempts), task id.
UPDATE tasks SET {attempts_assignments} WHERE id = ?;

-- name: requeue_tasks_of_worker
-- Recovery: a dead worker's running tasks go back to the queue. worker id.
UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, started_at_ms = NULL
WHERE state = 'running' AND claimed_by = ?
RETURNING {task_columns};

-- name: fail_tasks_of_worker
-- Recovery: a dead worker's running tasks fail. now, rows.result_values(the failure),
-- worker id.
UPDATE tasks SET state = 'failed', claimed_by = NULL, completed_at_ms = ?, {result_assignments}
WHERE state = 'running' AND claimed_by = ?
RETURNING {task_columns};


-- ── workers ──────────────────────────────────────────────────────────

-- name: heartbeat_worker
-- worker id, now.
INSERT INTO workers (id, last_heartbeat_ms) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET last_heartbeat_ms = excluded.last_heartbeat_ms;

-- name: remove_worker
-- worker id.
DELETE FROM workers WHERE id = ?;

-- name: live_workers
-- alive since.
SELECT id FROM workers WHERE last_heartbeat_ms >= ? ORDER BY id;

-- name: set_rate_limit
-- The rate-limit hold a worker publishes (NULL: none). JSON, worker id.
UPDATE workers SET rate_limit_json = ? WHERE id = ?;

-- name: rate_limits
-- The holds workers have published.
SELECT id, rate_limit_json FROM workers WHERE rate_limit_json IS NOT NULL ORDER BY id;

-- name: stale_task_owners
-- Workers holding running tasks with no heartbeat since then (or none at all). alive since.
SELECT DISTINCT t.claimed_by FROM tasks t LEFT JOIN workers w ON w.id = t.claimed_by
WHERE t.state = 'running' AND t.claimed_by IS NOT NULL
    AND (w.id IS NULL OR w.last_heartbeat_ms < ?)
ORDER BY t.claimed_by;


-- ── slots ────────────────────────────────────────────────────────────

-- name: slot_columns
-- A slot row as rows.slot_from_row reads it, in this order.
id, state, current_task, session_id, tasks_completed, cost_microdollars, restart_count,
worktree_path, config_json, session_cwd, session_host

-- name: upsert_slot
-- rows.slot_values(slot, worker id).
INSERT INTO slots (id, worker_id, state, current_task, session_id, tasks_completed,
    cost_microdollars, restart_count, worktree_path, config_json, session_cwd, session_host)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    worker_id = excluded.worker_id,
    state = excluded.state,
    current_task = excluded.current_task,
    session_id = excluded.session_id,
    tasks_completed = excluded.tasks_completed,
    cost_microdollars = excluded.cost_microdollars,
    restart_count = excluded.restart_count,
    worktree_path = excluded.worktree_path,
    config_json = excluded.config_json,
    session_cwd = excluded.session_cwd,
    session_host = excluded.session_host;

-- name: get_slot
-- slot id.
SELECT {slot_columns} FROM slots WHERE id = ?;

-- name: list_slots
SELECT {slot_columns} FROM slots ORDER BY seq;

-- name: list_slots_of_worker
-- worker id.
SELECT {slot_columns} FROM slots WHERE worker_id = ? ORDER BY seq;

-- name: update_slot
-- The assignments' values, slot id. {assignments}: "column = ?" for each field changed
-- (rows.slot_column_value), joined with commas.
UPDATE slots SET {assignments} WHERE id = ? RETURNING {slot_columns};

-- name: add_slot_cost
-- cost, tasks completed, slot id.
UPDATE slots SET cost_microdollars = cost_microdollars + ?,
    tasks_completed = tasks_completed + ?
WHERE id = ?;

-- name: settle_slot
-- add_slot_cost that also sets slot fields: cost, tasks completed, the assignments' values,
-- slot id. {more_assignments}: ", column = ?" for each field set (rows.slot_column_value),
-- or nothing.
UPDATE slots SET cost_microdollars = cost_microdollars + ?,
    tasks_completed = tasks_completed + ?{more_assignments}
WHERE id = ?;

-- name: delete_slot
-- slot id.
DELETE FROM slots WHERE id = ?;


-- ── spend ────────────────────────────────────────────────────────────

-- name: add_spend
-- microdollars; returns the new total.
UPDATE counters SET value = value + ? WHERE name = 'spend_microdollars' RETURNING value;

-- name: add_spend_quietly
-- add_spend without the total. microdollars.
UPDATE counters SET value = value + ? WHERE name = 'spend_microdollars';

-- name: get_spend
SELECT value FROM counters WHERE name = 'spend_microdollars';

-- name: budget_state
-- (spent, reserved).
SELECT (SELECT value FROM counters WHERE name = 'spend_microdollars'),
    (SELECT COALESCE(SUM(microdollars), 0) FROM budget_reservations);

-- name: reserve_budget
-- Inside a write transaction (which keeps other writers out). task id, worker id,
-- microdollars, now, then task id (leave out its own earlier reservation), microdollars,
-- limit: inserted only if spend + the other reservations + this one fit the limit.
INSERT INTO budget_reservations (task_id, worker_id, microdollars, created_at_ms)
SELECT ?, ?, ?, ?
WHERE (SELECT value FROM counters WHERE name = 'spend_microdollars')
    + (SELECT COALESCE(SUM(microdollars), 0) FROM budget_reservations WHERE task_id != ?)
    + ? <= ?
ON CONFLICT (task_id) DO UPDATE SET worker_id = excluded.worker_id,
    microdollars = excluded.microdollars, created_at_ms = excluded.created_at_ms;

-- name: release_budget
-- task id.
DELETE FROM budget_reservations WHERE task_id = ?;

-- name: release_budget_of_worker
-- worker id: the reservations of a dead worker's tasks.
DELETE FROM budget_reservations WHERE worker_id = ?;


-- ── shared context ───────────────────────────────────────────────────

-- name: context_set
-- key, value.
INSERT INTO context (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: context_get
-- key.
SELECT value FROM context WHERE key = ?;

-- name: context_delete
-- key.
DELETE FROM context WHERE key = ?;

-- name: context_list
SELECT key, value FROM context ORDER BY key;


-- ── messages ─────────────────────────────────────────────────────────

-- name: message_columns
-- A message row as rows.message_from_row reads it, in this order.
id, from_slot, to_slot, content, created_at_ms

-- name: send_message
-- from slot, to slot, content, now.
INSERT INTO messages (from_slot, to_slot, content, created_at_ms) VALUES (?, ?, ?, ?)
RETURNING {message_columns};

-- name: undelivered_messages
-- A slot's messages not yet drained, up to an id. slot id, the highest id (or -1 for all),
-- the same again.
to_slot = ? AND delivered = 0 AND (? < 0 OR id <= ?)

-- name: read_messages
-- undelivered_messages' parameters.
SELECT {message_columns} FROM messages WHERE {undelivered_messages} ORDER BY id;

-- name: drain_messages
-- undelivered_messages' parameters. RETURNING gives no order: the caller sorts by id.
UPDATE messages SET delivered = 1 WHERE {undelivered_messages}
RETURNING {message_columns};

-- name: undeliver_messages
-- Give back drained messages. Each message id; {ids}: one ? per id.
UPDATE messages SET delivered = 0 WHERE id IN ({ids});


-- ── events ───────────────────────────────────────────────────────────

-- name: insert_event
-- rows.event_values(event); returns its seq.
INSERT INTO events (kind, task_id, slot_id, chain_id, worker_id, created_at_ms, data_json)
VALUES (?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: last_event_id
-- The highest event id ever handed out, AUTOINCREMENT's own counter included: a batch of
-- events inserted with executemany is numbered after it (inside the write transaction, which
-- keeps every other writer out).
SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    COALESCE((SELECT MAX(id) FROM events), 0));

-- name: insert_numbered_event
-- id, then rows.event_values(event).
INSERT INTO events (id, kind, task_id, slot_id, chain_id, worker_id, created_at_ms, data_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: read_events
-- The filters' parameters, limit. {filters}: event_after, then the other event_* fragments
-- asked for, joined with AND.
SELECT id, data_json FROM events WHERE {filters} ORDER BY id LIMIT ?;

-- name: event_after
-- seq.
id > ?

-- name: event_up_to
-- seq.
id <= ?

-- name: event_of_task
-- task id.
task_id = ?

-- name: event_of_chain
-- chain id.
chain_id = ?

-- name: event_of_kinds
-- Each kind; {kinds}: one ? per kind.
kind IN ({kinds})

-- name: event_not_from
-- worker id.
(worker_id IS NULL OR worker_id != ?)

-- name: latest_event_seq
SELECT MAX(id) FROM events;

-- name: first_event_since
-- created since.
SELECT id FROM events WHERE created_at_ms >= ? ORDER BY id LIMIT 1;

-- name: delete_events_before
-- seq.
DELETE FROM events WHERE id < ?;


-- ── chains ───────────────────────────────────────────────────────────

-- name: get_chain
-- chain id.
SELECT data_json FROM chains WHERE id = ?;

-- name: upsert_chain
-- chain id, state, now, now again, data.
INSERT INTO chains (id, state, created_at_ms, updated_at_ms, data_json) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state,
    updated_at_ms = excluded.updated_at_ms,
    data_json = excluded.data_json;

-- name: update_chain_data
-- data, now, chain id.
UPDATE chains SET data_json = ?, updated_at_ms = ? WHERE id = ?;

-- name: list_chains
-- limit, offset.
SELECT data_json FROM chains ORDER BY seq LIMIT ? OFFSET ?;

-- name: list_chains_in_state
-- state, limit, offset.
SELECT data_json FROM chains WHERE state = ? ORDER BY seq LIMIT ? OFFSET ?;


-- ── metrics ──────────────────────────────────────────────────────────

-- name: metric_groups
-- The figures of the tasks in scope, by state and model (store.metrics.MetricGroup). The
-- filters' parameters. {filters}: the task_* fragments joined with AND ("1 = 1" for none);
-- {index}: "INDEXED BY tasks_created" for a time range (read only the range's rows), or nothing.
SELECT state, model, COUNT(*), COUNT(cost_microdollars),
    COALESCE(SUM(cost_microdollars + attempts_cost_microdollars), 0),
    MAX(cost_microdollars + attempts_cost_microdollars),
    COALESCE(SUM(elapsed_ms), 0), MIN(elapsed_ms), MAX(elapsed_ms),
    COALESCE(SUM(turns_used), 0),
    COALESCE(SUM(COALESCE(cost_microdollars, 0) + attempts_cost_microdollars), 0)
FROM tasks {index} WHERE {filters}
GROUP BY state, model;

-- name: middle_elapsed
-- The one or two middle durations of the completed tasks in scope (for the median). The
-- filters' parameters, the offset of the first. {filters}, {index}: as for metric_groups.
SELECT elapsed_ms FROM tasks {index}
WHERE state = 'completed' AND elapsed_ms IS NOT NULL AND {filters}
ORDER BY elapsed_ms LIMIT 2 OFFSET ?;

-- name: task_created_since
-- since.
created_at_ms >= ?

-- name: task_created_before
-- until.
created_at_ms < ?

-- name: task_of_model
-- model.
model = ?


-- ── webhooks ─────────────────────────────────────────────────────────

-- name: upsert_webhook
-- id, url, secret, source, created_at_ms.
INSERT INTO webhooks (id, url, secret, source, created_at_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret,
    source = excluded.source;

-- name: clear_webhook_events
DELETE FROM webhook_events WHERE webhook_id = ?;

-- name: insert_webhook_event
INSERT OR IGNORE INTO webhook_events (webhook_id, kind) VALUES (?, ?);

-- name: delete_webhook
DELETE FROM webhooks WHERE id = ?;

-- name: delete_pending_deliveries
DELETE FROM webhook_deliveries WHERE webhook_id = ? AND state = 'pending';

-- name: list_webhooks
SELECT w.id, w.url, w.secret, w.source, w.created_at_ms,
    (SELECT json_group_array(kind) FROM webhook_events WHERE webhook_id = w.id)
FROM webhooks AS w ORDER BY w.created_at_ms, w.rowid;

-- name: claim_deliveries
-- now + lease, now, limit: the due pending deliveries, oldest event first, leased.
UPDATE webhook_deliveries SET next_attempt_ms = ?
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state = 'pending' AND next_attempt_ms <= ?
    ORDER BY seq, id LIMIT ?
)
RETURNING {columns};

-- name: finish_delivery
-- state, attempts + 1, status, error, next_attempt_ms (kept when NULL), delivered_at_ms, id.
UPDATE webhook_deliveries
SET state = ?, attempts = attempts + 1, last_status = ?, last_error = ?,
    next_attempt_ms = COALESCE(?, next_attempt_ms), delivered_at_ms = ?
WHERE id = ? AND state = 'pending';

-- name: next_delivery_due
SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE state = 'pending';

-- name: list_deliveries
-- The filters' parameters, limit, offset. {filters}: delivery_of_webhook, delivery_in_state.
SELECT {columns} FROM webhook_deliveries {filters} ORDER BY id DESC LIMIT ? OFFSET ?;

-- name: prune_deliveries
DELETE FROM webhook_deliveries WHERE state != 'pending' AND created_at_ms < ?;

-- name: delivery_of_webhook
webhook_id = ?

-- name: delivery_in_state
state = ?


-- ── schema ───────────────────────────────────────────────────────────

-- name: other_tables
-- What a file that claude-pool has not set up already holds.
SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%';
