-- What each pool process publishes while the API pushes back (its tasks retrying an API
-- call), as JSON, so that another process's status shows the hold.
ALTER TABLE workers ADD COLUMN rate_limit_json TEXT;
