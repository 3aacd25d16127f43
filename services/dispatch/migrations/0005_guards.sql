-- Guards against a dishonest or broken courier client (the rules are domain.py's).
--
-- A job's delivery code: its wrong codes in all and its lockouts so far (each longer than the
-- last); past a cap the job is held until the admin clears it. code_failures stays the count
-- since the last lockout.
ALTER TABLE jobs ADD COLUMN code_failures_total integer NOT NULL DEFAULT 0,
                 ADD COLUMN code_lockouts integer NOT NULL DEFAULT 0;

-- A courier's wrong codes across their jobs, counted from code_failures_since (a window);
-- impossible positions in a row (jumps); and a flag: a flagged courier gets no new offers
-- until the admin clears it.
--
-- position_at is, from now on, when the phone took the position by the PHONE's clock (a
-- point's `at`, or the `at` given with the status; NULL when the status gave none): a newer
-- point is told by comparing it with the phone's own times, never with the server's clock.
ALTER TABLE couriers ADD COLUMN code_failures integer NOT NULL DEFAULT 0,
                     ADD COLUMN code_failures_since timestamptz,
                     ADD COLUMN jumps integer NOT NULL DEFAULT 0,
                     ADD COLUMN flagged_at timestamptz,
                     ADD COLUMN flag_reason text CHECK (flag_reason IN ('impossible_speed', 'code_guessing')),
                     ADD CHECK ((flagged_at IS NULL) = (flag_reason IS NULL));

-- Only unflagged couriers are available: the candidate lookup and the matcher's capacity
-- read these indexes, whose predicates now leave flagged couriers out. (A flag is rarely
-- set, so location pings stay HOT updates.)
DROP INDEX couriers_available_by_cell;
DROP INDEX couriers_available_by_coarse_cell;
CREATE INDEX couriers_available_by_cell ON couriers (cell)
    WHERE online AND load < capacity AND flagged_at IS NULL;
CREATE INDEX couriers_available_by_coarse_cell ON couriers (coarse_cell)
    WHERE online AND load < capacity AND flagged_at IS NULL;
