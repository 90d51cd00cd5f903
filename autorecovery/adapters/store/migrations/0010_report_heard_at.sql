-- When each host's agent was last heard: the time of its last usable report. A failed pull (or a
-- bad report) replaces the stored report with an observation dated at the attempt, so the
-- report's own time says when we last tried; this column keeps when it last answered.
ALTER TABLE reports ADD COLUMN heard_at timestamptz;
UPDATE reports SET heard_at = reported_at WHERE agent_reachable;

CREATE FUNCTION autorecovery_report_heard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.agent_reachable THEN
        NEW.heard_at := NEW.reported_at;
    ELSIF TG_OP = 'UPDATE' THEN
        NEW.heard_at := OLD.heard_at;
    ELSE
        NEW.heard_at := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER reports_heard_at BEFORE INSERT OR UPDATE ON reports
    FOR EACH ROW EXECUTE FUNCTION autorecovery_report_heard();
