-- Applied counts per connection that applied them (slot = its backend's pid): one row per
-- consumer and type made every transaction that applied events of that type wait for the
-- previous one's commit, so two batches of one consumer could not be handled at once.
-- Readers sum over the slots.
ALTER TABLE inbox_applied ADD COLUMN slot integer NOT NULL DEFAULT 0;
ALTER TABLE inbox_applied DROP CONSTRAINT inbox_applied_pkey;
ALTER TABLE inbox_applied ADD PRIMARY KEY (consumer, event_type, slot);
