-- The tick fans out: a coordinator claims one tick per interval and cuts the fleet into batches
-- that any worker process runs; the batch that completes the tick closes it (observer, incidents,
-- storage domains, admission under the caps). Times are PostgreSQL's, never a worker's.

CREATE TABLE ticks (
    id          text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('running', 'closing', 'done', 'abandoned')),
    batches     integer NOT NULL CHECK (batches >= 0),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at    timestamptz,
    detail      text,
    summary     jsonb
);
CREATE INDEX ticks_started_at ON ticks (started_at DESC);

-- One row per batch that finished: its counts and the hosts it found ready for activation.
CREATE TABLE tick_batches (
    tick_id     text NOT NULL REFERENCES ticks (id) ON DELETE CASCADE,
    idx         integer NOT NULL CHECK (idx >= 0),
    done_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    summary     jsonb NOT NULL,
    candidates  jsonb NOT NULL,
    PRIMARY KEY (tick_id, idx)
);
