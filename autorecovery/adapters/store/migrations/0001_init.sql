-- Fleet state, latest reports, activations and the audit log.

CREATE TABLE clusters (
    id                text PRIMARY KEY,
    required_networks text[] NOT NULL DEFAULT '{}',
    storage_domains   text[] NOT NULL DEFAULT '{}',
    min_version       text NOT NULL DEFAULT '0',
    cpu_flags         text[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hosts (
    id                 text PRIMARY KEY,
    cluster_id         text NOT NULL REFERENCES clusters (id),
    agent_url          text NOT NULL,
    status             text NOT NULL DEFAULT 'non_responsive',
    reason             text DEFAULT 'no_report',
    detail             text DEFAULT 'registered; waiting for the first report',
    autorecovery       boolean NOT NULL DEFAULT true,
    status_changed_at  timestamptz NOT NULL DEFAULT now(),
    -- Fencing token: bumped by each activation and by the reaper; every activation write
    -- checks it, so a holder that lost its lock cannot change anything.
    fence              bigint NOT NULL DEFAULT 0,
    last_decision      text,
    last_decision_detail text,
    last_decision_at   timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hosts_cluster_idx ON hosts (cluster_id);
CREATE INDEX hosts_status_idx ON hosts (status);

CREATE TABLE reports (
    host_id         text PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    reported_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    source          text NOT NULL,
    agent_reachable boolean NOT NULL,
    kvm             boolean NOT NULL DEFAULT false,
    version         text NOT NULL DEFAULT '',
    cpu_flags       text[] NOT NULL DEFAULT '{}',
    networks        jsonb NOT NULL DEFAULT '{}',
    storage_domains jsonb NOT NULL DEFAULT '{}',
    vms_running     integer NOT NULL DEFAULT 0,
    mem_free_mb     integer NOT NULL DEFAULT 0,
    error           text
);

CREATE TABLE activations (
    id          text PRIMARY KEY,
    host_id     text NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    trigger     text NOT NULL,
    actor       text NOT NULL,
    state       text NOT NULL,
    fence       bigint,
    outcome     text,
    reason      text,
    detail      text,
    queued_at   timestamptz NOT NULL,
    started_at  timestamptz,
    ended_at    timestamptz
);
-- At most one queued or running activation per host: duplicate ticks and racing admins meet here.
CREATE UNIQUE INDEX activations_one_in_flight ON activations (host_id)
    WHERE state IN ('queued', 'running');
CREATE INDEX activations_host_time_idx ON activations (host_id, queued_at DESC);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    event       text NOT NULL,
    actor       text NOT NULL,
    reason      text,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_object_idx ON audit_log (object_type, object_id, id);
CREATE INDEX audit_at_idx ON audit_log (at);
