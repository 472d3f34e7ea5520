-- The outbox rule as a trigger: each logged event gets a delivery per webhook wanting it, in
-- the statement that logs it (cheaper than a statement of its own, and nothing to do at all
-- while no webhook exists).
CREATE TRIGGER events_webhook_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM webhook_events) BEGIN
    INSERT INTO webhook_deliveries
        (webhook_id, seq, event_type, next_attempt_ms, created_at_ms, payload_json)
    SELECT DISTINCT webhook_id, NEW.id, NEW.kind, NEW.created_at_ms, NEW.created_at_ms,
        NEW.data_json
    FROM webhook_events WHERE kind = NEW.kind OR kind = '*';
END;
