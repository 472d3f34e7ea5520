-- A task may plan first (in plan mode, held for approval of its plan) and then carry the
-- plan out once it is approved.
ALTER TABLE tasks ADD COLUMN plan_first INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN plan_approved INTEGER NOT NULL DEFAULT 0;
