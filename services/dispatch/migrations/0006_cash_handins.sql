-- Cash on delivery, followed after the doorstep: the cash a courier collected stays with them
-- until they hand it in at the hub and the admin records it (service/cash.py).
--
-- A hand-in settles the courier's oldest unsettled deliveries whose cash adds up to exactly its
-- amount; each settled job names it (jobs.cash_handin_id; NULL: the cash is still with the
-- courier). `actor` is who received it, as the audit log names them (shared.audit).
CREATE TABLE cash_handins (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    courier_id  uuid        NOT NULL,
    amount_vnd  bigint      NOT NULL CHECK (amount_vnd > 0),
    deliveries  integer     NOT NULL CHECK (deliveries > 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL
);
-- A courier's latest hand-ins, newest first.
CREATE INDEX cash_handins_by_courier ON cash_handins (courier_id, id);

-- No foreign key (as 0005_hot_rows_without_foreign_keys.sql says why): the id is written only
-- by the hand-in that has just inserted it.
ALTER TABLE jobs ADD COLUMN cash_handin_id bigint;

-- The cash couriers hold: delivered jobs with cash collected and not yet handed in, by courier
-- and oldest first. A delivered job's updated_at is when it was delivered: nothing changes it
-- afterwards (store.clear_code_lock leaves a delivered job's updated_at alone; a hand-in sets
-- cash_handin_id only). Partial: a delivery costs one entry here only with cash collected, the
-- other steps none (status, courier_id and updated_at are in other indexes already, so no step
-- loses a HOT update), and a hand-in takes its jobs out. cod_collected_vnd is included so that
-- the sums read the index alone.
CREATE INDEX jobs_cash_held ON jobs (courier_id, updated_at, order_id) INCLUDE (cod_collected_vnd)
    WHERE status = 'delivered' AND cod_collected_vnd > 0 AND cash_handin_id IS NULL;
