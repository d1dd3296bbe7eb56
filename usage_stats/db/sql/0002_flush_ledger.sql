-- The flushes that committed, by process (a random id per start) and sequence number. A flush writes
-- its row in its own transaction; after a flush whose COMMIT got no answer, the process sends it again
-- under the same id and the row, if there, says it was stored already. Pruned by day-end maintenance.
CREATE TABLE {schema}.flush_ledger (
    process uuid NOT NULL,
    seq bigint NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (process, seq)
);
CREATE INDEX flush_ledger_at ON {schema}.flush_ledger (at);
