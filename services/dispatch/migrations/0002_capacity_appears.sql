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

-- The matcher's look for postponed jobs near new capacity reads only jobs that were tried
-- (new ones have no tried_at, and come through jobs_waiting_due). It replaces the index by
-- area over every waiting job, which each pass under a backlog would have read in full.
CREATE INDEX jobs_postponed_by_area ON jobs (pickup_coarse_cell, tried_at)
    WHERE status = 'waiting' AND tried_at IS NOT NULL;
DROP INDEX jobs_waiting_by_area;
