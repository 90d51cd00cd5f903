-- Housekeeping (reaping, re-sends, fence pushes) runs in a task of its own, never two at once:
-- a run holds this one row's lease, on PostgreSQL's clock, until it ends or the lease runs out.
CREATE TABLE housekeeping_lease (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder text,
    until  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO housekeeping_lease (id) VALUES (true);

-- Fence pushes go round-robin with a backoff per host: an agent that does not answer is asked
-- again later (doubling), so dead agents do not take the turns of live ones.
ALTER TABLE hosts
    ADD COLUMN fence_push_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN fence_push_after timestamptz;
CREATE INDEX hosts_fence_push_due ON hosts (fence_push_after NULLS FIRST, id) WHERE agent_fence_pending;
