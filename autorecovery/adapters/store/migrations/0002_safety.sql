-- Safety under storms and flapping: backoff, quarantine, pauses, the observer's state, incidents.

ALTER TABLE hosts
    ADD COLUMN failures          integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at   timestamptz,
    ADD COLUMN quarantined_at    timestamptz,
    ADD COLUMN quarantine_reason text,
    -- When an admin (or an admin's successful activation) last cleared the holds: the flap
    -- count starts again from there.
    ADD COLUMN holds_cleared_at  timestamptz,
    -- The storage domain or network a non_operational host's reason is about.
    ADD COLUMN subject           text;

CREATE TABLE pauses (
    scope      text PRIMARY KEY,          -- 'fleet' or a cluster id
    reason     text NOT NULL,
    owner      text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

-- One row: what the last tick saw of the fleet's monitoring, and whether it gated activation.
CREATE TABLE observer (
    id                integer PRIMARY KEY CHECK (id = 1),
    last_full_tick_at timestamptz,
    gate              text,
    silent_hosts      integer NOT NULL DEFAULT 0,
    observed_hosts    integer NOT NULL DEFAULT 0,
    updated_at        timestamptz
);
INSERT INTO observer (id) VALUES (1);

CREATE TABLE incidents (
    id         bigserial PRIMARY KEY,
    cluster_id text NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    reason     text NOT NULL,
    subject    text NOT NULL,
    hosts      integer NOT NULL,
    opened_at  timestamptz NOT NULL,
    closed_at  timestamptz
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (cluster_id, subject) WHERE closed_at IS NULL;
