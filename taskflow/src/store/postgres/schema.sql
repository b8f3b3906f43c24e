-- taskflow's tables in one PostgreSQL schema, version 1. `{s}` is the quoted schema name,
-- `{c}` the notification channel of the schema as a string literal.
-- Every value that came from a user (inputs, outputs, errors, reasons, event data, step
-- results) is a `json` column, kept as the exact text taskflow wrote: `jsonb` would refuse
-- a `\u0000` in a string and reorder keys.

CREATE TABLE {s}.keys (
    ik          text PRIMARY KEY,
    -- The key's current run; NULL once retention removed it. One current run per key is
    -- this primary key: two processes creating a run for one key serialise on its row.
    current_run bigint,
    -- The key's last sequence number; outlives deleted runs so a seq is never reused.
    last_seq    bigint NOT NULL DEFAULT 0
);

CREATE TABLE {s}.runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ik               text NOT NULL,
    name             text NOT NULL,
    owner            text,
    status           text NOT NULL,
    input            json NOT NULL,
    output           json,
    error            json,
    attempt          integer NOT NULL,
    failed_attempts  integer NOT NULL,
    max_attempts     integer NOT NULL,
    execute_mode     text NOT NULL,
    on_behalf_of     boolean NOT NULL,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    heartbeat_at     bigint NOT NULL,
    next_attempt_at  bigint,
    suspended_reason json,
    first_seq        bigint NOT NULL,
    epoch            bigint NOT NULL,
    disconnect_grace_ms bigint,
    -- The process executing the run and until when its claim holds (database clock).
    lease_owner      text,
    lease_expires_at timestamptz,
    -- Since when a `created` run waits for a slot (database clock): a run that waited in a
    -- busy process's queue longer than a heartbeat may be taken by a process with a free slot.
    queued_since     timestamptz
);
CREATE INDEX runs_by_owner ON {s}.runs (owner, id DESC);
CREATE INDEX runs_by_status ON {s}.runs (status, updated_at);
-- What another process may claim: runs in flight, by lease expiry.
CREATE INDEX runs_in_flight ON {s}.runs (lease_expires_at, id) WHERE status IN ('created', 'running');

CREATE TABLE {s}.events (
    ik   text NOT NULL,
    seq  bigint NOT NULL,
    task bigint NOT NULL,
    name text NOT NULL,
    data json NOT NULL,
    PRIMARY KEY (ik, seq)
);

-- SSE streams each process has open per run, for the disconnect rule across processes;
-- rows of a process that stopped refreshing them (its leases) do not count.
CREATE TABLE {s}.streams (
    task    bigint NOT NULL,
    process text NOT NULL,
    open    integer NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (task, process)
);

CREATE TABLE {s}.steps (
    task   bigint NOT NULL,
    key    text NOT NULL,
    record json NOT NULL,
    PRIMARY KEY (task, key)
);
