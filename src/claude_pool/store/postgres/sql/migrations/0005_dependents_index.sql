-- Every pool looks up the tasks waiting on each task that ends (dependent_tasks): an index
-- over the dependency lists of pending tasks alone, empty when no task waits, so the look-up
-- does not read the whole queue.
CREATE INDEX tasks_dependents ON tasks USING gin ((depends_on_json::jsonb))
    WHERE state = 'pending' AND depends_on_json IS NOT NULL;
