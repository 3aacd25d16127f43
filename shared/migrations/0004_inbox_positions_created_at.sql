-- When each subject's position was first written, so that positions are forgotten like the
-- event ids once nothing older can come back from Kafka (shared.inbox.forget_before). A BRIN
-- index: rows arrive in time order and the column never changes, so the index stays a few
-- pages and costs the consumers' upsert next to nothing (their updates stay HOT).
ALTER TABLE inbox_positions ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX inbox_positions_created_at ON inbox_positions USING brin (created_at);
