-- Error state from VM placement feedback, and storage domains with their own activations.

ALTER TABLE hosts ADD COLUMN error_until timestamptz;

-- A VM run as a scheduler reports it: the ordered attempts, each on a host, ok or failed.
CREATE TABLE vm_runs (
    id          bigserial PRIMARY KEY,
    vm_id       text NOT NULL,
    attempts    jsonb NOT NULL,
    actor       text NOT NULL,
    received_at timestamptz NOT NULL
);

-- A host is charged when a VM failed on it and then started on another host.
CREATE TABLE charges (
    id        bigserial PRIMARY KEY,
    host_id   text NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    vm_run_id bigint NOT NULL REFERENCES vm_runs (id) ON DELETE CASCADE,
    vm_id     text NOT NULL,
    error     text,
    at        timestamptz NOT NULL
);
CREATE INDEX charges_host_time_idx ON charges (host_id, at);

CREATE TABLE storage_domains (
    id                text PRIMARY KEY,
    status            text NOT NULL DEFAULT 'active',   -- active, inactive, maintenance
    autorecovery      boolean NOT NULL DEFAULT true,
    fence             bigint NOT NULL DEFAULT 0,
    last_seen_at      timestamptz,                       -- last time an up host reached it
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    detail            text
);

CREATE TABLE sd_activations (
    id          text PRIMARY KEY,
    sd_id       text NOT NULL REFERENCES storage_domains (id) ON DELETE CASCADE,
    trigger     text NOT NULL,
    actor       text NOT NULL,
    state       text NOT NULL,
    fence       bigint,
    outcome     text,
    detail      text,
    queued_at   timestamptz NOT NULL,
    started_at  timestamptz,
    ended_at    timestamptz
);
CREATE UNIQUE INDEX sd_activations_one_in_flight ON sd_activations (sd_id)
    WHERE state IN ('queued', 'running');
