-- Versions of every function (config as JSON, files as msgpack) and the
-- aliases pointing at them: the Registry interface of invoker/registry.py.
CREATE TABLE versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    config JSONB NOT NULL,
    files BYTEA NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    canary INTEGER,
    weight DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (name, alias)
);

-- Usage records, append-only, partitioned by day of started_at: old days
-- are dropped or archived a partition at a time. The ledger creates the
-- partitions of the coming days ahead; the default partition only catches
-- a record whose day was not created in time, so that no answer is lost.
CREATE TABLE usage (
    seq BIGSERIAL NOT NULL,
    call_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    wall_ms DOUBLE PRECISION NOT NULL,
    init_ms DOUBLE PRECISION,
    billed_ms BIGINT NOT NULL,
    cpu_us BIGINT NOT NULL,
    memory_mb INTEGER NOT NULL,
    max_memory_bytes BIGINT NOT NULL,
    status TEXT NOT NULL,
    cold BOOLEAN NOT NULL
) PARTITION BY RANGE (started_at);

CREATE TABLE usage_default PARTITION OF usage DEFAULT;
CREATE INDEX usage_seq ON usage (seq);
CREATE INDEX usage_started ON usage (started_at);
CREATE INDEX usage_function_seq ON usage (function, seq);
