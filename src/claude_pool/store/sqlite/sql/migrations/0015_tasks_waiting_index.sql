-- The pending tasks that have dependencies, so that finding the dependents of a task that
-- ended reads those few rows instead of every pending one (a batch of 10,000 tasks was
-- quadratic in its size).
CREATE INDEX tasks_waiting ON tasks (seq) WHERE state = 'pending' AND depends_on_json IS NOT NULL;
