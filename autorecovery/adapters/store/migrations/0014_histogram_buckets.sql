-- Histogram buckets no longer cumulate: a bucket counts the observations above the bound below it
-- and at or below its own, so an observation writes one bucket row, after its histogram's _sum.
-- A transaction observing twice (the reaper closing several activations in one statement) and
-- one observing at once used to lock bucket rows in value order and could deadlock. /metrics
-- cumulates the buckets when it is scraped.
UPDATE metric_histogram_buckets h
SET n = h.n - coalesce(
    (SELECT p.n FROM metric_histogram_buckets p
     WHERE p.name = h.name AND p.shard = h.shard AND p.le < h.le
     ORDER BY p.le DESC LIMIT 1), 0);

CREATE OR REPLACE FUNCTION autorecovery_observe(p_name text, p_value double precision)
RETURNS void LANGUAGE sql AS $$
    -- The _sum row first: every observer takes it before its one bucket row, so two never wait
    -- on each other's buckets.
    SELECT autorecovery_count(p_name || '_sum', '{}', p_value);
    INSERT INTO metric_histogram_buckets AS h (name, le, shard, n)
    SELECT b.name, b.le, (pg_backend_pid() % 8)::smallint, 1
    FROM metric_histogram_bounds b WHERE b.name = p_name AND b.le >= p_value
    ORDER BY b.le LIMIT 1
    ON CONFLICT (name, le, shard) DO UPDATE SET n = h.n + 1;
$$;
