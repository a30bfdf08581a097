-- Usage records gained the delivery of an asynchronous call (attempt, 1 for
-- synchronous calls) and the bytes a sandbox with outbound network received
-- and sent during the call. Added to the partitioned parent: every partition,
-- the default one included, gets them.
ALTER TABLE usage ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE usage ADD COLUMN net_rx_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN net_tx_bytes BIGINT NOT NULL DEFAULT 0;
