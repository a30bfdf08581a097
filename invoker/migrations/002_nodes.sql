-- Invokers of a cluster: each upserts its row every heartbeat; a row whose
-- lease has passed is a dead invoker, and gateways route around it.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    cores INTEGER NOT NULL,
    memory_mb BIGINT NOT NULL,
    in_flight INTEGER NOT NULL DEFAULT 0,
    sandboxes INTEGER NOT NULL DEFAULT 0,
    ready BOOLEAN NOT NULL DEFAULT FALSE,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until TIMESTAMPTZ NOT NULL
);
