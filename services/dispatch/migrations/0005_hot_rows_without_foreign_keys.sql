-- The foreign keys from jobs and offers to couriers (and from offers to jobs) go. Each checked
-- every offer, accept and step by locking the courier's row FOR KEY SHARE: a lock written into
-- the row (WAL) and, with several transactions on one courier at once, a multixact, for ids
-- only dispatch writes and takes from rows it has just read or written (the matcher's
-- candidates, the job it offers, the courier its token names). Couriers and jobs are never
-- deleted, so no id can come to point at nothing.
ALTER TABLE jobs DROP CONSTRAINT jobs_courier_id_fkey;
ALTER TABLE offers DROP CONSTRAINT offers_order_id_fkey;
ALTER TABLE offers DROP CONSTRAINT offers_courier_id_fkey;
