-- Monotonic metrics kept in PostgreSQL, so that every API replica serves the same values and
-- they survive restarts, host deletion and pruning. Triggers increment them in the transaction
-- that changes the row, so the code that closes activations or stores reports needs no change.
-- Each counter is split over a few shards (by backend) so concurrent transactions do not queue
-- on one row; /metrics sums the shards.

CREATE TABLE metric_counters (
    name   text NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}',
    shard  smallint NOT NULL,
    value  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (name, labels, shard)
);

-- Histogram bucket bounds (seconds); 'Infinity' is the +Inf bucket, which holds the count.
CREATE TABLE metric_histogram_bounds (
    name text NOT NULL,
    le   double precision NOT NULL,
    PRIMARY KEY (name, le)
);
INSERT INTO metric_histogram_bounds (name, le)
SELECT 'autorecovery_activation_duration_seconds', unnest(
    ARRAY[0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 'Infinity']::double precision[])
UNION ALL
SELECT 'autorecovery_storage_domain_activation_duration_seconds', unnest(
    ARRAY[0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 'Infinity']::double precision[])
UNION ALL
SELECT 'autorecovery_recovery_seconds', unnest(
    ARRAY[5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600, 'Infinity']::double precision[]);

-- Cumulative bucket counts (a bucket counts every observation at or below its bound).
CREATE TABLE metric_histogram_buckets (
    name  text NOT NULL,
    le    double precision NOT NULL,
    shard smallint NOT NULL,
    n     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, le, shard)
);

CREATE FUNCTION autorecovery_count(p_name text, p_labels jsonb, p_by double precision)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO metric_counters AS c (name, labels, shard, value)
    VALUES (p_name, p_labels, (pg_backend_pid() % 8)::smallint, p_by)
    ON CONFLICT (name, labels, shard) DO UPDATE SET value = c.value + excluded.value
$$;

CREATE FUNCTION autorecovery_observe(p_name text, p_value double precision)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO metric_histogram_buckets AS h (name, le, shard, n)
    SELECT b.name, b.le, (pg_backend_pid() % 8)::smallint, 1
    FROM metric_histogram_bounds b WHERE b.name = p_name AND b.le >= p_value
    ON CONFLICT (name, le, shard) DO UPDATE SET n = h.n + 1;
    SELECT autorecovery_count(p_name || '_sum', '{}', p_value);
$$;

-- An activation leaving queued/running (or inserted already closed, e.g. a lock_busy skip)
-- counts once by trigger and outcome; one that ran is observed in the duration histogram.
-- TG_ARGV: the counter's name, the duration histogram's name.
CREATE FUNCTION autorecovery_activation_closed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM autorecovery_count(
        TG_ARGV[0],
        jsonb_build_object('trigger', NEW.trigger, 'outcome', coalesce(NEW.outcome, NEW.state)),
        1);
    IF NEW.started_at IS NOT NULL AND NEW.ended_at IS NOT NULL THEN
        PERFORM autorecovery_observe(
            TG_ARGV[1], greatest(extract(epoch FROM NEW.ended_at - NEW.started_at), 0));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER activations_closed_on_update AFTER UPDATE OF state ON activations
    FOR EACH ROW
    WHEN (OLD.state IN ('queued', 'running') AND NEW.state NOT IN ('queued', 'running'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_activations', 'autorecovery_activation_duration_seconds');
CREATE TRIGGER activations_closed_on_insert AFTER INSERT ON activations
    FOR EACH ROW WHEN (NEW.state NOT IN ('queued', 'running'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_activations', 'autorecovery_activation_duration_seconds');
CREATE TRIGGER sd_activations_closed_on_update AFTER UPDATE OF state ON sd_activations
    FOR EACH ROW
    WHEN (OLD.state IN ('queued', 'running') AND NEW.state NOT IN ('queued', 'running'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_storage_domain_activations',
        'autorecovery_storage_domain_activation_duration_seconds');
CREATE TRIGGER sd_activations_closed_on_insert AFTER INSERT ON sd_activations
    FOR EACH ROW WHEN (NEW.state NOT IN ('queued', 'running'))
    EXECUTE FUNCTION autorecovery_activation_closed(
        'autorecovery_storage_domain_activations',
        'autorecovery_storage_domain_activation_duration_seconds');

-- Report pulls that failed, by kind, counted per statement as the tick stores a batch.
CREATE FUNCTION autorecovery_pull_errors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM autorecovery_count('autorecovery_agent_pull_errors', jsonb_build_object('kind', k.kind), k.n)
    FROM (
        SELECT CASE
                   WHEN r.error LIKE 'bad report:%' THEN 'bad_report'
                   WHEN r.error LIKE 'agent answered HTTP %' THEN 'http_status'
                   WHEN r.error ILIKE '%timeout%' THEN 'timeout'
                   ELSE 'unreachable'
               END AS kind,
               count(*) AS n
        FROM changed r WHERE NOT r.agent_reachable GROUP BY 1
    ) AS k;
    RETURN NULL;
END $$;

CREATE TRIGGER reports_pull_errors_on_insert AFTER INSERT ON reports
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION autorecovery_pull_errors();
CREATE TRIGGER reports_pull_errors_on_update AFTER UPDATE ON reports
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION autorecovery_pull_errors();

-- When a host that is out was first seen clean again (its fault cleared), and when it was last
-- clean, from the decisions the tick records. Going up observes "fault cleared -> up".
ALTER TABLE hosts
    ADD COLUMN clean_since   timestamptz,
    ADD COLUMN last_clean_at timestamptz;

CREATE FUNCTION autorecovery_host_cleanness() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- Decisions the policy reaches only on a fresh report with no problem.
    clean text[] := ARRAY['healthy', 'activate', 'capped', 'paused', 'observer_unhealthy',
                          'backoff', 'storage_domain_inactive'];
    unclean text[] := ARRAY['has_problems', 'agent_unreachable', 'stale_report', 'no_report'];
BEGIN
    IF NEW.last_decision IS DISTINCT FROM OLD.last_decision THEN
        IF NEW.last_decision = ANY (clean) THEN
            NEW.last_clean_at := NULL;
            -- From a problem to clean: the fault cleared (a new host's first report is not one).
            IF NEW.status <> 'up' AND OLD.clean_since IS NULL AND OLD.last_decision = ANY (unclean) THEN
                NEW.clean_since := coalesce(
                    (SELECT r.reported_at FROM reports r WHERE r.host_id = NEW.id),
                    NEW.last_decision_at);
            END IF;
        ELSIF NEW.last_decision = ANY (unclean) THEN
            NEW.clean_since := NULL;
            IF OLD.last_decision = ANY (clean) THEN
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

CREATE TRIGGER hosts_cleanness BEFORE UPDATE OF status, last_decision ON hosts
    FOR EACH ROW EXECUTE FUNCTION autorecovery_host_cleanness();

-- Retention: the pruning deletes by these columns in bounded batches.
CREATE INDEX activations_ended_idx ON activations (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX sd_activations_ended_idx ON sd_activations (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX vm_runs_received_idx ON vm_runs (received_at);
CREATE INDEX charges_at_idx ON charges (at);
