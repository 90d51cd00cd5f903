-- Core fixes: CHECK constraints on every enum-like column (a misspelt state would escape the
-- one-in-flight partial index), the bookkeeping of re-sent activations and of fences the agents
-- have not learnt yet, and the init a v2 report shows running.

ALTER TABLE hosts ADD CONSTRAINT hosts_status_check CHECK (status IN (
    'up', 'initializing', 'non_operational', 'non_responsive', 'error', 'maintenance',
    'unassigned'));
ALTER TABLE activations
    ADD CONSTRAINT activations_state_check CHECK (state IN (
        'queued', 'running', 'succeeded', 'failed', 'skipped', 'abandoned')),
    ADD CONSTRAINT activations_trigger_check CHECK (trigger IN ('auto', 'manual'));
ALTER TABLE storage_domains ADD CONSTRAINT storage_domains_status_check
    CHECK (status IN ('active', 'inactive', 'maintenance'));
ALTER TABLE sd_activations
    ADD CONSTRAINT sd_activations_state_check CHECK (state IN (
        'queued', 'running', 'succeeded', 'failed', 'skipped', 'abandoned')),
    ADD CONSTRAINT sd_activations_trigger_check CHECK (trigger IN ('auto', 'manual'));
ALTER TABLE reports ADD CONSTRAINT reports_source_check CHECK (source IN ('pull', 'push'));

-- A queued activation whose message may be lost is sent again (same task id): how many times it
-- was sent, and when last (PostgreSQL's clock, as every lease time).
ALTER TABLE activations
    ADD COLUMN sends   integer NOT NULL DEFAULT 1 CHECK (sends >= 1),
    ADD COLUMN sent_at timestamptz;

-- Set whenever an activation is taken from its holder (reaped, abandoned, given up) and the
-- host's fence bumped: the tick tells the agent the new fence (POST /fence), then clears it.
ALTER TABLE hosts ADD COLUMN agent_fence_pending boolean NOT NULL DEFAULT false;
CREATE INDEX hosts_agent_fence_pending_idx ON hosts (id) WHERE agent_fence_pending;

-- The init a v2 agent reports running on its host: {"activation_id", "fence", "started_at"}.
ALTER TABLE reports ADD COLUMN init jsonb;
