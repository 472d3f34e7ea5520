-- A task may run in its own working directory (a chain's worktree), not its slot's.
ALTER TABLE tasks ADD COLUMN cwd TEXT;
