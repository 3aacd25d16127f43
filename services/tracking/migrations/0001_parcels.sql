-- The tracking read model: one row per order, the projection of its events
-- (services/tracking/domain.py). Nothing personal is stored: no names, phones,
-- addresses or delivery code. Rebuildable from the topics (python -m services.tracking rebuild).
CREATE TABLE parcels (
    order_id              uuid PRIMARY KEY,
    -- NULL until order.placed is consumed: dispatch events may arrive first.
    tracking_code         text UNIQUE,
    status                text,
    -- [{"status": ..., "at": ...}] in lifecycle order, each status once
    timeline              jsonb       NOT NULL DEFAULT '[]',
    courier_id            uuid,       -- internal: matches location pings
    courier_display_name  text,
    courier_vehicle       text,
    dropoff_lat           double precision,  -- for the ETA only, never shown
    dropoff_lng           double precision,
    distance_m            integer,
    location_lat          double precision,
    location_lng          double precision,
    location_at           timestamptz,
    location_sequence     bigint,     -- of the courier's location stream
    orders_sequence       bigint      NOT NULL DEFAULT 0,
    dispatch_sequence     bigint      NOT NULL DEFAULT 0,
    -- +1 on every write: a reader that saw version n ignores anything older it reads later
    version               bigint      NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The latest point of each courier, so that a parcel picked up shows where its courier is
-- at once, even when the courier's ping was consumed before the pickup (another topic).
CREATE TABLE courier_positions (
    courier_id  uuid PRIMARY KEY,
    sequence    bigint           NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    at          timestamptz      NOT NULL
);
