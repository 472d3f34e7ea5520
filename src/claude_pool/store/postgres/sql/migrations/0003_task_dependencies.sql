-- A task may wait for others (a JSON array of their ids; NULL: none), and says what it does
-- when one of them fails or is cancelled ('cancel' it too, or 'run' anyway).
ALTER TABLE tasks ADD COLUMN depends_on_json TEXT;
ALTER TABLE tasks ADD COLUMN on_dependency_failure TEXT NOT NULL DEFAULT 'cancel';
