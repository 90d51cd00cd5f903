-- Whether a host's latest decision means a clean report is recorded with it (record_decisions,
-- from models.policy.CLEAN_DECISIONS / UNCLEAN_DECISIONS), so the cleanness trigger copies no
-- decision code from the models. Rows decided before this migration are classified once, by the
-- codes 0006 knew.
ALTER TABLE hosts ADD COLUMN last_decision_clean boolean;
UPDATE hosts SET last_decision_clean = CASE
    WHEN last_decision IN ('healthy', 'activate', 'capped', 'paused', 'observer_unhealthy',
                           'backoff', 'storage_domain_inactive') THEN true
    WHEN last_decision IN ('has_problems', 'agent_unreachable', 'stale_report', 'no_report') THEN false
    END;

CREATE OR REPLACE FUNCTION autorecovery_host_cleanness() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_decision IS DISTINCT FROM OLD.last_decision THEN
        IF NEW.last_decision_clean IS TRUE THEN
            NEW.last_clean_at := NULL;
            -- From a problem to clean: the fault cleared (a new host's first report is not one).
            IF NEW.status <> 'up' AND OLD.clean_since IS NULL AND OLD.last_decision_clean IS FALSE THEN
                NEW.clean_since := coalesce(
                    (SELECT r.reported_at FROM reports r WHERE r.host_id = NEW.id),
                    NEW.last_decision_at);
            END IF;
        ELSIF NEW.last_decision_clean IS FALSE THEN
            NEW.clean_since := NULL;
            IF OLD.last_decision_clean IS TRUE THEN
                -- Clean until this decision saw the problem.
                NEW.last_clean_at := NEW.last_decision_at;
            END IF;
        END IF;
    END IF;
    IF NEW.status = 'up' AND OLD.status <> 'up' THEN
        IF OLD.clean_since IS NOT NULL THEN
            PERFORM autorecovery_observe('autorecovery_recovery_seconds',
                greatest(extract(epoch FROM NEW.status_changed_at - OLD.clean_since), 0));
        END IF;
        NEW.clean_since := NULL;
    END IF;
    RETURN NEW;
END $$;
