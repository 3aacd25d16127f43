-- A job nobody could take is tried again when capacity appears near it, found in the
-- database by whichever process matches (not told in-process by the one where it appeared).
--
-- couriers.capacity_at: when this courier last had capacity appear: a unit given back, going
-- online, or moving into another coarse cell (their free capacity is new there).
-- jobs.tried_at: when the matcher last tried a waiting job and nobody could take it.
-- A postponed job is tried again before its backoff ends when an available courier near it
-- has capacity_at > tried_at.
ALTER TABLE couriers ADD COLUMN capacity_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE jobs ADD COLUMN tried_at timestamptz;
