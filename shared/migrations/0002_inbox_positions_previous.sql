-- The position a subject had before the statement that last moved it: the inbox judges a
-- whole batch in one statement (shared/inbox.py), which raises each position as it locks
-- it and needs the value from before to tell new events from stale ones.
ALTER TABLE inbox_positions ADD COLUMN previous bigint NOT NULL DEFAULT 0;
