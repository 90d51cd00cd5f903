-- An activation is a record advanced by short steps, not a waiting process:
-- queued -> sending (fence issued, init being sent) -> sent (the agent has it, or may have it)
-- -> done | failed | abandoned (or skipped). The row (state + fence + deadline) is the lease.

-- The counters' triggers fire when a row leaves the in-flight states: re-created below with the
-- new ones, after the old rows are renamed (so that renaming them counts nothing).
DROP TRIGGER activations_closed_on_update ON activations;
DROP TRIGGER activations_closed_on_insert ON activations;
DROP TRIGGER sd_activations_closed_on_update ON sd_activations;
DROP TRIGGER sd_activations_closed_on_insert ON sd_activations;
DROP INDEX activations_one_in_flight;
DROP INDEX sd_activations_one_in_flight;
ALTER TABLE activations DROP CONSTRAINT activations_state_check;
ALTER TABLE sd_activations DROP CONSTRAINT sd_activations_state_check;

UPDATE activations SET state = 'sending' WHERE state = 'running';
UPDATE activations SET state = 'done' WHERE state = 'succeeded';
UPDATE sd_activations SET state = 'sending' WHERE state = 'running';
UPDATE sd_activations SET state = 'done' WHERE state = 'succeeded';

ALTER TABLE activations ADD CONSTRAINT activations_state_check CHECK (state IN (
    'queued', 'sending', 'sent', 'done', 'failed', 'skipped', 'abandoned'));
ALTER TABLE sd_activations ADD CONSTRAINT sd_activations_state_check CHECK (state IN (
    'queued', 'sending', 'sent', 'done', 'failed', 'skipped', 'abandoned'));

-- At most one activation in flight per host (per domain): duplicate ticks and racing admins meet here.
CREATE UNIQUE INDEX activations_one_in_flight ON activations (host_id)
    WHERE state IN ('queued', 'sending', 'sent');
CREATE UNIQUE INDEX sd_activations_one_in_flight ON sd_activations (sd_id)
    WHERE state IN ('queued', 'sending', 'sent');

-- What the agent answered to the init ('running' or 'unknown'), its protocol, and until when
-- (PostgreSQL's clock) the record holds the object while the init's outcome is not known.
ALTER TABLE activations
    ADD COLUMN answer      text CHECK (answer IN ('running', 'unknown')),
    ADD COLUMN protocol    smallint,
    ADD COLUMN was_status  text,
    ADD COLUMN deadline_at timestamptz;
ALTER TABLE sd_activations
    ADD COLUMN answer      text CHECK (answer IN ('running', 'unknown')),
    ADD COLUMN target      text,
    ADD COLUMN deadline_at timestamptz;

CREATE TRIGGER activations_closed_on_update AFTER UPDATE OF state ON activations
    FOR EACH ROW
    WHEN (OLD.state IN ('queued', 'sending', 'sent') AND NEW.state NOT IN ('queued', 'sending', 'sent'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_activations', 'autorecovery_activation_duration_seconds');
CREATE TRIGGER activations_closed_on_insert AFTER INSERT ON activations
    FOR EACH ROW WHEN (NEW.state NOT IN ('queued', 'sending', 'sent'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_activations', 'autorecovery_activation_duration_seconds');
CREATE TRIGGER sd_activations_closed_on_update AFTER UPDATE OF state ON sd_activations
    FOR EACH ROW
    WHEN (OLD.state IN ('queued', 'sending', 'sent') AND NEW.state NOT IN ('queued', 'sending', 'sent'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_storage_domain_activations',
        'autorecovery_storage_domain_activation_duration_seconds');
CREATE TRIGGER sd_activations_closed_on_insert AFTER INSERT ON sd_activations
    FOR EACH ROW WHEN (NEW.state NOT IN ('queued', 'sending', 'sent'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_storage_domain_activations',
        'autorecovery_storage_domain_activation_duration_seconds');

-- Each step of a host activation (its Celery task id): what `hosts show` lists.
CREATE TABLE activation_steps (
    id            bigserial PRIMARY KEY,
    activation_id text NOT NULL REFERENCES activations (id) ON DELETE CASCADE,
    step          text NOT NULL CHECK (step IN ('send', 'check')),
    task_id       text,
    outcome       text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activation_steps_activation_idx ON activation_steps (activation_id, id);
