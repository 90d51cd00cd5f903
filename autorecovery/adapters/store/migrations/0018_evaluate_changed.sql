-- Evaluate what changed: a tick re-evaluates a host only when something the policy reads changed.
-- reports.digest: a hash of what the policy reads of a report (not its time, VM count or memory).
-- hosts.eval_key: the hash of the host's row, its activation in flight, its report's digest and
-- the tick's context when the host was last evaluated (NULL: evaluate it next tick);
-- eval_until: when that evaluation may change with time alone (a hold, a backoff, a pause ends);
-- eval_code and eval_silent: what it decided, counted for the tick as if evaluated again.
ALTER TABLE reports ADD COLUMN digest text;
ALTER TABLE hosts ADD COLUMN eval_key text;
ALTER TABLE hosts ADD COLUMN eval_until timestamptz;
ALTER TABLE hosts ADD COLUMN eval_code text;
ALTER TABLE hosts ADD COLUMN eval_silent boolean;
-- The cluster context of a tick (clusters, pauses, inactive domains), read once by its
-- coordinator; its batches evaluate against it, and its key is part of every evaluation's.
ALTER TABLE ticks ADD COLUMN context jsonb;
ALTER TABLE ticks ADD COLUMN context_key text;
