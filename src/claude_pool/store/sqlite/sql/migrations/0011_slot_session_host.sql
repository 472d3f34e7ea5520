-- The machine a slot's Claude session was recorded on: a session resumes only there.
ALTER TABLE slots ADD COLUMN session_host TEXT;
