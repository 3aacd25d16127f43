-- Dispatch: couriers, the jobs it owns from `placed` to a final status, and every offer made.
--
-- The two invariants of the contract live here, not only in the code:
-- * a courier never holds more offers + jobs than capacity: `couriers.load` counts them,
--   is changed only by atomic `UPDATE ... SET load = load +/- 1` (which row-locks the
--   courier), and CHECK (load <= capacity) rejects any transaction that would go over;
-- * an order never has two couriers: a job row has ONE courier_id column, and at most one
--   live (open or accepted) offer per order is allowed by a partial unique index.
-- And "never offered to the same courier twice" is UNIQUE (order_id, courier_id) on offers.

CREATE TABLE couriers (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL,
    phone         text        NOT NULL,
    vehicle       text        NOT NULL CHECK (vehicle IN ('bicycle', 'motorbike', 'car', 'van')),
    -- SHA-256 of the bearer token (shared.secrets); the token itself is shown once.
    secret_hash   text        NOT NULL UNIQUE,
    capacity      integer     NOT NULL CHECK (capacity >= 1),
    load          integer     NOT NULL DEFAULT 0 CHECK (load >= 0 AND load <= capacity),
    online        boolean     NOT NULL DEFAULT false,
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    lng           double precision CHECK (lng BETWEEN -180 AND 180),
    -- H3 cells of the position as 64-bit integers: a fine one (settings.h3_resolution) for
    -- the near search and its coarse parent (settings.h3_coarse_resolution) for the wide one.
    cell          bigint,
    coarse_cell   bigint,
    position_at   timestamptz,
    -- When the last courier.location event left for this courier (one per second at most).
    location_published_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Candidate lookup: `cell = ANY(<cells near the pickup>)` among couriers who can take one
-- more offer. Partial, so the index holds only available couriers and a lookup never
-- touches the busy or offline ones.
CREATE INDEX couriers_available_by_cell ON couriers (cell) WHERE online AND load < capacity;
CREATE INDEX couriers_available_by_coarse_cell ON couriers (coarse_cell) WHERE online AND load < capacity;

CREATE TABLE jobs (
    order_id          uuid        PRIMARY KEY,
    tracking_code     text        NOT NULL,
    merchant_id       uuid        NOT NULL,
    pickup            jsonb       NOT NULL,
    dropoff           jsonb       NOT NULL,
    parcel            jsonb       NOT NULL,
    note              text,
    cod_amount_vnd    bigint      NOT NULL CHECK (cod_amount_vnd >= 0),
    fee_vnd           bigint      NOT NULL CHECK (fee_vnd >= 0),
    distance_m        integer     NOT NULL CHECK (distance_m >= 0),
    pickup_lat        double precision NOT NULL,
    pickup_lng        double precision NOT NULL,
    pickup_cell       bigint      NOT NULL,  -- fine H3 cell (see couriers.cell)
    pickup_coarse_cell bigint     NOT NULL,  -- its coarse parent
    -- The delivery code as orders sent it: HMAC(key, salt:code) (shared.secrets).
    code_salt         text        NOT NULL,
    code_hash         text        NOT NULL,
    status            text        NOT NULL DEFAULT 'waiting' CHECK (status IN (
                          'waiting', 'offered', 'assigned', 'picked_up', 'delivered',
                          'delivery_failed', 'returned', 'cancelled', 'expired')),
    -- The courier holding the offer or the job; one column, so never two couriers.
    courier_id        uuid        REFERENCES couriers (id),
    offer_expires_at  timestamptz,
    placed_at         timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),  -- when order.placed reached dispatch
    -- placed_at + the dispatch window: not accepted by then means `expired`.
    dispatch_deadline timestamptz NOT NULL,
    -- When the matcher looks at a waiting job again (backs off while nobody is free).
    next_match_at     timestamptz NOT NULL,
    match_attempts    integer     NOT NULL DEFAULT 0,
    -- Wrong delivery codes since the last lockout (the code has only 10^6 values).
    code_failures     integer     NOT NULL DEFAULT 0,
    code_locked_until timestamptz,
    cod_collected_vnd bigint,
    fail_reason       text,
    cancel_reason     text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'waiting' OR courier_id IS NULL),
    CHECK (status NOT IN ('offered', 'assigned', 'picked_up', 'delivered', 'delivery_failed', 'returned')
           OR courier_id IS NOT NULL),
    CHECK ((status = 'offered') = (offer_expires_at IS NOT NULL))
);
-- The matcher's queue: waiting jobs that are due, oldest first ...
CREATE INDEX jobs_waiting_due ON jobs (next_match_at) WHERE status = 'waiting';
-- ... and those near a courier who just got free capacity, whatever their backoff says.
CREATE INDEX jobs_waiting_by_area ON jobs (pickup_coarse_cell, placed_at) WHERE status = 'waiting';
-- The expirer: offers past their time, and jobs past the dispatch window.
CREATE INDEX jobs_offer_expiry ON jobs (offer_expires_at) WHERE status = 'offered';
CREATE INDEX jobs_dispatch_deadline ON jobs (dispatch_deadline) WHERE status IN ('waiting', 'offered');
-- A courier's offers and jobs in progress (jobs list, location events, going offline).
CREATE INDEX jobs_by_active_courier ON jobs (courier_id)
    WHERE status IN ('offered', 'assigned', 'picked_up', 'delivery_failed');

CREATE TABLE offers (
    id              bigserial   PRIMARY KEY,
    order_id        uuid        NOT NULL REFERENCES jobs (order_id),
    courier_id      uuid        NOT NULL REFERENCES couriers (id),
    state           text        NOT NULL DEFAULT 'open'
                                CHECK (state IN ('open', 'accepted', 'declined', 'expired', 'withdrawn')),
    offered_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    answered_at     timestamptz,
    -- Why this courier: the numbers the matcher weighed when it chose them.
    distance_m      integer     NOT NULL,
    travel_s        integer     NOT NULL,
    courier_load    integer     NOT NULL,  -- offers + jobs the courier held before this one
    capacity        integer     NOT NULL,
    candidates      integer     NOT NULL,  -- couriers weighed for this offer
    search_rings    integer     NOT NULL,  -- H3 rings around the pickup that were searched ...
    search_resolution integer   NOT NULL,  -- ... at this H3 resolution
    -- Never offer an order to the same courier twice (declined or expired ones included).
    UNIQUE (order_id, courier_id)
);
-- At most one live offer per order: the second courier's offer cannot even be written.
CREATE UNIQUE INDEX offers_one_live_per_order ON offers (order_id) WHERE state IN ('open', 'accepted');
