-- Events are judged by their subject's position alone (shared.inbox): a sequence rises by one
-- per subject within its topic and is written into the event before it is first published, so
-- a copy delivered again carries a sequence the position has already reached. The table of
-- event ids said the same thing again at two B-tree inserts per event consumed (ten per
-- order across the consumers: a fifth of the WAL an order wrote) and a prune.
DROP TABLE inbox;
-- When the subject last had an event here: a position is forgotten only once both its first and its last
-- event are older than anything Kafka can deliver again (shared.inbox.forget_before). Not
-- indexed: the prune finds candidates by created_at's BRIN index, and the consumers' upserts
-- stay HOT.
ALTER TABLE inbox_positions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
