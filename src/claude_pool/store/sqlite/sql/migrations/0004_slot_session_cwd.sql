-- The directory a slot's session was recorded in: a conversation resumes only there.
ALTER TABLE slots ADD COLUMN session_cwd TEXT;
